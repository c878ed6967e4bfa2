"""Risk readings: which plan rules a reading matches, when a reading is too old, and the local meter.

Pure: no clock, no I/O. Every function takes the time it needs as an argument.

Levels follow Whapi's "Activity Safety Meter": 3 good indicator, 2 needs attention, 1 use caution.

The local risk meter (`local_reading`) stands in when no provider meter is available. Its thresholds:

| factor          | 3 (good)               | 2 (needs attention)       | 1 (use caution)  |
|-----------------|------------------------|---------------------------|------------------|
| lifetime        | number 30+ days old    | 7-29 days old             | under 7 days     |
| response_rate   | replies/sent >= 30 %   | 10 % <= replies/sent < 30 % | under 10 %     |
| contacts        | engaged/recipients >= 50 % | 20 % <= share < 50 %  | under 20 %       |

With nothing sent in the window the response rate is 3 (nothing sent, nothing ignored); with no
recipients the contacts coverage is 3 likewise, so a brand-new number is judged by its age alone.

``overall = round_half_up((2 * response_rate + contacts + lifetime) / 4)``: the response rate counts
double because it is the behaviour a warm-up controls most directly, while a young number's lifetime
only pulls the rating down together with poor engagement (Whapi itself reports lifetime 1 with an
overall 2 for a young number whose chats go well).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from warmup.core.domain import FACTORS, SIGNALS, Reading
from warmup.core.plan.model import Condition, Plan, Rule

LIFETIME_GOOD_DAYS: Final = 30
LIFETIME_ATTENTION_DAYS: Final = 7
RESPONSE_GOOD: Final = 0.30
RESPONSE_ATTENTION: Final = 0.10
CONTACTS_GOOD: Final = 0.50
CONTACTS_ATTENTION: Final = 0.20


@dataclass(frozen=True)
class RuleMatch:
    """One plan rule that matched a reading; `index` is its position in ``risk.rules``."""

    index: int
    rule: Rule
    matched: str  # the factors that matched, e.g. "response_rate=1, contacts=1"

    @property
    def name(self) -> str:
        return f"risk.rules[{self.index}]"


def _wanted(condition: Condition, factor: str) -> list[int] | None:
    value: int | list[int] | None = getattr(condition, factor)
    if value is None:
        return None
    return [value] if isinstance(value, int) else list(value)


def _wanted_signal(condition: Condition, signal: str) -> list[str] | None:
    value: list[str] | None = getattr(condition, signal)
    return value


def condition_matches(condition: Condition, reading: Reading) -> bool:
    """True when every factor the condition names has one of its values (an empty condition matches all).

    A Meta signal (quality, status, tier) the reading does not have never matches.
    """
    for factor in FACTORS:
        wanted = _wanted(condition, factor)
        if wanted is not None and reading.factor(factor) not in wanted:
            return False
    for signal in SIGNALS:
        wanted_signal = _wanted_signal(condition, signal)
        if wanted_signal is not None and reading.signal(signal) not in wanted_signal:
            return False
    return True


def describe_match(condition: Condition, reading: Reading) -> str:
    """The named factors with the reading's values, as a reason shows them: ``response_rate=1``."""
    parts = [
        f"{factor}={reading.factor(factor)}" for factor in FACTORS if _wanted(condition, factor) is not None
    ]
    parts += [
        f"{signal}={reading.signal(signal)}"
        for signal in SIGNALS
        if _wanted_signal(condition, signal) is not None
    ]
    return ", ".join(parts) if parts else "any reading"


def matching_rules(plan: Plan, reading: Reading) -> list[RuleMatch]:
    """Every rule of the plan's risk policy that the reading matches, in plan order (all of them fire)."""
    return [
        RuleMatch(index, rule, describe_match(rule.when, reading))
        for index, rule in enumerate(plan.risk.rules)
        if condition_matches(rule.when, reading)
    ]


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment.isoformat()}")


def reading_age(reading: Reading, now: datetime) -> timedelta:
    """How long ago the reading was taken (negative if it claims to come from the future)."""
    _require_aware(now, "now")
    _require_aware(reading.taken_at, "reading.taken_at")
    return now - reading.taken_at


def is_stale(reading: Reading, now: datetime, stale_after: timedelta) -> bool:
    """A reading older than ``stale_after`` no longer says how the number is doing today."""
    return reading_age(reading, now) > stale_after


def lifetime_level(age_days: int) -> int:
    """Level for a number registered ``age_days`` ago (a date in the future counts as brand new)."""
    if age_days >= LIFETIME_GOOD_DAYS:
        return 3
    if age_days >= LIFETIME_ATTENTION_DAYS:
        return 2
    return 1


def _share_level(part: int, whole: int, good: float, attention: float) -> int:
    if whole == 0:
        return 3
    share = part / whole
    if share >= good:
        return 3
    if share >= attention:
        return 2
    return 1


def response_rate_level(sent: int, replies: int) -> int:
    """Level for replies received against messages sent in the same trailing window."""
    return _share_level(replies, sent, RESPONSE_GOOD, RESPONSE_ATTENTION)


def contacts_level(recipients: int, engaged: int) -> int:
    """Level for the share of recipients that replied or are peers (address-book coverage)."""
    return _share_level(engaged, recipients, CONTACTS_GOOD, CONTACTS_ATTENTION)


def overall_level(lifetime: int, response_rate: int, contacts: int) -> int:
    """Combine the factors: ``round_half_up((2 * response_rate + contacts + lifetime) / 4)``."""
    for name, value in (("lifetime", lifetime), ("response_rate", response_rate), ("contacts", contacts)):
        if value not in (1, 2, 3):
            raise ValueError(f"{name} must be 1, 2 or 3, got {value}")
    total = 2 * response_rate + contacts + lifetime  # 4..12
    return (total + 2) // 4  # round half up of total / 4


def local_reading(
    registered: date,
    today: date,
    sent_window: int,
    replies_window: int,
    recipients: int,
    engaged_recipients: int,
    now: datetime,
) -> Reading:
    """Compute a reading from the number's own history, when no provider meter is available.

    ``sent_window`` / ``replies_window`` are counted over the same trailing window (the caller picks
    it, e.g. seven days); ``recipients`` are the distinct people written to and ``engaged_recipients``
    those of them who replied or are peers of the fleet.
    """
    _require_aware(now, "now")
    counts = {
        "sent_window": sent_window,
        "replies_window": replies_window,
        "recipients": recipients,
        "engaged_recipients": engaged_recipients,
    }
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} cannot be negative, got {value}")
    lifetime = lifetime_level((today - registered).days)
    response_rate = response_rate_level(sent_window, replies_window)
    contacts = contacts_level(recipients, min(engaged_recipients, recipients))
    return Reading(
        overall=overall_level(lifetime, response_rate, contacts),
        lifetime=lifetime,
        response_rate=response_rate,
        contacts=contacts,
        taken_at=now,
        source="local",
    )
