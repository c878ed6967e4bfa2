"""Whapi.Cloud client (also used, pointed elsewhere, for the simulator).

Operations: POST /messages/text, GET /health, GET /messages/list and the risk meter
(`riskOfBlocking`: POST computes today's reading once a day, GET returns the last one).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from warmup.core.domain import Reading
from warmup.providers.base import Health, Inbound, OutcomeAction, ProviderError, SendResult
from warmup.providers.errors import (
    decode_json,
    describe_body,
)
from warmup.providers.http import HttpProvider, read_failure
from warmup.providers.webhooks import WebhookError, whapi_message
from warmup.secrets import Secret

log = logging.getLogger(__name__)

A = OutcomeAction
WHAPI_BASE_URL = "https://gate.whapi.cloud"
WHAPI_METER_URL = "https://tools.whapi.cloud/services/riskOfBlocking"
METER_PATH = "/services/riskOfBlocking"
MAX_TYPING_SECONDS = 60.0
PAGE_SIZE = 100  # spec: count 1..500
MAX_PAGES = 50  # a runaway server cannot keep a worker paging forever
STATUS_LOOKBACK = timedelta(hours=1)  # how far before `since` our own messages are checked for statuses
REPORTED_STATUSES = frozenset({"delivered", "read", "played", "failed"})  # acks past plain `sent`

# GET /health `status.text` (spec `ChannelStatus`) -> (action, meaning)
HEALTH_STATES: dict[str, tuple[OutcomeAction, str]] = {
    "AUTH": (A.OK, "connected"),
    "QR": (A.STOP_NUMBER, "logged out: the channel waits for a QR scan"),
    "ERROR": (A.STOP_NUMBER, "channel in error state (banned or broken session)"),
    "NOT_INIT": (A.RETRY, "channel not initialised yet"),
    "INIT": (A.RETRY, "channel initialising"),
    "LAUNCH": (A.RETRY, "channel launching"),
}

# meter JSON field -> Reading factor
METER_FIELDS: dict[str, str] = {
    "riskFactor": "overall",
    "lifeTime": "lifetime",
    "riskFactorChats": "response_rate",
    "riskFactorContacts": "contacts",
}
_METER_DATE = re.compile(r"\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*")


def whapi_recipient(to: str) -> str | None:
    """The `to` Whapi accepts (spec pattern `^[\\d-]{10,31}(@...)?$`): bare digits; None if not a phone."""
    digits = re.sub(r"[\s().-]", "", to).removeprefix("+")
    if digits.isascii() and digits.isdigit() and 10 <= len(digits) <= 15:
        return digits
    return None


def clamp_typing(seconds: float) -> float:
    """typing_time within the spec's 0..60 s (NaN and negatives become 0)."""
    value = float(seconds)  # callers may pass an int
    if math.isnan(value) or value <= 0:
        return 0.0
    return round(min(value, MAX_TYPING_SECONDS), 1)


def default_meter_url(base_url: str) -> str:
    """The real tools host for the real gate; otherwise the same server (the simulator serves both)."""
    base = base_url.rstrip("/")
    if base == WHAPI_BASE_URL:
        return WHAPI_METER_URL
    return base + METER_PATH


def meter_factor(data: Mapping[str, Any], key: str) -> int | str:
    """One factor as 1..3, or an error text. Accepts `2`, `2.0` and `"2"`; rejects anything else."""
    if key not in data:
        return f"'{key}' missing"
    value = data[key]
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 20:
        number = int(value.strip())
    if number is None:
        return f"'{key}' is not a number: {str(value)[:30]!r}"
    if not 1 <= number <= 3:
        return f"'{key}' out of range 1..3: {number}"
    return number


def parse_meter(data: Any, today: date, source: str) -> Reading | str:
    """A `Reading` from a riskOfBlocking answer, or the reason it is unusable. Never raises.

    `taken_at` is 00:00 UTC of `lastUpdateDate` (the meter gives a date, not a time), so an old
    reading served by GET ages like one and the plan's `stale_after` can fire.
    """
    if not isinstance(data, Mapping):
        return f"meter answer is not a JSON object ({type(data).__name__})"
    factors: dict[str, int] = {}
    problems: list[str] = []
    for key, factor in METER_FIELDS.items():
        value = meter_factor(data, key)
        if isinstance(value, str):
            problems.append(value)
        else:
            factors[factor] = value
    raw_date = data.get("lastUpdateDate")
    taken: date | None = None
    match = _METER_DATE.fullmatch(raw_date) if isinstance(raw_date, str) else None
    if match is None:
        problems.append(f"'lastUpdateDate' is not M/D/YYYY: {str(raw_date)[:30]!r}")
    else:
        month, day, year = (int(g) for g in match.groups())
        try:
            taken = date(year, month, day)
        except ValueError:
            problems.append(f"'lastUpdateDate' is not a real date: {raw_date!r}")
    if taken is not None and taken > today + timedelta(days=1):
        problems.append(f"'lastUpdateDate' {taken.isoformat()} is in the future")
    if problems or taken is None:
        return "meter answer unusable: " + "; ".join(problems)
    return Reading(
        overall=factors["overall"],
        lifetime=factors["lifetime"],
        response_rate=factors["response_rate"],
        contacts=factors["contacts"],
        taken_at=datetime(taken.year, taken.month, taken.day, tzinfo=UTC),
        source=source,
    )


