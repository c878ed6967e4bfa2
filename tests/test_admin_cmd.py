"""The operator CLI end to end: apply, pause, resume, status, why, history, audit, doctor (real store)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from tests.fleet_fixture import write_plan
from warmup.cli.main import _register, app
from warmup.errors import UserError
from warmup.store import ops

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
  - phone: "+5511999990002"
    provider: whapi
    base_url: http://127.0.0.1:1
    token: ${CLI_TOKEN_2}
    plan: plans/plan.yaml
    timezone: Asia/Tokyo
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
    code, out = run("apply", str(fleet), "--dry-run", "--url", url)
    assert code == 0 and "would add +5511999990001" in out and "dry run: 3 change(s) not applied" in out
    assert ops.list_numbers(engine) == []
    code, out = run("apply", str(fleet), "--url", url)
    assert code == 0 and "applied 3 change(s)" in out
    assert len(ops.list_numbers(engine)) == 2
    code, out = run("apply", str(fleet), "--url", url)
    assert code == 0 and "no changes" in out
    fleet.write_text(FLEET.replace("${CLI_TOKEN_2}", "${NOT_SET_HERE}"))
    code, out = run("apply", str(fleet), "--url", url)
    assert code == 1 and f"{fleet}:11:12: numbers[1].token" in out and "nothing applied" in out
    assert "cli-token" not in out


def test_pause_status_why_resume_audit(engine: Engine, setup: tuple[str, Path], tmp_path: Path) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--url", url)
    code, out = run("pause", "+5511999990001", "--reason", "too fast", "--for", "2h", "--url", url)
    assert code == 0 and "paused +5511999990001" in out
    number = ops.get_number(engine, phone="+5511999990001")
    assert number is not None and number.state == "paused" and number.paused_until is not None
    code, out = run("status", "--url", url)
    assert code == 0 and "+5511999990001" in out and "too fast" in out and "active" in out
    code, out = run("why", "+5511999990001", "--url", url)
    assert code == 0 and "no decision was made (the number is paused)" in out
    code, out = run("resume", "--all", "--url", url)
    assert "resumed +5511999990001" in out and "unchanged +5511999990002 (active)" in out
    code, out = run("audit", "+5511999990001", "--url", url)
    assert code == 0 and "resume" in out and "pause" in out and "fleet_add" in out
    code, out = run("history", "+5511999990001", "--url", url)
    assert code == 0 and "history of +5511999990001" in out
    with pytest.raises(UserError, match="nothing to chart"):
        run("history", "+5511999990001", "--chart", str(tmp_path / "c.png"), "--url", url)


def test_user_errors(engine: Engine, setup: tuple[str, Path], tmp_path: Path) -> None:
    url, fleet = setup
    run("apply", str(fleet), "--url", url)
    with pytest.raises(UserError, match="exactly one target"):
        run("pause", "+5511999990001", "--all", "--url", url)
    with pytest.raises(UserError, match="--for"):
        run("pause", "+5511999990001", "--for", "soon", "--url", url)
    with pytest.raises(UserError, match="unknown number"):
        run("why", "+5511000000000", "--url", url)
    with pytest.raises(UserError, match="not a date"):
        run("why", "+5511999990001", "--date", "yesterday", "--url", url)
    with pytest.raises(UserError, match="warmup db upgrade"):
        run("status", "--url", f"sqlite:///{tmp_path}/fresh.db")


def test_doctor_exit_code(engine: Engine, setup: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, fleet = setup
    monkeypatch.delenv("WARMUP_REDIS_URL", raising=False)
    from warmup.config import get_settings

    get_settings.cache_clear()
    code, out = run("doctor", "--url", url)
    assert code == 0 and "none enrolled" in out
    run("apply", str(fleet), "--url", url)
    code, out = run("doctor", "--url", url)  # nothing listens on port 1: the channels are red
    assert code == 1 and "fail" in out and "cli-token" not in out
