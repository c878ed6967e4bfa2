"""The simulator's admin routes (no auth, loopback only) under `/_sim/`: channels, sends, faults, time, and
the Cloud API side (portfolios and tiers, the limit log, quality/status overrides, webhook, templates).

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
from warmup.simulator.cloud import Template, tier_limit
from warmup.simulator.faults import FaultSpec
from warmup.simulator.model import SimModel
from warmup.simulator.state import SimState

ADMIN_ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    (
        "POST",
        "/_sim/channels",
        "register a channel: {token, phone, registered, meter?, name?, trial_limit?, portfolio?, cloud?}",
    ),
    ("GET", "/_sim/channels", "every channel's state"),
    ("GET", "/_sim/channels/{phone}", "one channel's state: status, ban reason, counters, readings"),
    (
        "PATCH",
        "/_sim/channels/{phone}",
        "set status (connected|logged_out|banned), meter, trial_limit, registered; Cloud API: portfolio, "
        "quality (GREEN|YELLOW|RED|NA|null), cloud_status (CONNECTED|FLAGGED|RESTRICTED|null)",
    ),
    ("POST", "/_sim/channels/{phone}/blocks", "a user blocks the number: {user: PHONE}"),
    (
        "POST",
        "/_sim/channels/{phone}/inbound",
        "a user writes to the number now (opens its Cloud API window): {user: PHONE, body}",
    ),
    (
        "GET",
        "/_sim/portfolios",
        "Cloud API portfolios: tier, limit, unique users in the moving 24 h, numbers",
    ),
    ("PUT", "/_sim/portfolios/{name}", "set a portfolio's tier: {tier: TIER_50..TIER_UNLIMITED|TIER_2K}"),
    ("GET", "/_sim/cloud/limit-log", "accepted business-initiated sends: ?portfolio=NAME&after=SEQ"),
    ("GET", "/_sim/cloud/webhook", "where Cloud API webhooks go (never the app secret)"),
    ("PUT", "/_sim/cloud/webhook", "set it: {url: URL|null, app_secret?} (signs X-Hub-Signature-256)"),
    ("GET", "/_sim/cloud/templates", "approved templates"),
    ("PUT", "/_sim/cloud/templates", "set them: {templates: [{name, language, category?}]}"),
    (
        "POST",
        "/_sim/cloud/alerts",
        "post account_alerts: {portfolio|phone, alert_type, alert_description, alert_severity?, "
        "alert_status?}",
    ),
    ("GET", "/_sim/cloud/notices", "quality, capability and alert webhooks produced so far"),
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
    known = {
        "token",
        "phone",
        "registered",
        "meter",
        "name",
        "trial_limit",
        "forbidden",
        "portfolio",
        "cloud",
    }
    unknown = set(data) - known
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
    portfolio = data.get("portfolio")
    if portfolio is not None and (not isinstance(portfolio, str) or not portfolio):
        raise ValueError("'portfolio' must be a portfolio name")
    spec = ChannelSpec(
        token=token,
        phone=phone,
        registered=reg,
        meter=bool(data.get("meter", True)),
        name=str(data.get("name", "")),
        trial_limit=None if trial is None else int(trial),
        forbidden=frozenset(phone_key(str(p))[1:] for p in forbidden),
        portfolio=portfolio,
        cloud=bool(data.get("cloud", False)),
    )
    _ = spec.digits  # validates the phone
    return spec


def templates_from_json(items: Any) -> tuple[Template, ...]:
    """Approved templates from admin JSON or a channels file: [{name, language, category?}]."""
    if not isinstance(items, list):
        raise ValueError("'templates' must be a list of {name, language, category?}")
    templates = []
    for item in items:
        if not isinstance(item, dict) or set(item) - {"name", "language", "category"}:
            raise ValueError("each template is {name, language, category?}")
        name, language = item.get("name"), item.get("language")
        if not isinstance(name, str) or not isinstance(language, str):
            raise ValueError("a template needs a name and a language code (strings)")
        templates.append(Template(name, language, str(item.get("category", "UTILITY")).upper()))
    return tuple(templates)


def portfolios_from_json(data: Any) -> dict[str, str]:
    """Portfolio tiers from a channels file: {name: tier}."""
    if not isinstance(data, dict) or not all(isinstance(k, str) and k for k in data):
        raise ValueError("'portfolios' must map portfolio names to tiers, e.g. {acme: TIER_250}")
    tiers = {name: str(tier) for name, tier in data.items()}
    for tier in tiers.values():
        tier_limit(tier)
    return tiers


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
        cloud_fields = {"portfolio", "quality", "cloud_status", "cloud"}
        unknown = set(body) - {"status", "reason", "meter", "trial_limit", "registered"} - cloud_fields
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        cloud: dict[str, Any] = {}
        if "portfolio" in body:
            if not isinstance(body["portfolio"], str) or not body["portfolio"]:
                raise ValueError("'portfolio' must be a portfolio name")
            cloud["portfolio"] = body["portfolio"]
        if "quality" in body:
            cloud["quality"] = None if body["quality"] is None else str(body["quality"]).upper()
        if "cloud_status" in body:
            status = body["cloud_status"]
            cloud["status"] = None if status is None else str(status).upper()
        if "cloud" in body and body["cloud"] is not True:
            raise ValueError("'cloud' can only be true: a Cloud API number stays one")
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
            if cloud or body.get("cloud"):
                state.model.update_cloud(phone, now, **cloud)
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

    def block(request: Request, body: Any) -> Any:
        phone = request.path_params["phone"]
        if not isinstance(body, dict) or set(body) != {"user"} or not isinstance(body["user"], str):
            raise ValueError("expected {user: PHONE}")
        user = phone_key(body["user"])
        blocked = state.call(lambda now: state.model.block(phone, user, now))
        return {"blocked": blocked, "user": user}

    def inbound(request: Request, body: Any) -> Any:
        phone = request.path_params["phone"]
        if not isinstance(body, dict) or set(body) != {"user", "body"}:
            raise ValueError("expected {user: PHONE, body: TEXT}")
        if not isinstance(body["user"], str) or not isinstance(body["body"], str):
            raise ValueError("'user' and 'body' must be strings")
        user, text = phone_key(body["user"]), body["body"]

        def write(now: datetime) -> Any:
            state.model.user_writes(phone, user, text, now)
            return {"delivered_at": now.isoformat(), "user": user}

        result = state.call(write)
        state.tick()  # deliver it now: its webhooks go out and the window is open for the next call
        return result

    def portfolios(request: Request, body: Any) -> Any:
        return state.call(lambda now: {"portfolios": state.model.portfolios(now)})

    def set_tier(request: Request, body: Any) -> Any:
        name = request.path_params["name"]
        if not isinstance(body, dict) or set(body) != {"tier"} or not isinstance(body["tier"], str):
            raise ValueError(
                "expected {tier: TIER_50|TIER_250|TIER_1K|TIER_2K|TIER_10K|TIER_100K|TIER_UNLIMITED}"
            )
        tier = body["tier"]
        tier_limit(tier)
        return state.call(lambda now: state.model.set_tier(name, tier, now))

    def limit_log(request: Request, body: Any) -> Any:
        portfolio = request.query_params.get("portfolio")
        after = int(request.query_params.get("after", "0"))
        records = state.call(lambda now: state.model.limit_log(portfolio=portfolio, after=after))
        return {"sends": [r.to_json() for r in records], "total": len(records)}

    def get_webhook(request: Request, body: Any) -> Any:
        with state.lock:
            return state.model.cloud.webhook_state()

    def put_webhook(request: Request, body: Any) -> Any:
        if not isinstance(body, dict) or "url" not in body or set(body) - {"url", "app_secret"}:
            raise ValueError("expected {url: URL|null, app_secret?}")
        url, secret = body["url"], body.get("app_secret")
        if url is not None and not isinstance(url, str):
            raise ValueError("'url' must be a URL or null")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError("'app_secret' must be a non-empty string")
        with state.lock:
            state.model.set_cloud_webhook(url, secret)
            return state.model.cloud.webhook_state()

    def get_templates(request: Request, body: Any) -> Any:
        with state.lock:
            return {"templates": [t.to_json() for t in state.model.cloud.templates.values()]}

    def put_templates(request: Request, body: Any) -> Any:
        if not isinstance(body, dict) or set(body) != {"templates"}:
            raise ValueError("expected {templates: [{name, language, category?}]}")
        templates = templates_from_json(body["templates"])
        with state.lock:
            state.model.set_templates(templates)
        return get_templates(request, body)

    def post_alert(request: Request, body: Any) -> Any:
        allowed = {"portfolio", "phone", "alert_type", "alert_description", "alert_severity", "alert_status"}
        if not isinstance(body, dict) or set(body) - allowed:
            raise ValueError(f"expected an object with {sorted(allowed)}")

        def post(now: datetime) -> Any:
            state.model.cloud_alert(
                portfolio=body.get("portfolio"),
                phone=body.get("phone"),
                alert_type=str(body.get("alert_type", "")),
                severity=str(body.get("alert_severity", "WARNING")),
                description=str(body.get("alert_description", "")),
                status=str(body.get("alert_status", "ACTIVE")),
                now=now,
            )
            return {"posted": True}

        return state.call(post)

    def notices(request: Request, body: Any) -> Any:
        with state.lock:
            return {"notices": list(state.model.cloud.notices)}

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
        Route("/_sim/channels/{phone}/blocks", admin(block), methods=["POST"]),
        Route("/_sim/channels/{phone}/inbound", admin(inbound), methods=["POST"]),
        Route("/_sim/portfolios", admin(portfolios), methods=["GET"]),
        Route("/_sim/portfolios/{name}", admin(set_tier), methods=["PUT"]),
        Route("/_sim/cloud/limit-log", admin(limit_log), methods=["GET"]),
        Route("/_sim/cloud/webhook", admin(get_webhook), methods=["GET"]),
        Route("/_sim/cloud/webhook", admin(put_webhook), methods=["PUT"]),
        Route("/_sim/cloud/templates", admin(get_templates), methods=["GET"]),
        Route("/_sim/cloud/templates", admin(put_templates), methods=["PUT"]),
        Route("/_sim/cloud/alerts", admin(post_alert), methods=["POST"]),
        Route("/_sim/cloud/notices", admin(notices), methods=["GET"]),
        Route("/_sim/sends", admin(sends), methods=["GET"]),
        Route("/_sim/faults", admin(get_faults), methods=["GET"]),
        Route("/_sim/faults", admin(put_faults), methods=["PUT", "POST"]),
        Route("/_sim/faults", admin(delete_faults), methods=["DELETE"]),
        Route("/_sim/clock", admin(clock), methods=["GET"]),
        Route("/_sim/tick", admin(tick), methods=["POST"]),
        Route("/_sim/stats", admin(stats), methods=["GET"]),
        Route("/_sim/reset", admin(reset), methods=["POST"]),
    ]
