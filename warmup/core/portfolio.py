"""Meta messaging limits: the Cloud API numbers of one business portfolio share ONE limit of unique
business-initiated recipients in a MOVING 24 h (the portfolio's tier). Pure: times come in as arguments.

The count comes from our own sends (`warmup.store.portfolios` writes one row per business-initiated
send, in the claim's transaction): at an instant t the portfolio has used as many slots as there are
distinct recipients of such a send after t - 24 h. A message is business-initiated unless its
recipient wrote to the sending number in the last 24 h (their customer-service window). Writing again
to a recipient already counted takes no new slot, but is still written down: the recipient then counts
until 24 h after that LATER send, as Meta counts it.

The tier: set by hand in the fleet file wins; else the newest `tier` Meta reported on a reading of one
of the portfolio's numbers; else `NEW_PORTFOLIO_TIER`, the smallest tier Meta gives a new portfolio
(assumed, and every view that shows it says so).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from warmup.core.domain import RESTRICTIVENESS, Action, Decision, Reading, Reason
from warmup.core.plan.fields import TIERS

WINDOW = timedelta(hours=24)
"""How long a business-initiated recipient counts against the portfolio's limit (Meta's moving 24 h)."""

TIER_LIMITS: dict[str, int | None] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
"""Unique business-initiated recipients per moving 24 h of each tier (None: no limit)."""
assert tuple(TIER_LIMITS) == TIERS, "every tier a plan may name has a limit"

NEW_PORTFOLIO_TIER = "TIER_250"
"""What a portfolio with no tier set or read is assumed to have: the smallest tier of a new one."""


def normalize_tier(text: str | None) -> str | None:
    """``1k``, ``tier_1k`` or ``TIER_1K`` -> ``TIER_1K``; None for anything that is not a known tier."""
    if text is None:
        return None
    word = text.strip().upper()
    if not word.startswith("TIER_"):
        word = "TIER_" + word
    return word if word in TIER_LIMITS else None


class TierSource(StrEnum):
    FLEET = "fleet"  # set by hand in the fleet file
    META = "meta"  # the newest tier Meta reported on a reading of one of the portfolio's numbers
    ASSUMED = "assumed"  # neither: `NEW_PORTFOLIO_TIER`


@dataclass(frozen=True)
class Tier:
    """A portfolio's tier and where it comes from."""

    name: str
    source: TierSource
    read_at: datetime | None = None  # when Meta reported it (source META)

    @property
    def limit(self) -> int | None:
        return TIER_LIMITS[self.name]

    @property
    def short(self) -> str:
        """``TIER_1K``, or ``TIER_250 (assumed)`` when nobody said so."""
        return f"{self.name} (assumed)" if self.source is TierSource.ASSUMED else self.name

    def describe(self) -> str:
        """The tier and where it comes from, for people."""
        if self.source is TierSource.FLEET:
            return f"{self.name}, set in the fleet file"
        if self.source is TierSource.META:
            when = f" on {self.read_at:%Y-%m-%d %H:%M} UTC" if self.read_at is not None else ""
            return f"{self.name}, as Meta reported it{when}"
        return f"{self.name} assumed: no tier set in the fleet file or read from Meta yet (a new portfolio's)"


def tier_of(hand: str | None, read: str | None = None, read_at: datetime | None = None) -> Tier:
    """The portfolio's tier: ``hand`` (the fleet file's) wins, then ``read`` (Meta's newest, taken at
    ``read_at``), then `NEW_PORTFOLIO_TIER`. A value that is not a known tier is passed over."""
    if (name := normalize_tier(hand)) is not None:
        return Tier(name, TierSource.FLEET)
    if (name := normalize_tier(read)) is not None:
        return Tier(name, TierSource.META, read_at)
    return Tier(NEW_PORTFOLIO_TIER, TierSource.ASSUMED)


@dataclass(frozen=True)
class PortfolioUse:
    """Where a portfolio stands at one instant: its tier and the recipients counted in the moving 24 h."""

    name: str
    tier: Tier
    used: int  # distinct business-initiated recipients in the moving 24 h
    next_free_at: datetime | None = None  # when a slot frees (None: one is free now, or no limit)

    @property
    def limit(self) -> int | None:
        return self.tier.limit

    @property
    def left(self) -> int | None:
        """Slots left now (None: no limit)."""
        return None if self.limit is None else max(self.limit - self.used, 0)

    def describe(self) -> str:
        """``acme: 180 / 250 unique recipients in the moving 24 h (TIER_250, set in the fleet file)``."""
        limit = "unlimited" if self.limit is None else f"{self.limit:,}"
        full = ""
        if self.next_free_at is not None and self.left == 0:
            full = f"; full, the next slot frees at {self.next_free_at:%Y-%m-%d %H:%M} UTC"
        return (
            f"{self.name}: {self.used:,} / {limit} unique business-initiated recipients in the moving 24 h "
            f"({self.tier.describe()}){full}"
        )


def with_reading(use: PortfolioUse, reading: Reading | None) -> PortfolioUse:
    """``use`` with the tier Meta reported on ``reading`` (one of its numbers', taken after what the
    store had read), unless the tier is set by hand: the day's reading is taken after the store is read."""
    if reading is None or use.tier.source is TierSource.FLEET:
        return use
    name = normalize_tier(reading.tier)
    if name is None or (use.tier.read_at is not None and reading.taken_at <= use.tier.read_at):
        return use
    return replace(use, tier=Tier(name, TierSource.META, reading.taken_at), next_free_at=None)


def cap_by_portfolio(
    decision: Decision, use: PortfolioUse | None, reading: Reading | None = None
) -> Decision:
    """The day's decision with its quota also capped by what the portfolio has left now (unchanged
    when nothing is left out), its tier as ``reading`` reports it if that is Meta's newest word
    (`with_reading`). A binding cap is a CAP: like a risk cap, the day does not move the ramp on (the
    number does not send its plan's volume)."""
    if use is not None:
        use = with_reading(use, reading)
    left = use.left if use is not None else None
    if use is None or left is None or left >= decision.quota:
        return decision
    text = (
        f"portfolio {use.name}: {left:,} of {use.tier.short} left in the moving 24 h: "
        f"quota {decision.quota} -> {left}"
    )
    action = max(decision.action, Action.CAP, key=RESTRICTIVENESS.__getitem__)
    return replace(
        decision,
        action=action,
        quota=left,
        next_plan_day=decision.plan_day if action is not Action.ADVANCE else decision.next_plan_day,
        max_new_contacts=min(decision.max_new_contacts, left),
        reasons=(*decision.reasons, Reason("portfolio", Action.CAP, text)),
    )
