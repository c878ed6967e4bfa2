"""The simulator's Meta Cloud API side: portfolios and messaging limits, quality, status, templates, webhooks.

Pure like the model (every method takes `now`); `model.SimModel` owns one `CloudSide` and calls it for the
Cloud API operations. What it models, as Meta documents it:

- **Portfolios and messaging limits.** A Cloud API number belongs to a business portfolio (`ChannelSpec.
  portfolio`, tiers in `CloudConfig.portfolios`); a number without one is its own portfolio at
  `default_tier`. The limit counts UNIQUE users reached by business-initiated messages (sends to a user
  outside their customer-service window) in a MOVING 24 h, shared by every number of the portfolio. A
  business-initiated send to a new user once the portfolio is full is refused with 131048 (the answer
  Meta documents for sends over the messaging limit); every accepted business-initiated send goes into
  the limit log (`LimitRecord`).
- **Customer-service window.** Free-form text only to a user who messaged this number in the last 24 h;
  outside it, 131047 (a template opens the conversation instead).
- **Quality** over the channel's trailing window (`Thresholds.response_window`, 7 days), from at least
  `quality_min_sends` sends: blocks/sends `>= red_blocks` -> RED; `>= yellow_blocks`, or replies/sends
  (sends older than `reply_grace`) under `low_replies` -> YELLOW; else GREEN. While RED, at most
  `spam_per_hour` business-initiated sends per number per moving hour (then 131048).
- **Status**: BANNED / DISCONNECTED from the channel, then an admin override, then RESTRICTED while the
  portfolio's limit is used up, FLAGGED once quality has been RED for `flag_after`, else CONNECTED.
- **Tiers** move along the v23 ladder (TIER_50 .. TIER_UNLIMITED; TIER_2K only when configured). Every
  `upgrade_every`, a portfolio that used half its limit in some moving 24 h of the last 7 days goes up
  one step when none of its numbers is RED or FLAGGED (else an `account_alerts` deferral); a number
  FLAGGED for `downgrade_after` takes its portfolio one step down.
- **Webhooks** in Meta's `whatsapp_business_account` format, signed `X-Hub-Signature-256` with the app
  secret, to one configured URL: `messages` (inbound messages, statuses sent/delivered/read/failed),
  `phone_number_quality_update` (FLAGGED when quality or status worsens, UNFLAGGED when it recovers,
  UPGRADE/DOWNGRADE with `old_limit`), `business_capability_update` and `account_alerts`.
- **Throughput**: more than `throughput` sends per number in a moving second -> 130429. **Ecosystem
  protection**: a MARKETING template to a user who already got `marketing_per_user` marketing templates
  in 24 h is accepted and then fails with 131049 in its status webhook (Meta reports it that way).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from warmup.core.plan.values import human_duration
from warmup.simulator.channels import ChannelState, ChannelStatus, MetaError, SimMessage, Thresholds
from warmup.simulator.webhooks import WebhookPost

TIER_LIMITS: dict[str, int | None] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1000,
    "TIER_2K": 2000,
    "TIER_10K": 10000,
    "TIER_100K": 100000,
    "TIER_UNLIMITED": None,
}
LADDER: tuple[str, ...] = ("TIER_50", "TIER_250", "TIER_1K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED")
"""The v23 spec's `messaging_limit_tier` enum, in order: where automatic upgrades and downgrades go."""
QUALITIES: tuple[str, ...] = ("GREEN", "YELLOW", "RED", "NA")
QUALITY_RANK: dict[str, int] = {"GREEN": 0, "NA": 0, "YELLOW": 1, "RED": 2}
OVERRIDE_STATUSES: tuple[str, ...] = ("CONNECTED", "FLAGGED", "RESTRICTED")
TEMPLATE_CATEGORIES: tuple[str, ...] = ("MARKETING", "UTILITY", "AUTHENTICATION")
ALERT_SEVERITIES: tuple[str, ...] = ("CRITICAL", "WARNING", "INFORMATIONAL")
WINDOW = timedelta(hours=24)  # both the customer-service window and the messaging-limit window
UPGRADE_EVIDENCE = timedelta(days=7)
DEFAULT_FIELDS: tuple[str, ...] = ("id", "display_phone_number", "verified_name", "quality_rating")
ECOSYSTEM_TITLE = "This message was not delivered to maintain healthy ecosystem engagement."


