"""The simulator's admin routes (no auth, loopback only) under `/_sim/`: channels, sends, faults, time.

Tests, the demo and the harness drive the simulator through these (`ADMIN_ENDPOINTS` lists them for the
CLI's help). Errors are plain `{"error": "..."}` objects: 400 bad input, 404 no such channel, 409 duplicate.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from warmup.simulator.api_call import json_response
from warmup.simulator.channels import ChannelSpec, ChannelStatus, DuplicateChannel, phone_key
from warmup.simulator.faults import FaultSpec
from warmup.simulator.model import SimModel
from warmup.simulator.state import SimState

ADMIN_ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    ("POST", "/_sim/channels", "register a channel: {token, phone, registered, meter?, name?, trial_limit?}"),
    ("GET", "/_sim/channels", "every channel's state"),
    ("GET", "/_sim/channels/{phone}", "one channel's state: status, ban reason, counters, readings"),
    (
        "PATCH",
        "/_sim/channels/{phone}",
        "set status (connected|logged_out|banned), meter, trial_limit, registered",
    ),
    ("GET", "/_sim/sends", "the send log: ?channel=PHONE&after=SEQ"),
    ("GET", "/_sim/faults", "global and per-channel fault specs"),
    ("PUT", "/_sim/faults", "set faults: {channel?: PHONE, faults: {kind: probability, ...}}"),
    ("DELETE", "/_sim/faults", "clear faults: ?channel=PHONE (one channel) or all"),
    ("GET", "/_sim/clock", "the simulator's current simulated time"),
    ("POST", "/_sim/tick", "deliver everything due now (replies, statuses, webhooks)"),
    ("GET", "/_sim/stats", "webhook delivery counters and event queue size"),
    ("POST", "/_sim/reset", "forget channels, sends and faults: {seed?}"),
)


def channel_spec_from_json(data: Mapping[str, Any]) -> ChannelSpec:
    """A `ChannelSpec` from admin JSON or a channels file; ValueError names what is wrong."""
    unknown = set(data) - {"token", "phone", "registered", "meter", "name", "trial_limit", "forbidden"}
    if unknown:
        raise ValueError(f"unknown channel fields {sorted(unknown)}")
    token, phone, registered = data.get("token"), data.get("phone"), data.get("registered")
    if not isinstance(token, str) or not token:
        raise ValueError("'token' is required")
    if not isinstance(phone, str):
        raise ValueError("'phone' is required (E.164)")
    if isinstance(registered, date):
        reg = registered
    elif isinstance(registered, str):
        reg = date.fromisoformat(registered)
    else:
        raise ValueError("'registered' is required (YYYY-MM-DD)")
    trial = data.get("trial_limit")
    forbidden = data.get("forbidden") or []
    if not isinstance(forbidden, list):
        raise ValueError("'forbidden' must be a list of phone numbers")
    spec = ChannelSpec(
        token=token,
        phone=phone,
        registered=reg,
        meter=bool(data.get("meter", True)),
        name=str(data.get("name", "")),
        trial_limit=None if trial is None else int(trial),
        forbidden=frozenset(phone_key(str(p))[1:] for p in forbidden),
    )
    _ = spec.digits  # validates the phone
    return spec


def admin_routes(state: SimState) -> list[Route]:
    """The `/_sim/` routes over one state."""

    def admin(fn: Callable[[Request, Any], Any], status: int = 200) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                payload = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError:
                return json_response(400, {"error": "the body is not valid JSON"})
            try:
                return json_response(status, fn(request, payload))
            except KeyError as exc:
                return json_response(404, {"error": f"no such channel: {exc.args[0]}"})
            except DuplicateChannel as exc:
                return json_response(409, {"error": str(exc)})
            except (ValueError, TypeError) as exc:
                return json_response(400, {"error": str(exc)})

        return endpoint

    def register_channel(request: Request, body: Any) -> Any:
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        spec = channel_spec_from_json(body)
        state.call(lambda now: state.model.register(spec))
        return state.call(lambda now: state.model.channel_state(spec.phone, now))

    def list_channels(request: Request, body: Any) -> Any:
        return state.call(
            lambda now: {"channels": [state.model.channel_state(p, now) for p in state.model.phones()]}
        )

    def channel_state(request: Request, body: Any) -> Any:
        phone = request.path_params["phone"]
        return state.call(lambda now: state.model.channel_state(phone, now))

    def update_channel(request: Request, body: Any) -> Any:
        phone = request.path_params["phone"]
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        unknown = set(body) - {"status", "reason", "meter", "trial_limit", "registered"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        if "status" in body:
            kwargs["status"] = ChannelStatus(body["status"])
        if "reason" in body:
            kwargs["reason"] = str(body["reason"])
        if "meter" in body:
            kwargs["meter"] = bool(body["meter"])
        if "trial_limit" in body:
            limit = body["trial_limit"]
            kwargs["trial_limit"] = None if limit is None else int(limit)
        if "registered" in body:
            kwargs["registered"] = date.fromisoformat(str(body["registered"]))

        def apply(now: datetime) -> Any:
            state.model.update_channel(phone, now=now, **kwargs)
            return state.model.channel_state(phone, now)

        return state.call(apply)

    def sends(request: Request, body: Any) -> Any:
        channel = request.query_params.get("channel")
        after = int(request.query_params.get("after", "0"))
        records = state.call(lambda now: state.model.sends(channel=channel, after=after))
        return {"sends": [r.to_json() for r in records], "total": len(records)}

    def get_faults(request: Request, body: Any) -> Any:
        with state.lock:
            return {
                "global": state.faults.to_json(),
                "channels": {phone: spec.to_json() for phone, spec in state.channel_faults.items()},
            }

    def put_faults(request: Request, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("faults", {}), dict):
            raise ValueError("expected {channel?: PHONE, faults: {kind: probability, ...}}")
        spec = FaultSpec.from_mapping(body.get("faults", {}))
        channel = body.get("channel")
        with state.lock:
            if channel:
                state.channel_faults[phone_key(str(channel))] = spec
            else:
                state.faults = spec
        return get_faults(request, body)

    def delete_faults(request: Request, body: Any) -> Any:
        channel = request.query_params.get("channel")
        with state.lock:
            if channel:
                state.channel_faults.pop(phone_key(channel), None)
            else:
                state.faults = FaultSpec()
                state.channel_faults.clear()
        return get_faults(request, body)

    def clock(request: Request, body: Any) -> Any:
        return {"now": state.clock.now().isoformat()}

    def tick(request: Request, body: Any) -> Any:
        return {"webhook_posts": state.tick()}

    def stats(request: Request, body: Any) -> Any:
        with state.lock:
            next_at = state.model.next_event_at()
            return {
                "sends": len(state.model.sends()),
                "next_event_at": next_at.isoformat() if next_at else None,
                "webhooks_delivered": state.webhooks.delivered,
                "webhooks_failed": state.webhooks.failed,
                "webhooks_pending": state.webhooks.pending(),
            }

    def reset(request: Request, body: Any) -> Any:
        seed = body.get("seed", state.model.seed) if isinstance(body, dict) else state.model.seed
        config = replace(state.model.config, seed=int(seed), channels=())
        with state.lock:
            state.model = SimModel(config)
            state.fault_rng = random.Random(f"{int(seed)}|faults")
            state.faults = FaultSpec()
            state.channel_faults.clear()
        return {"reset": True, "seed": int(seed)}

    return [
        Route("/_sim/channels", admin(register_channel, 201), methods=["POST"]),
        Route("/_sim/channels", admin(list_channels), methods=["GET"]),
        Route("/_sim/channels/{phone}", admin(channel_state), methods=["GET"]),
        Route("/_sim/channels/{phone}", admin(update_channel), methods=["PATCH"]),
        Route("/_sim/sends", admin(sends), methods=["GET"]),
        Route("/_sim/faults", admin(get_faults), methods=["GET"]),
        Route("/_sim/faults", admin(put_faults), methods=["PUT", "POST"]),
        Route("/_sim/faults", admin(delete_faults), methods=["DELETE"]),
        Route("/_sim/clock", admin(clock), methods=["GET"]),
        Route("/_sim/tick", admin(tick), methods=["POST"]),
        Route("/_sim/stats", admin(stats), methods=["GET"]),
        Route("/_sim/reset", admin(reset), methods=["POST"]),
    ]
