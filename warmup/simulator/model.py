"""The simulator's behaviour model: the `SimModel` that ties channels, recipients and the meter together.

Pure: every method takes `now` (aware UTC) from the caller, and all randomness comes from the seed, so a
run replays exactly. The server wraps the model in a lock; the model itself is not thread-safe. The
concerns live next door: `channels` (specs, phone numbers, messages, the send log, bans), `behaviour`
(what recipients do: deliveries, reads, replies), `meter` (the riskOfBlocking readings) and `webhooks`
(which posts the due events cause). This module is the Whapi operations over them, plus `advance`,
which applies what has come due.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import Enum
from typing import Any

from warmup.simulator.behaviour import Behaviour, Inbox, Recipients
from warmup.simulator.channels import (
    HEALTH_STATUS,
    STATUS_ORDER,
    ChannelSpec,
    ChannelState,
    ChannelStatus,
    DuplicateChannel,
    SendLog,
    SendRecord,
    SimError,
    SimMessage,
    Thresholds,
    phone_digits,
)
from warmup.simulator.faults import FaultSpec
from warmup.simulator.meter import Meter
from warmup.simulator.webhooks import WebhookPost, valid_hook, webhook_posts


class _Unset(Enum):
    UNSET = 0


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulator starts from: seed, channels, model numbers and faults."""

    seed: int = 0
    channels: tuple[ChannelSpec, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    behaviour: Behaviour = field(default_factory=Behaviour)
    faults: FaultSpec = field(default_factory=FaultSpec)
    channel_faults: Mapping[str, FaultSpec] = field(default_factory=dict)  # by phone


class SimModel:
    """All channels and their state. Every public method takes the simulated `now` (aware UTC)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.seed = self.config.seed
        self.thresholds = self.config.thresholds
        self.behaviour = self.config.behaviour
        self.started_at: datetime | None = None
        self._by_token: dict[str, ChannelState] = {}
        self._by_digits: dict[str, ChannelState] = {}
        self._sends = SendLog()
        self._seq = itertools.count(1)
        self._recipients = Recipients(self.seed, self.behaviour, self._seq)
        self._meter = Meter(self.thresholds)
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
        channel = ChannelState(spec=replace(spec, phone=f"+{digits}"))
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
            channel.ban(reason or "banned by the operator", now)
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
        channel.prune(self.thresholds, now)
        sends, replies = len(channel.recent_sends), len(channel.recent_replies)
        saved = self._meter.saved(channel)
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
            "reading": self._meter.reading(channel, self._by_digits, now).to_json(),
            "saved_reading": saved.to_json() if saved else None,
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
        reason = channel.reason_to_ban(self.thresholds, stranger, now)
        if reason is not None:
            channel.ban(reason, now)
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
        reading = self._meter.reading(channel, self._by_digits, now)
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
        if hooks is not None and (not isinstance(hooks, list) or not all(valid_hook(h) for h in hooks)):
            raise SimError(
                400, "Wrong settings format", "'webhooks' must be a list of objects with an http(s) 'url'"
            )
        before = dict(channel.settings)
        after = {**before, **payload}
        channel.settings = after
        return {"before_update": before, "after_update": after, "changes": sorted(payload)}

    def meter_compute(self, token: str, now: datetime) -> dict[str, Any]:
        """`POST /services/riskOfBlocking`: today's reading, computed once per simulated UTC day."""
        return self._meter.today(self._metered(token), self._by_digits, now).to_json()

    def meter_last(self, token: str) -> dict[str, Any]:
        """`GET /services/riskOfBlocking`: the last computed reading."""
        return self._meter.last(self._metered(token)).to_json()

    # --- time ---------------------------------------------------------------------------------

    def advance(self, now: datetime) -> list[WebhookPost]:
        """Apply every delivery, reply and status change due by `now`; return the webhook posts they cause."""
        messages: dict[str, list[dict[str, Any]]] = {}
        statuses: dict[str, list[dict[str, Any]]] = {}
        for due, event in self._recipients.due(now):
            if isinstance(event, Inbox):
                channel = self._by_digits.get(event.channel)
                if channel is None:
                    continue
                channel.receive(event.message, event.is_reply, due)
                messages.setdefault(event.channel, []).append(event.message.to_whapi())
            else:
                channel = self._by_digits.get(event.channel)
                sent = channel.by_id.get(event.message_id) if channel else None
                if sent is None or STATUS_ORDER.index(event.status) <= STATUS_ORDER.index(sent.status):
                    continue
                sent.status = event.status
                statuses.setdefault(event.channel, []).append(sent.status_to_whapi(due))
        posts: list[WebhookPost] = []
        for kind, grouped in (("messages", messages), ("statuses", statuses)):
            for digits, items in grouped.items():
                channel = self._by_digits[digits]
                posts.extend(webhook_posts(channel.settings, channel.spec.channel_id, kind, items))
        return posts

    def last_send(self) -> SendRecord | None:
        return self._sends.last()

    def next_event_at(self) -> datetime | None:
        return self._recipients.next_at()

    # --- the send log -------------------------------------------------------------------------

    def sends(self, *, channel: str | None = None, after: int = 0) -> list[SendRecord]:
        """Accepted sends with `seq > after`, optionally of one channel (phone)."""
        return self._sends.query(channel=channel, after=after)

    # --- internals ----------------------------------------------------------------------------

    def _known(self, token: str) -> ChannelState:
        channel = self._by_token.get(token)
        if channel is None:
            raise SimError(401, "Unauthorized", "unknown or missing channel token")
        return channel

    def _authorised(self, token: str) -> ChannelState:
        channel = self._known(token)
        if channel.status is ChannelStatus.BANNED:
            raise SimError(401, "Channel banned", f"the number was banned: {channel.ban_reason}")
        if channel.status is ChannelStatus.LOGGED_OUT:
            raise SimError(401, "Channel not authorized", "the channel is logged out: scan the QR code")
        return channel

    def _metered(self, token: str) -> ChannelState:
        channel = self._authorised(token)
        if not channel.spec.meter:
            raise SimError(402, "Payment required", "the risk meter is not part of this channel's plan")
        return channel

    def _channel_by_phone(self, phone: str) -> ChannelState:
        try:
            channel = self._by_digits.get(phone_digits(phone))
        except ValueError:
            channel = None
        if channel is None:
            raise KeyError(phone)
        return channel

    def _accept(
        self,
        channel: ChannelState,
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
        channel.record_send(message, stranger)
        record = SendRecord(seq, spec.phone, f"+{to}", body, typing_time, now, message.id, peer)
        self._sends.append(record)
        self._recipients.schedule(channel, message, self._by_digits[to] if peer else None)
        return {"sent": True, "message": message.to_whapi()}
