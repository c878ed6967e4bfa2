"""The simulator's behaviour model: channels, sends, replies, statuses, the risk meter and bans.

Pure: every method takes `now` (aware UTC) from the caller, and all randomness comes from the seed, so a
run replays exactly. Randomness that decides what a recipient does is derived from
`(seed, sender, recipient, n-th message of that pair)` rather than from one shared stream, so replies
do not depend on how concurrent sends of different channels interleave. The server wraps the model in
a lock; the model itself is not thread-safe.

Behaviour
- A recipient that is another registered channel is a **peer**: the message lands in the peer's inbox
  when it is delivered; the peer does not answer by itself (the orchestrator schedules peer answers).
- Any other recipient is a **contact** with a seeded *friendliness* f ~ Beta(2, 2) (mean 0.5). Each
  message is answered with probability f after `reply_delay` (default 1..30 min); the reply shows in
  `GET /messages/list` and webhooks only once its time has come. Statuses: `sent` on acceptance,
  `delivered` after `deliver_delay` (1..20 s), `read` before a reply (or with probability f otherwise).

Risk meter readings (1 use caution, 2 needs attention, 3 good) — `Thresholds`, all configurable:
- lifeTime: channel age in days (registration date to today's simulated UTC date):
  `< lifetime_caution_days` (14) -> 1, `< lifetime_good_days` (30) -> 2, else 3.
- riskFactorChats (response rate): replies received / messages sent over the trailing
  `response_window` (7 days); fewer than `response_min_sends` (5) sends -> 2 (not enough data);
  otherwise `>= response_good` (0.30) -> 3, `>= response_fair` (0.10) -> 2, else 1. A reply is an
  incoming message from a chat the channel has written to.
- riskFactorContacts: share of distinct recipients (ever) that are peers or have written back:
  `>= contacts_good` (0.50) -> 3, `>= contacts_fair` (0.20) -> 2, else 1; with fewer than
  `contacts_min_recipients` (5) recipients it is never below 2 (too early to judge).
- riskFactor (overall): the rounded mean of the three, but at most one above the worst of them.
- The meter is computed by `POST` once per simulated UTC day; later calls that day return the saved one.

Bans (when `bans` is on; checked before a send is accepted, the offending send is refused with 401):
- Daily volume: the safe volume for a channel aged d days is
  `min(safe_max, safe_base + safe_per_day * d)` (20 + 15/day, at most 1000); sending more than
  `ban_multiple` (3x) that on one simulated UTC day bans the channel.
- Cold burst: more than `burst_strangers` (50) sends to strangers (not peers, never wrote back) within
  `burst_window` (1 h) while the response rate over `response_window` is below `burst_max_response`
  (0.05) bans the channel.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, Protocol

from warmup.simulator.faults import FaultSpec


class Clock(Protocol):
    """Where the simulator's notion of time comes from (warmup.clock's clocks satisfy it)."""

    def now(self) -> datetime: ...


class _Unset(Enum):
    UNSET = 0


class ChannelStatus(StrEnum):
    CONNECTED = "connected"
    LOGGED_OUT = "logged_out"
    BANNED = "banned"


# Whapi's /health `status` object for each state: AUTH = authorised, QR = needs a new login, ERROR = banned.
HEALTH_STATUS: dict[ChannelStatus, tuple[int, str]] = {
    ChannelStatus.CONNECTED: (4, "AUTH"),
    ChannelStatus.LOGGED_OUT: (3, "QR"),
    ChannelStatus.BANNED: (5, "ERROR"),
}
_STATUS_CODES = {"failed": 0, "pending": 1, "sent": 2, "delivered": 3, "read": 4}
_STATUS_ORDER = ("pending", "sent", "delivered", "read")

DEFAULT_REPLIES: tuple[str, ...] = (
    "Hi! All good here, thanks.",
    "Thanks for the message!",
    "Sounds good 👍",
    "Hey, how are you?",
    "Sure, talk later.",
    "Great, thank you!",
    "Haha yes",
    "Ok, noted.",
)


class DuplicateChannel(ValueError):
    """A channel with this token or phone is already registered."""


class SimError(Exception):
    """An API error answer: HTTP status plus Whapi's `{"error": {code, message, details}}` envelope."""

    def __init__(self, status: int, message: str, details: str = "", retry_after: int | None = None) -> None:
        super().__init__(f"{status} {message}: {details}")
        self.status = status
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.status, "message": self.message, "details": self.details}}


