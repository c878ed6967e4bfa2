"""Plan previews: the day-by-day simulation, the scenarios, the table and the chart."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.plan_fixture import RAMP_21D
from warmup.core.domain import Action
from warmup.core.errors import UserError
from warmup.core.plan.model import Plan
from warmup.core.ramp import plan_volume
from warmup.files.problems import PlanError
from warmup.services.preview import (
    Levels,
    Scenario,
    ScenarioDays,
    builtin_scenario,
    load_scenario,
    resolve_scenario,
    simulate,
)

MONDAY = date(2026, 11, 23)

PLAN = Plan.model_validate(RAMP_21D)


def run(scenario: Scenario | str, days: int = 30, **kw: Any) -> Any:
    chosen = builtin_scenario(scenario, days, random.Random(1)) if isinstance(scenario, str) else scenario
    return simulate(PLAN, chosen, start=MONDAY, days=days, **kw)


def test_good_scenario_follows_the_plan_on_every_sending_day() -> None:
    preview = run("good")
    assert len(preview.days) == 30
    for day in preview.days:
        if day.local_date.weekday() == 6:
            assert day.decision.action is Action.REST and day.decision.quota == 0
        else:
            assert day.decision.action is Action.ADVANCE
            assert day.decision.quota == day.ideal_volume == plan_volume(PLAN, day.decision.plan_day)
    # 26 sending days in 30 from a Monday: plan day 27 is next
    assert preview.days[-1].decision.next_plan_day == 27


def test_bad_scenario_throttles_pauses_and_resumes_with_the_climb() -> None:
    days = run("bad").days
    actions = [day.decision.action for day in days]
    assert actions[5] is Action.THROTTLE  # day 6: response rate 1
    assert days[5].decision.quota == days[5].decision.plan_volume // 2
    assert actions[11:15] == [Action.PAUSE] * 4  # day 12: overall 1, a four-day pause
    assert any(r.rule == "risk.rules[0]" for r in days[11].decision.reasons)
    resumed = [day.decision for day in days[15:18]]
    assert [d.action for d in resumed] == [Action.CAP] * 3
    assert resumed[0].quota < resumed[1].quota < resumed[2].quota < resumed[0].plan_volume
    assert all(r.rule == "resume" for d in resumed for r in d.reasons if r.rule != "ramp")


def test_bad_scenario_never_sends_while_paused_and_never_beats_the_plan() -> None:
    for day in run("bad").days:
        assert day.decision.quota <= day.ideal_volume or day.ideal_volume == 0
        if day.decision.action is Action.PAUSE:
            assert day.decision.quota == 0


def test_missing_readings_turn_stale_on_the_second_day() -> None:
    scenario = Scenario(days=[ScenarioDays(days=(3, 4), missing=True)])
    days = run(scenario, days=6).days
    assert days[2].decision.action is Action.ADVANCE  # a 24h-old reading is still fresh (36h)
    assert days[3].decision.action is Action.HOLD
    assert "48h old (stale after 36h)" in " ".join(r.text for r in days[3].decision.reasons)
    assert not days[3].fresh_reading and days[3].reading == days[1].reading


def test_a_day_with_many_failures_does_not_advance_the_plan_day() -> None:
    scenario = Scenario(days=[ScenarioDays(days=(2, 2), failed=0.5)])
    days = run(scenario, days=4).days
    assert [d.decision.plan_day for d in days] == [1, 2, 2, 3]
    assert any(r.rule == "yesterday" for r in days[2].decision.reasons)


def test_later_scenario_entries_override_only_the_factors_they_name() -> None:
    scenario = Scenario(
        default=Levels(response_rate=3, contacts=3),
        days=[
            ScenarioDays(days=(1, 10), response_rate=2, contacts=2),
            ScenarioDays(days=(5, 5), contacts=1),
        ],
    )
    assert (scenario.levels(5).response_rate, scenario.levels(5).contacts) == (2, 1)
    assert (scenario.levels(4).response_rate, scenario.levels(4).contacts) == (2, 2)
    assert (scenario.levels(11).response_rate, scenario.levels(11).contacts) == (3, 3)


def test_lifetime_follows_the_registration_date_unless_the_scenario_names_it() -> None:
    young = run("good", days=1).days[0].reading
    old = run("good", days=1, registered=MONDAY - timedelta(days=90)).days[0].reading
    assert young is not None and old is not None
    assert (young.lifetime, old.lifetime) == (1, 3)


def test_mixed_is_reproducible_from_its_seed() -> None:
    first = builtin_scenario("mixed", 30, random.Random(7))
    again = builtin_scenario("mixed", 30, random.Random(7))
    other = builtin_scenario("mixed", 30, random.Random(8))
    assert first == again
    assert first != other
    assert any(entry.response_rate == 2 for entry in first.days)


def test_scenario_file_is_loaded_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "flaky.yaml"
    path.write_text(
        "name: flaky\npause_days: 2\ndays:\n  - {days: 3-4, response_rate: 1}\n  - {days: 5, missing: true}\n"
    )
    scenario = resolve_scenario(str(path), 10, random.Random(1))
    assert scenario.name == "flaky" and scenario.pause_days == 2
    assert scenario.levels(3).response_rate == 1 and scenario.levels(5).missing


def test_scenario_file_errors_point_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("days:\n  - {days: 3, response_rate: 4}\n  - {days: 5, mood: sad}\n")
    with pytest.raises(PlanError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert f"{path}:2:" in text and "response_rate" in text
    assert f"{path}:3:" in text and "mood" in text


def test_unknown_scenario_and_timezone_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown scenario 'nope'"):
        resolve_scenario("nope", 30, random.Random(1))
    with pytest.raises(UserError, match="unknown timezone"):
        run("good", timezone="Mars/Olympus")


def test_days_are_local_and_decided_at_local_midnight() -> None:
    preview = run("good", days=2, timezone="America/Sao_Paulo")
    reading = preview.days[0].reading
    assert reading is not None and reading.taken_at.isoformat() == "2026-11-23T03:00:00+00:00"
