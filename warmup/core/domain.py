"""Plain value types shared by the pure core, the store and the workers.

They carry no behaviour and no I/O, so a decision can be rebuilt from stored rows and replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class Action(StrEnum):
    """What the day's decision does to the ramp, from least to most restrictive (see `RESTRICTIVENESS`)."""

    ADVANCE = "advance"  # send the plan's volume; the plan day advances if the day goes well
    CAP = "cap"  # send at most N
    THROTTLE = "throttle"  # send a fraction of the plan's volume
    STEP_BACK = "step_back"  # go back N plan days
    HOLD = "hold"  # send yesterday's volume again; plan day does not advance
    REST = "rest"  # a rest day of the plan: nothing is sent, nothing advances
    PAUSE = "pause"  # nothing is sent until an admin (or an expiring pause) resumes
    STOP = "stop"  # the plan is over (`after: stop`) or the number is retired


RESTRICTIVENESS: dict[Action, int] = {
    Action.ADVANCE: 0,
    Action.CAP: 1,
    Action.THROTTLE: 2,
    Action.STEP_BACK: 3,
    Action.HOLD: 4,
    Action.REST: 5,
    Action.PAUSE: 6,
    Action.STOP: 7,
}


class SkipCause(StrEnum):
    """Why a planned message was not sent: stored with every skip, so a day's shortfall is accounted for
    by cause, not guessed from reason texts."""

    PAUSED = "paused"  # the number was paused (by an admin, a risk rule or the provider) or retired
    QUOTA = "quota"  # the day's quota was reached or cut (a throttle, a quota cut)
    WINDOWS_ENDED = "windows_ended"  # the day's last send window closed before its turn
    DAY_ENDED = "day_ended"  # its local day ended while it was still pending
    RETRIES = "retries"  # the provider kept asking to retry, or the retry fell outside the windows
    PROVIDER = "provider"  # the provider stopped the number, or it could not be reached
    GAVE_WAY = "gave_way"  # an opener made room for a reply to a peer in a full day
    PORTFOLIO = "portfolio_limit"  # its Meta portfolio had no slot left before the day's windows ended
    NO_TEMPLATE = "no_template"  # Cloud API: recipient outside the 24 h window, the pool names no template

    @property
    def label(self) -> str:
        return _SKIP_LABELS[self]


_SKIP_LABELS: dict[SkipCause, str] = {
    SkipCause.PAUSED: "paused",
    SkipCause.QUOTA: "quota cut",
    SkipCause.WINDOWS_ENDED: "windows ended",
    SkipCause.DAY_ENDED: "day ended",
    SkipCause.RETRIES: "provider retries",
    SkipCause.PROVIDER: "provider stop",
    SkipCause.GAVE_WAY: "gave way to a reply",
    SkipCause.PORTFOLIO: "portfolio limit",
    SkipCause.NO_TEMPLATE: "no template (24 h window)",
}


FACTORS: tuple[str, ...] = ("overall", "lifetime", "response_rate", "contacts")
"""The four risk-meter factors, named as plans name them."""

SIGNALS: tuple[str, ...] = ("quality", "status", "tier")
"""What Meta says about a Cloud API number, named as plans name them: quality green | yellow | red,
status connected | flagged | restricted | ..., tier TIER_250 .. TIER_UNLIMITED."""


@dataclass(frozen=True)
class Reading:
    """One risk-meter result: each factor 1 (use caution), 2 (needs attention) or 3 (good)."""

    overall: int
    lifetime: int
    response_rate: int
    contacts: int
    taken_at: datetime  # aware datetime (UTC) of the measurement
    source: str = "local"  # whapi | cloud_api | simulator | local | scenario | webhook
    quality: str | None = None  # Meta quality rating, lower case: green | yellow | red
    status: str | None = None  # Meta number status, lower case: connected | flagged | restricted | ...
    tier: str | None = None  # Meta messaging limit as the spec writes it: TIER_250, TIER_1K, ...
    meter_error: str | None = None  # the provider's meter failed (why); this reading is what was used

    def factor(self, name: str) -> int:
        value: int = getattr(self, name)
        return value

    def signal(self, name: str) -> str | None:
        """One of `SIGNALS`, or None when the provider gave none (every Whapi and local reading)."""
        value: str | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class DayOutcome:
    """What happened on one local day of one number; all zero for a day that sent nothing."""

    planned: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    replies: int = 0


@dataclass(frozen=True)
class NumberState:
    """Where a number stands in its ramp before today's decision."""

    plan_day: int = 1  # the plan day of the last decision (today's, unless `advance_pending` moves it on)
    last_volume: int = 0  # quota of the last sending day
    paused: bool = False
    paused_volume: int | None = None  # last volume before the latest pause, for the resume policy
    resumed_on: date | None = None  # local date the latest pause ended, for the resume policy
    registered: date | None = None
    # The last decision was a sending day that moves the ramp on if it goes well (its next_plan_day >
    # plan_day); `ramp.decide` then checks yesterday's outcome. `ramp.state_after` maintains it.
    advance_pending: bool = False


@dataclass(frozen=True)
class Reason:
    """One rule that fired (or one fact that shaped the quota), in words a person can act on."""

    rule: str  # e.g. "ramp", "rest_day", "risk.rules[2]", "stale_reading", "resume", "schedule"
    action: Action
    text: str
    binding: bool = True  # False: it fired but changed nothing today (e.g. a cap above the plan volume)


@dataclass(frozen=True)
class Decision:
    """The day's verdict for one number: how much, at which plan day, and why."""

    local_date: date
    plan_day: int  # the plan day this decision is for
    next_plan_day: int  # the plan day of the next decision if today goes well
    action: Action
    quota: int
    plan_volume: int  # what the plan alone would have allowed today
    max_new_contacts: int
    reasons: tuple[Reason, ...] = field(default_factory=tuple)