def tier_limit(tier: str) -> int | None:
    """Unique users per moving 24 h of a tier (None: unlimited); ValueError for an unknown tier."""
    if tier not in TIER_LIMITS:
        raise ValueError(f"unknown messaging limit tier {tier!r}; known: {', '.join(TIER_LIMITS)}")
    return TIER_LIMITS[tier]


def _rank(tier: str) -> float:
    limit = tier_limit(tier)
    return float("inf") if limit is None else float(limit)


def tier_above(tier: str) -> str | None:
    return next((t for t in LADDER if _rank(t) > _rank(tier)), None)


def tier_below(tier: str) -> str | None:
    return next((t for t in reversed(LADDER) if _rank(t) < _rank(tier)), None)


def _legacy_limit(tier: str) -> int:
    """`max_daily_conversation_per_phone`: the limit as a number, -1 for unlimited."""
    limit = tier_limit(tier)
    return -1 if limit is None else limit


def _trim(times: deque[datetime], horizon: datetime) -> None:
    """Drop the times at or before `horizon` from an ordered deque."""
    while times and times[0] <= horizon:
        times.popleft()


def _numeric_id(name: str, salt: str) -> str:
    """A stable 15-digit Graph id for a simulated object (a portfolio's WABA or business)."""
    value = int(hashlib.sha256(f"{salt}|{name}".encode()).hexdigest()[:13], 16)
    return str(10**14 + value % (9 * 10**14))


@dataclass(frozen=True)
class Template:
    """An approved message template: sends naming another name or language answer 132001."""

    name: str
    language: str
    category: str = "UTILITY"

    def __post_init__(self) -> None:
        if not self.name or not self.language:
            raise ValueError("a template needs a name and a language code")
        if self.category not in TEMPLATE_CATEGORIES:
            raise ValueError(f"template category must be one of {', '.join(TEMPLATE_CATEGORIES)}")

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "language": self.language, "category": self.category}


@dataclass(frozen=True)
class CloudConfig:
    """The Cloud API side's settings (portfolio tiers, templates, webhook, and the rules' numbers)."""

    portfolios: Mapping[str, str] = field(default_factory=dict)  # portfolio name -> tier
    default_tier: str = "TIER_250"  # Meta's tier for a new portfolio; also for lone numbers
    templates: tuple[Template, ...] = (Template("hello_world", "en_US"),)
    webhook_url: str | None = None
    app_secret: str | None = field(default=None, repr=False)
    quality_min_sends: int = 5
    reply_grace: timedelta = timedelta(hours=1)
    yellow_blocks: float = 0.02
    red_blocks: float = 0.06
    low_replies: float = 0.05
    flag_after: timedelta = timedelta(hours=1)
    downgrade_after: timedelta = timedelta(days=7)
    auto_upgrade: bool = True
    upgrade_every: timedelta = timedelta(hours=6)
    spam_per_hour: int = 10
    throughput: int | None = 80  # messages per second per number (Meta's default)
    marketing_per_user: int | None = 1  # marketing templates a user takes per 24 h (None: no limit)
    evaluate_every: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        for name, tier in self.portfolios.items():
            if not name:
                raise ValueError("a portfolio needs a name")
            tier_limit(tier)
        tier_limit(self.default_tier)
        if not 0 <= self.yellow_blocks <= self.red_blocks <= 1 or not 0 <= self.low_replies <= 1:
            raise ValueError("quality shares must satisfy 0 <= yellow_blocks <= red_blocks <= 1")
        if self.webhook_url is not None:
            check_webhook(self.webhook_url, self.app_secret)


def check_webhook(url: str, app_secret: str | None) -> None:
    """ValueError unless `url` is http(s) and an app secret signs the posts."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the Cloud API webhook URL must be http(s), got {url!r}")
    if not app_secret:
        raise ValueError("the Cloud API webhook needs the app secret that signs it (X-Hub-Signature-256)")


@dataclass(frozen=True)
class LimitRecord:
    """One accepted business-initiated send, as the messaging limit counted it: the tests' ground truth."""

    seq: int
    at: datetime
    portfolio: str
    channel: str  # sender, E.164
    to: str  # recipient, E.164
    message_id: str
    tier: str
    limit: int | None
    used: int  # unique users of the portfolio in the moving 24 h, this send included

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "portfolio": self.portfolio,
            "channel": self.channel,
            "to": self.to,
            "message_id": self.message_id,
            "tier": self.tier,
            "limit": self.limit,
            "used": self.used,
        }


