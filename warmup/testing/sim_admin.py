"""A client of the simulator's admin API (``/_sim/...``, listed in `warmup.simulator.admin_api`).

The send log it reads is a run's ground truth, and its faults are how a run makes the providers
misbehave; the subprocess fleet (`warmup.testing.harness`) and the in-process fleet of the tests
(``tests/fleet_fixture.py``) both talk to their simulator through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx


class SimulatorAdmin:
    """Admin calls to the simulator at ``base_url``; every call raises for an error status."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url
        self._http = httpx.Client(timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer to ``method path`` (``kwargs`` as `httpx.request` takes them)."""
        response = self._http.request(method, self.base_url + path, **kwargs)
        response.raise_for_status()
        return response.json()

    def sends(self, channel: str | None = None) -> list[dict[str, Any]]:
        """The send log (every accepted send), of one channel (a phone) or of all."""
        params = {"channel": channel} if channel else {}
        return list(self.request("GET", "/_sim/sends", params=params)["sends"])

    def set_faults(self, faults: Mapping[str, object], channel: str | None = None) -> None:
        """Set the fault spec of one channel (a phone), or the global one."""
        body: dict[str, Any] = {"faults": dict(faults)}
        if channel is not None:
            body["channel"] = channel
        self.request("PUT", "/_sim/faults", json=body)

    def clear_faults(self) -> None:
        """Clear every fault spec, global and per channel."""
        self.request("DELETE", "/_sim/faults")

    def close(self) -> None:
        self._http.close()
