"""The operator CLI end to end: apply, pause, resume, status, why, history, audit, doctor (real store)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from tests.cli.rendering import check_reads_well, render, tokens_of
from tests.fleet_fixture import write_plan
from warmup.cli.admin_cmd import status_table
from warmup.cli.demo import fleet_profiles
from warmup.cli.main import _register, app
from warmup.core.domain import Reading
from warmup.core.errors import UserError
from warmup.services.admin import StatusRow
from warmup.store import numbers

_register()
runner = CliRunner()

FLEET = """\
numbers:
  - phone: "+5511999990001"
    provider: whapi
    base_url: http://127.0.0.1:1
    token: ${CLI_TOKEN_1}
    plan: plans/plan.yaml
    timezone: America/Sao_Paulo
    meter_url: http://127.0.0.1:1/services/riskOfBlocking
  - phone: "+5511999990002"
    provider: whapi
    base_url: http://127.0.0.1:1
    token: ${CLI_TOKEN_2}
    plan: plans/plan.yaml
    timezone: Asia/Tokyo
    meter_url: http://127.0.0.1:1/services/riskOfBlocking
admins: ["+5511988880000"]
"""


@pytest.fixture
def setup(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    write_plan(tmp_path / "plans")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    monkeypatch.setenv("CLI_TOKEN_1", "cli-token-one-value")
    monkeypatch.setenv("CLI_TOKEN_2", "cli-token-two-value")
    monkeypatch.setenv("WARMUP_CLOCK", "")
    monkeypatch.setenv("COLUMNS", "250")  # rich tables unwrapped
    return engine.url.render_as_string(hide_password=False), fleet


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_apply_dry_run_then_apply_then_no_changes(engine: Engine, setup: tuple[str, Path]) -> None:
    url, fleet = setup
    code, out = run("apply", str(fleet), "--dry-run", "--database-url", url)
    assert code == 0 and "would add +5511999990001" in out and "dry run: 3 change(s) not applied" in out
    assert numbers.list_numbers(engine) == []
    code, out = run("apply", str(fleet), "--database-url", url)
    assert code == 0 and "applied 3 change(s)" in out
    assert len(numbers.list_numbers(engine)) == 2
    code, out = run("apply", str(fleet), "--database-url", url)
    assert code == 0 and "no changes" in out
    fleet.write_text(FLEET.replace("${CLI_TOKEN_2}", "${NOT_SET_HERE}"))
    code, out = run("apply", str(fleet), "--database-url", url)
    assert code == 1 and f"{fleet}:12:12: numbers[1].token" in out and "nothing applied" in out
    assert "cli-token" not in out


def test_pause_status_why_resume_audit(engine: Engine, setup: tuple[str, Path], tmp_path: Path) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--database-url", url)
    code, out = run("pause", "+5511999990001", "--reason", "too fast", "--for", "2h", "--database-url", url)
    assert code == 0 and "paused +5511999990001" in out
    number = numbers.get_number(engine, phone="+5511999990001")
    assert number is not None and number.state == "paused" and number.paused_until is not None
    code, out = run("status", "--database-url", url)
    assert code == 0 and "+5511999990001" in out and "too fast" in out and "active" in out
    code, out = run("why", "+5511999990001", "--database-url", url)
    assert code == 0 and "no decision was made (the number is paused)" in out
    code, out = run("resume", "--all", "--database-url", url)
    assert "resumed +5511999990001" in out and "unchanged +5511999990002 (active)" in out
    code, out = run("audit", "+5511999990001", "--database-url", url)
    assert code == 0 and "resume" in out and "pause" in out and "fleet_add" in out
    code, out = run("history", "+5511999990001", "--database-url", url)
    assert code == 0 and "+5511999990001 has no planned day yet" in out
    with pytest.raises(UserError, match="nothing to chart"):
        run("history", "+5511999990001", "--chart", str(tmp_path / "c.png"), "--database-url", url)


def test_user_errors(engine: Engine, setup: tuple[str, Path], tmp_path: Path) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--database-url", url)
    with pytest.raises(UserError, match="exactly one target"):
        run("pause", "+5511999990001", "--all", "--database-url", url)
    with pytest.raises(UserError, match="--for"):
        run("pause", "+5511999990001", "--for", "soon", "--database-url", url)
    with pytest.raises(UserError, match="unknown number"):
        run("why", "+5511000000000", "--database-url", url)
    with pytest.raises(UserError, match="not a date"):
        run("why", "+5511999990001", "--date", "yesterday", "--database-url", url)
    with pytest.raises(UserError, match="warmup db upgrade"):
        run("status", "--database-url", f"sqlite:///{tmp_path}/fresh.db")


def test_doctor_exit_code(engine: Engine, setup: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, fleet = setup
    monkeypatch.delenv("WARMUP_REDIS_URL", raising=False)
    from warmup.config import get_settings

    get_settings.cache_clear()
    code, out = run("doctor", "--database-url", url)
    assert code == 0 and "none enrolled" in out
    run("apply", str(fleet), "--database-url", url)
    code, out = run("doctor", "--database-url", url)  # nothing listens on port 1: the channels are red
    assert code == 1 and "fail" in out and "cli-token" not in out


def test_status_without_numbers_prints_a_hint_not_an_empty_table(
    engine: Engine, setup: tuple[str, Path]
) -> None:
    url, _ = setup
    code, out = run("status", "--database-url", url)
    assert code == 0 and "no numbers enrolled: run `warmup apply FLEET.yaml`" in out and "┏" not in out


@pytest.mark.parametrize("width", [80, 120])
def test_status_fits_the_terminal_and_never_folds_a_phone(
    engine: Engine, setup: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--database-url", url)
    run(
        "pause",
        "+5511999990001",
        "--reason",
        "a long reason that would fold a narrow column",
        "--database-url",
        url,
    )
    monkeypatch.setenv("COLUMNS", str(width))
    code, out = run("status", "--database-url", url)
    assert code == 0
    table = out.split("quota -:")[0].splitlines()
    assert max(len(line) for line in table) <= width
    rows = [line.split() for line in table if "+55119999900" in line]
    assert [row[:2] for row in rows] == [["+5511999990001", "test-plan"], ["+5511999990002", "test-plan"]]
    assert rows[0][-1] == "paused" and rows[1][-1] == "active"
    assert "+5511999990001: paused: a long reason that would fold a narrow column" in out
    assert "risk: overall/lifetime/response/contacts" in out


def status_rows() -> list[StatusRow]:
    """Twelve numbers of the demo's plans and phone formats, with wide values in every column."""
    rows = []
    for i, (profile, phone) in enumerate(fleet_profiles(12)):
        rows.append(
            StatusRow(
                number_id=i + 1,
                phone=phone,
                plan=profile.plan_file.removesuffix(".yaml"),
                plan_day=100 + i,
                local_date=date(2026, 11, 24),
                quota=None if i == 0 else 250,
                used=0,
                sent=240,
                replies=1000 + i,
                reading=Reading(
                    2, 3, 2, 1, datetime(2026, 11, 24, tzinfo=UTC), "local" if i % 4 else "simulator"
                ),
                state="paused" if i == 2 else "retired" if i == 5 else "active",
                paused_reason="too fast" if i == 2 else None,
                paused_until=None,
            )
        )
    return rows


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_status_table_reads_well(width: int) -> None:
    shown = status_rows()
    words = tokens_of(
        ["fleet status (each number's own local day)", "number plan local date plan day quota sent"]
        + ["deliv. 96%"]
        + ["replies repl. risk state - Tue 24 Nov 2/3/2/1 2/3/2/1* 2/3/2/1 local paused retired active"]
        + ["stand-21d cauti-new fast-aged standard-21d cautious-new"]
        + [f"{row.phone} {row.plan_day} {row.quota} {row.sent} {row.replies}" for row in shown]
    )
    text = render(status_table(shown), width)
    check_reads_well(text, width, [row.phone for row in shown], words)
    assert "fast-aged" in text.split()  # was `fas t-a ged`
    assert "96%" in text.split()  # delivered so far today: 240 of 250
    if width >= 120:
        assert "standard-21d" in text and "Tue 24 Nov" in text and "2/3/2/1 local" in text


