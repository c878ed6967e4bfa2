"""The webhook receiver: a small ASGI app (starlette) for Whapi and Cloud API events, plus `/metrics`.

Routes:

* `POST /webhooks/whapi/{phone}` — Whapi (and the simulator) events of one fleet number (`phone` in
  E.164, with or without the `+`). Authenticated by the shared secret `WARMUP_WEBHOOK_SECRET`, given
  either as the `X-Warmup-Secret` header (Whapi webhooks accept custom headers) or as `?secret=`.
* `GET /webhooks/cloud` — Meta's verification handshake: answers `hub.challenge` when `hub.verify_token`
  equals `WARMUP_META_VERIFY_TOKEN`.
* `POST /webhooks/cloud` — Cloud API events for any fleet number, authenticated by `X-Hub-Signature-256`
  = HMAC-SHA256 of the raw body with `WARMUP_META_APP_SECRET`: messages and statuses (routed by
  `metadata.phone_number_id`) and the account events `phone_number_quality_update` (by
  `display_phone_number`), `business_capability_update` and `account_alerts` (`warmup.services.signals`).
* `GET /metrics` — Prometheus (this process's counters and the fleet gauges from the database).
* `GET /healthz` — liveness.

Bad input changes nothing (docs/design.md, invariant 6): a missing or wrong secret or signature (401/403),
a body over the size cap (413, counted while reading, not trusted from Content-Length), a body not whole
within `WebhookConfig.body_timeout` (408, connection closed), malformed JSON or an
invalid payload (400), an unknown number (404) — all answered before anything is stored, with no detail
about why beyond one short phrase. A client that disconnects mid-body is counted (status 499) and logged
at DEBUG, without a traceback: anyone can do it any number of times. The app never answers 500:
anything unexpected (the database away) becomes a bare 503, which makes the provider deliver again
later; storing is idempotent on the provider's event id, so a redelivery is harmless.

Poison values (issue 14): a body the database could not carry must not get a 503, or the provider
redelivers it forever. The rule (`warmup.providers.webhooks`) depends on who wrote the value. Texts
people wrote (a message body, an alert's description) are stored SANITIZED: NUL, other control
characters and lone surrogates become U+FFFD, because a reply with an odd character is a real reply,
and refusing it would lose, for good, the whole batch it came in, an admin's `/pause` included.
Identifiers and status words (message ids, `status`, account and phone number ids) are machine-written:
one with a control character, a lone surrogate or over the store's length is not the provider's, so the
WHOLE body is refused with 400 and nothing is stored (sanitizing an id would invent an event; a status
"\ufffd" means nothing). Nesting deeper than `MAX_DEPTH` and values of the wrong type are 400 too.

A body's messages and statuses are stored in ONE transaction, all or nothing
(`warmup.services.replies.store_batches`), so an admin command in a message runs exactly once: after
the commit that stored it, or — when the body is refused or the database fails — not at all and the
message is not stored, so the redelivery finds it new and runs it then. (Before, each event had its own
transaction: a later event's failure answered 503 with the command's message already stored, and every
redelivery skipped it as stored.) A Cloud API body's account events are stored before its messages:
they call Meta over HTTP, which must not hold a transaction open, and storing them again on a
redelivery changes nothing; after the messages' commit nothing else can fail. (A process killed
between that commit and the command still loses the command: the store has no column saying a
command is pending.)

Good events are stored as inbound rows (messages mark their recipient as `replied`; statuses make the
outbound message count as delivered/read), which feed the local risk meter. Meta's account events about
a number become readings with its new quality, status or messaging limit (and audit rows), which the
scheduler acts on within a tick (`warmup.services.signals.act_on_signals`); an event that changes
nothing, or is about a number that is not ours, is answered 200 and stores nothing. A newly stored message may
be an admin chat command (`warmup.services.chat_commands`), run after the response is sent.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from warmup.clock import Clock, SystemClock
from warmup.providers.base import Inbound, Provider
from warmup.providers.webhooks import (
    MAX_WEBHOOK_BYTES,
    WebhookError,
    load_payload,
    parse_cloud_payload,
    parse_cloud_webhook,
    parse_whapi_webhook,
    verify_cloud_signature,
)
from warmup.secrets import Secret
from warmup.services import metrics, signals
from warmup.services.chat_commands import process_inbound
from warmup.services.replies import check_batches, store_batches, store_events
from warmup.services.runtime import ProviderPool
from warmup.store import numbers
from warmup.store.db import Engine
from warmup.store.tables import InvalidWrite

log = logging.getLogger(__name__)

SECRET_HEADER = "x-warmup-secret"
ENV_WEBHOOK_SECRET = "WARMUP_WEBHOOK_SECRET"
ENV_META_APP_SECRET = "WARMUP_META_APP_SECRET"
ENV_META_VERIFY_TOKEN = "WARMUP_META_VERIFY_TOKEN"
BODY_TIMEOUT = 10.0  # seconds to receive a whole body: both APIs send small batches at once
DISCONNECTED = "499"  # the metrics' status of a request whose client left mid-body (nginx's number)


class _Reject(Exception):
    """Answer with this status and short phrase; nothing was stored."""

    def __init__(self, status: int, phrase: str, close: bool = False) -> None:
        super().__init__(phrase)
        self.status = status
        self.phrase = phrase
        self.close = close  # end the connection after the answer (the rest of the body is not read)


class _Gone(Exception):
    """The client disconnected before its whole body arrived: nobody is left to answer."""


@dataclass(frozen=True)
class WebhookConfig:
    """The secrets of the webhook endpoints (each None when not configured: that endpoint answers 503)."""

    webhook_secret: Secret | None = None
    meta_app_secret: Secret | None = None
    meta_verify_token: Secret | None = None
    max_bytes: int = MAX_WEBHOOK_BYTES
    body_timeout: float = BODY_TIMEOUT  # a body not complete by then is dropped (408, connection closed)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookConfig:
        source = os.environ if env is None else env

        def secret(name: str) -> Secret | None:
            value = source.get(name, "").strip()
            return Secret(value, name=name) if value else None

        return cls(secret(ENV_WEBHOOK_SECRET), secret(ENV_META_APP_SECRET), secret(ENV_META_VERIFY_TOKEN))


def _same(given: str | None, secret: Secret) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), secret.reveal().encode())


async def read_body(request: Request, max_bytes: int, timeout: float = BODY_TIMEOUT) -> bytes:
    """The raw body, refused (413) as soon as it grows past `max_bytes`, whatever Content-Length says.

    The whole body must arrive within `timeout` seconds (one deadline, not one per chunk, so a client
    dripping a byte at a time cannot hold the connection either): a stalled body is answered 408 and
    its connection closed. A client that disconnects mid-body raises `_Gone`, which is no error of ours.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise _Reject(400, "bad content-length")
        if int(declared) > max_bytes:
            raise _Reject(413, "body too large")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise _Reject(413, "body too large")
                chunks.append(chunk)
    except TimeoutError:
        raise _Reject(408, "body not received in time", close=True) from None
    except ClientDisconnect:
        raise _Gone from None
    return b"".join(chunks)


