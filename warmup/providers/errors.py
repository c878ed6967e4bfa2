"""Every way a provider call can end, mapped to one `OutcomeAction` — as tables, so review is reading.

Decisions (and why), beyond the table in docs/design.md ("Provider error actions"):

* Transport errors split on "could the message have gone out?" (invariant: never send twice).
  Connect errors/timeouts, pool timeouts and write errors/timeouts happen before the server has a
  complete request, so it cannot have acted: RETRY. Read timeouts, a connection dropped while waiting
  for the answer, a broken/undecodable response and redirect loops happen AFTER the request was sent:
  UNKNOWN. An invalid URL / unsupported scheme is configuration: STOP_NUMBER (an admin must fix it).
* HTTP 502 and 504 are UNKNOWN, not RETRY: a proxy lost (502) or waited too long for (504) the
  upstream's answer, and the upstream may well have sent the message. 500, 503 and other 5xx are RETRY
  (the server itself says it failed). 408 (server gave up waiting for our request) is RETRY.
* A 2xx whose body cannot be read or lacks a message id is UNKNOWN: the provider accepted something.
* Whapi 400 (malformed request = our bug) and 413 (too large) are FAIL: the same request would fail
  again, and blaming the recipient would wrongly mark good numbers invalid. 404 and other 4xx: FAIL.
  409 (channel busy/conflict, request refused) is RETRY. 3xx on a POST is FAIL (we do not follow it).
* Meta codes take precedence over the HTTP status; unknown codes fall back to the status table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from warmup.providers.base import OutcomeAction, SendResult
from warmup.secrets import Secret, clip, redact

A = OutcomeAction
ProviderKind = Literal["whapi", "cloud_api"]
MAX_REASON = 300
SNIPPET = 80  # characters of an unexpected body quoted in a reason
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class Rule:
    """One row of a table: the action and what the outcome means, in words for the operator."""

    action: OutcomeAction
    meaning: str
    retry_after_hint: float | None = None  # used when a RETRY comes without a Retry-After header


WHAPI_STATUS: dict[int, Rule] = {
    400: Rule(A.FAIL, "bad request: the request we built was rejected; not retried"),
    401: Rule(A.STOP_NUMBER, "channel not authorised (logged out or banned)"),
    402: Rule(A.STOP_NUMBER, "plan or trial limit exceeded"),
    403: Rule(A.SKIP_RECIPIENT, "sending to this recipient is forbidden"),
    404: Rule(A.FAIL, "not found (check the provider base URL)"),
    408: Rule(A.RETRY, "the server timed out waiting for the request"),
    409: Rule(A.RETRY, "conflict: the channel refused the request for now"),
    413: Rule(A.FAIL, "message too large"),
    429: Rule(A.RETRY, "too many requests"),
    500: Rule(A.RETRY, "provider internal error"),
    502: Rule(A.UNKNOWN, "bad gateway: the upstream may have sent the message"),
    503: Rule(A.RETRY, "provider unavailable"),
    504: Rule(A.UNKNOWN, "gateway timeout: the upstream may have sent the message"),
}

META_STATUS: dict[int, Rule] = {
    **WHAPI_STATUS,
    401: Rule(A.STOP_NUMBER, "access token invalid or expired"),
    402: Rule(A.STOP_NUMBER, "payment required"),
    403: Rule(A.STOP_NUMBER, "permission denied for this number"),
}

META_CODES: dict[int, Rule] = {
    # pacing: back off and retry the same message
    4: Rule(A.RETRY, "application request limit reached", 60.0),
    80007: Rule(A.RETRY, "WhatsApp Business Account rate limit reached", 60.0),
    130429: Rule(A.RETRY, "throughput (messages per second) limit reached", 1.0),
    131056: Rule(A.RETRY, "too many messages to this recipient in a short time (pair rate limit)", 6.0),
    1: Rule(A.RETRY, "API unknown error"),
    2: Rule(A.RETRY, "API service temporarily unavailable"),
    131000: Rule(A.RETRY, "message failed to send (unknown error)"),
    131016: Rule(A.RETRY, "service overloaded"),
    # risk signal
    131048: Rule(A.THROTTLE, "spam rate limit hit: too many messages were blocked or flagged"),
    # the number must stop
    368: Rule(A.STOP_NUMBER, "temporarily blocked for policy violations"),
    131031: Rule(A.STOP_NUMBER, "business account locked"),
    190: Rule(A.STOP_NUMBER, "access token expired or invalid"),
    10: Rule(A.STOP_NUMBER, "permission denied"),
    200: Rule(A.STOP_NUMBER, "permission denied"),
    133010: Rule(A.STOP_NUMBER, "phone number not registered on the Cloud API"),
    131042: Rule(A.STOP_NUMBER, "business eligibility / payment issue"),
    # this recipient
    131026: Rule(A.SKIP_RECIPIENT, "message undeliverable to this recipient"),
    131021: Rule(A.SKIP_RECIPIENT, "recipient cannot be the sender"),
    # this message
    100: Rule(A.FAIL, "invalid parameter"),
    131008: Rule(A.FAIL, "required parameter missing"),
    131009: Rule(A.FAIL, "parameter value invalid"),
    131047: Rule(A.FAIL, "more than 24 hours since the recipient last replied: send a template"),
    131049: Rule(A.FAIL, "not delivered to maintain a healthy ecosystem"),
    131051: Rule(A.FAIL, "unsupported message type"),
}

TRANSPORT: tuple[tuple[type[BaseException], Rule], ...] = (
    # order matters: subclasses first
    (httpx.ConnectTimeout, Rule(A.RETRY, "connect timeout: the request never reached the server")),
    (httpx.PoolTimeout, Rule(A.RETRY, "no free connection in time: the request was not sent")),
    (httpx.WriteTimeout, Rule(A.RETRY, "write timeout: the request was not fully sent")),
    (httpx.ReadTimeout, Rule(A.UNKNOWN, "read timeout after the request was sent: it may have gone out")),
    (httpx.ConnectError, Rule(A.RETRY, "connection failed: the request never reached the server")),
    (httpx.ProxyError, Rule(A.RETRY, "proxy refused the connection: the request was not sent")),
    (httpx.WriteError, Rule(A.RETRY, "connection broke while sending the request: it was not complete")),
    (httpx.UnsupportedProtocol, Rule(A.STOP_NUMBER, "provider URL misconfigured (unsupported scheme)")),
    (httpx.InvalidURL, Rule(A.STOP_NUMBER, "provider URL misconfigured (invalid URL)")),
    (httpx.LocalProtocolError, Rule(A.FAIL, "the request could not be built (client-side protocol error)")),
    (httpx.ReadError, Rule(A.UNKNOWN, "connection broke while waiting for the answer: it may have gone out")),
    (
        httpx.RemoteProtocolError,
        Rule(A.UNKNOWN, "server closed the connection without a valid answer: it may have gone out"),
    ),
    (httpx.DecodingError, Rule(A.UNKNOWN, "the answer could not be decoded: it may have gone out")),
    (httpx.TooManyRedirects, Rule(A.UNKNOWN, "redirect loop after sending: it may have gone out")),
)
UNKNOWN_TRANSPORT = Rule(A.UNKNOWN, "unexpected error during the call: it may have gone out")


def status_rule(kind: ProviderKind, status: int) -> Rule:
    """The rule for an HTTP status without a recognised provider code."""
    table = WHAPI_STATUS if kind == "whapi" else META_STATUS
    if status in table:
        return table[status]
    if 300 <= status < 400:
        return Rule(A.FAIL, "unexpected redirect (not followed)")
    if 400 <= status < 500:
        return Rule(A.FAIL, "request refused")
    if 500 <= status < 600:
        return Rule(A.RETRY, "provider server error")
    return Rule(A.UNKNOWN, "unexpected HTTP status")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid.

    An HTTP-date is the server's wall-clock time, so it is compared with the real clock (`now`
    defaults to it), never with a simulated one. The result is clamped to 0..24 h.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def decode_json(body: bytes) -> Any:
    """The JSON value of `body`, or None when it is empty, not UTF-8, not JSON or absurdly nested."""
    if not body or not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def describe_body(body: bytes, content_type: str | None, secrets: Iterable[str | Secret] = ()) -> str:
    """A short, printable summary of a body that is not the JSON we expected.

    The whole body is masked BEFORE it is cut to the snippet: a token the provider echoed across the
    cut would otherwise leave its first part in the snippet, where the mask no longer recognises it.
    """
    if not body.strip():
        return "empty body"
    secrets = tuple(secrets)
    kind = clip((content_type or "unknown type").split(";")[0].strip() or "unknown type", 60, secrets)
    masked = redact(body.decode("utf-8", "replace"), secrets)
    snippet = " ".join(masked[: SNIPPET * 4].split())[:SNIPPET]
    return f"unparseable {kind} body ({len(body)} bytes): {snippet!r}"


def clean_reason(text: str, secrets: Iterable[str | Secret] = ()) -> str:
    """Redact tokens and cap the length of a reason that may quote a provider's answer."""
    secrets = tuple(secrets)
    return clip(" ".join(redact(text, secrets).split()), MAX_REASON, secrets)


