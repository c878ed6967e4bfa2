"""Shared by the HTTP-level simulator tests: a running simulator on a manual clock, and small helpers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.simulator.model_fixture import FRIENDLY, T0, A, B
from warmup.clock import ManualClock
from warmup.simulator import ChannelSpec, SimConfig, SimulatorServer

NO_METER = ChannelSpec("tok-c", "+5511999990003", date(2026, 10, 1), meter=False)


class Sim:
    def __init__(self, server: SimulatorServer, clock: ManualClock) -> None:
        self.server = server
        self.clock = clock
        self.url = server.base_url
        self.admin = httpx.Client(base_url=self.url, timeout=5)

    def client(self, token: str | None = "tok-a", timeout: float = 5.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def sends(self, **params: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin.get("/_sim/sends", params=params).json()["sends"]
        return result

    def faults(self, channel: str | None = None, **faults: Any) -> None:
        response = self.admin.put("/_sim/faults", json={"channel": channel, "faults": faults})
        assert response.status_code == 200, response.text


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    clock = ManualClock(T0)
    config = SimConfig(seed=5, channels=(A, B, NO_METER), behaviour=FRIENDLY)
    with SimulatorServer(config, clock=clock, log_file=tmp_path / "sends.jsonl", tick_seconds=0.02) as server:
        yield Sim(server, clock)


def text(to: str = "+5521900000001", body: str = "hello", typing_time: float | None = 2) -> dict[str, Any]:
    payload: dict[str, Any] = {"to": to, "body": body}
    if typing_time is not None:
        payload["typing_time"] = typing_time
    return payload


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], str)
    return error
