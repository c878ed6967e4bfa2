"""Risk rules, staleness and the local risk meter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.core.domain import FACTORS, Reading
from warmup.core.plan.model import Condition, Plan
from warmup.core.risk import (
    condition_matches,
    describe_match,
    is_stale,
    lifetime_level,
    local_reading,
    matching_rules,
    overall_level,
    reading_age,
)

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
LEVELS = st.integers(min_value=1, max_value=3)


def reading(
    overall: int = 3, lifetime: int = 3, response_rate: int = 3, contacts: int = 3, **kw: Any
) -> Reading:
    return Reading(overall, lifetime, response_rate, contacts, kw.get("taken_at", NOW), "scenario")


def plan_with_rules(rules: list[dict[str, Any]]) -> Plan:
    return Plan.model_validate(
        {
            "name": "rules",
            "schedule": {"windows": [{"days": "daily", "hours": "09:00-18:00"}]},
            "ramp": {"steps": [{"days": "1-10", "volume": "10..100"}]},
            "pacing": {"gap": "40s..6m"},
            "risk": {"rules": rules},
        }
    )


def test_condition_with_one_value_matches_only_that_value() -> None:
    condition = Condition(response_rate=1)
    assert condition_matches(condition, reading(response_rate=1))
    assert not condition_matches(condition, reading(response_rate=2))


def test_condition_with_a_list_matches_any_listed_value() -> None:
    condition = Condition(overall=[1, 2])
    assert condition_matches(condition, reading(overall=1))
    assert condition_matches(condition, reading(overall=2))
    assert not condition_matches(condition, reading(overall=3))


def test_every_named_factor_must_match() -> None:
    condition = Condition(response_rate=1, contacts=[1, 2])
    assert condition_matches(condition, reading(response_rate=1, contacts=2))
    assert not condition_matches(condition, reading(response_rate=1, contacts=3))
    assert not condition_matches(condition, reading(response_rate=2, contacts=1))
    assert describe_match(condition, reading(response_rate=1, contacts=2)) == "response_rate=1, contacts=2"


@given(LEVELS, LEVELS, LEVELS, LEVELS, st.sampled_from(FACTORS), st.sets(LEVELS, min_size=1))
@settings(max_examples=150)
def test_single_factor_condition_matches_iff_the_value_is_listed(
    o: int, li: int, r: int, c: int, factor: str, wanted: set[int]
) -> None:
    value = reading(o, li, r, c)
    condition = Condition.model_validate({factor: sorted(wanted)})
    assert condition_matches(condition, value) == (value.factor(factor) in wanted)


def test_matching_rules_returns_every_match_in_plan_order_with_its_index() -> None:
    plan = plan_with_rules(
        [
            {"when": {"overall": 1}, "do": "pause"},
            {"when": {"lifetime": 1}, "do": {"cap": 50}},
            {"when": {"response_rate": 1}, "do": {"throttle": 0.5}},
            {"when": {"contacts": [1, 2]}, "do": {"max_new_contacts": 3}},
        ]
    )
    matches = matching_rules(plan, reading(overall=2, lifetime=1, response_rate=1, contacts=2))
    assert [m.index for m in matches] == [1, 2, 3]
    assert [m.name for m in matches] == ["risk.rules[1]", "risk.rules[2]", "risk.rules[3]"]
    assert matches[1].matched == "response_rate=1"
    assert matching_rules(plan, reading()) == []


def test_staleness_is_measured_against_now() -> None:
    old = reading(taken_at=NOW - timedelta(hours=37))
    fresh = reading(taken_at=NOW - timedelta(hours=35))
    assert is_stale(old, NOW, timedelta(hours=36))
    assert not is_stale(fresh, NOW, timedelta(hours=36))
    assert reading_age(old, NOW) == timedelta(hours=37)


def test_staleness_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_stale(reading(), NOW.replace(tzinfo=None), timedelta(hours=36))


@pytest.mark.parametrize(("age", "level"), [(-3, 1), (0, 1), (6, 1), (7, 2), (29, 2), (30, 3), (400, 3)])
def test_lifetime_thresholds(age: int, level: int) -> None:
    assert lifetime_level(age) == level


@pytest.mark.parametrize(
    ("sent", "replies", "level"),
    [(0, 0, 3), (100, 30, 3), (100, 29, 2), (100, 10, 2), (100, 9, 1), (10, 0, 1), (10, 25, 3)],
)
def test_response_rate_thresholds(sent: int, replies: int, level: int) -> None:
    got = local_reading(date(2026, 1, 1), date(2026, 11, 23), sent, replies, 0, 0, NOW)
    assert got.response_rate == level


@pytest.mark.parametrize(
    ("recipients", "engaged", "level"),
    [(0, 0, 3), (10, 5, 3), (10, 4, 2), (10, 2, 2), (10, 1, 1), (10, 50, 3)],
)
def test_contacts_thresholds(recipients: int, engaged: int, level: int) -> None:
    got = local_reading(date(2026, 1, 1), date(2026, 11, 23), 0, 0, recipients, engaged, NOW)
    assert got.contacts == level


def test_local_reading_of_a_new_number_that_gets_replies() -> None:
    got = local_reading(date(2026, 11, 20), date(2026, 11, 23), 40, 20, 20, 15, NOW)
    assert (got.lifetime, got.response_rate, got.contacts) == (1, 3, 3)
    assert got.overall == 3  # (2*3 + 3 + 1) / 4 = 2.5 rounds up
    assert got.taken_at == NOW and got.source == "local"


def test_local_reading_of_an_ignored_number_is_overall_1() -> None:
    got = local_reading(date(2026, 11, 20), date(2026, 11, 23), 100, 2, 50, 3, NOW)
    assert (got.lifetime, got.response_rate, got.contacts, got.overall) == (1, 1, 1, 1)


def test_whapi_example_combination_is_reproduced() -> None:
    # Whapi documents lifeTime 1, riskFactorChats 3, riskFactorContacts 2 with riskFactor (overall) 2.
    assert overall_level(lifetime=1, response_rate=3, contacts=2) == 2


def test_local_reading_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="sent_window"):
        local_reading(date(2026, 1, 1), date(2026, 2, 1), -1, 0, 0, 0, NOW)


@given(LEVELS, LEVELS, LEVELS)
def test_overall_stays_within_the_levels_and_between_the_extremes(li: int, r: int, c: int) -> None:
    overall = overall_level(li, r, c)
    assert min(li, r, c) <= overall <= max(li, r, c)


@given(LEVELS, LEVELS, LEVELS, LEVELS)
def test_overall_never_gets_worse_when_one_factor_improves(li: int, r: int, c: int, better: int) -> None:
    base = overall_level(li, r, c)
    assert overall_level(max(li, better), r, c) >= base
    assert overall_level(li, max(r, better), c) >= base
    assert overall_level(li, r, max(c, better)) >= base


@given(
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(-10, 400),
)
@settings(max_examples=150)
def test_local_reading_levels_are_always_1_to_3(
    sent: int, replies: int, rec: int, eng: int, age: int
) -> None:
    today = date(2026, 11, 23)
    got = local_reading(today - timedelta(days=age), today, sent, replies, rec, eng, NOW)
    for factor in FACTORS:
        assert got.factor(factor) in (1, 2, 3)


# --- Meta's signals (quality, status, tier) ------------------------------------------------------------


def meta(quality: str | None = None, status: str | None = None, tier: str | None = None) -> Reading:
    return Reading(3, 3, 3, 3, NOW, "cloud_api", quality=quality, status=status, tier=tier)


def test_signal_conditions_match_the_named_signals() -> None:
    condition = Condition.model_validate({"quality": ["yellow", "red"]})
    assert condition_matches(condition, meta(quality="yellow"))
    assert condition_matches(condition, meta(quality="red", status="flagged"))
    assert not condition_matches(condition, meta(quality="green"))
    both = Condition.model_validate({"status": "flagged", "tier": "TIER_250"})
    assert condition_matches(both, meta(status="flagged", tier="TIER_250"))
    assert not condition_matches(both, meta(status="flagged", tier="TIER_2K"))
    assert describe_match(both, meta(status="flagged", tier="TIER_250")) == "status=flagged, tier=TIER_250"


def test_a_reading_without_signals_never_matches_a_condition_naming_them() -> None:
    """A Whapi or local reading (or a Cloud API one whose read failed) says nothing about quality: the
    Meta rules stay silent rather than fire on a missing value."""
    for condition in ({"quality": ["green", "yellow", "red"]}, {"status": "connected"}, {"tier": "TIER_50"}):
        assert not condition_matches(Condition.model_validate(condition), reading())
    plan = plan_with_rules(
        [{"when": {"quality": "yellow"}, "do": {"throttle": 0.5}}, {"when": {"overall": 3}, "do": "hold"}]
    )
    assert [m.index for m in matching_rules(plan, reading())] == [1]
    assert [m.index for m in matching_rules(plan, meta(quality="yellow"))] == [0, 1]
