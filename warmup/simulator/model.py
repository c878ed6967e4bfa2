"""The simulator's behaviour model: the `SimModel` that ties channels, recipients and the meter together.

Pure: every method takes `now` (aware UTC) from the caller, and all randomness comes from the seed, so a
run replays exactly. The server wraps the model in a lock; the model itself is not thread-safe. The
concerns live next door: `channels` (specs, phone numbers, messages, the send log, bans), `behaviour`
(what recipients do: deliveries, reads, replies, blocks), `meter` (the riskOfBlocking readings), `cloud`
(Meta's portfolios, limits, quality and signed webhooks) and `webhooks` (which posts the due events
cause). This module is the Whapi and Cloud API operations over them, plus `advance`, which applies what
has come due.
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
from warmup.simulator.cloud import DEFAULT_FIELDS, CloudConfig, CloudSide, LimitRecord, Template
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
    cloud: CloudConfig = field(default_factory=CloudConfig)  # portfolios, templates, Cloud webhook


@dataclass(frozen=True)
class CloudSend:
    """A parsed Cloud API send: free-form text (`body`) or a template (`template`, `language`)."""

    to: str
    body: str | None = None
    template: str | None = None
    language: str | None = None


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
        self.cloud = CloudSide(self.config.cloud, self.thresholds, self._by_digits)
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
        if spec.cloud or spec.portfolio:
            self.cloud.join(channel)

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
            "cloud": self.cloud.state(channel, now) if spec.digits in self.cloud.numbers else None,
        }

    # --- Whapi operations -----------------------------------------------------------------------

    def send_text(self, token: str, payload: object, now: datetime) -> dict[str, Any]:
        """`POST /messages/text`: validate, apply ban rules, accept; returns the 201 body."""
        channel = self._authorised(token)
        if not isinstance(payload, dict):
            raise SimError(400, "Bad request", "the body must be a JSON object with 'to' and 'body'")
        to, body, typing_time = payload.get("to"), payload.get("body"), payload.get("typing_time")
        typing_time = 0 if typing_time is None else typing_time
        to_digits = self._recipient(to)
        if not isinstance(body, str) or not body.strip():
            raise SimError(400, "Bad request", "'body' is required: a non-empty text")
        if isinstance(typing_time, bool) or not isinstance(typing_time, int | float):
            raise SimError(400, "Bad request", "'typing_time' must be a number of seconds (0..60)")
        if not 0 <= typing_time <= 60:
            raise SimError(400, "Bad request", "'typing_time' must be within 0..60 seconds")
        self._check_body_and_recipient(channel, to_digits, body)
        peer = to_digits in self._by_digits
        stranger = not peer and to_digits not in channel.repliers
        reason = channel.reason_to_ban(self.thresholds, stranger, now)
        if reason is not None:
            channel.ban(reason, now)
            raise SimError(401, "Channel banned", f"the number was banned: {reason}")
        return self._accept(channel, to_digits, body, float(typing_time), peer, stranger, now)

    def cloud_send(self, token: str, phone_number_id: str, send: CloudSend, now: datetime) -> dict[str, Any]:
        """`POST /{version}/{phone-number-id}/messages`: Meta's checks (window, limits, quality, templates).

        The Whapi ban rules do not apply: Meta's controls are quality, the spam rate limit and messaging
        limits (see `cloud`). Returns Meta's 200 body.
        """
        channel = self._cloud_channel(token, phone_number_id)
        to_digits = self._recipient(send.to)
        template: Template | None = None
        if send.template is not None:
            template = self.cloud.check_template(send.template, send.language or "")
            body = f"[template {send.template}/{send.language}]"
        else:
            body = send.body or ""
        self._check_body_and_recipient(channel, to_digits, body)
        plan = self.cloud.check_send(channel, to_digits, template, now)
        peer = to_digits in self._by_digits
        stranger = not peer and to_digits not in channel.repliers
        result = self._accept(channel, to_digits, body, 0.0, peer, stranger, now, deliver=not plan.dropped)
        record = self._sends.last()
        assert record is not None and record.message_id == result["message"]["id"]
        self.cloud.record_send(channel, to_digits, record.message_id, record.seq, template, plan, now)
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": send.to, "wa_id": to_digits}],
            "messages": [{"id": record.message_id, "message_status": "accepted"}],
        }

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

    def phone_info(
        self, token: str, phone_number_id: str, fields: list[str], now: datetime
    ) -> dict[str, Any]:
        """Meta Cloud API `GET /{version}/{phone-number-id}`: the default fields plus the requested ones.

        Quality, status and tier come from `cloud` (see its docstring); both tier fields answer the
        portfolio's tier, a v23 `messaging_limit_tier` value unless TIER_2K is configured.
        """
        channel = self._known(token)
        if channel.spec.digits != phone_number_id:
            raise SimError(400, "Unsupported get request", f"object {phone_number_id} does not exist")
        info = self.cloud.phone_fields(channel, now)
        unknown = [name for name in fields if name not in info]
        if unknown:
            raise SimError(
                400,
                "Invalid parameter",
                f"Tried accessing nonexisting field ({unknown[0]}) "
                "on node type (WhatsAppBusinessPhoneNumber)",
            )
        return {name: info[name] for name in dict.fromkeys([*DEFAULT_FIELDS, *fields])}

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
        cloud_messages: dict[str, list[SimMessage]] = {}
        cloud_statuses: dict[str, list[dict[str, Any]]] = {}
        numbers = self.cloud.numbers
        for due, event in self._recipients.due(now):
            if isinstance(event, Inbox):
                channel = self._by_digits.get(event.channel)
                if channel is None:
                    continue
                channel.receive(event.message, event.is_reply, due)
                messages.setdefault(event.channel, []).append(event.message.to_whapi())
                if event.channel in numbers:
                    numbers[event.channel].dirty = True
                    cloud_messages.setdefault(event.channel, []).append(event.message)
            else:
                channel = self._by_digits.get(event.channel)
                sent = channel.by_id.get(event.message_id) if channel else None
                if sent is None or sent.status not in STATUS_ORDER:
                    continue
                if STATUS_ORDER.index(event.status) <= STATUS_ORDER.index(sent.status):
                    continue
                sent.status = event.status
                statuses.setdefault(event.channel, []).append(sent.status_to_whapi(due))
                if event.channel in numbers:
                    cloud_statuses.setdefault(event.channel, []).append(sent.status_to_cloud(due))
        for due, digits, user in self._recipients.due_blocks(now):
            channel = self._by_digits.get(digits)
            if channel is not None and channel.block(user, due) and digits in numbers:
                numbers[digits].dirty = True
        posts: list[WebhookPost] = []
        for kind, grouped in (("messages", messages), ("statuses", statuses)):
            for digits, items in grouped.items():
                channel = self._by_digits[digits]
                posts.extend(webhook_posts(channel.settings, channel.spec.channel_id, kind, items))
        for digits, inbound in cloud_messages.items():
            self.cloud.message_posts(self._by_digits[digits], inbound)
        for digits, items in cloud_statuses.items():
            self.cloud.status_posts(self._by_digits[digits], items)
        self.cloud.tick(now)
        posts.extend(self.cloud.take_posts())
        return posts

    def take_posts(self) -> list[WebhookPost]:
        """Webhook posts an operation caused (a Cloud send's `sent` status, a tier change...)."""
        return self.cloud.take_posts()

    def last_send(self) -> SendRecord | None:
        return self._sends.last()

    def next_event_at(self) -> datetime | None:
        return self._recipients.next_at()

    # --- the send log -------------------------------------------------------------------------

    def sends(self, *, channel: str | None = None, after: int = 0) -> list[SendRecord]:
        """Accepted sends with `seq > after`, optionally of one channel (phone)."""
        return self._sends.query(channel=channel, after=after)

    def limit_log(self, *, portfolio: str | None = None, after: int = 0) -> list[LimitRecord]:
        """Accepted business-initiated Cloud API sends with `seq > after`, optionally of one portfolio."""
        return [
            r
            for r in self.cloud.limit_log
            if r.seq > after and (portfolio is None or r.portfolio == portfolio)
        ]

    # --- Cloud API administration ---------------------------------------------------------------

    def update_cloud(
        self,
        phone: str,
        now: datetime,
        *,
        portfolio: str | None = None,
        quality: str | _Unset | None = _Unset.UNSET,
        status: str | _Unset | None = _Unset.UNSET,
    ) -> None:
        """Make a channel a Cloud API number; move it to a portfolio; set or clear its quality/status."""
        channel = self._channel_by_phone(phone)
        number = self.cloud.join(channel)
        if portfolio is not None:
            self.cloud.move(channel, portfolio)
        if not isinstance(quality, _Unset) or not isinstance(status, _Unset):
            self.cloud.override(
                channel,
                quality=number.quality_override if isinstance(quality, _Unset) else quality,
                status=number.status_override if isinstance(status, _Unset) else status,
            )
        self.cloud.refresh(channel, now, force=True)

    def block(self, phone: str, user: str, now: datetime) -> bool:
        """A user blocks a channel (counts against its Cloud API quality); False if they already had."""
        channel = self._channel_by_phone(phone)
        blocked = channel.block(phone_digits(user), now)
        if channel.spec.digits in self.cloud.numbers:
            self.cloud.refresh(channel, now, force=True)
        return blocked

    def user_writes(self, phone: str, user: str, body: str, now: datetime) -> None:
        """A user writes to a channel now (opens their Cloud API customer-service window); the next
        `advance` delivers it, with its webhooks."""
        if not body.strip():
            raise ValueError("'body' must be a non-empty text")
        channel = self._channel_by_phone(phone)
        self._recipients.user_writes(channel, phone_digits(user), body, now)

    def portfolios(self, now: datetime) -> list[dict[str, Any]]:
        return [self.cloud.portfolio_state(p, now) for p in self.cloud.portfolios.values()]

    def set_tier(self, portfolio: str, tier: str, now: datetime) -> dict[str, Any]:
        """Set a portfolio's messaging limit tier (webhooks announce a change)."""
        changed = self.cloud.set_tier(portfolio, tier, now)
        for number in self.cloud.numbers.values():
            if number.portfolio == portfolio:
                self.cloud.refresh(self._by_digits[number.digits], now, force=True)
        return self.cloud.portfolio_state(changed, now)

    def set_templates(self, templates: tuple[Template, ...]) -> None:
        self.cloud.set_templates(templates)
        self.config = replace(self.config, cloud=replace(self.config.cloud, templates=templates))

    def set_cloud_webhook(self, url: str | None, app_secret: str | None) -> None:
        """Where Cloud API webhooks go, signed with the app secret (kept across `/_sim/reset`)."""
        self.cloud.set_webhook(url, app_secret)
        secret = app_secret or self.config.cloud.app_secret
        self.config = replace(
            self.config, cloud=replace(self.config.cloud, webhook_url=url, app_secret=secret)
        )

    def cloud_alert(
        self,
        *,
        portfolio: str | None,
        phone: str | None,
        alert_type: str,
        severity: str,
        description: str,
        status: str,
        now: datetime,
    ) -> None:
        """Post an `account_alerts` webhook about a portfolio (entity BUSINESS) or a number (PHONE_NUMBER)."""
        if (portfolio is None) == (phone is None):
            raise ValueError("name either a portfolio or a phone")
        if phone is not None:
            channel = self._channel_by_phone(phone)
            number = self.cloud.join(channel)
            target = self.cloud.portfolio_of(number)
            entity = ("PHONE_NUMBER", channel.spec.digits)
        else:
            assert portfolio is not None
            if portfolio not in self.cloud.portfolios:
                raise ValueError(f"no such portfolio: {portfolio!r}")
            target = self.cloud.portfolios[portfolio]
            entity = ("BUSINESS", target.business_id)
        self.cloud.alert(target, entity, alert_type, severity, description, now, status)

    # --- internals ----------------------------------------------------------------------------

    def _cloud_channel(self, token: str, phone_number_id: str) -> ChannelState:
        """The token's channel as a Cloud API number, if `phone_number_id` is its number and it may send."""
        channel = self._known(token)
        if channel.spec.digits != phone_number_id:
            raise SimError(400, "Unsupported post request", f"object {phone_number_id} does not exist")
        self._authorised(token)
        self.cloud.join(channel)
        return channel

    def _recipient(self, to: object) -> str:
        """The digits of a personal recipient; SimError 400 for anything else."""
        if not isinstance(to, str) or not to.strip():
            raise SimError(400, "Bad request", "'to' is required: a phone number or chat id")
        if to.strip().endswith("@g.us") or to.strip().endswith("@newsletter"):
            raise SimError(400, "Bad request", "the simulator supports personal chats only")
        try:
            return phone_digits(to)
        except ValueError:
            raise SimError(
                400, "Bad request", f"'to' is not a valid phone number or chat id: {to!r}"
            ) from None

    def _check_body_and_recipient(self, channel: ChannelState, to: str, body: str) -> None:
        """Length, forbidden recipients and the trial limit: refusals both APIs share."""
        if len(body) > self.behaviour.max_body_chars:
            raise SimError(
                413, "Request entity too large", f"text longer than {self.behaviour.max_body_chars}"
            )
        spec = channel.spec
        if to in self.behaviour.forbidden or to in spec.forbidden:
            raise SimError(403, "Forbidden", "it is forbidden to send to this recipient")
        if spec.trial_limit is not None and channel.sent_total >= spec.trial_limit:
            raise SimError(402, "Payment required", "trial version limit exceeded")

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
        deliver: bool = True,
    ) -> dict[str, Any]:
        """Record an accepted send; unless `deliver` is False (it fails instead), schedule what follows."""
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
            status="sent" if deliver else "failed",
            from_name=spec.name,
        )
        channel.record_send(message, stranger)
        record = SendRecord(seq, spec.phone, f"+{to}", body, typing_time, now, message.id, peer)
        self._sends.append(record)
        if deliver:
            self._recipients.schedule(channel, message, self._by_digits[to] if peer else None)
        return {"sent": True, "message": message.to_whapi()}
