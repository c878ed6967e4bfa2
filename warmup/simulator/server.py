"""The simulator's HTTP face: a starlette app speaking Whapi (and its risk meter) over the `SimModel`.

`SimulatorServer(config).start()` serves it with uvicorn in a background thread on a free loopback port
and returns the base URL; `.stop()` (or leaving the `with` block) shuts it down. A second thread moves
simulated time forward every `tick_seconds` so replies and statuses due by now reach webhooks; request
handlers advance it too, so `GET /messages/list` never lags. All state lives in memory behind one lock;
the optional JSONL send log is buffered and flushed by the ticker, never per request.

Whapi operations: `POST /messages/text`, `GET /health`, `GET /messages/list`, `GET|PATCH /settings`,
`POST|GET /services/riskOfBlocking`. Auth: `Authorization: Bearer <token>` (or `?token=`), one token
per channel. Admin endpoints (no auth, loopback only) live under `/_sim/` — see `ADMIN_ENDPOINTS`.

Meta Cloud API for the same channels (phone-number-id = the channel's digits, same token):
`POST /{version}/{phone-number-id}/messages` (text or template) and `GET /{version}/{phone-number-id}`
(`?fields=quality_rating,status,...`), errors in Meta's envelope with its codes (190 bad token, 100 bad
parameter, 368 banned, 131031 logged out, 131026 forbidden recipient, 131042 trial limit, 130429 rate
limit). Not simulated: the 24-hour customer-service window (131047) and portfolio messaging limits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import queue
import random
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from warmup.simulator.faults import FaultKind, FaultPick, FaultSpec
from warmup.simulator.model import (
    ChannelSpec,
    ChannelStatus,
    Clock,
    DuplicateChannel,
    SendRecord,
    SimConfig,
    SimError,
    SimModel,
    WebhookPost,
    phone_digits,
)

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
METER_PATH = "/services/riskOfBlocking"
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
_HTML_ERROR = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


class _WallClock:
    scale = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)


def _whapi_error(error: SimError) -> tuple[int, Any]:
    return error.status, error.envelope()


_GRAPH_VERSION = re.compile(r"v[0-9]{1,3}\.[0-9]{1,2}")
_fbtrace = itertools.count(1)


def _meta_error(error: SimError) -> tuple[int, Any]:
    """Meta's Graph API envelope for an error; HTTP status and code as the Cloud API uses them."""
    details = error.details.lower()
    if error.status == 401 and "banned" in (error.message + details).lower():
        status, code, message = 400, 368, "Temporarily blocked for policies violations"
    elif error.status == 401 and "logged out" in details:
        status, code, message = 400, 131031, "Account has been locked"
    elif error.status == 401:
        status, code, message = 401, 190, "Invalid OAuth access token"
    elif error.status == 402:
        status, code, message = 400, 131042, "Business eligibility payment issue"
    elif error.status == 403:
        status, code, message = 400, 131026, "Message undeliverable"
    elif error.status == 429:
        status, code, message = 429, 130429, "Rate limit hit"
    elif error.status >= 500:
        status, code, message = (
            error.status,
            2 if error.status != 500 else 1,
            "Service temporarily unavailable",
        )
    elif error.status == 404:
        status, code, message = 404, 100, "Unknown path components"
    else:
        status, code, message = 400, 100, "Invalid parameter"
    return status, {
        "error": {
            "message": f"(#{code}) {message}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": error.details},
            "fbtrace_id": f"Sim{next(_fbtrace):09d}",
        }
    }


def _cloud_text(payload: Any) -> tuple[str, str]:
    """(text for the send log, recipient) of a Cloud API text or template send; SimError 400 if malformed."""
    if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
        raise SimError(400, "Bad request", "messaging_product must be 'whatsapp'")
    to = payload.get("to")
    if not isinstance(to, str) or not to:
        raise SimError(400, "Bad request", "'to' is required")
    kind = payload.get("type", "text")
    if kind == "text":
        text = payload.get("text")
        body = text.get("body") if isinstance(text, dict) else None
        if not isinstance(body, str) or not body.strip():
            raise SimError(400, "Bad request", "text.body is required")
        return body, to
    if kind == "template":
        template = payload.get("template")
        name = template.get("name") if isinstance(template, dict) else None
        language = template.get("language") if isinstance(template, dict) else None
        code = language.get("code") if isinstance(language, dict) else None
        if not isinstance(name, str) or not name or not isinstance(code, str) or not code:
            raise SimError(400, "Bad request", "template.name and template.language.code are required")
        return f"[template {name}/{code}]", to
    raise SimError(400, "Bad request", f"message type {kind!r} is not supported by the simulator")


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers=dict(headers or {}), media_type="application/json")


