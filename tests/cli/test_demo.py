"""`warmup demo`: the real embedded run end to end, and the invariant checks it prints.

The end-to-end tests start the command as a user would (`python -m warmup demo`, from the repository
root, stdout not a terminal so the plain per-day output is used). The checks it prints come from the
one invariant checker, `warmup.testing.invariants`, whose own tests (tests/testing/test_invariants.py)
feed it hand-made logs so each invariant is seen to FAIL when it is broken.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from rich.console import Console

from tests.paths import REPO_ROOT
from warmup.cli.demo import PROFILES, Demo, DemoOptions, fleet_profiles
from warmup.core.errors import UserError

ROOT = REPO_ROOT
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _demo(*args: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMUP_")}
    return subprocess.Popen(
        [sys.executable, "-m", "warmup", "demo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_demo_runs_the_fleet_and_every_invariant_holds(tmp_path: Path) -> None:
    chart = tmp_path / "demo.png"
    db = tmp_path / "demo.db"
    args = ("--days", "2", "--day-seconds", "3", "--numbers", "3", "--seed", "1")
    proc = _demo(*args, "--chart", str(chart), "--db", str(db), tmp_path=tmp_path)
    output, _ = proc.communicate(timeout=90)
    check_lines = [line for line in output.splitlines() if line.lstrip().startswith(("OK", "FAIL"))]
    assert len(check_lines) == 5, output
    *invariant_lines, delivery = check_lines
    assert all(line.lstrip().startswith("OK") for line in invariant_lines), output
    assert "no two sends of a number closer than its minimum gap" in invariant_lines[3], output
    # Delivery at 3 s a day (x28,800) depends on this machine's speed: a short day fails the run (exit 1)
    # and is named with its causes; a full one passes (exit 0). Either way the share is printed.
    assert "every finished sending day delivered its quota" in delivery, output
    assert re.search(r"delivered: \d+% of the quota", output), output
    if delivery.lstrip().startswith("FAIL"):
        assert proc.returncode == 1 and re.search(r"\d+/\d+ \(\d+%\)", output), output
    else:
        assert proc.returncode == 0, output
    # some messages really went out, per the simulator's log
    sent = [line for line in invariant_lines if "sends in the simulator's log" in line]
    assert sent and int(sent[0].split("no message sent twice:")[1].split()[0]) > 0, output
    # plain per-day lines (stdout is not a terminal) and the summary table
    assert "standard-21d" in output and "cautious-new" in output and "fast-aged" in output
    assert "warm-up summary" in output
    assert chart.read_bytes()[:8] == PNG_MAGIC
    assert "Traceback" not in output
    # tokens: only environment-variable names in the database, no token-like value in the output
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        refs = conn.execute(sa.text("SELECT token_ref FROM numbers ORDER BY id")).scalars().all()
    engine.dispose()
    assert refs == ["WARMUP_DEMO_TOKEN_1", "WARMUP_DEMO_TOKEN_2", "WARMUP_DEMO_TOKEN_3"]
    assert not re.search(r"\b[0-9a-f]{32}\b", output)


@pytest.mark.slow
def test_ctrl_c_stops_early_and_still_prints_the_summary(tmp_path: Path) -> None:
    proc = _demo("--days", "30", "--day-seconds", "4", "--numbers", "2", tmp_path=tmp_path)
    time.sleep(6)
    assert proc.poll() is None, "the demo ended before it was interrupted"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert time.monotonic() - started < 45
    assert "stopped early" in output
    assert "warm-up summary" in output
    assert output.count("OK  ") >= 4, output  # the invariants; delivery depends on this machine's speed
    assert proc.returncode == (1 if "FAIL" in output else 0), output


def test_the_fleet_mixes_plans_timezones_and_phones() -> None:
    phones = [phone for _, phone in fleet_profiles(12)]
    assert len(set(phones)) == 12
    assert {p.timezone for p in PROFILES} >= {"America/Sao_Paulo", "Europe/Madrid", "Asia/Kolkata"}
    assert len({p.plan_file for p in PROFILES}) == 3


def test_options_are_checked() -> None:
    with pytest.raises(UserError, match="--numbers"):
        DemoOptions(numbers=0)
    with pytest.raises(UserError, match="--day-seconds"):
        DemoOptions(day_seconds=0.5)
    assert DemoOptions(day_seconds=8).scale == 10800


def test_an_existing_database_file_is_refused(tmp_path: Path) -> None:
    existing = tmp_path / "old.db"
    existing.write_text("")
    with pytest.raises(UserError, match="already exists"):
        Demo(DemoOptions(db=existing, plans_dir=ROOT / "plans"), Console())
