"""One API call to the simulator, shared by `whapi_api` and `cloud_api`: token, JSON, parameters, faults.

`run_operation` is where fault injection happens (see `faults` for which faults perform the operation):
it draws the faults for the call, then either answers with the fault or runs the model action under the
state's lock and garbles, delays or passes on its answer. `render` shapes errors (Whapi's envelope by
default, Meta's for the Cloud API).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from warmup.simulator.channels import SimError
from warmup.simulator.faults import FaultKind
from warmup.simulator.state import SimState

MAX_REQUEST_BYTES = 64 * 1024
HTML_ERROR = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"

Action = Callable[[str, datetime], tuple[int, Any]]
Render = Callable[[SimError], tuple[int, Any]]


def whapi_error(error: SimError) -> tuple[int, Any]:
    return error.status, error.envelope()


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers=dict(headers or {}), media_type="application/json")


def token_of(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token", "")


def parse_json(raw: bytes) -> Any:
    if len(raw) > MAX_REQUEST_BYTES:
        raise SimError(413, "Request entity too large", f"request body larger than {MAX_REQUEST_BYTES} bytes")
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SimError(400, "Bad request", "the body is not valid JSON") from None


def bool_param(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise SimError(400, "Bad request", f"'{name}' must be true or false")


def number_param(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise SimError(400, "Bad request", f"'{name}' must be a number") from None


def int_param(value: str | None, name: str, default: int) -> int:
    number = number_param(value, name)
    if number is None:
        return default
    if number != int(number):
        raise SimError(400, "Bad request", f"'{name}' must be an integer")
    return int(number)


async def run_operation(
    state: SimState,
    request: Request,
    operation: str,
    action: Action,
    render: Render = whapi_error,
) -> Response:
    """Run one API operation with the faults drawn for it; `render` shapes errors (Whapi or Meta)."""
    token = token_of(request)
    spec, pick = state.pick_fault(operation, token)
    if pick.latency:
        await asyncio.sleep(pick.latency)
    kind = pick.kind
    if kind is FaultKind.RATE_LIMIT:
        status, payload = render(SimError(429, "Too many requests", "rate limit exceeded, retry later"))
        return json_response(status, payload, {"Retry-After": str(spec.retry_after)})
    if kind is FaultKind.SERVER_ERROR:
        code = state.fault_rng.choice((500, 502, 503))
        return json_response(*render(SimError(code, "Internal error", "simulated server error")))
    if kind is FaultKind.TIMEOUT:
        await asyncio.sleep(spec.hold_seconds)
        return json_response(*render(SimError(504, "Gateway timeout", "simulated timeout")))
    if kind is FaultKind.HTML:
        return Response(HTML_ERROR, 502, media_type="text/html")
    headers: dict[str, str] = {}
    try:
        status, payload = state.call(lambda now: action(token, now))
    except SimError as error:
        status, payload = render(error)
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
    if kind is FaultKind.TIMEOUT_AFTER_SEND:
        await asyncio.sleep(spec.hold_seconds)
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    if kind is FaultKind.MALFORMED:
        body = body.replace(b'"', b"'")[:-1] + b",,}"
    elif kind is FaultKind.TRUNCATED:
        body = body[: max(1, len(body) // 2)]
    elif kind is FaultKind.EMPTY:
        body = b""
    return Response(body, status, headers=headers, media_type="application/json")