def _error_obj(data: Any) -> Mapping[str, Any] | None:
    if isinstance(data, Mapping):
        err = data.get("error")
        if isinstance(err, Mapping):
            return err
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 20:
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def classify_error_response(
    kind: ProviderKind,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Iterable[str | Secret] = (),
    now: datetime | None = None,
) -> SendResult:
    """Map a non-2xx answer (any body, even HTML or truncated) to a `SendResult`; never raises."""
    secrets = tuple(secrets)
    data = decode_json(body)
    err = _error_obj(data)
    code = _as_int(err.get("code")) if err is not None else None
    rule = status_rule(kind, status)
    if kind == "cloud_api" and code is not None and code in META_CODES:
        rule = META_CODES[code]
    if err is not None:
        detail_parts = [_text(err.get("message"))]
        details = err.get("details")
        error_data = err.get("error_data")
        if isinstance(error_data, Mapping):
            details = error_data.get("details")
        detail_parts.append(_text(details))
        detail = " — ".join(p for p in detail_parts if p) or "no message"
    else:
        detail = describe_body(body, headers.get("content-type"), secrets)
    retry_after = None
    if rule.action in (A.RETRY, A.THROTTLE):
        retry_after = parse_retry_after(headers.get("retry-after"), now)
        if retry_after is None:
            retry_after = rule.retry_after_hint
    code_text = str(code) if code is not None else None
    prefix = f"HTTP {status}" + (f" code {code_text}" if code_text else "")
    return SendResult(
        action=rule.action,
        provider_message_id=None,
        reason=clean_reason(f"{prefix}: {rule.meaning}: {detail}", secrets),
        retry_after=retry_after,
        http_status=status,
        code=code_text,
    )


def transport_rule(exc: BaseException) -> Rule:
    """The rule for an exception raised while calling the provider."""
    for cls, rule in TRANSPORT:
        if isinstance(exc, cls):
            return rule
    return UNKNOWN_TRANSPORT


def classify_transport_error(exc: BaseException, secrets: Iterable[str | Secret] = ()) -> SendResult:
    """Map a network-level failure of a SEND to a `SendResult` (see the module doc for why)."""
    rule = transport_rule(exc)
    return SendResult(
        action=rule.action,
        provider_message_id=None,
        reason=clean_reason(f"{rule.meaning} ({type(exc).__name__}: {exc})", secrets),
        retry_after=None,
        http_status=None,
        code=None,
    )