def test_phones_may_be_written_like_people_write_them(engine: Engine, setup: tuple[str, Path]) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--database-url", url)
    for written in ("5511999990001", "+55 11 99999-0001", "005511999990001"):
        code, out = run("why", written, "--database-url", url)
        assert code == 0 and out.startswith("+5511999990001 on "), (written, out)
    code, out = run("pause", "55 11 99999 0001", "--database-url", url)
    assert code == 0 and "paused +5511999990001" in out


def test_pause_messages_say_what_to_do(engine: Engine, setup: tuple[str, Path]) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--database-url", url)
    with pytest.raises(UserError, match=r"unknown number \+5511000000000: `warmup status --retired`"):
        run("pause", "+5511000000000", "--database-url", url)
    with pytest.raises(UserError, match=r"no number uses plan 'nope' \(plans in use: test-plan\)"):
        run("pause", "--plan", "nope", "--database-url", url)
    with pytest.raises(UserError, match="reason of a pause cannot be empty"):
        run("pause", "--all", "--reason", " ", "--database-url", url)
    assert all(n.state == "active" for n in numbers.list_numbers(engine))  # nothing half-done
    code, out = run("pause", "--all", "--for", "90m", "--database-url", url)
    assert code == 0 and "paused +5511999990001 until " in out and " UTC (1 h 30 min)" in out
    assert "warmup resume" in out


def test_why_says_why_a_day_has_no_decision(engine: Engine, setup: tuple[str, Path]) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--database-url", url)
    code, out = run("why", "+5511999990001", "--date", "2000-01-01", "--database-url", url)
    assert code == 0 and "nothing is stored for that day" in out
    code, out = run("why", "+5511999990001", "--date", "2999-01-01", "--database-url", url)
    assert code == 0 and "has not come yet; its local today is" in out
    code, out = run("why", "+5511999990001", "--database-url", url)
    assert code == 0 and "is `warmup run` (or `warmup scheduler`) running?" in out


def test_audit_detail_is_readable_not_json(engine: Engine, setup: tuple[str, Path]) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--database-url", url)
    code, out = run("audit", "--database-url", url)
    assert code == 0 and "token_ref: CLI_TOKEN_1" in out and "admins: +5511988880000" in out
    assert '{"' not in out and "cli-token-one-value" not in out


def test_history_checks_the_chart_path_before_anything(
    engine: Engine, setup: tuple[str, Path], tmp_path: Path
) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--database-url", url)
    with pytest.raises(UserError, match="does not exist"):
        run("history", "+5511999990001", "--chart", str(tmp_path / "no" / "c.png"), "--database-url", url)
    code, out = run("history", "+5511999990001", "--database-url", url)
    assert code == 0 and "has no planned day yet" in out
