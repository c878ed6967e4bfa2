"""Loading plan files: every problem of a file at once, each at its line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.paths import PLANS
from warmup.core.plan.model import Plan
from warmup.files.loader import load_yaml_model
from warmup.files.plans import load_plan
from warmup.files.problems import PlanError, Problem

GOOD = """\
version: 1
name: good
schedule:
  windows:
    - {days: mon-fri, hours: "09:00-12:30"}
    - {days: sat, hours: "10:00-13:00"}
  rest_days: [sun]
ramp:
  steps:
    - {days: 1-3, volume: 8}
    - {days: 4-7, volume: 15..40}
pacing:
  gap: 40s..3m
  max_per_hour: 30
audience:
  peers: {reply_probability: 0.7}
risk:
  rules:
    - {when: {overall: 1}, do: pause}
"""


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(PlanError) as info:
        load_plan(path)
    return info.value.problems


def test_good_plan_loads(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, GOOD))
    assert isinstance(plan, Plan)
    assert plan.name == "good"
    assert plan.last_plan_day == 7


def test_five_mistakes_give_five_located_errors(tmp_path: Path) -> None:
    text = """\
    version: 1
    name: five
    schedule:
      windows:
        - {days: mon-fri, hours: "09:00-12:30"}
        - {days: sat, hours: "14:00-13:00"}
      rest_days: [sun]
    ramp:
      steps:
        - {days: 1-3, volume: 8}
        - {days: 3-7, volume: 15..40}
    pacing:
      gap: 40s..3m
      max_per_hour: 30
      max_new_contact_per_day: 5
    risk:
      stale_after: soon
      rules:
        - {when: {overall: 1}, do: {throttle: 1.5}}
    """
    problems = problems_of(write(tmp_path, text))
    found = [(p.line, p.col, p.field) for p in problems]
    assert found == [
        (6, 26, "schedule.windows[1].hours"),
        (11, 14, "ramp.steps[1].days"),
        (15, 3, "pacing.max_new_contact_per_day"),
        (17, 16, "risk.stale_after"),
        (19, 32, "risk.rules[0].do"),
    ], problems
    messages = [p.message for p in problems]
    assert "ends before it starts" in messages[0]
    assert "overlap steps[0]" in messages[1]
    assert "did you mean 'max_new_contacts_per_day'?" in messages[2]
    assert "duration" in messages[3]
    assert "between 0 and 1" in messages[4]
    assert str(problems[0]).startswith(f"{tmp_path / 'plan.yaml'}:6:26: schedule.windows[1].hours: ")


def test_unknown_key_lists_allowed_keys_when_nothing_is_close(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  max_per_hour: 30\n", "  max_per_hour: 30\n  colour: blue\n"))
    (problem,) = problems_of(path)
    assert (problem.line, problem.col, problem.field) == (15, 3, "pacing.colour")
    assert "allowed here: gap, typing, max_per_hour, max_new_contacts_per_day" in problem.message


def test_top_level_typo_suggests_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("risk:", "rsik:"))
    messages = {p.field: p.message for p in problems_of(path)}
    assert messages["rsik"] == "unknown key 'rsik'; did you mean 'risk'?"


def test_duplicate_key_is_located_at_the_second(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  max_per_hour: 30\n", "  max_per_hour: 30\n  max_per_hour: 40\n"))
    (problem,) = problems_of(path)
    assert (problem.line, problem.col, problem.field) == (15, 3, "pacing.max_per_hour")
    assert problem.message == "duplicate key (first written on line 14)"


def test_missing_key_points_at_the_parent_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    - {days: 4-7, volume: 15..40}\n", "    - {days: 4-7}\n"))
    (problem,) = problems_of(path)
    assert (problem.line, problem.col, problem.field) == (11, 7, "ramp.steps[1].volume")
    assert problem.message == "required, but missing"


def test_missing_top_level_section(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("pacing:\n  gap: 40s..3m\n  max_per_hour: 30\n", ""))
    (problem,) = problems_of(path)
    assert (problem.line, problem.col, problem.field) == (1, 1, "pacing")


def test_wrong_type_and_literal_messages(tmp_path: Path) -> None:
    text = GOOD.replace("  max_per_hour: 30", "  max_per_hour: lots").replace(
        "    - {days: 4-7, volume: 15..40}", "    - {days: 4-7, volume: 15..40, curve: exponentail}"
    )
    messages = {p.field: p.message for p in problems_of(write(tmp_path, text))}
    assert messages["pacing.max_per_hour"] == "expected a whole number, got 'lots'"
    assert messages["ramp.steps[1].curve"] == (
        "expected linear or exponential, got 'exponentail'; did you mean 'exponential'?"
    )


def test_union_errors_collapse_to_one_message(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("{overall: 1}", "{overall: [1, 7]}"))
    (problem,) = problems_of(path)
    assert problem.field == "risk.rules[0].when.overall"
    assert "got 7" in problem.message


def test_referenced_files_are_resolved_next_to_the_plan(tmp_path: Path) -> None:
    (tmp_path / "messages").mkdir()
    (tmp_path / "messages" / "pool.yaml").write_text("language: en\nopeners: [hi]\nreplies: [hello]\n")
    (tmp_path / "people.csv").write_text("phone,name\n+12025550101,Alex\n")
    text = GOOD.replace("  peers: {reply_probability: 0.7}\n", "  peers: {}\n  contacts: people.csv\n")
    plan = load_plan(write(tmp_path, text + "content: messages/pool.yaml\n"))
    assert plan.content == str((tmp_path / "messages" / "pool.yaml").resolve())
    assert plan.audience.contacts == str((tmp_path / "people.csv").resolve())


def test_missing_and_broken_referenced_files_are_reported_with_the_rest(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("phone,name\n+12025550101,Alex\n12345,Bob\n")
    text = GOOD.replace("  peers: {reply_probability: 0.7}\n", "  contacts: people.csv\n").replace(
        "max_per_hour: 30", "max_per_hour: 0"
    )
    path = write(tmp_path, text + "content: messages/nowhere.yaml\n")
    problems = problems_of(path)
    rendered = [str(p) for p in problems]
    assert any(r.startswith(f"{tmp_path / 'people.csv'}:3:1: phone: ") for r in rendered), rendered
    assert any(":14:17: pacing.max_per_hour:" in r for r in rendered), rendered
    (missing,) = [p for p in problems if p.field == "content"]
    assert (missing.line, missing.col) == (20, 10)
    assert "not found (paths are relative to the plan file)" in missing.message


def test_missing_plan_file_is_a_clear_error(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nope.yaml")
    assert str(problem) == f"{tmp_path / 'nope.yaml'}: no such plan file"
    assert isinstance(PlanError([problem]), Exception)


def test_plan_error_message_lists_all_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path, GOOD.replace("max_per_hour: 30", "max_per_hour: x").replace("gap: 40s..3m", "gap: 3m..40s")
    )
    with pytest.raises(PlanError) as info:
        load_plan(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:13:8: pacing.gap: ")
    assert lines[1].startswith(f"{path}:14:17: pacing.max_per_hour: ")


def test_load_yaml_model_is_generic(tmp_path: Path) -> None:
    from pydantic import BaseModel, ConfigDict

    class Fleet(BaseModel):
        model_config = ConfigDict(extra="forbid")
        admins: list[str]

    path = write(tmp_path, "admins: ['+1']\nadmin: x\n", "fleet.yaml")
    with pytest.raises(PlanError) as info:
        load_yaml_model(path, Fleet)
    (problem,) = info.value.problems
    assert (problem.line, problem.field, problem.message) == (
        2,
        "admin",
        "unknown key 'admin'; did you mean 'admins'?",
    )
    assert load_yaml_model(write(tmp_path, "admins: [a]\n", "ok.yaml"), Fleet).admins == ["a"]


@pytest.mark.parametrize("name", ["cautious-new", "standard-21d", "fast-aged"])
def test_example_plans_are_valid(name: str) -> None:
    plan = load_plan(PLANS / f"{name}.yaml")
    assert plan.name == name
    assert plan.content is not None and Path(plan.content).is_file()
    assert plan.audience.contacts is not None and Path(plan.audience.contacts).is_file()


def test_example_plans_have_the_promised_shape() -> None:
    cautious = load_plan(PLANS / "cautious-new.yaml")
    standard = load_plan(PLANS / "standard-21d.yaml")
    fast = load_plan(PLANS / "fast-aged.yaml")
    assert 26 <= cautious.last_plan_day <= 32
    assert standard.last_plan_day == 21
    assert fast.last_plan_day < standard.last_plan_day
    assert cautious.ramp.steps[0].volume[1] < standard.ramp.steps[0].volume[1] < fast.ramp.steps[0].volume[1]


def test_a_bad_meta_condition_is_located_at_its_field(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    - {when: {overall: 1}, do: pause}\n",
        "    - {when: {overall: 1}, do: pause}\n    - {when: {quality: purple}, do: pause}\n"
        "    - {when: {status: [flagged, asleep]}, do: hold}\n",
    )
    problems = problems_of(write(tmp_path, text))
    found = [(p.line, p.field) for p in problems]
    assert found == [(20, "risk.rules[1].when.quality"), (21, "risk.rules[2].when.status")], problems
    assert "quality must be one of green, yellow, red, got 'purple'" in problems[0].message
    assert "'asleep'" in problems[1].message
    assert str(problems[0]).startswith(f"{tmp_path / 'plan.yaml'}:20:")
