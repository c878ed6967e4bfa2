"""The ramp engine: plan volumes, the day's decision, and the invariants every decision keeps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.plan_fixture import RAMP_21D
from warmup.core.domain import RESTRICTIVENESS, Action, DayOutcome, Decision, NumberState, Reading
from warmup.core.plan.model import Plan
from warmup.core.plan.values import WEEKDAYS
from warmup.core.ramp import (
    decide,
    paused_state,
    plan_volume,
    resumed_state,
    state_after,
    went_well,
)

MONDAY = date(2026, 11, 23)
SUNDAY = date(2026, 11, 29)
NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def make_plan(**changes: Any) -> Plan:
    data = {**RAMP_21D, **changes}
    return Plan.model_validate(data)


PLAN = make_plan()


def good(
    overall: int = 3, lifetime: int = 3, response_rate: int = 3, contacts: int = 3, age_h: float = 1
) -> Reading:
    return Reading(overall, lifetime, response_rate, contacts, NOW - timedelta(hours=age_h), "scenario")


def day_went_well(quota: int) -> DayOutcome:
    return DayOutcome(planned=quota, sent=quota)


def texts(decision: Decision) -> list[str]:
    return [reason.text for reason in decision.reasons]


# --- plan_volume -------------------------------------------------------------------------------------


def test_constant_linear_and_exponential_steps() -> None:
    assert [plan_volume(PLAN, d) for d in (1, 2, 3)] == [8, 8, 8]
    assert [plan_volume(PLAN, d) for d in (4, 5, 6, 7)] == [15, 23, 32, 40]  # 15 + 25 * k / 3, half up
    # 50 * 3 ** (k / 6): 50, 60.05, 72.1, 86.6, 104.0, 124.9, 150
    assert [plan_volume(PLAN, d) for d in range(8, 15)] == [50, 60, 72, 87, 104, 125, 150]
    assert plan_volume(PLAN, 15) == 200


def test_exponential_grows_by_the_same_factor_every_day() -> None:
    plan = make_plan(ramp={"steps": [{"days": "1-5", "volume": "10..160", "curve": "exponential"}]})
    assert [plan_volume(plan, d) for d in range(1, 6)] == [10, 20, 40, 80, 160]


def test_after_hold_keeps_the_final_volume_and_after_stop_ends() -> None:
    assert plan_volume(PLAN, 22) == 200
    assert plan_volume(PLAN, 300) == 200
    stopping = make_plan(ramp={**RAMP_21D["ramp"], "after": "stop"})
    assert plan_volume(stopping, 21) == 200
    assert plan_volume(stopping, 22) is None


def test_plan_days_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        plan_volume(PLAN, 0)


# --- went_well ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (DayOutcome(planned=40, sent=40), True),
        (DayOutcome(planned=40, sent=20), True),  # half is enough
        (DayOutcome(planned=40, sent=19), False),
        (DayOutcome(planned=40, sent=32, failed=8), True),  # 20 % failed
        (DayOutcome(planned=40, sent=31, failed=9), False),
        (DayOutcome(planned=10, sent=0), False),
        (DayOutcome(), False),
        (None, False),
    ],
)
def test_went_well(outcome: DayOutcome | None, expected: bool) -> None:
    assert went_well(outcome) is expected


# --- decide: the ramp --------------------------------------------------------------------------------


def test_first_day_of_a_fresh_number_advances_at_the_first_volume() -> None:
    decision = decide(PLAN, NumberState(), good(), None, MONDAY, NOW)
    assert (decision.action, decision.quota, decision.plan_day, decision.next_plan_day) == (
        Action.ADVANCE,
        8,
        1,
        2,
    )
    assert decision.plan_volume == 8 and decision.max_new_contacts == 8  # never more new contacts than sends
    assert texts(decision) == ["plan day 1: plan volume 8"]


def test_plan_day_moves_on_after_a_day_that_went_well() -> None:
    state = NumberState(plan_day=6, last_volume=32, advance_pending=True)
    decision = decide(PLAN, state, good(), day_went_well(32), MONDAY, NOW)
    assert (decision.plan_day, decision.quota, decision.action) == (7, 40, Action.ADVANCE)
    assert "yesterday went well (sent 32 of 32): plan day 6 -> 7" in texts(decision)[0]


def test_plan_day_stays_after_a_day_that_went_badly_and_says_why() -> None:
    state = NumberState(plan_day=6, last_volume=32, advance_pending=True)
    decision = decide(PLAN, state, good(), DayOutcome(planned=32, sent=20, failed=12), MONDAY, NOW)
    assert (decision.plan_day, decision.quota, decision.next_plan_day) == (6, 32, 7)
    yesterday = [r for r in decision.reasons if r.rule == "yesterday"]
    assert (
        len(yesterday) == 1 and "12 failed" in yesterday[0].text and "plan day stays 6" in yesterday[0].text
    )


def test_plan_day_does_not_move_when_the_last_decision_was_not_advancing() -> None:
    state = NumberState(plan_day=6, last_volume=32, advance_pending=False)
    decision = decide(PLAN, state, good(), day_went_well(32), MONDAY, NOW)
    assert decision.plan_day == 6


def test_rest_day_sends_nothing_and_does_not_advance() -> None:
    state = NumberState(plan_day=6, last_volume=32)
    decision = decide(PLAN, state, good(), DayOutcome(), SUNDAY, NOW)
    assert (decision.action, decision.quota, decision.plan_day, decision.next_plan_day) == (
        Action.REST,
        0,
        6,
        6,
    )
    assert "sun is a rest day of the plan: nothing is sent" in texts(decision)


def test_weekday_without_a_window_is_a_rest_day() -> None:
    plan = make_plan(schedule={"windows": [{"days": "mon-fri", "hours": "09:00-18:00"}]})
    saturday = MONDAY + timedelta(days=5)
    decision = decide(plan, NumberState(plan_day=3), good(), None, saturday, NOW)
    assert (decision.action, decision.quota) == (Action.REST, 0)
    assert "sat is without a window: nothing is sent" in texts(decision)


def test_paused_number_sends_nothing() -> None:
    state = NumberState(plan_day=9, last_volume=60, paused=True, paused_volume=60)
    decision = decide(PLAN, state, good(overall=1), None, MONDAY, NOW)
    assert (decision.action, decision.quota, decision.next_plan_day) == (Action.PAUSE, 0, 9)


def test_after_stop_the_number_stops() -> None:
    plan = make_plan(ramp={**RAMP_21D["ramp"], "after": "stop"})
    decision = decide(
        plan, NumberState(plan_day=21, advance_pending=True), good(), day_went_well(200), MONDAY, NOW
    )
    assert (decision.action, decision.quota, decision.plan_day) == (Action.STOP, 0, 22)


# --- decide: risk rules ------------------------------------------------------------------------------


def test_throttle_reason_names_the_rule_the_factor_and_the_quota_change() -> None:
    state = NumberState(plan_day=7, last_volume=40)
    decision = decide(PLAN, state, good(overall=2, response_rate=1), None, MONDAY, NOW)
    assert (decision.action, decision.quota, decision.next_plan_day) == (Action.THROTTLE, 20, 7)
    assert "risk.rules[2] response_rate=1 -> throttle 0.5: quota 40 -> 20" in texts(decision)


def test_most_restrictive_action_wins_and_every_limit_applies() -> None:
    plan = make_plan(
        risk={
            "rules": [
                {"when": {"response_rate": 1}, "do": "hold"},
                {"when": {"response_rate": 1}, "do": {"throttle": 0.5}},
                {"when": {"contacts": 1}, "do": {"cap": 10}},
            ]
        }
    )
    state = NumberState(plan_day=8, last_volume=40)  # plan volume 50
    decision = decide(plan, state, good(response_rate=1, contacts=1), None, MONDAY, NOW)
    assert decision.action is Action.HOLD  # hold > throttle > cap
    assert decision.quota == 10  # but the cap's lower limit applies too
    assert [r.rule for r in decision.reasons] == ["ramp", "risk.rules[0]", "risk.rules[1]", "risk.rules[2]"]


def test_throttle_never_sends_more_than_the_last_sending_day() -> None:
    # plan volume 200 at day 15; half of it would be 100, far above yesterday's 30
    decision = decide(
        PLAN, NumberState(plan_day=15, last_volume=30), good(response_rate=1), None, MONDAY, NOW
    )
    assert (decision.action, decision.quota) == (Action.THROTTLE, 30)
    assert "throttle 0.5: quota 200 -> 30 (not above the last volume 30)" in texts(decision)[1]


def test_cap_that_does_not_bind_lets_the_ramp_advance() -> None:
    decision = decide(PLAN, NumberState(plan_day=4), good(lifetime=1), None, MONDAY, NOW)
    assert (decision.action, decision.quota, decision.next_plan_day) == (Action.ADVANCE, 15, 5)
    assert "risk.rules[1] lifetime=1 -> cap 50: not binding (plan volume 15)" in texts(decision)
    assert [r.binding for r in decision.reasons if r.rule == "risk.rules[1]"] == [False]


def test_cap_that_binds_caps_and_holds_the_plan_day() -> None:
    decision = decide(PLAN, NumberState(plan_day=10, last_volume=60), good(lifetime=1), None, MONDAY, NOW)
    assert (decision.action, decision.quota, decision.next_plan_day) == (Action.CAP, 50, 10)


def test_step_back_moves_the_plan_day_back() -> None:
    plan = make_plan(risk={"rules": [{"when": {"contacts": 1}, "do": {"step_back": 3}}]})
    decision = decide(plan, NumberState(plan_day=10, last_volume=60), good(contacts=1), None, MONDAY, NOW)
    assert (decision.action, decision.plan_day, decision.next_plan_day) == (Action.STEP_BACK, 7, 7)
    assert decision.quota == 40 and decision.plan_volume == 72
    assert "plan day 10 -> 7, quota 72 -> 40" in texts(decision)[1]


def test_step_back_never_goes_before_day_one() -> None:
    plan = make_plan(risk={"rules": [{"when": {"contacts": 1}, "do": {"step_back": 5}}]})
    decision = decide(plan, NumberState(plan_day=2, last_volume=8), good(contacts=1), None, MONDAY, NOW)
    assert decision.plan_day == 1 and decision.quota == 8


def test_hold_keeps_the_last_volume() -> None:
    decision = decide(PLAN, NumberState(plan_day=8, last_volume=40), good(response_rate=2), None, MONDAY, NOW)
    assert (decision.action, decision.quota, decision.plan_day, decision.next_plan_day) == (
        Action.HOLD,
        40,
        8,
        8,
    )


def test_max_new_contacts_lowers_the_contacts_limit_only() -> None:
    decision = decide(PLAN, NumberState(plan_day=8, last_volume=40), good(contacts=1), None, MONDAY, NOW)
    assert (decision.action, decision.quota, decision.max_new_contacts) == (Action.ADVANCE, 50, 3)
    assert "risk.rules[4] contacts=1 -> max_new_contacts 3: new contacts 10 -> 3" in texts(decision)


def test_pause_rule_pauses_the_number_until_resumed() -> None:
    state = NumberState(plan_day=8, last_volume=40)
    decision = decide(PLAN, state, good(overall=1), None, MONDAY, NOW)
    assert (decision.action, decision.quota) == (Action.PAUSE, 0)
    after = state_after(state, decision)
    assert after.paused and after.paused_volume == 40 and after.last_volume == 40
    assert decide(PLAN, after, good(), DayOutcome(), MONDAY + timedelta(days=1), NOW).action is Action.PAUSE


# --- decide: missing and stale readings --------------------------------------------------------------


def test_missing_reading_holds() -> None:
    decision = decide(PLAN, NumberState(plan_day=8, last_volume=40), None, None, MONDAY, NOW)
    assert (decision.action, decision.quota, decision.next_plan_day) == (Action.HOLD, 40, 8)
    assert texts(decision)[1] == "no risk reading: hold at the last volume 40, plan day stays 8"


def test_missing_reading_on_a_number_that_never_sent_holds_at_the_plan_volume() -> None:
    decision = decide(PLAN, NumberState(), None, None, MONDAY, NOW)
    assert (decision.action, decision.quota, decision.next_plan_day) == (Action.HOLD, 8, 1)


def test_stale_reading_holds_and_its_rules_still_apply() -> None:
    stale = good(overall=2, response_rate=1, age_h=40)
    decision = decide(PLAN, NumberState(plan_day=8, last_volume=40), stale, None, MONDAY, NOW)
    assert decision.action is Action.HOLD and decision.quota == 25  # throttle 0.5 of 50 still applies
    assert "is 40h old (stale after 36h)" in texts(decision)[1]


def test_reading_just_inside_the_freshness_window_is_fresh() -> None:
    decision = decide(PLAN, NumberState(plan_day=8, last_volume=40), good(age_h=35.9), None, MONDAY, NOW)
    assert decision.action is Action.ADVANCE


# --- resume ------------------------------------------------------------------------------------------


def test_resume_re_enters_at_half_and_climbs_back_over_three_days() -> None:
    paused = paused_state(NumberState(plan_day=14, last_volume=120))
    state = resumed_state(paused, MONDAY)
    quotas = []
    for offset in range(5):
        decision = decide(PLAN, state, good(), None, MONDAY + timedelta(days=offset), NOW)
        quotas.append((decision.quota, decision.action))
    assert quotas == [
        (60, Action.CAP),
        (90, Action.CAP),
        (120, Action.CAP),
        (150, Action.ADVANCE),
        (150, Action.ADVANCE),
    ]


def test_resume_climb_never_exceeds_the_plan() -> None:
    state = resumed_state(paused_state(NumberState(plan_day=2, last_volume=200)), MONDAY)
    decision = decide(PLAN, state, good(), None, MONDAY, NOW)
    assert (decision.quota, decision.action) == (8, Action.ADVANCE)
    assert any(r.rule == "resume" and "not binding" in r.text for r in decision.reasons)


def test_state_after_tracks_plan_day_and_last_volume() -> None:
    state = NumberState(plan_day=3, last_volume=8)
    advancing = decide(PLAN, state, good(), None, MONDAY, NOW)
    after = state_after(state, advancing)
    assert (after.plan_day, after.advance_pending, after.last_volume) == (3, True, 8)
    rest = decide(PLAN, after, good(), day_went_well(8), SUNDAY, NOW)
    after_rest = state_after(after, rest)
    assert (after_rest.plan_day, after_rest.advance_pending, after_rest.last_volume) == (4, False, 8)


def test_decide_rejects_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(PLAN, NumberState(), good(), None, MONDAY, NOW.replace(tzinfo=None))


# --- properties --------------------------------------------------------------------------------------

LEVELS = st.integers(1, 3)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    steps: list[dict[str, Any]] = []
    day = 1
    for _ in range(draw(st.integers(1, 4))):
        length = draw(st.integers(1, 6))
        curve = draw(st.sampled_from(["linear", "exponential"]))
        low = draw(st.integers(1 if curve == "exponential" else 0, 400))
        high = low if length == 1 else draw(st.integers(1 if curve == "exponential" else 0, 400))
        steps.append({"days": f"{day}-{day + length - 1}", "volume": f"{low}..{high}", "curve": curve})
        day += length
    window_days = draw(st.sets(st.sampled_from(WEEKDAYS), min_size=1))
    rest_days = draw(st.sets(st.sampled_from(WEEKDAYS), max_size=6).filter(lambda r: not window_days <= r))
    factor = st.sampled_from(["overall", "lifetime", "response_rate", "contacts"])
    condition = st.one_of(
        st.builds(lambda f, v: {f: v}, factor, LEVELS),  # mostly one factor, so rules fire often
        st.dictionaries(factor, st.one_of(LEVELS, st.lists(LEVELS, min_size=1, max_size=3)), min_size=1),
    )
    action = st.one_of(
        st.sampled_from(["pause", "hold"]),
        st.builds(lambda v: {"throttle": v}, st.floats(0.05, 0.95)),
        st.builds(lambda v: {"cap": v}, st.integers(0, 400)),
        st.builds(lambda v: {"step_back": v}, st.integers(1, 5)),
        st.builds(lambda v: {"max_new_contacts": v}, st.integers(0, 20)),
    )
    rules = draw(st.lists(st.fixed_dictionaries({"when": condition, "do": action}), max_size=6))
    return Plan.model_validate(
        {
            "name": "generated",
            "schedule": {
                "windows": [{"days": sorted(window_days), "hours": "00:00-24:00"}],
                "rest_days": sorted(rest_days),
            },
            "ramp": {"steps": steps, "after": draw(st.sampled_from(["hold", "stop"]))},
            "pacing": {"gap": "1s..5s", "typing": "1s", "max_per_hour": 3600, "max_new_contacts_per_day": 10},
            "risk": {
                "stale_after": f"{draw(st.integers(6, 72))}h",
                "rules": rules,
                "resume": {"at": draw(st.floats(0.1, 1.0)), "over": f"{draw(st.integers(1, 5))}d"},
            },
        }
    )


@st.composite
def situations(draw: st.DrawFn) -> tuple[Plan, NumberState, Reading | None, DayOutcome | None, date]:
    plan = draw(plans())
    local_date = MONDAY + timedelta(days=draw(st.integers(0, 13)))
    paused = draw(st.sampled_from([False, False, False, True]))
    resumed_on = draw(
        st.one_of(st.none(), st.builds(lambda d: local_date - timedelta(days=d), st.integers(0, 6)))
    )
    state = NumberState(
        plan_day=draw(st.integers(1, plan.last_plan_day + 3)),
        last_volume=draw(st.one_of(st.integers(0, 20), st.integers(0, 400))),
        paused=paused,
        paused_volume=draw(st.one_of(st.none(), st.integers(0, 400))),
        resumed_on=None if paused else resumed_on,
        advance_pending=draw(st.booleans()),
    )
    kind = draw(st.sampled_from(["fresh", "fresh", "fresh", "stale", "missing"]))
    stale_hours = plan.risk.stale_after / timedelta(hours=1)
    age = draw(st.floats(0, stale_hours) if kind == "fresh" else st.floats(stale_hours + 0.01, 200))
    levels = [draw(LEVELS) for _ in range(4)]
    reading = None if kind == "missing" else Reading(*levels, NOW - timedelta(hours=age), "scenario")
    planned = draw(st.integers(0, 400))
    sent = draw(st.integers(0, planned))
    yesterday = draw(
        st.one_of(
            st.none(),
            st.builds(DayOutcome, st.just(planned), st.just(sent), failed=st.integers(0, planned - sent)),
        )
    )
    return plan, state, reading, yesterday, local_date


RESTRICTING = {Action.THROTTLE, Action.HOLD, Action.PAUSE, Action.STEP_BACK}


@given(situations())
@settings(max_examples=200, deadline=None)
def test_decision_invariants(
    situation: tuple[Plan, NumberState, Reading | None, DayOutcome | None, date],
) -> None:
    plan, state, reading, yesterday, local_date = situation
    decision = decide(plan, state, reading, yesterday, local_date, NOW)

    # quota never exceeds the plan's volume for the decision's plan day, nor the plan volume of today
    allowed = plan_volume(plan, decision.plan_day)
    assert 0 <= decision.quota <= (allowed if allowed is not None else 0)
    assert decision.quota <= decision.plan_volume or decision.action is Action.STOP

    # the plan day moves by at most one, forward only when yesterday's pending advance went well
    earned = state.plan_day + (1 if state.advance_pending and went_well(yesterday) else 0)
    assert 1 <= decision.plan_day <= earned
    assert decision.next_plan_day in (decision.plan_day, decision.plan_day + 1)

    # the day's action is the most restrictive of its reasons
    assert decision.action == max((r.action for r in decision.reasons), key=RESTRICTIVENESS.__getitem__)

    # a day a throttle, hold, step-back or pause fired never sends more than the last sending day
    fired = {r.action for r in decision.reasons}
    if fired & RESTRICTING and state.last_volume > 0:
        assert decision.quota <= state.last_volume
    if Action.PAUSE in fired or Action.REST in fired or Action.STOP in fired:
        assert decision.quota == 0

    # rest, hold, pause, throttle, step-back, binding cap and stop never advance
    if decision.action is not Action.ADVANCE or decision.quota == 0:
        assert decision.next_plan_day == decision.plan_day

    # a missing or stale reading never advances
    if not state.paused and (reading is None or NOW - reading.taken_at > plan.risk.stale_after):
        assert decision.next_plan_day == decision.plan_day
        assert RESTRICTIVENESS[decision.action] >= RESTRICTIVENESS[Action.HOLD]

    assert decision.max_new_contacts <= min(plan.pacing.max_new_contacts_per_day, decision.quota)


@given(situations())
@settings(max_examples=100, deadline=None)
def test_decide_is_deterministic(
    situation: tuple[Plan, NumberState, Reading | None, DayOutcome | None, date],
) -> None:
    plan, state, reading, yesterday, local_date = situation
    first = decide(plan, state, reading, yesterday, local_date, NOW)
    again = decide(plan.model_copy(deep=True), replace(state), reading, yesterday, local_date, NOW)
    assert first == again


@given(plans(), st.integers(1, 30))
@settings(max_examples=100, deadline=None)
def test_plan_volume_stays_between_the_step_ends(plan: Plan, plan_day: int) -> None:
    volume = plan_volume(plan, plan_day)
    if plan_day > plan.last_plan_day:
        final = max(plan.ramp.steps, key=lambda s: s.last_day).volume[1]
        assert volume == (None if plan.ramp.after == "stop" else final)
        return
    step = next(s for s in plan.ramp.steps if s.first_day <= plan_day <= s.last_day)
    assert volume is not None and min(step.volume) <= volume <= max(step.volume)
    if plan_day == step.first_day:
        assert volume == step.volume[0]
    if plan_day == step.last_day:
        assert volume == step.volume[1]


@given(plans(), st.lists(st.tuples(LEVELS, LEVELS, LEVELS, LEVELS), min_size=10, max_size=25))
@settings(max_examples=60, deadline=None)
def test_a_run_of_days_keeps_the_invariants_day_after_day(
    plan: Plan, readings: list[tuple[int, int, int, int]]
) -> None:
    state = NumberState()
    yesterday: DayOutcome | None = None
    for offset, (o, li, r, c) in enumerate(readings):
        local_date = MONDAY + timedelta(days=offset)
        now = NOW + timedelta(days=offset)
        decision = decide(plan, state, Reading(o, li, r, c, now, "scenario"), yesterday, local_date, now)
        assert decision.plan_day <= state.plan_day + 1
        if decision.action in (Action.REST, Action.HOLD, Action.PAUSE):
            assert decision.next_plan_day == decision.plan_day
        state = state_after(state, decision)
        yesterday = day_went_well(decision.quota)


# --- Meta's signals ----------------------------------------------------------------------------------


def signalled(**signals: str) -> Reading:
    return replace(good(), source="cloud_api", **signals)  # type: ignore[arg-type]


def test_the_example_plan_acts_on_metas_signals() -> None:
    """YELLOW throttles, RED or FLAGGED pauses, RESTRICTED holds; GREEN and CONNECTED change nothing."""
    state = NumberState(plan_day=6, last_volume=40, advance_pending=False)
    plain = decide(PLAN, state, good(), None, MONDAY, NOW)
    assert (plain.action, plain.quota) == (Action.ADVANCE, 32)
    green = decide(
        PLAN, state, signalled(quality="green", status="connected", tier="TIER_1K"), None, MONDAY, NOW
    )
    assert (green.action, green.quota) == (Action.ADVANCE, 32)
    yellow = decide(PLAN, state, signalled(quality="yellow"), None, MONDAY, NOW)
    assert (yellow.action, yellow.quota) == (Action.THROTTLE, 16)
    assert any("quality=yellow -> throttle 0.5" in t for t in texts(yellow))
    for signals in ({"quality": "red"}, {"status": "flagged"}, {"quality": "yellow", "status": "flagged"}):
        paused = decide(PLAN, state, signalled(**signals), None, MONDAY, NOW)
        assert (paused.action, paused.quota) == (Action.PAUSE, 0), signals
    held = decide(PLAN, state, signalled(status="restricted"), None, MONDAY, NOW)
    assert (held.action, held.quota, held.next_plan_day) == (Action.HOLD, 32, 6)
