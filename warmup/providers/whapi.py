"""Whapi.Cloud client (also used, pointed elsewhere, for the simulator).

Operations: POST /messages/text, GET /health, GET /messages/list, GET|PATCH /settings (the webhook) and
the risk meter (`riskOfBlocking`: POST computes today's reading once a day, GET returns the last one).

The meter is published at `tools.whapi.cloud`, not on the messaging gate: a number's meter URL is its
own setting (fleet file `meter_url`), never derived from the messaging base URL; only the simulator
serves both on one address (`simulator_meter_url`).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from warmup.core.domain import Reading
from warmup.providers.base import Health, Inbound, OutcomeAction, ProviderError, SendResult
from warmup.providers.errors import (
    decode_json,
    describe_body,
)
from warmup.providers.http import JSON_HEADERS, HttpProvider, encode_json, read_failure
from warmup.providers.webhooks import WebhookError, whapi_message
from warmup.secrets import Secret, clip

log = logging.getLogger(__name__)

A = OutcomeAction
WHAPI_BASE_URL = "https://gate.whapi.cloud"
WHAPI_METER_URL = "https://tools.whapi.cloud/services/riskOfBlocking"
METER_PATH = "/services/riskOfBlocking"
METER_CLOCK_SKEW = timedelta(hours=1)  # how far ahead of our clock a meter's date may run
BASE_URL_HINT = "(check the provider base URL)"  # a 404's meaning in the error table
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


def simulator_meter_url(base_url: str) -> str:
    """The simulator's meter: it serves the meter next to the messaging API (Whapi does not)."""
    return base_url.rstrip("/") + METER_PATH


def meter_date_bounds(day: date) -> tuple[datetime, datetime]:
    """The instants at which a clock in some zone between UTC+14 and UTC-12 shows the date `day`:
    from `day` 00:00 at UTC+14 to `day`+1 00:00 at UTC-12 (exclusive), 50 hours apart."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return midnight - timedelta(hours=14), midnight + timedelta(days=1, hours=12)


def meter_taken_at(day: date, now: datetime) -> datetime | None:
    """When a reading dated `day` (`lastUpdateDate`, no zone) was computed, as late as it can have
    been: min(now, `day`+1 00:00 at UTC-12). None when no zone shows `day` yet (a date in the future,
    beyond `METER_CLOCK_SKEW`).

    Why the latest possible instant: a reading computed at t and read at `now` on the same local day of
    the number, in ANY zone, gets a taken_at between t and `now`, so it counts as that day's reading
    (a POST answered with a date consistent with `now` is dated `now`, the moment it was asked for).
    An old reading served by GET stays at its bound and ages from there, so `stale_after` still fires
    (at most 50 hours later than had the true time been known).
    """
    earliest, latest = meter_date_bounds(day)
    if now < earliest - METER_CLOCK_SKEW:
        return None
    return min(now, latest)


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
        return f"'{key}' is not a number: {clip(str(value), 30)!r}"
    if not 1 <= number <= 3:
        return f"'{key}' out of range 1..3: {number}"
    return number


def parse_meter(data: Any, now: datetime, source: str) -> Reading | str:
    """A `Reading` from a riskOfBlocking answer read at `now`, or the reason it is unusable. Never raises.

    The meter gives a date without a zone (`lastUpdateDate`, M/D/YYYY); `taken_at` is `meter_taken_at`.
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
        problems.append(f"'lastUpdateDate' is not M/D/YYYY: {clip(str(raw_date), 30)!r}")
    else:
        month, day, year = (int(g) for g in match.groups())
        try:
            taken = date(year, month, day)
        except ValueError:
            problems.append(f"'lastUpdateDate' is not a real date: {clip(str(raw_date), 30)!r}")
    taken_at = meter_taken_at(taken, now) if taken is not None else None
    if taken is not None and taken_at is None:
        problems.append(f"'lastUpdateDate' {taken.isoformat()} is in the future")
    if problems or taken_at is None:
        return "meter answer unusable: " + "; ".join(problems)
    return Reading(
        overall=factors["overall"],
        lifetime=factors["lifetime"],
        response_rate=factors["response_rate"],
        contacts=factors["contacts"],
        taken_at=taken_at,
        source=source,
    )


@dataclass(frozen=True)
class MeterRead:
    """One read of a risk meter: the reading, and what failed (`error`, None when nothing did).

    A reading WITH an error is the last computation (GET) after today's POST failed. `failure` is a
    short class of what went wrong, for metrics: `no_access` (401/402/403: no meter on the channel's
    plan, or the token refused), `4xx`, `5xx`, `network` (no answer), `bad_answer` (a 2xx that is not
    a reading); callers add `no_client`. `posted`: a POST was answered 2xx (today's computation was
    asked for).
    """

    reading: Reading | None
    error: str | None = None
    failure: str | None = None
    posted: bool = False


def _without_prefix(text: str, prefix: str) -> str:
    return text[len(prefix) :] if text.startswith(prefix) else text