@dataclass
class Portfolio:
    """A business portfolio: its tier and the unique users its numbers reached in the moving 24 h."""

    name: str
    tier: str
    sends: deque[tuple[datetime, str]] = field(default_factory=deque)  # (when, user digits), in order
    last_seen: dict[str, datetime] = field(default_factory=dict)  # user digits -> last counted send
    half_used_at: datetime | None = None  # last time the portfolio used at least half its limit
    checked_at: datetime | None = None  # last automatic-upgrade check
    deferral_alerted: bool = False

    @property
    def limit(self) -> int | None:
        return tier_limit(self.tier)

    @property
    def waba_id(self) -> str:
        return _numeric_id(self.name, "waba")

    @property
    def business_id(self) -> str:
        return _numeric_id(self.name, "business")

    def prune(self, now: datetime) -> None:
        horizon = now - WINDOW
        while self.sends and self.sends[0][0] <= horizon:
            at, user = self.sends.popleft()
            if self.last_seen.get(user) == at:
                del self.last_seen[user]

    def used(self, now: datetime) -> int:
        self.prune(now)
        return len(self.last_seen)

    def full(self, now: datetime) -> bool:
        limit = self.limit
        return limit is not None and self.used(now) >= limit

    def count(self, user: str, now: datetime) -> int:
        """Count a send to `user` (once per moving 24 h); the portfolio's use afterwards."""
        self.sends.append((now, user))
        self.last_seen[user] = now
        used = len(self.last_seen)
        limit = self.limit
        if limit is not None and used * 2 >= limit:
            self.half_used_at = now
        return used


@dataclass
class CloudNumber:
    """What the Cloud API side keeps about one number: portfolio, announced quality/status, overrides."""

    digits: str
    portfolio: str
    quality: str = "GREEN"  # as last announced
    flagged: bool = False  # status FLAGGED as last announced
    red_since: datetime | None = None
    flagged_since: datetime | None = None
    quality_override: str | None = None
    status_override: str | None = None
    business_sends: deque[datetime] = field(default_factory=deque)  # moving hour (spam limit)
    recent_sends: deque[datetime] = field(default_factory=deque)  # moving second (throughput)
    checked_at: datetime | None = None
    dirty: bool = True


@dataclass(frozen=True)
class SendPlan:
    """What `CloudSide.check_send` decided for an acceptable send."""

    business_initiated: bool
    dropped: bool  # accepted, then not delivered (131049)


