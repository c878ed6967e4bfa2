"""Plan models: the cross-field checks (reported together, each at its own field) and round trips."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from warmup.core.plan.fields import MAX_DAILY_VOLUME
from warmup.core.plan.model import Plan, RiskAction, Window, day_capacity

BASE: dict[str, Any] = {
    "name": "t",
    "schedule": {
        "windows": [{"days": "mon-fri", "hours": "09:00-12:00"}, {"days": "sat", "hours": "10:00-12:00"}],
        "rest_days": ["sun"],
    },
    "ramp": {"steps": [{"days": "1-3", "volume": 5}, {"days": "4-10", "volume": "10..50"}]},
    "pacing": {"gap": "30s..3m", "max_per_hour": 30},
    "audience": {"peers": {}},
    "risk": {"rules": [{"when": {"overall": 1}, "do": "pause"}]},
}


def plan_with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes, e.g. plan_with(**{"pacing.gap": "1s"})."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        target: Any = data
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return data


def errors_of(data: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    with pytest.raises(ValidationError) as info:
        Plan.model_validate(data)
    return {tuple(error["loc"]): error["msg"] for error in info.value.errors()}


def test_base_plan_is_valid() -> None:
    plan = Plan.model_validate(BASE)
    assert plan.last_plan_day == 10
    assert plan.ramp.peak_volume == 50
    assert plan.schedule.sending_days() == frozenset({0, 1, 2, 3, 4, 5})
    assert plan.pacing.typing.high == timedelta(seconds=8)


@pytest.mark.parametrize(
    ("changes", "loc", "message"),
    [
        (
            {"ramp.steps": [{"days": "1-3", "volume": 5}, {"days": "3-6", "volume": 9}]},
            ("ramp", "steps", 1, "days"),
            "overlap steps[0] (days 1-3)",
        ),
        (
            {"ramp.steps": [{"days": "1-3", "volume": 5}, {"days": "6-8", "volume": 9}]},
            ("ramp", "steps", 1, "days"),
            "plan days 4-5 are not covered",
        ),
        (
            {"ramp.steps": [{"days": "2-3", "volume": 5}]},
            ("ramp", "steps", 0, "days"),
            "must start at plan day 1",
        ),
        (
            {
                "ramp.steps": [
                    {"days": "1-3", "volume": 5},
                    {"days": "9", "volume": 5},
                    {"days": "4-8", "volume": 5},
                ]
            },
            ("ramp", "steps", 2, "days"),
            "plan-day order",
        ),
        ({"ramp.steps.1.volume": "-5..10"}, ("ramp", "steps", 1, "volume"), "cannot be negative"),
        (
            {"ramp.steps.1.volume": MAX_DAILY_VOLUME + 1},
            ("ramp", "steps", 1, "volume"),
            "no warm-up sends that much",
        ),
        (
            {"ramp.steps.1": {"days": "4-10", "volume": "0..50", "curve": "exponential"}},
            ("ramp", "steps", 1, "volume"),
            "exponential curve cannot grow from or to 0",
        ),
        (
            {"ramp.steps": [{"days": "1-3", "volume": 5}, {"days": 4, "volume": "5..9"}]},
            ("ramp", "steps", 1, "volume"),
            "one-day step cannot ramp",
        ),
        (
            {"schedule.windows.0.hours": "12:00-09:00"},
            ("schedule", "windows", 0, "hours"),
            "ends before it starts",
        ),
        ({"schedule.windows.0.days": "mon-frd"}, ("schedule", "windows", 0, "days"), "unknown weekday 'frd'"),
        (
            {"schedule.windows.1.days": "sun"},
            ("schedule", "windows", 1, "days"),
            "every day of this window (sun) is a rest day",
        ),
        ({"schedule.rest_days": "daily"}, ("schedule", "rest_days"), "every day of the week is a rest day"),
        (
            {"schedule.windows.1": {"days": "fri", "hours": "11:00-13:00"}},
            ("schedule", "windows", 1, "hours"),
            "overlaps windows[0] (09:00-12:00) on fri",
        ),
        ({"pacing.gap": "500ms..3m"}, ("pacing", "gap"), "at least 1s"),
        ({"pacing.typing": "2s..90s"}, ("pacing", "typing"), "at most 1m"),
        ({"pacing.typing": "2s..40s"}, ("pacing", "typing"), "longer than the shortest gap 30s"),
        ({"pacing.max_per_hour": 0}, ("pacing", "max_per_hour"), "greater than or equal to 1"),
        ({"pacing.max_per_hour": 3}, ("pacing", "max_per_hour"), "fits at most 9 under this pacing"),
        ({"risk.rules.0.do": {"throttle": 1.5}}, ("risk", "rules", 0, "do"), "between 0 and 1"),
        ({"risk.rules.0.do": {"throttle": 0}}, ("risk", "rules", 0, "do"), "between 0 and 1"),
        ({"risk.rules.0.do": {"pause": 3}}, ("risk", "rules", 0, "do"), "pause takes no value"),
        ({"risk.rules.0.do": {"hold": True}}, ("risk", "rules", 0, "do"), "hold takes no value"),
        ({"risk.rules.0.do": {"cap": 2.5}}, ("risk", "rules", 0, "do"), "whole number of messages >= 0"),
        ({"risk.rules.0.do": {"cap": -1}}, ("risk", "rules", 0, "do"), "whole number of messages >= 0"),
        ({"risk.rules.0.do": {"step_back": 0}}, ("risk", "rules", 0, "do"), "plan days to go back >= 1"),
        ({"risk.rules.0.do": "throtle"}, ("risk", "rules", 0, "do"), "did you mean 'throttle'"),
        ({"risk.rules.0.do": {"cap": 5, "hold": None}}, ("risk", "rules", 0, "do"), "one action per rule"),
        ({"risk.rules.0.when": {}}, ("risk", "rules", 0, "when"), "name at least one factor"),
        ({"risk.rules.0.when": {"overall": 4}}, ("risk", "rules", 0, "when", "overall"), "got 4"),
        ({"audience": {}}, ("audience",), "nobody to send to"),
        ({"risk.rules.0.when": {"quality": "purple"}}, ("risk", "rules", 0, "when", "quality"), "purple"),
        ({"risk.rules.0.when": {"quality": []}}, ("risk", "rules", 0, "when", "quality"), "at least one"),
        (
            {"risk.rules.0.when": {"status": ["flagged", "suspended"]}},
            ("risk", "rules", 0, "when", "status"),
            "'suspended'",
        ),
        ({"risk.rules.0.when": {"tier": "TIER_3K"}}, ("risk", "rules", 0, "when", "tier"), "TIER_3K"),
    ],
)
def test_each_mistake_is_reported_at_its_field(
    changes: dict[str, Any], loc: tuple[str | int, ...], message: str
) -> None:
    errors = errors_of(plan_with(**changes))
    assert loc in errors, errors
    assert message in errors[loc]


def test_cross_checks_run_even_when_other_fields_fail() -> None:
    data = plan_with(
        **{
            "ramp.steps": [{"days": "1-3", "volume": "lots"}, {"days": "2-5", "volume": 9}],
            "schedule.windows.0.hours": "nine to five",
            "schedule.windows.1.days": "sun",
        }
    )
    errors = errors_of(data)
    assert "whole number" in errors[("ramp", "steps", 0, "volume")]
    assert "overlap steps[0]" in errors[("ramp", "steps", 1, "days")]
    assert "expected hours" in errors[("schedule", "windows", 0, "hours")]
    assert "rest day" in errors[("schedule", "windows", 1, "days")]


def test_an_unparsable_step_does_not_invent_a_gap() -> None:
    data = plan_with(
        **{
            "ramp.steps": [
                {"days": "1-3", "volume": 5},
                {"days": "x", "volume": 5},
                {"days": "8-9", "volume": 5},
            ]
        }
    )
    errors = errors_of(data)
    assert list(errors) == [("ramp", "steps", 1, "days")]


@settings(max_examples=100)
@given(st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=8), st.data())
def test_contiguous_steps_are_valid_and_a_hole_is_not(lengths: list[int], data: st.DataObject) -> None:
    steps, first = [], 1
    for length in lengths:
        steps.append({"days": f"{first}-{first + length - 1}", "volume": 5})
        first += length
    plan = Plan.model_validate(plan_with(**{"ramp.steps": steps}))
    assert plan.last_plan_day == sum(lengths)
    assert plan.ramp.steps[0].first_day == 1

    if len(steps) > 1:
        index = data.draw(st.integers(min_value=1, max_value=len(steps) - 1))
        first_day, last_day = plan.ramp.steps[index].days
        steps[index] = {"days": f"{first_day + 1}-{last_day + 1}", "volume": 5}
        errors = errors_of(plan_with(**{"ramp.steps": steps}))
        assert "not covered" in errors[("ramp", "steps", index, "days")]


def test_dump_round_trips_and_reads_like_the_file() -> None:
    source = plan_with(
        **{
            "risk.rules": [
                {"when": {"overall": 1}, "do": "pause"},
                {"when": {"lifetime": [1, 2]}, "do": {"cap": 50}},
                {"when": {"response_rate": 1}, "do": {"throttle": 0.5}},
            ]
        }
    )
    plan = Plan.model_validate(source)
    dumped = plan.model_dump(mode="json")
    assert Plan.model_validate(dumped) == plan
    assert dumped["pacing"]["gap"] == "30s..3m"
    assert dumped["schedule"]["windows"][0] == {"days": "mon-fri", "hours": "09:00-12:00"}
    assert dumped["ramp"]["steps"][1] == {"days": "4-10", "volume": "10..50", "curve": "linear"}
    assert [rule["do"] for rule in dumped["risk"]["rules"]] == ["pause", {"cap": 50}, {"throttle": 0.5}]
    assert dumped["risk"]["stale_after"] == "1d12h"


def test_risk_action_long_form_and_int_values() -> None:
    assert RiskAction.model_validate({"kind": "cap", "value": 50}).value == 50
    plan = Plan.model_validate(plan_with(**{"risk.rules.0.do": {"cap": 50}}))
    assert plan.risk.rules[0].do.kind == "cap"
    assert isinstance(plan.risk.rules[0].do.value, int)


def test_window_minutes() -> None:
    window = Window.model_validate({"days": "mon", "hours": "20:30-24:00"})
    assert (window.start_minute, window.end_minute) == (1230, 1440)


def test_day_capacity_takes_the_tighter_limit() -> None:
    plan = Plan.model_validate(BASE)
    # mon: 09:00-12:00 touches 3 clock hours x 30 = 90; by the 30s gap 3h fits 361 sends.
    assert day_capacity(plan, 0) == (90, "max_per_hour")
    assert day_capacity(plan, 6) == (0, "max_per_hour")  # rest day
    slow = Plan.model_validate(plan_with(**{"pacing.gap": "10m..20m", "ramp.steps.1.volume": "10..15"}))
    assert day_capacity(slow, 0) == (19, "gap")


def test_omitted_audience_means_fleet_peers() -> None:
    data = plan_with()
    del data["audience"]
    plan = Plan.model_validate(data)
    assert plan.audience.peers is not None
    assert plan.audience.contacts is None


def test_plans_are_frozen_and_forbid_unknown_keys() -> None:
    plan = Plan.model_validate(BASE)
    with pytest.raises(ValidationError):
        plan.name = "other"  # type: ignore[misc]
    errors = errors_of(plan_with(**{"pacing.gapp": "1m"}))
    assert ("pacing", "gapp") in errors


def test_meta_conditions_are_normalised() -> None:
    """Quality takes Meta's words too (high, medium, low), statuses any case, tiers with or without TIER_."""
    rules = [
        {"when": {"quality": ["Medium", "red"]}, "do": {"throttle": 0.5}},
        {"when": {"status": "FLAGGED"}, "do": "pause"},
        {"when": {"tier": ["250", "tier_2k"], "overall": 2}, "do": "hold"},
    ]
    plan = Plan.model_validate(plan_with(**{"risk.rules": rules}))
    first, second, third = (rule.when for rule in plan.risk.rules)
    assert first.quality == ["yellow", "red"]
    assert second.status == ["flagged"]
    assert (third.tier, third.overall) == (["TIER_250", "TIER_2K"], 2)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"description": "fine\nbut \x00"},
            ("description",),
            "contains a NUL character (U+0000) at position 10",
        ),
        ({"description": "x\ud800"}, ("description",), "a lone surrogate (U+D800) at position 2"),
        (
            {"content": "pool\x00.yaml"},
            ("content",),
            "the path contains a NUL character (U+0000) at position 5",
        ),
        ({"audience.contacts": "c\n.csv"}, ("audience", "contacts"), "the path contains a line break"),
    ],
)
def test_free_texts_and_paths_the_store_cannot_hold_are_refused(
    changes: dict[str, Any], field: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Plan.model_validate(plan_with(**changes))
    errors = info.value.errors()
    assert [tuple(e["loc"]) for e in errors] == [field]
    assert message in errors[0]["msg"]


def test_a_description_may_span_lines() -> None:
    assert Plan.model_validate(plan_with(description="first line\n\tsecond")).description == (
        "first line\n\tsecond"
    )