def _token(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token", "")


def _parse_json(raw: bytes) -> Any:
    if len(raw) > MAX_REQUEST_BYTES:
        raise SimError(413, "Request entity too large", f"request body larger than {MAX_REQUEST_BYTES} bytes")
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SimError(400, "Bad request", "the body is not valid JSON") from None


def _bool_param(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise SimError(400, "Bad request", f"'{name}' must be true or false")


def _number_param(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise SimError(400, "Bad request", f"'{name}' must be a number") from None


def _int_param(value: str | None, name: str, default: int) -> int:
    number = _number_param(value, name)
    if number is None:
        return default
    if number != int(number):
        raise SimError(400, "Bad request", f"'{name}' must be an integer")
    return int(number)


class _WebhookSender:
    """Posts webhook payloads from one background thread, best effort with a short timeout."""

    def __init__(self, timeout: float) -> None:
        self._queue: queue.Queue[WebhookPost | None] = queue.Queue()
        self._timeout = timeout
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="warmup-sim-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, posts: list[WebhookPost]) -> None:
        for post in posts:
            self._queue.put(post)

    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=self._timeout + 1.0)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while (post := self._queue.get()) is not None:
                try:
                    response = client.post(post.url, json=post.payload, headers=dict(post.headers))
                    if response.status_code < 300:
                        self.delivered += 1
                    else:
                        self.failed += 1
                except httpx.HTTPError as exc:
                    self.failed += 1
                    log.debug("webhook to %s failed: %s", post.url, type(exc).__name__)


class _State:
    """The model plus what the HTTP layer adds: lock, clock, faults, webhooks and the log file."""

    def __init__(
        self, model: SimModel, clock: Clock, webhook_timeout: float, log_file: str | Path | None
    ) -> None:
        self.model = model
        self.clock = clock
        self.lock = threading.Lock()
        self.fault_rng = random.Random(f"{model.seed}|faults")
        self.faults = model.config.faults
        self.channel_faults: dict[str, FaultSpec] = {
            _phone_key(phone): spec for phone, spec in model.config.channel_faults.items()
        }
        self.webhooks = _WebhookSender(webhook_timeout)
        self._log: IO[str] | None = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115

    def pick_fault(self, operation: str, token: str) -> tuple[FaultSpec, FaultPick]:
        with self.lock:
            phone = self.model.phone_of_token(token) if token else None
            spec = self.channel_faults.get(phone, self.faults) if phone else self.faults
            return spec, spec.pick(self.fault_rng, operation)

    def call(self, action: Callable[[datetime], Any]) -> Any:
        """Run one model action under the lock, after bringing simulated time up to date."""
        with self.lock:
            now = self.clock.now()
            posts = self.model.advance(now)
            try:
                return action(now)
            finally:
                if posts:
                    self.webhooks.submit(posts)

    def log_send(self, record: SendRecord | None) -> None:
        if self._log is not None and record is not None:
            self._log.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")

    def tick(self) -> int:
        with self.lock:
            posts = self.model.advance(self.clock.now())
            if self._log is not None:
                self._log.flush()
        self.webhooks.submit(posts)
        return len(posts)

    def close(self) -> None:
        with self.lock:
            if self._log is not None:
                self._log.close()
                self._log = None


def create_app(state: _State) -> Starlette:
    """The ASGI app over one state (exposed so tests or other servers can mount it)."""

    async def whapi(
        request: Request,
        operation: str,
        action: Callable[[str, datetime], tuple[int, Any]],
        render: Callable[[SimError], tuple[int, Any]] = _whapi_error,
    ) -> Response:
        """Run one API operation with the faults drawn for it; `render` shapes errors (Whapi or Meta)."""
        token = _token(request)
        spec, pick = state.pick_fault(operation, token)
        if pick.latency:
            await asyncio.sleep(pick.latency)
        kind = pick.kind
        if kind is FaultKind.RATE_LIMIT:
            status, payload = render(SimError(429, "Too many requests", "rate limit exceeded, retry later"))
            return _json(status, payload, {"Retry-After": str(spec.retry_after)})
        if kind is FaultKind.SERVER_ERROR:
            code = state.fault_rng.choice((500, 502, 503))
            return _json(*render(SimError(code, "Internal error", "simulated server error")))
        if kind is FaultKind.TIMEOUT:
            await asyncio.sleep(spec.hold_seconds)
            return _json(*render(SimError(504, "Gateway timeout", "simulated timeout")))
        if kind is FaultKind.HTML:
            return Response(_HTML_ERROR, 502, media_type="text/html")
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

    async def send_text(request: Request) -> Response:
        raw = await request.body()

        def action(token: str, now: datetime) -> tuple[int, Any]:
            payload = _parse_json(raw)
            result = state.model.send_text(token, payload, now)
            state.log_send(state.model.last_send())
            return 201, result

        return await whapi(request, "send", action)

    async def health(request: Request) -> Response:
        return await whapi(request, "health", lambda token, now: (200, state.model.health(token, now)))

    async def list_messages(request: Request) -> Response:
        q = request.query_params

        def action(token: str, now: datetime) -> tuple[int, Any]:
            result = state.model.list_messages(
                token,
                now,
                from_me=_bool_param(q.get("from_me"), "from_me"),
                time_from=_number_param(q.get("time_from"), "time_from"),
                time_to=_number_param(q.get("time_to"), "time_to"),
                count=_int_param(q.get("count"), "count", 100),
                offset=_int_param(q.get("offset"), "offset", 0),
                sort=q.get("sort", "desc"),
            )
            return 200, result

        return await whapi(request, "list", action)

    async def settings(request: Request) -> Response:
        if request.method == "GET":
            return await whapi(request, "settings", lambda token, now: (200, state.model.get_settings(token)))
        raw = await request.body()
        return await whapi(
            request,
            "settings",
            lambda token, now: (200, state.model.update_settings(token, _parse_json(raw))),
        )

    async def meter(request: Request) -> Response:
        if request.method == "POST":
            return await whapi(
                request, "meter", lambda token, now: (200, state.model.meter_compute(token, now))
            )
        return await whapi(request, "meter", lambda token, now: (200, state.model.meter_last(token)))

    # --- Meta Cloud API ------------------------------------------------------------------------

    async def cloud_send(request: Request) -> Response:
        raw = await request.body()
        version, phone_number_id = request.path_params["version"], request.path_params["pnid"]
        if not _GRAPH_VERSION.fullmatch(version):
            return _json(*_meta_error(SimError(404, "Unknown path", f"unknown API version {version!r}")))

        def action(token: str, now: datetime) -> tuple[int, Any]:
            payload = _parse_json(raw)
            phone = state.model.phone_of_token(token)
            if phone is None:
                raise SimError(401, "Unauthorized", "invalid OAuth access token")
            if phone.removeprefix("+") != phone_number_id:
                raise SimError(400, "Unsupported post request", f"object {phone_number_id} does not exist")
            text, to = _cloud_text(payload)
            result = state.model.send_text(token, {"to": to, "body": text}, now)
            state.log_send(state.model.last_send())
            message = result["message"]
            return 200, {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": message["chat_id"].split("@")[0]}],
                "messages": [{"id": message["id"], "message_status": "accepted"}],
            }

        return await whapi(request, "cloud_send", action, _meta_error)

    async def cloud_phone(request: Request) -> Response:
        version, phone_number_id = request.path_params["version"], request.path_params["pnid"]
        if not _GRAPH_VERSION.fullmatch(version):
            return _json(*_meta_error(SimError(404, "Unknown path", f"unknown API version {version!r}")))
        wanted = {f.strip() for f in request.query_params.get("fields", "").split(",") if f.strip()}

        def action(token: str, now: datetime) -> tuple[int, Any]:
            info = state.model.phone_info(token, phone_number_id, now)
            return 200, {k: v for k, v in info.items() if k == "id" or not wanted or k in wanted}

        return await whapi(request, "cloud_status", action, _meta_error)

    # --- admin ---------------------------------------------------------------------------------

    def admin(fn: Callable[[Request, Any], Any], status: int = 200) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                payload = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError:
                return _json(400, {"error": "the body is not valid JSON"})
            try:
                return _json(status, fn(request, payload))
            except KeyError as exc:
                return _json(404, {"error": f"no such channel: {exc.args[0]}"})
            except DuplicateChannel as exc:
                return _json(409, {"error": str(exc)})
            except (ValueError, TypeError) as exc:
                return _json(400, {"error": str(exc)})

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
                state.channel_faults[_phone_key(str(channel))] = spec
            else:
                state.faults = spec
        return get_faults(request, body)

    def delete_faults(request: Request, body: Any) -> Any:
        channel = request.query_params.get("channel")
        with state.lock:
            if channel:
                state.channel_faults.pop(_phone_key(channel), None)
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

    routes = [
        Route("/messages/text", send_text, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/messages/list", list_messages, methods=["GET"]),
        Route("/settings", settings, methods=["GET", "PATCH"]),
        Route(METER_PATH, meter, methods=["GET", "POST"]),
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
        # Meta Cloud API last: its path patterns would also match the paths above
        Route("/{version}/{pnid}/messages", cloud_send, methods=["POST"]),
        Route("/{version}/{pnid}", cloud_phone, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _phone_key(phone: str) -> str:
    return f"+{phone_digits(phone)}"


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
        forbidden=frozenset(_phone_key(str(p))[1:] for p in forbidden),
    )
    _ = spec.digits  # validates the phone
    return spec


class SimulatorServer:
    """A running simulator: `start()` -> base URL, `stop()`; also a context manager.

    `model_or_config` is a `SimModel`, a `SimConfig` or None (empty config, seed 0). `clock` defaults to
    the wall clock; pass the run's clock (e.g. `warmup.clock.clock_from_env()`) or a `ManualClock` in tests.
    `port=0` picks a free port.
    """

    def __init__(
        self,
        model_or_config: SimModel | SimConfig | None = None,
        *,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_file: str | Path | None = None,
        webhook_timeout: float = 2.0,
        tick_seconds: float = 0.05,
    ) -> None:
        model = model_or_config if isinstance(model_or_config, SimModel) else SimModel(model_or_config)
        self._state = _State(model, clock or _WallClock(), webhook_timeout, log_file)
        self.app = create_app(self._state)
        self.host = host
        self.port = port
        self.tick_seconds = tick_seconds
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None

    @property
    def model(self) -> SimModel:
        return self._state.model

    @property
    def lock(self) -> threading.Lock:
        """Hold it to read or change the model directly while the server runs."""
        return self._state.lock

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def meter_url(self) -> str:
        return self.base_url + METER_PATH

    def start(self) -> str:
        if self._thread is not None:
            return self.base_url
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then (else Nagle + delayed ACK: 40 ms/request)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="warmup-simulator", daemon=True
        )
        self._state.webhooks.start()
        self._thread.start()
        self._ticker = threading.Thread(target=self._tick_loop, name="warmup-sim-ticker", daemon=True)
        self._ticker.start()
        deadline = 10.0
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > deadline:
                self.stop()
                raise RuntimeError(f"simulator failed to start on {self.host}:{self.port}")
            self._stopping.wait(0.01)
            waited += 0.01
        return self.base_url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        self._state.webhooks.stop()
        if self._socket is not None:
            self._socket.close()  # asyncio closed it already; this only drops our handle
        self._state.close()

    def _tick_loop(self) -> None:
        while not self._stopping.wait(self.tick_seconds):
            try:
                self._state.tick()
            except Exception:  # a bad webhook URL or a clock hiccup must not stop time
                log.exception("simulator tick failed")

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