class CloudSide:
    """Portfolios, numbers, templates, the limit log and the webhook posts they cause."""

    def __init__(
        self, config: CloudConfig, thresholds: Thresholds, channels: Mapping[str, ChannelState]
    ) -> None:
        self.config = config
        self.thresholds = thresholds
        self._channels = channels  # the model's channels by digits (a live view)
        self.portfolios: dict[str, Portfolio] = {
            name: Portfolio(name, tier) for name, tier in config.portfolios.items()
        }
        self.numbers: dict[str, CloudNumber] = {}
        self.templates: dict[tuple[str, str], Template] = {}
        self.set_templates(config.templates)
        self.webhook_url = config.webhook_url
        self._secret = config.app_secret
        self.limit_log: list[LimitRecord] = []
        self.notices: list[dict[str, Any]] = []  # account-level webhooks produced, for the admin API
        self._marketing: dict[str, deque[datetime]] = {}  # user digits -> marketing templates delivered
        self._outbox: list[WebhookPost] = []

    # --- configuration ---------------------------------------------------------------------------

    def set_webhook(self, url: str | None, app_secret: str | None) -> None:
        if url is not None:
            check_webhook(url, app_secret or self._secret)
        self.webhook_url = url
        if app_secret:
            self._secret = app_secret

    def webhook_state(self) -> dict[str, Any]:
        return {"url": self.webhook_url, "app_secret_set": bool(self._secret)}

    def set_templates(self, templates: Iterable[Template]) -> None:
        self.templates = {(t.name, t.language): t for t in templates}

    def join(self, channel: ChannelState) -> CloudNumber:
        """The channel's Cloud API state, created on its first Cloud API use (or declaration)."""
        digits = channel.spec.digits
        number = self.numbers.get(digits)
        if number is None:
            name = channel.spec.portfolio or channel.spec.phone
            self._portfolio(name)
            number = self.numbers[digits] = CloudNumber(digits, name)
        return number

    def move(self, channel: ChannelState, portfolio: str) -> None:
        """Put a number into another portfolio (created at the default tier if unknown)."""
        if not portfolio:
            raise ValueError("a portfolio needs a name")
        number = self.join(channel)
        self._portfolio(portfolio)
        number.portfolio = portfolio
        number.dirty = True

    def override(self, channel: ChannelState, *, quality: str | None, status: str | None) -> None:
        """Set (or clear, with None) the quality rating or status the number shows, as an operator would."""
        if quality is not None and quality not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)} or null")
        if status is not None and status not in OVERRIDE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(OVERRIDE_STATUSES)} or null")
        number = self.join(channel)
        number.quality_override = quality
        number.status_override = status
        number.dirty = True

    # --- reading the number ----------------------------------------------------------------------

    def quality_of(self, channel: ChannelState, now: datetime) -> str:
        """The rating from the channel's recent sends, replies and blocks (see the module docstring)."""
        number = self.join(channel)
        if number.quality_override is not None:
            return number.quality_override
        c = self.config
        channel.prune(self.thresholds, now)
        sends = channel.recent_sends
        if len(sends) < c.quality_min_sends:
            return "GREEN"
        if len(channel.recent_blocks) / len(sends) >= c.red_blocks:
            return "RED"
        judged = bisect.bisect_right(sends, now - c.reply_grace)  # sends old enough to have been answered
        ignored = judged >= c.quality_min_sends and len(channel.recent_replies) / judged < c.low_replies
        if len(channel.recent_blocks) / len(sends) >= c.yellow_blocks or ignored:
            return "YELLOW"
        return "GREEN"

    def status_of(self, channel: ChannelState, now: datetime) -> str:
        number = self.join(channel)
        if channel.status is ChannelStatus.BANNED:
            return "BANNED"
        if channel.status is ChannelStatus.LOGGED_OUT:
            return "DISCONNECTED"
        if number.status_override is not None:
            return number.status_override
        if self.portfolio_of(number).full(now):
            return "RESTRICTED"
        return "FLAGGED" if self._flagged(number, now) else "CONNECTED"

    def _flagged(self, number: CloudNumber, now: datetime) -> bool:
        """FLAGGED by an override or by quality RED for `flag_after` (a full portfolio's RESTRICTED, which
        the status shows first, does not hide it)."""
        if number.status_override is not None:
            return number.status_override == "FLAGGED"
        return number.red_since is not None and now - number.red_since >= self.config.flag_after

    def portfolio_of(self, number: CloudNumber) -> Portfolio:
        return self.portfolios[number.portfolio]

    def phone_fields(self, channel: ChannelState, now: datetime) -> dict[str, Any]:
        """Every field `GET /{phone-number-id}` can answer (the route picks the requested ones)."""
        self.refresh(channel, now, force=True)
        number = self.join(channel)
        tier = self.portfolio_of(number).tier
        return {
            "id": channel.spec.digits,
            "display_phone_number": channel.spec.phone,
            "verified_name": channel.spec.name or channel.spec.phone,
            "quality_rating": number.quality,
            "status": self.status_of(channel, now),
            "messaging_limit_tier": tier,
            "whatsapp_business_manager_messaging_limit": tier,
            "code_verification_status": "VERIFIED",
            "name_status": "APPROVED",
            "account_mode": "LIVE",
            "is_official_business_account": False,
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
        }

    def state(self, channel: ChannelState, now: datetime) -> dict[str, Any]:
        """The admin view of a number (its quality and status computed as of `now`)."""
        self.refresh(channel, now, force=True)
        number = self.join(channel)
        portfolio = self.portfolio_of(number)
        return {
            "portfolio": portfolio.name,
            "tier": portfolio.tier,
            "quality_rating": number.quality,
            "status": self.status_of(channel, now),
            "quality_override": number.quality_override,
            "status_override": number.status_override,
            "red_since": number.red_since.isoformat() if number.red_since else None,
            "blocks": len(channel.recent_blocks),
            "open_windows": sum(1 for at in channel.last_inbound.values() if now - at < WINDOW),
        }

    def portfolio_state(self, portfolio: Portfolio, now: datetime) -> dict[str, Any]:
        return {
            "name": portfolio.name,
            "tier": portfolio.tier,
            "limit": portfolio.limit,
            "used": portfolio.used(now),
            "numbers": sorted(f"+{n.digits}" for n in self.numbers.values() if n.portfolio == portfolio.name),
            "waba_id": portfolio.waba_id,
            "business_id": portfolio.business_id,
        }

    # --- sending ---------------------------------------------------------------------------------

    def check_template(self, name: str, language: str) -> Template:
        template = self.templates.get((name, language))
        if template is None:
            known = sorted(f"{n}/{lang}" for n, lang in self.templates)
            raise MetaError(
                404,
                132001,
                "Template name does not exist in the translation",
                f"template name ({name}) does not exist in {language}; "
                f"approved: {', '.join(known) or 'none'}",
            )
        return template

    def check_send(
        self, channel: ChannelState, to: str, template: Template | None, now: datetime
    ) -> SendPlan:
        """Refuse a send Meta would refuse (MetaError); else say how it counts (nothing is counted yet)."""
        c = self.config
        number = self.join(channel)
        if c.throughput is not None:
            _trim(number.recent_sends, now - timedelta(seconds=1))
            if len(number.recent_sends) >= c.throughput:
                raise MetaError(
                    429, 130429, "Rate limit hit", f"more than {c.throughput} messages per second", 1
                )
        last = channel.last_inbound.get(to)
        in_window = last is not None and now - last < WINDOW
        if template is None and not in_window:
            raise MetaError(
                400,
                131047,
                "Re-engagement message",
                "Message failed to send because more than 24 hours have passed since the customer last "
                "replied to this number.",
            )
        if in_window:
            return SendPlan(business_initiated=False, dropped=False)
        if number.status_override == "RESTRICTED":
            raise MetaError(
                400,
                368,
                "Temporarily blocked for policies violations",
                "the number is restricted: it may only answer users inside their customer-service window",
            )
        self.refresh(channel, now)
        if number.quality == "RED":
            _trim(number.business_sends, now - timedelta(hours=1))
            if len(number.business_sends) >= c.spam_per_hour:
                raise MetaError(
                    400,
                    131048,
                    "Spam rate limit hit",
                    f"quality rating RED: at most {c.spam_per_hour} business-initiated messages per hour "
                    "from this number until its quality improves",
                )
        portfolio = self.portfolio_of(number)
        portfolio.prune(now)
        if to not in portfolio.last_seen and portfolio.full(now):
            raise MetaError(
                400,
                131048,
                "Spam rate limit hit",
                f"messaging limit reached: portfolio {portfolio.name!r} ({portfolio.tier}) already reached "
                f"{portfolio.limit} unique users in the last 24 hours",
            )
        dropped = False
        if template is not None and template.category == "MARKETING" and c.marketing_per_user is not None:
            received = self._marketing.get(to)
            if received is not None:
                _trim(received, now - WINDOW)
            dropped = received is not None and len(received) >= c.marketing_per_user
        return SendPlan(business_initiated=True, dropped=dropped)

    def record_send(
        self,
        channel: ChannelState,
        to: str,
        message_id: str,
        seq: int,
        template: Template | None,
        plan: SendPlan,
        now: datetime,
    ) -> None:
        """Count an accepted send: throughput, the limit (and its log), marketing, and its status webhook."""
        number = self.join(channel)
        if self.config.throughput is not None:
            _trim(number.recent_sends, now - timedelta(seconds=1))
            number.recent_sends.append(now)
        number.dirty = True
        if plan.dropped:
            details = "the user already received the marketing messages they take in 24 hours"
            error = {
                "code": 131049,
                "title": ECOSYSTEM_TITLE,
                "message": ECOSYSTEM_TITLE,
                "error_data": {"details": details},
            }
            self._status_post(channel, [self._status(message_id, "failed", to, now, [error])])
            return
        if plan.business_initiated:
            portfolio = self.portfolio_of(number)
            used = portfolio.count(to, now)
            _trim(number.business_sends, now - timedelta(hours=1))
            number.business_sends.append(now)
            record = LimitRecord(
                seq,
                now,
                portfolio.name,
                channel.spec.phone,
                f"+{to}",
                message_id,
                portfolio.tier,
                portfolio.limit,
                used,
            )
            self.limit_log.append(record)
            if template is not None and template.category == "MARKETING":
                received = self._marketing.setdefault(to, deque())
                _trim(received, now - WINDOW)
                received.append(now)
        self._status_post(channel, [self._status(message_id, "sent", to, now)])

    # --- time ------------------------------------------------------------------------------------

    def tick(self, now: datetime) -> None:
        """Re-evaluate numbers that changed or are due, and the portfolios' automatic upgrades."""
        for digits in list(self.numbers):
            channel = self._channels.get(digits)
            if channel is not None:
                self.refresh(channel, now)
        if self.config.auto_upgrade:
            for portfolio in list(self.portfolios.values()):
                self._consider_upgrade(portfolio, now)

    def refresh(self, channel: ChannelState, now: datetime, force: bool = False) -> None:
        """Recompute quality and status; announce changes (`phone_number_quality_update`)."""
        number = self.join(channel)
        if (
            not force
            and not number.dirty
            and number.checked_at is not None
            and now - number.checked_at < self.config.evaluate_every
        ):
            return
        number.checked_at, number.dirty = now, False
        quality = self.quality_of(channel, now)
        number.red_since = (number.red_since or now) if quality == "RED" else None
        flagged = self._flagged(number, now)
        worse = QUALITY_RANK[quality] > QUALITY_RANK[number.quality] or (flagged and not number.flagged)
        better = QUALITY_RANK[quality] < QUALITY_RANK[number.quality] or (number.flagged and not flagged)
        number.quality, number.flagged = quality, flagged
        if worse or better:
            self._quality_update(channel, number, "FLAGGED" if worse else "UNFLAGGED", None, now)
        number.flagged_since = (number.flagged_since or now) if flagged else None
        since = number.flagged_since
        if flagged and since is not None and now - since >= self.config.downgrade_after:
            portfolio = self.portfolio_of(number)
            lower = tier_below(portfolio.tier)
            number.flagged_since = now
            if lower is not None:
                self.set_tier(portfolio.name, lower, now)

    def set_tier(self, name: str, tier: str, now: datetime) -> Portfolio:
        """Change a portfolio's tier (creating it if unknown) and announce it to every number in it."""
        tier_limit(tier)
        portfolio = self._portfolio(name)
        old = portfolio.tier
        if old == tier:
            return portfolio
        portfolio.tier = tier
        portfolio.half_used_at = None
        portfolio.deferral_alerted = False
        event = "UPGRADE" if _rank(tier) > _rank(old) else "DOWNGRADE"
        capability: dict[str, Any] = {
            "max_daily_conversation_per_phone": _legacy_limit(tier),
            "max_daily_conversations_per_business": tier,
        }
        if tier_limit(tier) == 250:
            capability["max_phone_numbers_per_business"] = 2
        else:
            capability["max_phone_numbers_per_waba"] = 25
        self._account_post(portfolio, "business_capability_update", capability, now)
        for number in self.numbers.values():
            if number.portfolio == name:
                number.dirty = True
                member = self._channels.get(number.digits)
                if member is not None:
                    self._quality_update(member, number, event, old, now)
        return portfolio

    def alert(
        self,
        portfolio: Portfolio,
        entity: tuple[str, str],
        alert_type: str,
        severity: str,
        description: str,
        now: datetime,
        status: str = "ACTIVE",
    ) -> None:
        """Post an `account_alerts` webhook about a business or a phone number (entity type, id)."""
        if severity not in ALERT_SEVERITIES:
            raise ValueError(f"alert severity must be one of {', '.join(ALERT_SEVERITIES)}")
        if status not in ("ACTIVE", "NONE"):
            raise ValueError("alert status must be ACTIVE or NONE")
        if not alert_type or not description:
            raise ValueError("an alert needs a type and a description")
        value = {
            "entity_type": entity[0],
            "entity_id": entity[1],
            "alert_info": {
                "alert_severity": severity,
                "alert_status": status,
                "alert_type": alert_type,
                "alert_description": description,
            },
        }
        self._account_post(portfolio, "account_alerts", value, now)

    # --- webhooks --------------------------------------------------------------------------------

    def take_posts(self) -> list[WebhookPost]:
        posts, self._outbox = self._outbox, []
        return posts

    def message_posts(self, channel: ChannelState, inbound: list[SimMessage]) -> None:
        """Inbound messages of a Cloud API number, as one `messages` webhook (with their senders)."""
        contacts: dict[str, dict[str, Any]] = {}
        for message in inbound:
            sender = message.from_digits
            name = message.from_name or f"Contact {sender[-4:]}"
            contacts.setdefault(sender, {"profile": {"name": name}, "wa_id": sender})
        value = {"contacts": list(contacts.values()), "messages": [m.to_cloud() for m in inbound]}
        self._messages_post(channel, value)

    def status_posts(self, channel: ChannelState, statuses: list[dict[str, Any]]) -> None:
        self._status_post(channel, statuses)

    @staticmethod
    def _status(
        message_id: str, status: str, to: str, at: datetime, errors: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": message_id,
            "status": status,
            "timestamp": str(int(at.timestamp())),
            "recipient_id": to,
        }
        if errors:
            item["errors"] = errors
        return item

    def _status_post(self, channel: ChannelState, statuses: list[dict[str, Any]]) -> None:
        self._messages_post(channel, {"statuses": statuses})

    def _messages_post(self, channel: ChannelState, value: dict[str, Any]) -> None:
        number = self.join(channel)
        change = {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": channel.spec.digits,
                    "phone_number_id": channel.spec.digits,
                },
                **value,
            },
        }
        entry = {"id": self.portfolio_of(number).waba_id, "changes": [change]}
        self._post({"object": "whatsapp_business_account", "entry": [entry]})

    def _quality_update(
        self, channel: ChannelState, number: CloudNumber, event: str, old_tier: str | None, now: datetime
    ) -> None:
        portfolio = self.portfolio_of(number)
        value: dict[str, Any] = {"display_phone_number": channel.spec.digits, "event": event}
        if old_tier is not None:
            value["old_limit"] = old_tier
        value["current_limit"] = portfolio.tier
        value["max_daily_conversations_per_business"] = portfolio.tier
        self._account_post(portfolio, "phone_number_quality_update", value, now)

    def _account_post(self, portfolio: Portfolio, kind: str, value: dict[str, Any], now: datetime) -> None:
        self.notices.append(
            {"at": now.isoformat(), "field": kind, "portfolio": portfolio.name, "value": value}
        )
        entry = {
            "id": portfolio.waba_id,
            "time": int(now.timestamp()),
            "changes": [{"value": value, "field": kind}],
        }
        self._post({"entry": [entry], "object": "whatsapp_business_account"})

    def _post(self, payload: dict[str, Any]) -> None:
        if self.webhook_url is None or not self._secret:
            return
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        signature = hmac.new(self._secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"}
        self._outbox.append(WebhookPost(self.webhook_url, headers, payload, body))

    # --- internals -------------------------------------------------------------------------------

    def _portfolio(self, name: str) -> Portfolio:
        portfolio = self.portfolios.get(name)
        if portfolio is None:
            tier = self.config.portfolios.get(name, self.config.default_tier)
            portfolio = self.portfolios[name] = Portfolio(name, tier)
        return portfolio

    def _consider_upgrade(self, portfolio: Portfolio, now: datetime) -> None:
        """Meta's automatic scaling: half the limit used in the last 7 days and good quality -> one up."""
        if portfolio.checked_at is not None and now - portfolio.checked_at < self.config.upgrade_every:
            return
        portfolio.checked_at = now
        higher = tier_above(portfolio.tier)
        if (
            higher is None
            or portfolio.half_used_at is None
            or now - portfolio.half_used_at > UPGRADE_EVIDENCE
        ):
            return
        members = [n for n in self.numbers.values() if n.portfolio == portfolio.name]
        if any(n.quality == "RED" or n.flagged for n in members):
            if not portfolio.deferral_alerted:
                portfolio.deferral_alerted = True
                self.alert(
                    portfolio,
                    ("BUSINESS", portfolio.business_id),
                    "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED",
                    "WARNING",
                    f"Limits cannot be increased for your business {portfolio.name}: message quality is too "
                    f"low. Use WhatsApp Business platform actively for several days and follow our messaging "
                    f"policies (next check in {human_duration(self.config.upgrade_every)}).",
                    now,
                )
            return
        self.set_tier(portfolio.name, higher, now)
