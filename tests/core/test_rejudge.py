"""Re-judging a planned day on a reading that came after its decision (Meta's quality webhooks)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.plan_fixture import RAMP_21D
from warmup.core.domain import RESTRICTIVENESS, Action, Reading
from warmup.core.plan.model import Plan
from warmup.core.rejudge import RULE, DayNow, rejudge

PLAN = Plan.model_validate(RAMP_21D)
AT = datetime(2026, 11, 23, 14, 5, tzinfo=UTC)
DAY = DayNow(Action.ADVANCE, quota=40, plan_day=7, next_plan_day=8, plan_volume=40)


def webhook(**signals: str) -> Reading:
    return Reading(3, 3, 3, 3, AT, "webhook", **signals)


def test_yellow_throttles_the_rest_of_the_day() -> None:
    result = rejudge(PLAN, DAY, webhook(quality="yellow", status="connected"), last_volume=32)
    assert result.changed and not result.pause
    assert (result.action, result.quota, result.next_plan_day) == (Action.THROTTLE, 20, 7)
    assert result.reason.rule == RULE and result.reason.action is Action.THROTTLE
    assert result.reason.text.startswith("quality yellow at 14:05 UTC by webhook: throttled, quota 40 -> 20")
    assert "risk.rules[5] quality=yellow -> throttle 0.5" in result.reason.text


def test_flagged_pauses_and_a_paused_number_stays_as_it_is() -> None:
    result = rejudge(PLAN, DAY, webhook(status="flagged"), last_volume=32)
    assert result.changed and result.pause and result.next_plan_day == 7
    assert result.reason.text.startswith("status flagged at 14:05 UTC by webhook: paused")
    again = rejudge(PLAN, replace(DAY, paused=True), webhook(status="flagged"), last_volume=32)
    assert not again.changed and not again.pause and "paused already" in again.reason.text


def test_restricted_holds_at_the_last_sending_days_volume() -> None:
    result = rejudge(PLAN, DAY, webhook(status="restricted"), last_volume=32)
    assert (result.action, result.quota, result.changed) == (Action.HOLD, 32, True)
    assert "held, quota 40 -> 32" in result.reason.text
    never_sent = rejudge(PLAN, DAY, webhook(status="restricted"), last_volume=0)
    assert (never_sent.action, never_sent.quota) == (Action.HOLD, 40)  # no cut, but no advance either
    assert never_sent.changed and never_sent.next_plan_day == 7 and "quota stays 40" in never_sent.reason.text


def test_nothing_stricter_changes_nothing() -> None:
    throttled = replace(DAY, action=Action.THROTTLE, quota=20, next_plan_day=7)
    same = rejudge(PLAN, throttled, webhook(quality="yellow"), last_volume=32)
    assert not same.changed and (same.action, same.quota) == (Action.THROTTLE, 20)
    assert "no stricter than today's throttle (quota 20)" in same.reason.text
    green = rejudge(PLAN, DAY, webhook(quality="green", status="connected"), last_volume=32)
    assert not green.changed and green.quota == 40 and "no rule matches" in green.reason.text
    assert green.reason.binding is False


def test_a_step_back_moves_the_next_plan_day_back() -> None:
    plan = Plan.model_validate(
        {**RAMP_21D, "risk": {"rules": [{"when": {"tier": "TIER_250"}, "do": {"step_back": 3}}]}}
    )
    result = rejudge(plan, DAY, webhook(tier="TIER_250"), last_volume=32)
    assert (result.action, result.next_plan_day) == (Action.STEP_BACK, 4)
    assert result.quota == 15 and "stepped back to plan day 4, quota 40 -> 15" in result.reason.text


@settings(max_examples=300, deadline=None)
@given(
    quality=st.sampled_from([None, "green", "yellow", "red"]),
    status=st.sampled_from([None, "connected", "flagged", "restricted"]),
    action=st.sampled_from(list(Action)),
    quota=st.integers(0, 200),
    last=st.integers(0, 200),
    paused=st.booleans(),
)
def test_a_rejudgement_never_raises_a_quota_nor_loosens_a_day(
    quality: str | None, status: str | None, action: Action, quota: int, last: int, paused: bool
) -> None:
    day = DayNow(action, quota, plan_day=7, next_plan_day=8, plan_volume=max(quota, 40), paused=paused)
    result = rejudge(PLAN, day, Reading(3, 3, 3, 3, AT, "webhook", quality=quality, status=status), last)
    assert result.quota <= quota
    assert RESTRICTIVENESS[result.action] >= RESTRICTIVENESS[action]
    assert result.next_plan_day <= day.next_plan_day
    assert not (result.pause and paused)
    if not result.changed:
        assert (result.action, result.quota, result.next_plan_day, result.pause) == (
            action, quota, day.next_plan_day, False
        )  # fmt: skip
