"""warmup.core.portfolio: which tier a portfolio has and where it comes from, and how planning caps a
portfolio number's day by what its portfolio has left."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmup.core.domain import Action, Decision, Reading, Reason
from warmup.core.plan.fields import TIERS
from warmup.core.portfolio import (
    NEW_PORTFOLIO_TIER,
    TIER_LIMITS,
    PortfolioUse,
    Tier,
    TierSource,
    cap_by_portfolio,
    normalize_tier,
    tier_of,
    with_reading,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _decision(quota: int, action: Action = Action.ADVANCE, plan_day: int = 5) -> Decision:
    return Decision(
        local_date=date(2026, 11, 23),
        plan_day=plan_day,
        next_plan_day=plan_day + 1 if action is Action.ADVANCE else plan_day,
        action=action,
        quota=quota,
        plan_volume=quota,
        max_new_contacts=10,
        reasons=(Reason("ramp", action, f"plan day {plan_day}: plan volume {quota}"),),
    )


def _use(used: int, tier: str = "TIER_250", source: TierSource = TierSource.FLEET) -> PortfolioUse:
    return PortfolioUse("acme", Tier(tier, source), used)


def _reading(tier: str | None, at: datetime = NOW) -> Reading:
    return Reading(3, 3, 3, 3, at, source="cloud_api", tier=tier)


def test_every_tier_a_plan_may_name_has_a_limit_smallest_first() -> None:
    assert tuple(TIER_LIMITS) == TIERS
    limits = [limit for limit in TIER_LIMITS.values() if limit is not None]
    assert limits == sorted(limits) and TIER_LIMITS["TIER_UNLIMITED"] is None
    assert TIER_LIMITS[NEW_PORTFOLIO_TIER] == 250


@pytest.mark.parametrize(
    ("text", "tier"),
    [("TIER_1K", "TIER_1K"), ("1k", "TIER_1K"), (" tier_2k ", "TIER_2K"), ("unlimited", "TIER_UNLIMITED")],
)
def test_tiers_are_read_as_people_and_meta_write_them(text: str, tier: str) -> None:
    assert normalize_tier(text) == tier


@pytest.mark.parametrize("text", [None, "", "TIER_3K", "TIER_", "1000", "TIER_UNKNOWN"])
def test_anything_else_is_not_a_tier(text: str | None) -> None:
    assert normalize_tier(text) is None


def test_the_tier_set_by_hand_wins_then_meta_s_then_the_new_portfolio_s_is_assumed() -> None:
    read_at = NOW - timedelta(hours=3)
    assert tier_of("TIER_1K", "TIER_10K", read_at) == Tier("TIER_1K", TierSource.FLEET)
    assert tier_of(None, "TIER_10K", read_at) == Tier("TIER_10K", TierSource.META, read_at)
    assert tier_of(None, "TIER_WHATEVER", read_at) == Tier(NEW_PORTFOLIO_TIER, TierSource.ASSUMED)
    assert tier_of(None) == Tier(NEW_PORTFOLIO_TIER, TierSource.ASSUMED)
    assert "set in the fleet file" in tier_of("TIER_1K").describe()
    assert "as Meta reported it on 2026-11-23 09:00 UTC" in tier_of(None, "TIER_2K", read_at).describe()
    assert tier_of(None).describe().startswith("TIER_250 assumed: no tier set")
    assert tier_of(None).short == "TIER_250 (assumed)"


def test_a_cap_that_leaves_the_quota_alone_changes_nothing() -> None:
    decision = _decision(40)
    assert cap_by_portfolio(decision, None) is decision
    assert cap_by_portfolio(decision, _use(210)) is decision  # 40 left: exactly enough
    assert cap_by_portfolio(decision, _use(10**6, "TIER_UNLIMITED")) is decision


def test_a_binding_cap_lowers_the_quota_says_why_and_keeps_the_ramp_in_place() -> None:
    capped = cap_by_portfolio(_decision(40), _use(238, "TIER_250", TierSource.ASSUMED))
    assert (capped.quota, capped.action, capped.plan_day, capped.next_plan_day) == (12, Action.CAP, 5, 5)
    assert capped.max_new_contacts == 10
    assert capped.reasons[-1] == Reason(
        "portfolio",
        Action.CAP,
        "portfolio acme: 12 of TIER_250 (assumed) left in the moving 24 h: quota 40 -> 12",
    )
    full = cap_by_portfolio(_decision(40), _use(300))  # over (a tier lowered by hand): nothing left
    assert (full.quota, full.max_new_contacts) == (0, 0)
    held = cap_by_portfolio(_decision(40, Action.HOLD), _use(245))
    assert (held.action, held.quota) == (Action.HOLD, 5)  # the more restrictive action stays


def test_today_s_reading_brings_meta_s_newest_tier_unless_one_is_set_by_hand() -> None:
    older = PortfolioUse("acme", Tier("TIER_250", TierSource.META, NOW - timedelta(days=1)), 240)
    assert with_reading(older, _reading("TIER_1K")).tier == Tier("TIER_1K", TierSource.META, NOW)
    assert cap_by_portfolio(_decision(40), older, _reading("TIER_1K")).quota == 40
    assert cap_by_portfolio(_decision(40), older).quota == 10
    assert with_reading(older, _reading("TIER_1K", NOW - timedelta(days=2))) is older  # older than known
    assert with_reading(older, _reading(None)) is older
    by_hand = _use(240)
    assert with_reading(by_hand, _reading("TIER_1K")) is by_hand


def test_a_full_portfolio_says_when_its_next_slot_frees() -> None:
    use = PortfolioUse("acme", Tier("TIER_250", TierSource.FLEET), 250, NOW + timedelta(hours=5))
    assert use.left == 0
    assert use.describe() == (
        "acme: 250 / 250 unique business-initiated recipients in the moving 24 h "
        "(TIER_250, set in the fleet file); full, the next slot frees at 2026-11-23 17:00 UTC"
    )
    unlimited = PortfolioUse("big", Tier("TIER_UNLIMITED", TierSource.META, NOW), 12_345)
    assert unlimited.left is None and "12,345 / unlimited" in unlimited.describe()


@given(
    quota=st.integers(0, 500),
    used=st.integers(0, 3000),
    tier=st.sampled_from(TIERS),
    action=st.sampled_from(list(Action)),
)
def test_the_capped_quota_is_never_above_what_the_portfolio_or_the_day_allows(
    quota: int, used: int, tier: str, action: Action
) -> None:
    decision = _decision(quota, action)
    use = _use(used, tier)
    capped = cap_by_portfolio(decision, use)
    limit = TIER_LIMITS[tier]
    assert capped.quota == (quota if limit is None else min(quota, max(limit - used, 0)))
    if capped.quota < quota:
        assert capped.action is not Action.ADVANCE and capped.next_plan_day == capped.plan_day
        assert capped.max_new_contacts <= capped.quota
    else:
        assert capped == decision
