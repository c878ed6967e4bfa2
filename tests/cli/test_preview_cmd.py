"""`warmup plan preview` from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from warmup.cli import preview_cmd
from warmup.core.errors import UserError

PLAN_YAML = """\
version: 1
name: cli-preview
schedule:
  windows:
    - {days: mon-fri, hours: "09:00-12:30"}
    - {days: mon-fri, hours: "14:00-19:00"}
    - {days: sat, hours: "10:00-14:00"}
  rest_days: [sun]
ramp:
  steps:
    - {days: 1-3, volume: 8}
    - {days: 4-7, volume: 15..40}
    - {days: 8-14, volume: 50..150, curve: exponential}
    - {days: 15-21, volume: 200}
pacing: {gap: 40s..6m}
audience:
  peers: {reply_probability: 0.7}
risk:
  rules:
    - {when: {overall: 1}, do: pause}
    - {when: {lifetime: 1}, do: {cap: 50}}
    - {when: {response_rate: 1}, do: {throttle: 0.5}}
    - {when: {response_rate: 2}, do: hold}
  resume: {at: 0.5, over: 3d}
"""


@pytest.fixture()
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN_YAML)
    return path


def cli() -> typer.Typer:
    app = typer.Typer()
    plan_app = typer.Typer()
    app.add_typer(plan_app, name="plan")
    preview_cmd.register(app, plan_app)
    return app


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(cli(), ["plan", "preview", *args], env={"COLUMNS": "250"})
    return result.exit_code, result.output, result.exception


def test_bad_scenario_shows_throttle_and_pause_with_their_reasons(plan_file: Path) -> None:
    code, output, _ = invoke(str(plan_file), "--scenario", "bad", "--start", "2026-11-23", "--days", "20")
    assert code == 0, output
    assert "cli-preview under scenario bad" in output
    assert "throttle" in output and "risk.rules[2] response_rate=1 -> throttle 0.5: quota 32 -> 16" in output
    assert "pause" in output and "risk.rules[0] overall=1 -> pause: nothing is sent until resumed" in output
    assert "resumed on 2026-12-08" in output
    assert "2026-12-12" in output and "2026-12-13" not in output  # 20 days from the start
    assert "20 days, " in output


def test_chart_option_writes_a_png(plan_file: Path, tmp_path: Path) -> None:
    chart = tmp_path / "out" / "ramp.png"
    chart.parent.mkdir()
    code, output, _ = invoke(
        str(plan_file), "--scenario", "bad", "--start", "2026-11-23", "--chart", str(chart)
    )
    assert code == 0, output
    assert f"chart written to {chart}" in output.replace("\n", "")
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 0


def test_scenario_file_and_timezone(plan_file: Path, tmp_path: Path) -> None:
    scenario = tmp_path / "quiet.yaml"
    scenario.write_text("name: quiet\ndays:\n  - {days: 2, response_rate: 2}\n")
    code, output, _ = invoke(
        str(plan_file), "--scenario", str(scenario), "--start", "2026-11-23", "--days", "3",
        "--timezone", "America/Sao_Paulo", "--registered", "2026-01-01",
    )  # fmt: skip
    assert code == 0, output
    assert "cli-preview under scenario quiet (America/Sao_Paulo)" in output
    assert "risk.rules[3] response_rate=2 -> hold" in output
    assert "lifetime=1" not in output  # registered long ago: lifetime 3, the cap rule never fires


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "23/11/2026"], "--start expects a date like 2026-11-23"),
        (["--scenario", "awful"], "unknown scenario 'awful'"),
        (["--timezone", "Nowhere/City"], "unknown timezone 'Nowhere/City'"),
    ],
)
def test_bad_options_are_user_errors(plan_file: Path, args: list[str], message: str) -> None:
    code, _, exc = invoke(str(plan_file), *args)
    assert code != 0
    assert isinstance(exc, UserError) and message in str(exc)


def test_through_the_real_entry_point_a_bad_plan_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(PLAN_YAML.replace("volume: 8}", "volume: eight}"))
    done = subprocess.run(
        [sys.executable, "-m", "warmup", "plan", "preview", str(broken), "--days", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"{broken}:11:" in done.stderr and "volume" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_registration_after_the_first_day_is_refused(plan_file: Path) -> None:
    code, _, exc = invoke(str(plan_file), "--start", "2026-11-23", "--registered", "2027-01-01")
    assert code != 0 and isinstance(exc, UserError) and "--registered 2027-01-01 is after" in str(exc)


def test_an_unwritable_chart_fails_before_the_table(plan_file: Path, tmp_path: Path) -> None:
    code, output, exc = invoke(str(plan_file), "--chart", str(tmp_path / "missing" / "ramp.png"))
    assert code != 0 and isinstance(exc, UserError) and "does not exist" in str(exc)
    assert "cli-preview under scenario" not in output  # nothing printed, nothing half-done


def test_the_table_fits_100_columns_in_a_pipe(plan_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "warmup", "plan", "preview", str(plan_file), "--scenario", "bad"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    table = [line for line in lines if line.startswith(("│", "┃"))]
    assert table and all(line.endswith(("│", "┃")) for line in table)  # right border kept: nothing cropped