@dataclass(frozen=True)
class Thresholds:
    """The numbers behind readings and bans (see the module docstring)."""

    lifetime_caution_days: int = 14
    lifetime_good_days: int = 30
    response_window: timedelta = timedelta(days=7)
    response_min_sends: int = 5
    response_good: float = 0.30
    response_fair: float = 0.10
    contacts_good: float = 0.50
    contacts_fair: float = 0.20
    contacts_min_recipients: int = 5
    bans: bool = True
    safe_base: int = 20
    safe_per_day: int = 15
    safe_max: int = 1000
    ban_multiple: float = 3.0
    burst_window: timedelta = timedelta(hours=1)
    burst_strangers: int = 50
    burst_max_response: float = 0.05

    def safe_daily(self, age_days: int) -> int:
        return min(self.safe_max, self.safe_base + self.safe_per_day * max(0, age_days))

    def ban_limit(self, age_days: int) -> int:
        return int(self.ban_multiple * self.safe_daily(age_days))


@dataclass(frozen=True)
class Behaviour:
    """How recipients act; delays are simulated seconds (LOW, HIGH)."""

    reply_delay: tuple[float, float] = (60.0, 1800.0)
    deliver_delay: tuple[float, float] = (1.0, 20.0)
    read_delay: tuple[float, float] = (5.0, 600.0)
    friendliness: tuple[float, float] = (2.0, 2.0)  # Beta(alpha, beta) of a contact's reply probability
    replies: tuple[str, ...] = DEFAULT_REPLIES
    max_body_chars: int = 4096  # longer texts answer 413
    forbidden: frozenset[str] = frozenset()  # recipient digits that answer 403 for every channel


@dataclass(frozen=True)
class ChannelSpec:
    """One simulated channel (= one token = one WhatsApp number)."""

    token: str = field(repr=False)
    phone: str
    registered: date
    meter: bool = True  # has the paid risk meter
    name: str = ""
    trial_limit: int | None = None  # sends beyond this answer 402
    forbidden: frozenset[str] = frozenset()  # recipient digits this channel may not write to (403)

    @property
    def digits(self) -> str:
        return phone_digits(self.phone)

    @property
    def channel_id(self) -> str:
        return f"SIM-{self.digits}"


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulator starts from: seed, channels, model numbers and faults."""

    seed: int = 0
    channels: tuple[ChannelSpec, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    behaviour: Behaviour = field(default_factory=Behaviour)
    faults: FaultSpec = field(default_factory=FaultSpec)
    channel_faults: Mapping[str, FaultSpec] = field(default_factory=dict)  # by phone


@dataclass
class SimMessage:
    """A text message as one channel sees it (outgoing or incoming)."""

    id: str
    seq: int
    other: str  # digits of the other side (the chat)
    from_digits: str
    from_me: bool
    at: datetime
    body: str
    status: str
    from_name: str = ""

    def to_whapi(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "text",
            "chat_id": f"{self.other}@s.whatsapp.net",
            "from": self.from_digits,
            "from_me": self.from_me,
            "from_name": self.from_name,
            "source": "api" if self.from_me else "mobile",
            "timestamp": int(self.at.timestamp()),
            "status": self.status,
            "text": {"body": self.body},
        }


@dataclass(frozen=True)
class SendRecord:
    """One accepted send: the tests' ground truth."""

    seq: int
    channel: str  # sender phone, E.164
    to: str  # recipient phone, E.164
    body: str
    typing_time: float
    accepted_at: datetime
    message_id: str
    peer: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "channel": self.channel,
            "to": self.to,
            "body": self.body,
            "typing_time": self.typing_time,
            "accepted_at": self.accepted_at.isoformat(),
            "message_id": self.message_id,
            "peer": self.peer,
        }