def create_app(
    engine: Engine,
    config: WebhookConfig,
    *,
    clock: Clock | None = None,
    provider_for: Callable[[int], Provider] | None = None,
) -> Starlette:
    """The ASGI app. `provider_for` sends admin answers (default: a `ProviderPool` on `engine`)."""
    run_clock: Clock = clock or SystemClock()
    if provider_for is None:
        provider_for = ProviderPool(engine)
    providers: Callable[[int], Provider] = provider_for

    def commands(pending: list[tuple[int, Inbound]]) -> None:

        for number_id, inbound in pending:
            try:
                process_inbound(engine, number_id, inbound, run_clock.now(), providers)
            except Exception:
                log.exception("number %s: chat command failed", number_id)

    def answer(provider: str, stored: int, ignored: int, pending: list[tuple[int, Inbound]]) -> Response:
        metrics.WEBHOOK_REQUESTS.labels(provider=provider, status="200").inc()
        task = BackgroundTask(run_in_threadpool, commands, pending) if pending else None
        return JSONResponse({"stored": stored, "ignored": ignored}, background=task)

    def whapi_store(phone: str, body: bytes) -> Response:
        events = parse_whapi_webhook(body, config.max_bytes)
        digits = phone.lstrip("+")
        number = numbers.get_number(engine, phone=f"+{digits}") if digits.isdigit() else None
        if number is None or number.id is None:
            raise _Reject(404, "unknown number")
        stored, new_messages = store_events(engine, number.id, events)
        return answer("whapi", stored, len(events) - stored, [(number.id, m) for m in new_messages])

    async def whapi(request: Request) -> Response:
        if config.webhook_secret is None:
            raise _Reject(503, "webhook secret not configured")
        given = request.headers.get(SECRET_HEADER) or request.query_params.get("secret")
        if given is None:
            raise _Reject(401, "missing secret")
        if not _same(given, config.webhook_secret):
            raise _Reject(403, "wrong secret")
        body = await read_body(request, config.max_bytes, config.body_timeout)
        response: Response = await run_in_threadpool(whapi_store, request.path_params["phone"], body)
        return response

    async def cloud_verify(request: Request) -> Response:
        if config.meta_verify_token is None:
            raise _Reject(503, "verify token not configured")
        params = request.query_params
        if params.get("hub.mode") != "subscribe" or not _same(
            params.get("hub.verify_token"), config.meta_verify_token
        ):
            raise _Reject(403, "verification failed")
        challenge = params.get("hub.challenge", "")
        if not challenge or len(challenge) > 200:
            raise _Reject(400, "bad challenge")
        return PlainTextResponse(challenge)

    def cloud_store(body: bytes) -> Response:
        # the whole payload is valid before anything is stored
        parsed = parse_cloud_payload(body, config.max_bytes)
        parts = [
            (phone_number_id, parse_cloud_webhook(part))
            for phone_number_id, part in _cloud_parts(load_payload(body, config.max_bytes))
        ]
        fleet = numbers.list_numbers(engine)
        by_id = {n.phone_number_id: n.id for n in fleet if n.phone_number_id}
        stored = ignored = 0
        batches: list[tuple[int, list[Inbound]]] = []
        for phone_number_id, events in parts:
            number_id = by_id.get(phone_number_id) if phone_number_id is not None else None
            if number_id is None:
                ignored += len(events)  # another app's number: acknowledged, not stored
            else:
                batches.append((number_id, events))
        check_batches(batches)  # refused (400) before the account events below are stored
        if parsed.signals:  # quality, messaging limits, alerts: readings the scheduler acts on
            received = signals.receive(engine, parsed.signals, fleet, run_clock.now(), providers)
            stored += received.stored
            ignored += received.ignored
        # messages and statuses last, in one transaction: once it commits nothing else can fail, so
        # the commands of the new messages always run (`store_batches`)
        new, new_messages = store_batches(engine, batches)
        stored += new
        ignored += sum(len(events) for _, events in batches) - new
        owner = {id(event): number_id for number_id, events in batches for event in events}
        return answer("cloud_api", stored, ignored, [(owner[id(m)], m) for m in new_messages])

    async def cloud(request: Request) -> Response:
        if config.meta_app_secret is None:
            raise _Reject(503, "app secret not configured")
        body = await read_body(request, config.max_bytes, config.body_timeout)
        signature = request.headers.get("x-hub-signature-256")
        if not signature:
            raise _Reject(401, "missing signature")
        try:
            verify_cloud_signature(body, signature, config.meta_app_secret)
        except WebhookError:
            raise _Reject(403, "bad signature") from None
        response: Response = await run_in_threadpool(cloud_store, body)
        return response

    async def metrics_endpoint(request: Request) -> Response:
        body = await run_in_threadpool(metrics.exposition, engine, run_clock.now)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/webhooks/whapi/{phone}", _guard("whapi", whapi), methods=["POST"]),
        Route("/webhooks/cloud", _guard("cloud_api", cloud_verify), methods=["GET"]),
        Route("/webhooks/cloud", _guard("cloud_api", cloud), methods=["POST"]),
        Route("/metrics", _guard("metrics", metrics_endpoint), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _cloud_parts(payload: Mapping[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """Each `messages` change of a (validated) Cloud API payload as its own payload, with the
    phone_number_id it is for."""
    parts: list[tuple[str | None, dict[str, Any]]] = []
    for entry in payload.get("entry") or []:
        for change in entry.get("changes") or []:
            if change.get("field") != "messages":
                continue
            metadata = change.get("value", {}).get("metadata")
            phone_number_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if phone_number_id is not None and not _is_id(phone_number_id):
                raise WebhookError("metadata.phone_number_id is not a numeric id")
            part = {"object": payload["object"], "entry": [{"changes": [change]}]}
            parts.append((str(phone_number_id) if phone_number_id is not None else None, part))
    return parts


def _is_id(value: Any) -> bool:
    """A Meta object id: digits, given as a string or a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return 0 <= value < 10**32
    return isinstance(value, str) and 0 < len(value) <= 32 and value.isascii() and value.isdigit()


def _guard(
    provider: str, endpoint: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """Turn every refusal into its 4xx and anything unexpected into a bare 503 (never a 500)."""

    async def guarded(request: Request) -> Response:
        headers: dict[str, str] = {}
        try:
            return await endpoint(request)
        except _Reject as reject:
            status, phrase = reject.status, reject.phrase
            if reject.close:
                headers["connection"] = "close"
                log.debug("%s webhook: %s: connection closed", provider, phrase)
        except _Gone:  # unauthenticated and free to repeat: one quiet line, counted, no traceback
            log.debug("%s webhook: the client disconnected before sending the whole body", provider)
            metrics.WEBHOOK_REQUESTS.labels(provider=provider, status=DISCONNECTED).inc()
            return Response(status_code=400, headers={"connection": "close"})
        except WebhookError as exc:
            log.info("%s webhook refused: %s", provider, exc)
            status, phrase = (
                (413, "body too large") if "too large" in str(exc) else (400, "malformed payload")
            )
        except InvalidWrite as exc:  # the store refused the batch whole: nothing of it was written
            log.info("%s webhook refused: %s", provider, exc)
            status, phrase = 400, "malformed payload"
        except Exception:
            log.exception("%s webhook failed", provider)
            status, phrase = 503, "unavailable"
        metrics.WEBHOOK_REQUESTS.labels(provider=provider, status=str(status)).inc()
        return JSONResponse({"error": phrase}, status_code=status, headers=headers)

    return guarded
