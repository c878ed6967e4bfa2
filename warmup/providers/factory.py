"""Build the provider for a number from its fleet entry: `whapi`, `cloud_api` or `simulator`."""

from __future__ import annotations

from typing import Any

from warmup.core.errors import UserError
from warmup.providers.base import Provider
from warmup.providers.cloud_api import GRAPH_BASE_URL, CloudApiProvider
from warmup.providers.whapi import WHAPI_BASE_URL, WhapiProvider, simulator_meter_url
from warmup.secrets import Secret

PROVIDER_KINDS = ("whapi", "cloud_api", "simulator")


def make_provider(kind: str, token: str | Secret, base_url: str | None = None, **kw: Any) -> Provider:
    """A provider client; the caller owns it and must `close()` it.

    `whapi` reads its risk meter at `meter_url=` (None: the published `tools.whapi.cloud` one, whatever
    the base URL). `simulator` is the Whapi client pointed at a simulator URL (required), readings
    tagged `simulator`, its meter on the simulator itself unless `meter_url=` says otherwise.
    `cloud_api` needs `phone_number_id=` and has no meter (`meter_url` is ignored); extra keywords
    (timeout, version) pass through.
    """
    meter_url = kw.pop("meter_url", None)
    if kind == "whapi":
        return WhapiProvider(token, base_url or WHAPI_BASE_URL, meter_url, **kw)
    if kind == "simulator":
        if not base_url:
            raise UserError(
                "provider 'simulator' needs the simulator's base URL (e.g. http://127.0.0.1:8765)"
            )
        kw.setdefault("source", "simulator")
        return WhapiProvider(token, base_url, meter_url or simulator_meter_url(base_url), **kw)
    if kind == "cloud_api":
        phone_number_id = kw.pop("phone_number_id", None)
        if not isinstance(phone_number_id, str) or not phone_number_id.isdigit():
            raise UserError("provider 'cloud_api' needs phone_number_id: the numeric id Meta assigned")
        return CloudApiProvider(token, phone_number_id, base_url or GRAPH_BASE_URL, **kw)
    raise UserError(f"unknown provider {kind!r}: expected one of {', '.join(PROVIDER_KINDS)}")