class WhapiProvider(HttpProvider):
    """A Whapi channel (one number). Thread-safe; one pooled HTTP client per instance."""

    kind = "whapi"

    def __init__(
        self,
        token: str | Secret,
        base_url: str = WHAPI_BASE_URL,
        meter_url: str | None = None,
        *,
        timeout: httpx.Timeout | float | None = None,
        source: str = "whapi",
    ) -> None:
        super().__init__(token, base_url, timeout)
        self.meter_url = meter_url or default_meter_url(self.base_url)
        self.source = source
        self._meter_lock = threading.Lock()
        self._meter_posted_on: date | None = None
        self.last_reading_error: str | None = None

    def __repr__(self) -> str:
        return f"WhapiProvider(base_url={self.base_url!r}, token={self._token!r}, source={self.source!r})"

    # --- send ---------------------------------------------------------------------------------------

    def build_text_body(self, to: str, body: str, typing_seconds: float = 0.0) -> dict[str, Any]:
        """The JSON of POST /messages/text (spec `SenderText`); raises ValueError for a non-phone `to`."""
        recipient = whapi_recipient(to)
        if recipient is None:
            raise ValueError("recipient is not a phone number with 10 to 15 digits")
        payload: dict[str, Any] = {"to": recipient, "body": body}
        typing = clamp_typing(typing_seconds)
        if typing > 0:
            payload["typing_time"] = int(typing) if typing.is_integer() else typing
        return payload

    def send_text(self, to: str, body: str, typing_seconds: float = 0.0) -> SendResult:
        """Send one text; never raises. See `warmup.providers.errors` for how outcomes map to actions."""
        try:
            payload = self.build_text_body(to, body, typing_seconds)
        except ValueError as exc:
            return SendResult(A.SKIP_RECIPIENT, None, self._reason(f"not sent: {exc}"))
        return self._post_send("/messages/text", payload, self._send_outcome)

    def _send_outcome(self, response: httpx.Response) -> SendResult:
        """A 2xx answer to a send: `sent` true (OK), false without an id (RETRY), else UNKNOWN."""
        status = response.status_code
        data = decode_json(response.content)
        if not isinstance(data, Mapping):
            detail = describe_body(response.content, response.headers.get("content-type"))
            return SendResult(
                A.UNKNOWN,
                None,
                self._reason(f"HTTP {status} but {detail}: the message may have been sent"),
                http_status=status,
            )
        message = data.get("message")
        message_id = message.get("id") if isinstance(message, Mapping) else None
        message_id = message_id if isinstance(message_id, str) and message_id else None
        sent = data.get("sent")
        if sent is True:
            reason = "sent" if message_id else "sent (the provider returned no message id)"
            return SendResult(A.OK, message_id, reason, http_status=status)
        if sent is False and message_id is None:
            return SendResult(
                A.RETRY, None, f"HTTP {status}: the provider answered sent=false", http_status=status
            )
        return SendResult(
            A.UNKNOWN,
            message_id,
            self._reason(f"HTTP {status} with sent={sent!r}: the message may have been sent"),
            http_status=status,
        )

    # --- health -------------------------------------------------------------------------------------

    def health(self) -> Health:
        """GET /health -> connected (ok), starting (retry), logged out / error / unauthorised (stop)."""
        try:
            response = self._read("/health")
        except Exception as exc:
            rule = read_failure(exc)
            action = A.STOP_NUMBER if rule.action is A.STOP_NUMBER else A.RETRY
            return Health(action, "unreachable", self._reason(f"{rule.meaning} ({type(exc).__name__})"))
        status = response.status_code
        if not 200 <= status < 300:
            result = self._error_answer(response)
            action = A.STOP_NUMBER if status in (401, 402, 403, 404) else A.RETRY
            return Health(action, f"HTTP {status}", result.reason)
        data = decode_json(response.content)
        state = data.get("status") if isinstance(data, Mapping) else None
        text = state.get("text") if isinstance(state, Mapping) else None
        if not isinstance(text, str) or text not in HEALTH_STATES:
            return Health(
                A.RETRY, "unreadable", self._reason(f"unrecognised health answer: {str(data)[:120]}")
            )
        action, meaning = HEALTH_STATES[text]
        return Health(action, text, meaning)

    # --- risk meter ---------------------------------------------------------------------------------

    def fetch_reading(self, today: date) -> Reading | None:
        """Today's risk-meter reading: POST once per day (computes it), else GET (the last one).

        None when the meter is unavailable, with the reason in `last_reading_error`: 401/402/403 mean
        the channel's plan has no meter (the local meter takes over); bad answers never raise.
        """
        with self._meter_lock:
            if self._meter_posted_on != today:
                reading, error, answered = self._meter_call("POST", today)
                if answered:
                    self._meter_posted_on = today
                if reading is not None or (error is not None and error.startswith("meter unavailable")):
                    self.last_reading_error = error
                    return reading
                log.info("risk meter POST failed, trying GET: %s", error)
            reading, error, _ = self._meter_call("GET", today)
            self.last_reading_error = error
            return reading

    def _meter_call(self, method: str, today: date) -> tuple[Reading | None, str | None, bool]:
        """(reading, error, answered with 2xx).

        Through `keepalive` (a quarter of httpx's CPU per request; a fleet's meters are read in one
        burst when its day starts), or httpx when the environment names a proxy.
        """
        try:
            response = self._read(self.meter_url, method=method)
        except Exception as exc:
            meaning = read_failure(exc).meaning
            return None, self._reason(f"risk meter {method}: {meaning}: {exc!r}"), False
        status = response.status_code
        if status in (401, 402, 403):
            return None, f"meter unavailable on this channel (HTTP {status}); use the local meter", False
        if not 200 <= status < 300:
            result = self._error_answer(response)
            return None, f"risk meter {method}: {result.reason}", False
        outcome = parse_meter(decode_json(response.content), today, self.source)
        if isinstance(outcome, str):
            return None, self._reason(f"risk meter {method}: {outcome}"), True
        return outcome, None, True

    # --- replies ------------------------------------------------------------------------------------

    def list_inbound(self, since: datetime) -> list[Inbound]:
        """Messages received since `since` (GET /messages/list, from_me=false, oldest first, paged).

        Raises `ProviderError` (action RETRY, or STOP_NUMBER for auth problems); malformed single
        items are skipped with a log line so one odd message does not block the others.
        """
        return [m for m in self._list_messages(since, from_me=False) if not m.from_me]

    def list_own(self, since: datetime) -> list[Inbound]:
        """OUR messages sent since `since` (GET /messages/list, from_me=true), with their text and id:
        what `warmup.services.reconcile` matches `unknown` sends against. Errors as `list_inbound`."""
        return [m for m in self._list_messages(since, from_me=True) if m.from_me]

    def list_statuses(self, since: datetime) -> list[Inbound]:
        """Delivery statuses of OUR messages sent since `STATUS_LOOKBACK` before `since`, without a webhook.

        GET /messages/list with from_me=true returns our messages, each with its current `status`; every
        one past plain `sent` (delivered, read, played, failed) becomes a `status` event about that
        message, timestamped with the message's time (the list gives no time for the ack itself). The
        lookback covers messages delivered a while after they were sent. Errors as `list_inbound`.
        """
        found = []
        for own in self._list_messages(since - STATUS_LOOKBACK, from_me=True):
            if own.from_me and own.status in REPORTED_STATUSES:
                found.append(
                    Inbound(
                        kind="status",
                        provider_message_id=own.provider_message_id,
                        chat_phone=own.chat_phone,
                        from_me=True,
                        text=None,
                        timestamp=own.timestamp,
                        status=own.status,
                    )
                )
        return found

    def _list_messages(self, since: datetime, *, from_me: bool) -> list[Inbound]:
        """One direction of GET /messages/list since `since`, each message once, oldest first."""
        time_from = max(0, math.floor(since.timestamp()))
        seen: set[str] = set()
        found: list[Inbound] = []
        for page in range(MAX_PAGES):
            params: dict[str, str | int] = {
                "from_me": "true" if from_me else "false",
                "time_from": time_from,
                "count": PAGE_SIZE,
                "offset": page * PAGE_SIZE,
                "sort": "asc",
            }
            items = self._list_page(params)
            for i, item in enumerate(items):
                try:
                    inbound = whapi_message(item, f"messages[{page * PAGE_SIZE + i}]")
                except WebhookError as exc:
                    log.warning("skipping malformed message from /messages/list: %s", exc)
                    continue
                if inbound is None or inbound.timestamp < since:
                    continue
                if inbound.provider_message_id not in seen:
                    seen.add(inbound.provider_message_id)
                    found.append(inbound)
            if len(items) < PAGE_SIZE:  # `total` is ambiguous in the spec; a short page is not
                break
        return found

    def _list_page(self, params: Mapping[str, str | int]) -> list[Any]:
        try:
            response = self._read("/messages/list", params)
        except Exception as exc:
            rule = read_failure(exc)
            action = A.STOP_NUMBER if rule.action is A.STOP_NUMBER else A.RETRY
            raise ProviderError(action, self._reason(f"/messages/list: {rule.meaning}")) from None
        status = response.status_code
        if not 200 <= status < 300:
            result = self._error_answer(response)
            action = A.STOP_NUMBER if status in (401, 402) else A.RETRY
            raise ProviderError(action, f"/messages/list: {result.reason}", status)
        data = decode_json(response.content)
        items = data.get("messages") if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            detail = describe_body(response.content, response.headers.get("content-type"))
            raise ProviderError(A.RETRY, self._reason(f"/messages/list: {detail}"), status)
        return items