@dataclass(frozen=True)
class MeterReading:
    channel_id: str
    day: date
    lifetime: int
    overall: int
    chats: int
    contacts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel_id,
            "lastUpdateDate": f"{self.day.month}/{self.day.day}/{self.day.year}",
            "lifeTime": self.lifetime,
            "riskFactor": self.overall,
            "riskFactorChats": self.chats,
            "riskFactorContacts": self.contacts,
        }


@dataclass(frozen=True)
class WebhookPost:
    """One webhook delivery the server should attempt (best effort)."""

    url: str
    headers: Mapping[str, str]
    payload: dict[str, Any]


@dataclass
class _Channel:
    spec: ChannelSpec
    status: ChannelStatus = ChannelStatus.CONNECTED
    ban_reason: str | None = None
    banned_at: datetime | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    messages: list[SimMessage] = field(default_factory=list)  # sorted by (at, seq)
    by_id: dict[str, SimMessage] = field(default_factory=dict)  # outgoing, for status updates
    sent_total: int = 0
    replies_total: int = 0
    sent_by_day: dict[date, int] = field(default_factory=dict)
    recent_sends: deque[datetime] = field(default_factory=deque)
    recent_replies: deque[datetime] = field(default_factory=deque)
    stranger_sends: deque[datetime] = field(default_factory=deque)
    recipients: set[str] = field(default_factory=set)
    repliers: set[str] = field(default_factory=set)
    pair_counts: dict[str, int] = field(default_factory=dict)
    reading: MeterReading | None = None


@dataclass(frozen=True)
class _Inbox:
    channel: str  # receiving channel digits
    message: SimMessage
    is_reply: bool


@dataclass(frozen=True)
class _StatusChange:
    channel: str  # sending channel digits
    message_id: str
    status: str


_DIGITS = re.compile(r"[0-9]{7,15}")


def phone_digits(phone: str) -> str:
    """Digits of an E.164 phone or a personal chat id; ValueError when it is neither."""
    raw = phone.strip()
    for suffix in ("@s.whatsapp.net", "@c.us"):
        raw = raw.removesuffix(suffix)
    raw = raw.removeprefix("+").replace(" ", "").replace("-", "")
    if not _DIGITS.fullmatch(raw):
        raise ValueError(f"not a phone number or personal chat id: {phone!r}")
    return raw


def level(value: float, good: float, fair: float) -> int:
    """3 when value >= good, 2 when >= fair, else 1."""
    return 3 if value >= good else 2 if value >= fair else 1


def overall_of(lifetime: int, chats: int, contacts: int) -> int:
    """The overall factor: the rounded mean, but never more than one above the worst factor."""
    factors = (lifetime, chats, contacts)
    mean_rounded = int(sum(factors) / 3 + 0.5)
    return min(min(factors) + 1, mean_rounded)


