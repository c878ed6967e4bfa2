"""The fleet file: located validation, dry runs, idempotent applies, retirement, admins (real store)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import write_plan
from warmup.core.localtime import local_date_of
from warmup.files.problems import PlanError
from warmup.services.fleet import apply_changes, current_admins, load_fleet, plan_changes
from warmup.store import claims, days, history, pauses
from warmup.store.audit import list_audit
from warmup.store.numbers import get_number, list_numbers
from warmup.store.sends import PlannedSend

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ENV = {"TOK_A": "token-value-a", "TOK_B": "token-value-b", "TOK_C": "token-value-c"}

NUMBER = """\
  - phone: "{phone}"
    provider: {provider}
    token: ${{{token}}}
    plan: plans/plan.yaml
    timezone: {timezone}
    registered: 2026-11-01
{extra}"""


def fleet_text(*numbers: dict[str, str], admins: str = '["+5511988880000"]') -> str:
    body = "".join(
        NUMBER.format(
            phone=n["phone"],
            provider=n.get("provider", "simulator"),
            token=n.get("token", "TOK_A"),
            timezone=n.get("timezone", "America/Sao_Paulo"),
            extra=n.get("extra", "    base_url: http://127.0.0.1:9\n"),
        )
        for n in numbers
    )
    return f"numbers:\n{body}admins: {admins}\n"


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    write_plan(tmp_path / "plans")
    return tmp_path


def write(fleet_dir: Path, text: str) -> Path:
    path = fleet_dir / "fleet.yaml"
    path.write_text(text)
    return path


def problems_of(path: Path, env: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(PlanError) as info:
        load_fleet(path, env)
    return [str(p) for p in info.value.problems]


def test_a_valid_file_loads_with_resolved_plan_and_variable_names(fleet_dir: Path) -> None:
    path = write(
        fleet_dir, fleet_text({"phone": "+5511999990001"}, {"phone": "+5511999990002", "token": "TOK_B"})
    )
    fleet = load_fleet(path, ENV)
    assert [n.phone for n in fleet.numbers] == ["+5511999990001", "+5511999990002"]
    first = fleet.numbers[0]
    assert first.token_ref == "TOK_A" and fleet.numbers[1].token_ref == "TOK_B"
    assert first.plan_name == "test-plan"
    assert Path(first.plan_path).is_absolute() and Path(first.plan_path).is_file()
    assert first.registered == date(2026, 11, 1)
    assert first.base_url == "http://127.0.0.1:9"
    assert fleet.admins == ("+5511988880000",)
    assert "token-value" not in repr(fleet)


def test_every_problem_is_located_and_nothing_is_echoed(fleet_dir: Path) -> None:
    literal = "EAAGm0PX4ZCpsBAKZCxyz123abcDEF456ghi"
    text = fleet_text(
        {"phone": "+5511999990001", "token": "UNSET_VAR"},
        {"phone": "+5511999990001"},
        {"phone": "5511", "timezone": "Mars/Olympus"},
    ).replace("${TOK_A}", literal, 1)  # the second number's token
    path = write(fleet_dir, text)
    problems = problems_of(path)
    joined = "\n".join(problems)
    assert literal not in joined
    assert any(":9:" in p and "numbers[1].phone" in p and "listed twice" in p for p in problems)
    assert any(":4:" in p and "numbers[0].token" in p and "UNSET_VAR is not set" in p for p in problems)
    assert any(":11:" in p and "numbers[1].token" in p and "literal token" in p for p in problems)
    assert any("numbers[2].phone" in p and "'5511' is not an E.164 number" in p for p in problems)
    assert not any("letters, digits" in p for p in problems)  # not the generic pattern message
    assert any("numbers[2].timezone" in p and "Mars/Olympus" in p for p in problems)
    for problem in problems:
        assert problem.startswith(f"{path}:"), problem


def test_unset_token_variable_and_literal_token_are_errors(fleet_dir: Path) -> None:
    path = write(fleet_dir, fleet_text({"phone": "+5511999990001", "token": "NOT_SET_ANYWHERE"}))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:4:")
    assert "NOT_SET_ANYWHERE is not set" in problem
    literal = write(
        fleet_dir, fleet_text({"phone": "+5511999990001"}).replace("${TOK_A}", "abcDEF123ghiJKL456mnoPQR")
    )
    (problem,) = problems_of(literal)
    assert "numbers[0].token" in problem and "literal token" in problem and "abcDEF" not in problem


def test_a_broken_plan_reports_its_own_located_problems(fleet_dir: Path) -> None:
    plan = fleet_dir / "plans" / "plan.yaml"
    plan.write_text(plan.read_text().replace("max_per_hour: 30", "max_per_hour: lots"))
    path = write(fleet_dir, fleet_text({"phone": "+5511999990001"}))
    problems = problems_of(path)
    assert any(p.startswith(f"{plan}:") and "pacing.max_per_hour" in p for p in problems)
    missing = write(
        fleet_dir, fleet_text({"phone": "+5511999990001"}).replace("plans/plan.yaml", "plans/no.yaml")
    )
    assert any("numbers[0].plan" in p and "not found" in p for p in problems_of(missing))


def test_provider_requirements(fleet_dir: Path) -> None:
    cloud = fleet_text({"phone": "+5511999990001", "provider": "cloud_api", "extra": ""})
    (problem,) = problems_of(write(fleet_dir, cloud))
    assert "numbers[0]" in problem and "phone_number_id" in problem
    sim = fleet_text({"phone": "+5511999990001", "extra": ""})
    (problem,) = problems_of(write(fleet_dir, sim))
    assert "base_url" in problem
    typo = fleet_text({"phone": "+5511999990001", "provider": "whapy"})
    (problem,) = problems_of(write(fleet_dir, typo))
    assert "numbers[0].provider" in problem and "whapi" in problem


def test_dry_run_changes_nothing_and_apply_twice_is_no_change(engine: Engine, fleet_dir: Path) -> None:
    path = write(
        fleet_dir, fleet_text({"phone": "+5511999990001"}, {"phone": "+5511999990002", "token": "TOK_B"})
    )
    fleet = load_fleet(path, ENV)
    changes = plan_changes(engine, fleet)
    assert [c.kind for c in changes] == ["add", "add", "admins"]
    assert list_numbers(engine) == [] and current_admins(engine) == ()  # planning is not applying
    apply_changes(engine, changes, now=NOW)
    numbers = list_numbers(engine)
    assert [(n.phone, n.token_ref, n.state) for n in numbers] == [
        ("+5511999990001", "TOK_A", "active"),
        ("+5511999990002", "TOK_B", "active"),
    ]
    assert current_admins(engine) == ("+5511988880000",)
    assert plan_changes(engine, load_fleet(path, ENV)) == []
    audit = list_audit(engine)
    assert sorted(row.action for row in audit) == ["admins", "fleet_add", "fleet_add"]
    assert all("token-value" not in str(row.detail) for row in audit)


def test_updates_are_field_by_field_and_keep_the_ramp(engine: Engine, fleet_dir: Path) -> None:
    path = write(fleet_dir, fleet_text({"phone": "+5511999990001"}))
    apply_changes(engine, plan_changes(engine, load_fleet(path, ENV)), now=NOW)
    number = get_number(engine, phone="+5511999990001")
    assert number is not None and number.id is not None
    pauses.pause_numbers(engine, reason="hold on", actor="test", now=NOW, number_ids=[number.id])
    write(fleet_dir, fleet_text({"phone": "+5511999990001", "timezone": "Europe/Berlin", "token": "TOK_C"}))
    (change,) = plan_changes(engine, load_fleet(path, ENV))
    assert change.kind == "update"
    assert change.fields == {
        "token_ref": ("TOK_A", "TOK_C"),
        "timezone": ("America/Sao_Paulo", "Europe/Berlin"),
    }
    assert "timezone America/Sao_Paulo -> Europe/Berlin" in change.describe()
    apply_changes(engine, [change], now=NOW)
    after = get_number(engine, phone="+5511999990001")
    assert after is not None and after.timezone == "Europe/Berlin" and after.token_ref == "TOK_C"
    assert after.state == "paused" and after.paused_reason == "hold on"  # apply never touches the pause


def test_a_removed_number_is_retired_with_its_history_kept(engine: Engine, fleet_dir: Path) -> None:
    from warmup.core.domain import Action, Decision

    path = write(fleet_dir, fleet_text({"phone": "+5511999990001"}, {"phone": "+5511999990002"}))
    apply_changes(engine, plan_changes(engine, load_fleet(path, ENV)), now=NOW)
    gone = get_number(engine, phone="+5511999990002")
    assert gone is not None and gone.id is not None
    today = local_date_of(NOW, gone.timezone)
    decision = Decision(today, 1, 2, Action.ADVANCE, 2, 2, 2)
    sends = [PlannedSend("+5511977770001", "hi", NOW + timedelta(minutes=m)) for m in (10, 20)]
    assert days.plan_day(engine, gone.id, decision, sends, now=NOW)

    write(fleet_dir, fleet_text({"phone": "+5511999990001"}))
    changes = plan_changes(engine, load_fleet(path, ENV))
    assert [(c.kind, c.phone) for c in changes] == [("retire", "+5511999990002")]
    apply_changes(engine, changes, now=NOW)
    retired = get_number(engine, phone="+5511999990002")
    assert retired is not None and retired.state == "retired"
    messages = history.list_messages(engine, gone.id, today)
    assert len(messages) == 2 and {m.state for m in messages} == {"skipped"}  # kept, never sent
    assert days.get_day_plan(engine, gone.id, today) is not None
    assert plan_changes(engine, load_fleet(path, ENV)) == []  # retiring is done once
    result = claims.claim(engine, messages[0].id or 0, "w", NOW + timedelta(hours=1))
    assert not result.claimed

    # back in the file: active again, with the same id and history
    write(fleet_dir, fleet_text({"phone": "+5511999990001"}, {"phone": "+5511999990002"}))
    (change,) = plan_changes(engine, load_fleet(path, ENV))
    assert change.kind == "reactivate"
    apply_changes(engine, [change], now=NOW)
    again = get_number(engine, phone="+5511999990002")
    assert again is not None and again.id == gone.id and again.state == "active"


def test_admin_list_changes_are_audited_and_read_back(engine: Engine, fleet_dir: Path) -> None:
    path = write(
        fleet_dir, fleet_text({"phone": "+5511999990001"}, admins='["+5511988880000", "+5511988880001"]')
    )
    apply_changes(engine, plan_changes(engine, load_fleet(path, ENV)), now=NOW)
    assert current_admins(engine) == ("+5511988880000", "+5511988880001")
    write(fleet_dir, fleet_text({"phone": "+5511999990001"}, admins="[]"))
    (change,) = plan_changes(engine, load_fleet(path, ENV))
    assert change.kind == "admins"
    assert change.describe() == "set admins: +5511988880000, +5511988880001 -> none"  # reads as a verb
    apply_changes(engine, [change], now=NOW)
    assert current_admins(engine) == ()
    rows = [r for r in list_audit(engine) if r.action == "admins"]
    assert rows[0].detail == {"admins": [], "before": ["+5511988880000", "+5511988880001"]}


def test_bad_admin_phone_is_located(fleet_dir: Path) -> None:
    path = write(fleet_dir, fleet_text({"phone": "+5511999990001"}, admins='["12345"]'))
    (problem,) = problems_of(path)
    assert "admins" in problem and "12345" in problem


def test_an_unset_token_variable_that_might_be_a_token_is_not_echoed(fleet_dir: Path) -> None:
    """Issue 14 item 5: a literal token in one letter case under 24 characters reads like a name."""
    literal = "abcdef0123456789abcd"
    path = write(fleet_dir, fleet_text({"phone": "+5511999990001"}).replace("${TOK_A}", literal))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:4:") and "numbers[0].token" in problem
    assert literal not in problem and "cdef01" not in problem
    assert "ab… (20 characters) is not set" in problem