def failure_class(status: int | None) -> str:
    """The `MeterRead.failure` of an HTTP status (None: no answer)."""
    if status is None:
        return "network"
    if status in (401, 402, 403):
        return "no_access"
    return "5xx" if status >= 500 else "4xx" if status >= 400 else "bad_answer"


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
        self.meter_url = meter_url or WHAPI_METER_URL  # the published meter, whatever the base URL
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
            detail = describe_body(response.content, response.headers.get("content-type"), [self._token])
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
                A.RETRY,
                "unreadable",
                self._reason(f"unrecognised health answer: {clip(str(data), 120, [self._token])}"),
            )
        action, meaning = HEALTH_STATES[text]
        return Health(action, text, meaning)

    # --- risk meter ---------------------------------------------------------------------------------

    def fetch_reading(
        self, today: date, now: datetime | None = None, *, posted: bool | None = None
    ) -> Reading | None:
        """Today's risk-meter reading: POST once per day (computes it), else GET (the last one).

        ``posted``: whether today's POST already happened (a fleet knows it from its database, see
        `warmup.services.readings`); None: this client remembers the day of its own last POST.
        ``now`` (default: the wall clock) dates the reading (`meter_taken_at`). None when the meter
        gives no reading; what failed is in `last_reading_error` (also with the last computation, read
        after today's POST failed); bad answers never raise.
        """
        with self._meter_lock:
            post = self._meter_posted_on != today if posted is None else not posted
            read = self.read_meter(now or datetime.now(UTC), post=post)
            if read.posted:
                self._meter_posted_on = today
            self.last_reading_error = read.error
            return read.reading

    def read_meter(self, now: datetime, *, post: bool) -> MeterRead:
        """One read of the meter at `meter_url`: POST (today's computation) or GET (the last one).

        A POST that fails for another reason than access (401/402/403: same credentials, no point
        asking again) is followed by a GET: the last computation, dated, is better than none, and
        `stale_after` judges its age; the POST's failure stays in `error`.
        """
        if not post:
            return self._meter_call("GET", now)
        first = self._meter_call("POST", now)
        if first.reading is not None or first.failure == "no_access":
            return first
        log.info("risk meter POST failed, trying GET: %s", first.error)
        then = self._meter_call("GET", now)
        if then.reading is not None:
            error = f"{first.error}; the last computation (GET) was used"
            return MeterRead(then.reading, error, first.failure, first.posted)
        error = f"{first.error}; then GET: {_without_prefix(then.error or '', 'risk meter GET: ')}"
        return MeterRead(None, error, first.failure, first.posted)

    def _meter_call(self, method: str, now: datetime) -> MeterRead:
        """One HTTP call to the meter.

        Through `keepalive` (a quarter of httpx's CPU per request; a fleet's meters are read in one
        burst when its day starts), or httpx when the environment names a proxy.
        """
        try:
            response = self._read(self.meter_url, method=method)
        except Exception as exc:
            meaning = read_failure(exc).meaning
            return MeterRead(None, self._reason(f"risk meter {method}: {meaning}: {exc!r}"), "network")
        status = response.status_code
        if status in (401, 402, 403):
            error = f"meter unavailable on this channel (HTTP {status}: not on its plan, or token refused)"
            return MeterRead(None, error, "no_access")
        if not 200 <= status < 300:
            reason = self._error_answer(response).reason
            reason = reason.replace(BASE_URL_HINT, "(check the number's meter_url)")  # not the base URL
            return MeterRead(None, f"risk meter {method}: {reason}", failure_class(status))
        outcome = parse_meter(decode_json(response.content), now, self.source)
        posted = method == "POST"
        if isinstance(outcome, str):
            return MeterRead(None, self._reason(f"risk meter {method}: {outcome}"), "bad_answer", posted)
        return MeterRead(outcome, posted=posted)

    # --- settings (webhook) -------------------------------------------------------------------------

    def webhooks(self) -> list[dict[str, Any]]:
        """The channel's webhooks (GET /settings `webhooks`); raises `ProviderError` when unreadable."""
        try:
            response = self._read("/settings")
        except Exception as exc:
            rule = read_failure(exc)
            raise ProviderError(rule.action, self._reason(f"GET /settings: {rule.meaning}")) from None
        if not 200 <= response.status_code < 300:
            result = self._error_answer(response)
            raise ProviderError(result.action, f"GET /settings: {result.reason}", response.status_code)
        data = decode_json(response.content)
        hooks = data.get("webhooks", []) if isinstance(data, Mapping) else None
        if not isinstance(hooks, list):
            detail = describe_body(response.content, response.headers.get("content-type"), [self._token])
            raise ProviderError(A.RETRY, self._reason(f"GET /settings: {detail}"), response.status_code)
        return [dict(hook) for hook in hooks if isinstance(hook, Mapping)]

    def set_webhooks(self, hooks: Sequence[Mapping[str, Any]]) -> None:
        """Replace the channel's webhooks (PATCH /settings, spec `Settings.webhooks`; other settings
        are left as they are). Raises `ProviderError` with the provider's reason when refused."""
        try:
            content = encode_json({"webhooks": list(hooks)})
            response = self._request("PATCH", "/settings", content=content, headers=JSON_HEADERS)
        except Exception as exc:
            rule = read_failure(exc)
            raise ProviderError(rule.action, self._reason(f"PATCH /settings: {rule.meaning}")) from None
        if not 200 <= response.status_code < 300:
            result = self._error_answer(response)
            raise ProviderError(result.action, f"PATCH /settings: {result.reason}", response.status_code)

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
            detail = describe_body(response.content, response.headers.get("content-type"), [self._token])
            raise ProviderError(A.RETRY, self._reason(f"/messages/list: {detail}"), status)
        return items