class SimModel:
    """All channels and their state. Every public method takes the simulated `now` (aware UTC)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.seed = self.config.seed
        self.thresholds = self.config.thresholds
        self.behaviour = self.config.behaviour
        self.started_at: datetime | None = None
        self._by_token: dict[str, _Channel] = {}
        self._by_digits: dict[str, _Channel] = {}
        self._sends: list[SendRecord] = []
        self._events: list[tuple[datetime, int, _Inbox | _StatusChange]] = []
        self._seq = itertools.count(1)
        self._friendliness: dict[str, float] = {}
        for spec in self.config.channels:
            self.register(spec)

    # --- channels -------------------------------------------------------------------------------

    def register(self, spec: ChannelSpec) -> None:
        """Add a channel; a token or phone that is already registered is refused (ValueError)."""
        digits = spec.digits
        if not spec.token:
            raise ValueError("a channel needs a token")
        if spec.token in self._by_token:
            raise DuplicateChannel("token already registered")
        if digits in self._by_digits:
            raise DuplicateChannel(f"phone {spec.phone} already registered")
        channel = _Channel(spec=replace(spec, phone=f"+{digits}"))
        self._by_token[spec.token] = channel
        self._by_digits[digits] = channel

    def update_channel(
        self,
        phone: str,
        *,
        status: ChannelStatus | None = None,
        reason: str | None = None,
        meter: bool | None = None,
        trial_limit: int | _Unset | None = _Unset.UNSET,
        registered: date | None = None,
        now: datetime,
    ) -> None:
        """Admin changes: log a channel out, ban or reconnect it, toggle the meter, move its age."""
        channel = self._channel_by_phone(phone)
        spec = channel.spec
        if meter is not None:
            spec = replace(spec, meter=meter)
        if not isinstance(trial_limit, _Unset):
            spec = replace(spec, trial_limit=trial_limit)
        if registered is not None:
            spec = replace(spec, registered=registered)
        channel.spec = spec
        if status is ChannelStatus.BANNED:
            self._ban(channel, reason or "banned by the operator", now)
        elif status is not None:
            channel.status = status
            channel.ban_reason = None if status is ChannelStatus.CONNECTED else channel.ban_reason
            channel.banned_at = None if status is ChannelStatus.CONNECTED else channel.banned_at

    def phones(self) -> list[str]:
        return [channel.spec.phone for channel in self._by_digits.values()]

    def phone_of_token(self, token: str) -> str | None:
        channel = self._by_token.get(token)
        return channel.spec.phone if channel else None

    def channel_state(self, phone: str, now: datetime) -> dict[str, Any]:
        """Everything a test may want to assert about one channel (never its token)."""
        channel = self._channel_by_phone(phone)
        spec = channel.spec
        today = now.date()
        age = (today - spec.registered).days
        self._prune(channel, now)
        sends, replies = len(channel.recent_sends), len(channel.recent_replies)
        return {
            "phone": spec.phone,
            "channel_id": spec.channel_id,
            "name": spec.name,
            "registered": spec.registered.isoformat(),
            "age_days": age,
            "status": channel.status.value,
            "banned": channel.status is ChannelStatus.BANNED,
            "ban_reason": channel.ban_reason,
            "banned_at": channel.banned_at.isoformat() if channel.banned_at else None,
            "meter": spec.meter,
            "trial_limit": spec.trial_limit,
            "sent_total": channel.sent_total,
            "sent_today": channel.sent_by_day.get(today, 0),
            "replies_total": channel.replies_total,
            "recipients": len(channel.recipients),
            "inbox": sum(1 for m in channel.messages if not m.from_me),
            "window_sends": sends,
            "window_replies": replies,
            "safe_daily": self.thresholds.safe_daily(age),
            "ban_limit_today": self.thresholds.ban_limit(age) if self.thresholds.bans else None,
            "webhooks": [hook.get("url") for hook in channel.settings.get("webhooks", [])],
            "reading": self._compute_reading(channel, now).to_json(),
            "saved_reading": channel.reading.to_json() if channel.reading else None,
        }

    # --- Whapi operations -----------------------------------------------------------------------

    def send_text(self, token: str, payload: object, now: datetime) -> dict[str, Any]:
        """`POST /messages/text`: validate, apply ban rules, accept; returns the 201 body."""
        channel = self._authorised(token)
        if not isinstance(payload, dict):
            raise SimError(400, "Bad request", "the body must be a JSON object with 'to' and 'body'")
        to, body, typing_time = payload.get("to"), payload.get("body"), payload.get("typing_time")
        typing_time = 0 if typing_time is None else typing_time
        if not isinstance(to, str) or not to.strip():
            raise SimError(400, "Bad request", "'to' is required: a phone number or chat id")
        if to.strip().endswith("@g.us") or to.strip().endswith("@newsletter"):
            raise SimError(400, "Bad request", "the simulator supports personal chats only")
        try:
            to_digits = phone_digits(to)
        except ValueError:
            raise SimError(
                400, "Bad request", f"'to' is not a valid phone number or chat id: {to!r}"
            ) from None
        if not isinstance(body, str) or not body.strip():
            raise SimError(400, "Bad request", "'body' is required: a non-empty text")
        if isinstance(typing_time, bool) or not isinstance(typing_time, int | float):
            raise SimError(400, "Bad request", "'typing_time' must be a number of seconds (0..60)")
        if not 0 <= typing_time <= 60:
            raise SimError(400, "Bad request", "'typing_time' must be within 0..60 seconds")
        if len(body) > self.behaviour.max_body_chars:
            raise SimError(
                413, "Request entity too large", f"text longer than {self.behaviour.max_body_chars}"
            )
        spec = channel.spec
        if to_digits in self.behaviour.forbidden or to_digits in spec.forbidden:
            raise SimError(403, "Forbidden", "it is forbidden to send to this recipient")
        if spec.trial_limit is not None and channel.sent_total >= spec.trial_limit:
            raise SimError(402, "Payment required", "trial version limit exceeded")
        peer = to_digits in self._by_digits
        stranger = not peer and to_digits not in channel.repliers
        reason = self._ban_reason(channel, stranger, now)
        if reason is not None:
            self._ban(channel, reason, now)
            raise SimError(401, "Channel banned", f"the number was banned: {reason}")
        return self._accept(channel, to_digits, body, float(typing_time), peer, stranger, now)

    def health(self, token: str, now: datetime) -> dict[str, Any]:
        """`GET /health`: answers for logged-out and banned channels too (the status says which)."""
        channel = self._known(token)
        if self.started_at is None:
            self.started_at = now
        code, text = HEALTH_STATUS[channel.status]
        status: dict[str, Any] = {"code": code, "text": text}
        if channel.status is ChannelStatus.BANNED:
            status["details"] = f"banned: {channel.ban_reason}"
        elif channel.status is ChannelStatus.LOGGED_OUT:
            status["details"] = "logged out: scan the QR code to log in again"
        return {
            "start_at": int(self.started_at.timestamp()),
            "uptime": int((now - self.started_at).total_seconds()),
            "version": "sim-1.8.7",
            "device_id": 1,
            "ip": "127.0.0.1",
            "status": status,
            "channel_id": channel.spec.channel_id,
            "user": {"id": channel.spec.digits, "name": channel.spec.name, "pushname": channel.spec.name},
        }

    def phone_info(self, token: str, phone_number_id: str, now: datetime) -> dict[str, Any]:
        """Meta Cloud API `GET /{version}/{phone-number-id}`: quality, status and messaging tier.

        Quality follows how people react (the response-rate and contacts factors, not the age):
        both good or neutral -> GREEN, one at 1 -> YELLOW, both at 1 -> RED. Status: BANNED, DISCONNECTED
        (logged out), FLAGGED (quality RED) or CONNECTED. Tier: TIER_250 under 30 days, else TIER_2K.
        """
        channel = self._known(token)
        if channel.spec.digits != phone_number_id:
            raise SimError(400, "Unsupported get request", f"object {phone_number_id} does not exist")
        reading = self._compute_reading(channel, now)
        worst = (reading.chats == 1) + (reading.contacts == 1)
        quality = ("GREEN", "YELLOW", "RED")[worst]
        if channel.status is ChannelStatus.BANNED:
            status = "BANNED"
        elif channel.status is ChannelStatus.LOGGED_OUT:
            status = "DISCONNECTED"
        else:
            status = "FLAGGED" if quality == "RED" else "CONNECTED"
        age = (now.date() - channel.spec.registered).days
        return {
            "id": phone_number_id,
            "display_phone_number": channel.spec.phone,
            "verified_name": channel.spec.name,
            "quality_rating": quality,
            "status": status,
            "whatsapp_business_manager_messaging_limit": "TIER_250" if age < 30 else "TIER_2K",
        }

    def list_messages(
        self,
        token: str,
        now: datetime,
        *,
        from_me: bool | None = None,
        time_from: float | None = None,
        time_to: float | None = None,
        count: int = 100,
        offset: int = 0,
        sort: str = "desc",
    ) -> dict[str, Any]:
        """`GET /messages/list`: the channel's messages whose time has come, newest first by default."""
        channel = self._authorised(token)
        if not 1 <= count <= 500:
            raise SimError(400, "Bad request", "'count' must be within 1..500")
        if offset < 0:
            raise SimError(400, "Bad request", "'offset' must not be negative")
        if sort not in ("asc", "desc"):
            raise SimError(400, "Bad request", "'sort' must be asc or desc")
        messages = channel.messages
        start = 0
        if time_from is not None:
            start = bisect.bisect_left(messages, time_from, key=lambda m: m.at.timestamp())
        selected = [
            m
            for m in messages[start:]
            if (from_me is None or m.from_me == from_me)
            and (time_to is None or m.at.timestamp() <= time_to)
            and m.at <= now
        ]
        if sort == "desc":
            selected.reverse()
        page = selected[offset : offset + count]
        return {
            "messages": [m.to_whapi() for m in page],
            "count": len(page),
            "total": len(selected),
            "offset": offset,
        }

    def get_settings(self, token: str) -> dict[str, Any]:
        return dict(self._known(token).settings)

    def update_settings(self, token: str, payload: object) -> dict[str, Any]:
        """`PATCH /settings`: stores webhooks (and any other given setting); returns before/after/changes."""
        channel = self._known(token)
        if not isinstance(payload, dict):
            raise SimError(400, "Wrong settings format", "the body must be a JSON object")
        hooks = payload.get("webhooks")
        if hooks is not None and (not isinstance(hooks, list) or not all(_valid_hook(h) for h in hooks)):
            raise SimError(
                400, "Wrong settings format", "'webhooks' must be a list of objects with an http(s) 'url'"
            )
        before = dict(channel.settings)
        after = {**before, **payload}
        channel.settings = after
        return {"before_update": before, "after_update": after, "changes": sorted(payload)}

    def meter_compute(self, token: str, now: datetime) -> dict[str, Any]:
        """`POST /services/riskOfBlocking`: today's reading, computed once per simulated UTC day."""
        channel = self._metered(token)
        if channel.reading is None or channel.reading.day != now.date():
            channel.reading = self._compute_reading(channel, now)
        return channel.reading.to_json()

    def meter_last(self, token: str) -> dict[str, Any]:
        """`GET /services/riskOfBlocking`: the last computed reading."""
        channel = self._metered(token)
        if channel.reading is None:
            raise SimError(404, "Not found", "no reading computed yet: POST first")
        return channel.reading.to_json()

    # --- time ---------------------------------------------------------------------------------

    def advance(self, now: datetime) -> list[WebhookPost]:
        """Apply every delivery, reply and status change due by `now`; return the webhook posts they cause."""
        messages: dict[str, list[dict[str, Any]]] = {}
        statuses: dict[str, list[dict[str, Any]]] = {}
        events = self._events
        while events and events[0][0] <= now:
            due, _, event = heapq.heappop(events)
            if isinstance(event, _Inbox):
                channel = self._by_digits.get(event.channel)
                if channel is None:
                    continue
                message = event.message
                bisect.insort(channel.messages, message, key=lambda m: (m.at, m.seq))
                if event.is_reply:
                    channel.replies_total += 1
                    channel.recent_replies.append(due)
                    channel.repliers.add(message.other)
                messages.setdefault(event.channel, []).append(message.to_whapi())
            else:
                channel = self._by_digits.get(event.channel)
                sent = channel.by_id.get(event.message_id) if channel else None
                if sent is None or _STATUS_ORDER.index(event.status) <= _STATUS_ORDER.index(sent.status):
                    continue
                sent.status = event.status
                statuses.setdefault(event.channel, []).append(
                    {
                        "id": sent.id,
                        "code": _STATUS_CODES[event.status],
                        "status": event.status,
                        "recipient_id": f"{sent.other}@s.whatsapp.net",
                        "timestamp": str(int(due.timestamp())),
                    }
                )
        posts: list[WebhookPost] = []
        for kind, grouped in (("messages", messages), ("statuses", statuses)):
            for digits, items in grouped.items():
                channel = self._by_digits[digits]
                for hook in channel.settings.get("webhooks", []):
                    if _hook_wants(hook, kind):
                        payload = {
                            kind: items,
                            "event": {"type": kind, "method": "post"},
                            "channel_id": channel.spec.channel_id,
                        }
                        posts.append(WebhookPost(hook["url"], dict(hook.get("headers") or {}), payload))
        return posts

    def last_send(self) -> SendRecord | None:
        return self._sends[-1] if self._sends else None

    def next_event_at(self) -> datetime | None:
        return self._events[0][0] if self._events else None

    # --- the send log -------------------------------------------------------------------------

    def sends(self, *, channel: str | None = None, after: int = 0) -> list[SendRecord]:
        """Accepted sends with `seq > after`, optionally of one channel (phone)."""
        start = bisect.bisect_right(self._sends, after, key=lambda r: r.seq)
        if channel is None:
            return self._sends[start:]
        phone = f"+{phone_digits(channel)}"
        return [r for r in self._sends[start:] if r.channel == phone]

    # --- internals ----------------------------------------------------------------------------

    def _known(self, token: str) -> _Channel:
        channel = self._by_token.get(token)
        if channel is None:
            raise SimError(401, "Unauthorized", "unknown or missing channel token")
        return channel

    def _authorised(self, token: str) -> _Channel:
        channel = self._known(token)
        if channel.status is ChannelStatus.BANNED:
            raise SimError(401, "Channel banned", f"the number was banned: {channel.ban_reason}")
        if channel.status is ChannelStatus.LOGGED_OUT:
            raise SimError(401, "Channel not authorized", "the channel is logged out: scan the QR code")
        return channel

    def _metered(self, token: str) -> _Channel:
        channel = self._authorised(token)
        if not channel.spec.meter:
            raise SimError(402, "Payment required", "the risk meter is not part of this channel's plan")
        return channel

    def _channel_by_phone(self, phone: str) -> _Channel:
        try:
            channel = self._by_digits.get(phone_digits(phone))
        except ValueError:
            channel = None
        if channel is None:
            raise KeyError(phone)
        return channel

    def _prune(self, channel: _Channel, now: datetime) -> None:
        horizon = now - self.thresholds.response_window
        for queue in (channel.recent_sends, channel.recent_replies):
            while queue and queue[0] < horizon:
                queue.popleft()
        burst_horizon = now - self.thresholds.burst_window
        while channel.stranger_sends and channel.stranger_sends[0] < burst_horizon:
            channel.stranger_sends.popleft()

    def _response_rate(self, channel: _Channel) -> float:
        sends = len(channel.recent_sends)
        return len(channel.recent_replies) / sends if sends else 0.0

    def _ban_reason(self, channel: _Channel, stranger: bool, now: datetime) -> str | None:
        t = self.thresholds
        if not t.bans:
            return None
        today = now.date()
        age = (today - channel.spec.registered).days
        limit = t.ban_limit(age)
        if channel.sent_by_day.get(today, 0) + 1 > limit:
            return (
                f"more than {limit} messages on {today.isoformat()} "
                f"({t.ban_multiple:g}x the safe {t.safe_daily(age)} for a {max(age, 0)}-day-old number)"
            )
        if stranger:
            self._prune(channel, now)
            rate = self._response_rate(channel)
            if len(channel.stranger_sends) + 1 > t.burst_strangers and rate < t.burst_max_response:
                return (
                    f"more than {t.burst_strangers} messages to strangers within {t.burst_window} "
                    f"with a response rate of {rate:.0%}"
                )
        return None

    def _ban(self, channel: _Channel, reason: str, now: datetime) -> None:
        channel.status = ChannelStatus.BANNED
        channel.ban_reason = reason
        channel.banned_at = now

    def _friendliness_of(self, digits: str) -> float:
        value = self._friendliness.get(digits)
        if value is None:
            alpha, beta = self.behaviour.friendliness
            value = random.Random(f"{self.seed}|friend|{digits}").betavariate(alpha, beta)
            self._friendliness[digits] = value
        return value

    def _accept(
        self,
        channel: _Channel,
        to: str,
        body: str,
        typing_time: float,
        peer: bool,
        stranger: bool,
        now: datetime,
    ) -> dict[str, Any]:
        spec = channel.spec
        seq = next(self._seq)
        message = SimMessage(
            id=f"Sim{seq:012d}-{spec.digits[-10:]}",
            seq=seq,
            other=to,
            from_digits=spec.digits,
            from_me=True,
            at=now,
            body=body,
            status="sent",
            from_name=spec.name,
        )
        bisect.insort(channel.messages, message, key=lambda m: (m.at, m.seq))
        channel.by_id[message.id] = message
        channel.sent_total += 1
        channel.sent_by_day[now.date()] = channel.sent_by_day.get(now.date(), 0) + 1
        channel.recent_sends.append(now)
        if stranger:
            channel.stranger_sends.append(now)
        channel.recipients.add(to)
        record = SendRecord(seq, spec.phone, f"+{to}", body, typing_time, now, message.id, peer)
        self._sends.append(record)
        self._schedule_outcome(channel, message, peer)
        return {"sent": True, "message": message.to_whapi()}

    def _schedule_outcome(self, channel: _Channel, message: SimMessage, peer: bool) -> None:
        """Decide, from the pair's own seeded stream, when the message is delivered, read and answered."""
        b = self.behaviour
        src, dst = channel.spec.digits, message.other
        n = channel.pair_counts.get(dst, 0)
        channel.pair_counts[dst] = n + 1
        rng = random.Random(f"{self.seed}|{src}|{dst}|{n}")
        delivered = message.at + timedelta(seconds=rng.uniform(*b.deliver_delay))
        self._push(delivered, _StatusChange(src, message.id, "delivered"))
        if peer:
            peer_channel = self._by_digits[dst]
            inbound = SimMessage(
                id=message.id,
                seq=message.seq,
                other=src,
                from_digits=src,
                from_me=False,
                at=delivered,
                body=message.body,
                status="delivered",
                from_name=channel.spec.name,
            )
            is_reply = src in peer_channel.recipients
            self._push(delivered, _Inbox(dst, inbound, is_reply))
            self._push(
                delivered + timedelta(seconds=rng.uniform(1.0, 60.0)), _StatusChange(src, message.id, "read")
            )
            return
        friendliness = self._friendliness_of(dst)
        if rng.random() < friendliness:
            reply_at = max(
                message.at + timedelta(seconds=rng.uniform(*b.reply_delay)), delivered + timedelta(seconds=2)
            )
            read_at = delivered + (reply_at - delivered) * rng.uniform(0.2, 0.9)
            self._push(read_at, _StatusChange(src, message.id, "read"))
            seq = next(self._seq)
            reply = SimMessage(
                id=f"Rep{seq:012d}-{dst[-10:]}",
                seq=seq,
                other=dst,
                from_digits=dst,
                from_me=False,
                at=reply_at,
                body=rng.choice(b.replies),
                status="delivered",
            )
            self._push(reply_at, _Inbox(src, reply, True))
        elif rng.random() < friendliness:
            self._push(
                delivered + timedelta(seconds=rng.uniform(*b.read_delay)),
                _StatusChange(src, message.id, "read"),
            )

    def _push(self, due: datetime, event: _Inbox | _StatusChange) -> None:
        heapq.heappush(self._events, (due, next(self._seq), event))

    def _compute_reading(self, channel: _Channel, now: datetime) -> MeterReading:
        t = self.thresholds
        self._prune(channel, now)
        age = (now.date() - channel.spec.registered).days
        lifetime = 1 if age < t.lifetime_caution_days else 2 if age < t.lifetime_good_days else 3
        sends = len(channel.recent_sends)
        if sends < t.response_min_sends:
            chats = 2
        else:
            chats = level(len(channel.recent_replies) / sends, t.response_good, t.response_fair)
        if not channel.recipients:
            contacts = 2
        else:
            known = sum(1 for r in channel.recipients if r in self._by_digits or r in channel.repliers)
            contacts = level(known / len(channel.recipients), t.contacts_good, t.contacts_fair)
            if len(channel.recipients) < t.contacts_min_recipients:
                contacts = max(contacts, 2)
        return MeterReading(
            channel.spec.channel_id,
            now.date(),
            lifetime,
            overall_of(lifetime, chats, contacts),
            chats,
            contacts,
        )


def _valid_hook(hook: object) -> bool:
    if not isinstance(hook, dict):
        return False
    url = hook.get("url")
    headers = hook.get("headers")
    return (
        isinstance(url, str)
        and url.startswith(("http://", "https://"))
        and (headers is None or isinstance(headers, dict))
        and isinstance(hook.get("events", []), list)
    )


def _hook_wants(hook: Mapping[str, Any], kind: str) -> bool:
    """Whether a registered webhook subscribes to `messages` or `statuses` (no events listed = both)."""
    events: Iterable[Any] = hook.get("events") or []
    names = {str(e.get("type")) if isinstance(e, dict) else str(e) for e in events}
    if not names:
        return True
    legacy = {"messages": {"message"}, "statuses": {"ack", "status"}}[kind]
    return kind in names or bool(names & legacy)
