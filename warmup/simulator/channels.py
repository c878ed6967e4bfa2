"""The simulator's channels: who they are (spec, phone number), what they sent and received, and bans.

Pure data plus the ban rule; `model.SimModel` owns the channels and calls these. A channel also keeps
what the Cloud API side reads: when each user last wrote (the customer-service window) and who blocked
it. Bans (Whapi sends only; when `Thresholds.bans` is on; checked before a send is accepted, the
offending send is refused with 401):
- Daily volume: the safe volume for a channel aged d days is
  `min(safe_max, safe_base + safe_per_day * d)` (20 + 15/day, at most 1000); sending more than
  `ban_multiple` (3x) that on one simulated UTC day bans the channel.
- Cold burst: more than `burst_strangers` (50) sends to strangers (not peers, never wrote back) within
  `burst_window` (1 h) while the response rate over `response_window` is below `burst_max_response`
  (0.05) bans the channel.
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any


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
STATUS_CODES = {"failed": 0, "pending": 1, "sent": 2, "delivered": 3, "read": 4}
STATUS_ORDER = ("pending", "sent", "delivered", "read")


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


class MetaError(SimError):
    """An error only the Cloud API has: Meta's own code and title (131047, 131048, 132001...)."""

    def __init__(
        self, status: int, code: int, title: str, details: str, retry_after: int | None = None
    ) -> None:
        super().__init__(status, title, details, retry_after)
        self.code = code


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


def phone_key(phone: str) -> str:
    """The E.164 form (`+digits`) that keys channels in the admin API and per-channel faults."""
    return f"+{phone_digits(phone)}"


@dataclass(frozen=True)
class Thresholds:
    """The numbers behind readings (see `meter`) and bans (see the module docstring)."""

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
class ChannelSpec:
    """One simulated channel (= one token = one WhatsApp number)."""

    token: str = field(repr=False)
    phone: str
    registered: date
    meter: bool = True  # has the paid risk meter
    name: str = ""
    trial_limit: int | None = None  # sends beyond this answer 402
    forbidden: frozenset[str] = frozenset()  # recipient digits this channel may not write to (403)
    portfolio: str | None = None  # Cloud API business portfolio (None: the number is its own portfolio)
    cloud: bool = False  # a Cloud API number from the start (else: from its first Cloud API call)

    @property
    def digits(self) -> str:
        return phone_digits(self.phone)

    @property
    def channel_id(self) -> str:
        return f"SIM-{self.digits}"


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

    def to_cloud(self) -> dict[str, Any]:
        """This (incoming) message as a Cloud API webhook `messages` item."""
        return {
            "from": self.from_digits,
            "id": self.id,
            "timestamp": str(int(self.at.timestamp())),
            "type": "text",
            "text": {"body": self.body},
        }

    def status_to_cloud(self, at: datetime) -> dict[str, Any]:
        """The Cloud API webhook `statuses` item announcing this (outgoing) message's current status."""
        return {
            "id": self.id,
            "status": self.status,
            "timestamp": str(int(at.timestamp())),
            "recipient_id": self.other,
        }

    def status_to_whapi(self, at: datetime) -> dict[str, Any]:
        """The webhook `statuses` item announcing this (outgoing) message's current status."""
        return {
            "id": self.id,
            "code": STATUS_CODES[self.status],
            "status": self.status,
            "recipient_id": f"{self.other}@s.whatsapp.net",
            "timestamp": str(int(at.timestamp())),
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


class SendLog:
    """Every accepted send in acceptance order (seq rises), queried by the admin API and the tests."""

    def __init__(self) -> None:
        self._records: list[SendRecord] = []

    def append(self, record: SendRecord) -> None:
        self._records.append(record)

    def last(self) -> SendRecord | None:
        return self._records[-1] if self._records else None

    def query(self, *, channel: str | None = None, after: int = 0) -> list[SendRecord]:
        """Sends with `seq > after`, optionally of one channel (phone)."""
        start = bisect.bisect_right(self._records, after, key=lambda r: r.seq)
        if channel is None:
            return self._records[start:]
        phone = phone_key(channel)
        return [r for r in self._records[start:] if r.channel == phone]


@dataclass
class ChannelState:
    """One channel's mutable state: status, settings, messages and the counters readings and bans use."""

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
    last_inbound: dict[str, datetime] = field(default_factory=dict)  # sender digits -> their last message
    recent_blocks: deque[datetime] = field(default_factory=deque)  # users who blocked this number, when
    blockers: set[str] = field(default_factory=set)  # digits of every user who blocked this number

    def block(self, user: str, at: datetime) -> bool:
        """A user blocks this number (once per user); False if they already had."""
        if user in self.blockers:
            return False
        self.blockers.add(user)
        self.recent_blocks.append(at)
        return True

    def record_send(self, message: SimMessage, stranger: bool) -> None:
        """Count an accepted outgoing message in the channel's totals and trailing windows."""
        now = message.at
        bisect.insort(self.messages, message, key=lambda m: (m.at, m.seq))
        self.by_id[message.id] = message
        self.sent_total += 1
        self.sent_by_day[now.date()] = self.sent_by_day.get(now.date(), 0) + 1
        self.recent_sends.append(now)
        if stranger:
            self.stranger_sends.append(now)
        self.recipients.add(message.other)

    def receive(self, message: SimMessage, is_reply: bool, due: datetime) -> None:
        """An incoming message lands in the inbox; a reply counts for the response rate and contacts."""
        bisect.insort(self.messages, message, key=lambda m: (m.at, m.seq))
        previous = self.last_inbound.get(message.other)
        if previous is None or previous < due:
            self.last_inbound[message.other] = due
        if is_reply:
            self.replies_total += 1
            self.recent_replies.append(due)
            self.repliers.add(message.other)

    def prune(self, thresholds: Thresholds, now: datetime) -> None:
        """Drop sends and replies older than the trailing windows."""
        horizon = now - thresholds.response_window
        for queue in (self.recent_sends, self.recent_replies, self.recent_blocks):
            while queue and queue[0] < horizon:
                queue.popleft()
        burst_horizon = now - thresholds.burst_window
        while self.stranger_sends and self.stranger_sends[0] < burst_horizon:
            self.stranger_sends.popleft()

    def response_rate(self) -> float:
        sends = len(self.recent_sends)
        return len(self.recent_replies) / sends if sends else 0.0

    def reason_to_ban(self, t: Thresholds, stranger: bool, now: datetime) -> str | None:
        """Why the next send (to a stranger or not) would get the channel banned; None if it is fine."""
        if not t.bans:
            return None
        today = now.date()
        age = (today - self.spec.registered).days
        limit = t.ban_limit(age)
        if self.sent_by_day.get(today, 0) + 1 > limit:
            return (
                f"more than {limit} messages on {today.isoformat()} "
                f"({t.ban_multiple:g}x the safe {t.safe_daily(age)} for a {max(age, 0)}-day-old number)"
            )
        if stranger:
            self.prune(t, now)
            rate = self.response_rate()
            if len(self.stranger_sends) + 1 > t.burst_strangers and rate < t.burst_max_response:
                return (
                    f"more than {t.burst_strangers} messages to strangers within {t.burst_window} "
                    f"with a response rate of {rate:.0%}"
                )
        return None

    def ban(self, reason: str, now: datetime) -> None:
        self.status = ChannelStatus.BANNED
        self.ban_reason = reason
        self.banned_at = now
