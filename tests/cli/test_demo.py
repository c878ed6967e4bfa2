"""`warmup demo`: the real embedded run end to end, and the invariant checks it prints.

The end-to-end tests start the command as a user would (`python -m warmup demo`, from the repository
root, stdout not a terminal so the plain per-day output is used). The checker tests feed
`check_invariants` hand-made logs so each invariant is seen to FAIL when it is broken.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.paths import REPO_ROOT
from warmup.cli.demo import (
    PROFILES,
    Check,
    DemoOptions,
    MessageRow,
    SendRow,
    check_invariants,
    fleet_profiles,
)
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
    assert proc.returncode == 0, output
    invariant_lines = [line for line in output.splitlines() if line.lstrip().startswith(("OK", "FAIL"))]
    assert len(invariant_lines) == 3, output
    assert all(line.lstrip().startswith("OK") for line in invariant_lines), output
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
    assert proc.returncode == 0, output
    assert "stopped early" in output
    assert "warm-up summary" in output
    assert output.count("OK  ") == 3, output


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
    from rich.console import Console

    from warmup.cli.demo import Demo

    existing = tmp_path / "old.db"
    existing.write_text("")
    with pytest.raises(UserError, match="already exists"):
        Demo(DemoOptions(db=existing, plans_dir=ROOT / "plans"), Console())


# ------------------------------------------------------------------------------ the invariant checker

A, B = "+5511990000001", "+34600000002"
ZONES = {A: "America/Sao_Paulo", B: "Europe/Madrid"}
DAY1 = date(2026, 11, 23)
NOON = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 12:00 in Sao Paulo, 16:00 in Madrid
SETTLED = {A: DAY1 + timedelta(days=1), B: DAY1 + timedelta(days=1)}


def _sent(n: int, phone: str = A, start: int = 0) -> tuple[list[SendRow], list[MessageRow]]:
    sends = [SendRow(phone, f"m{start + i}", NOON + timedelta(minutes=i)) for i in range(n)]
    rows = [MessageRow(start + i, phone, DAY1, "sent", f"m{start + i}") for i in range(n)]
    return sends, rows


def _by_name(checks: list[Check]) -> dict[str, bool]:
    return {c.name: c.ok for c in checks}


def test_a_clean_run_passes_every_check() -> None:
    sends, rows = _sent(3)
    checks = check_invariants(sends, rows, {(A, DAY1): (3, 3)}, ZONES, SETTLED)
    assert [c.ok for c in checks] == [True, True, True]
    assert "100%" in checks[0].detail


def test_more_sends_than_the_quota_fail_the_quota_check() -> None:
    sends, rows = _sent(4)
    checks = _by_name(check_invariants(sends, rows, {(A, DAY1): (3, 3)}, ZONES, SETTLED))
    assert checks == {
        "no number exceeded its local-day quota": False,
        "no message sent twice": True,
        "no message stuck non-terminal": True,
    }


def test_a_send_on_a_day_without_a_plan_fails_the_quota_check() -> None:
    sends, rows = _sent(1, phone=B)
    checks = check_invariants(sends, rows, {(A, DAY1): (3, 0)}, ZONES, SETTLED)
    assert not checks[0].ok and B in checks[0].detail


def test_a_send_counts_on_its_stored_local_day_not_the_utc_day() -> None:
    # 02:30 UTC on the 24th is still the 23rd in Sao Paulo: it belongs to the 23rd's quota of 1
    late = SendRow(A, "late", datetime(2026, 11, 24, 2, 30, tzinfo=UTC))
    early = SendRow(A, "early", NOON)
    rows = [MessageRow(1, A, DAY1, "sent", "early"), MessageRow(2, A, DAY1, "sent", "late")]
    days = {(A, DAY1): (1, 1), (A, DAY1 + timedelta(days=1)): (5, 0)}
    assert not check_invariants([early, late], rows, days, ZONES, SETTLED)[0].ok
    days[(A, DAY1)] = (2, 2)
    assert check_invariants([early, late], rows, days, ZONES, SETTLED)[0].ok


def test_used_above_quota_in_the_store_fails_even_without_sends() -> None:
    checks = check_invariants([], [], {(A, DAY1): (3, 4)}, ZONES, SETTLED)
    assert not checks[0].ok


def test_a_second_send_of_one_message_fails_the_twice_check() -> None:
    sends, rows = _sent(2)
    duplicate = SendRow(A, "m-again", NOON + timedelta(minutes=9))  # accepted, but no stored message knows it
    checks = _by_name(check_invariants([*sends, duplicate], rows, {(A, DAY1): (5, 2)}, ZONES, SETTLED))
    assert checks["no message sent twice"] is False
    assert checks["no number exceeded its local-day quota"] is True


def test_an_unmatched_send_is_tolerated_only_against_an_unknown_message() -> None:
    sends, rows = _sent(2)
    orphan = SendRow(A, "m-lost", NOON + timedelta(minutes=9))
    unknown = MessageRow(99, A, DAY1, "unknown", None)
    checks = check_invariants([*sends, orphan], [*rows, unknown], {(A, DAY1): (5, 3)}, ZONES, SETTLED)
    assert checks[1].ok


def test_a_stored_sent_message_the_simulator_never_saw_fails_the_twice_check() -> None:
    sends, rows = _sent(2)
    checks = check_invariants(sends[:1], rows, {(A, DAY1): (5, 2)}, ZONES, SETTLED)
    assert not checks[1].ok and "never accepted" in checks[1].detail


def test_two_stored_messages_with_one_provider_id_fail_the_twice_check() -> None:
    sends, rows = _sent(1)
    rows.append(MessageRow(7, A, DAY1, "sent", "m0"))
    assert not check_invariants(sends, rows, {(A, DAY1): (5, 2)}, ZONES, SETTLED)[1].ok


def test_a_planned_message_of_a_finished_day_is_stuck() -> None:
    rows = [MessageRow(1, A, DAY1, "planned", None)]
    assert not check_invariants([], rows, {(A, DAY1): (5, 0)}, ZONES, SETTLED)[2].ok
    # the same message on a day that is not over yet is fine
    assert check_invariants([], rows, {(A, DAY1): (5, 0)}, ZONES, {A: DAY1, B: DAY1})[2].ok


def test_a_message_left_sending_after_shutdown_is_stuck() -> None:
    rows = [MessageRow(1, B, DAY1 + timedelta(days=1), "sending", None)]
    assert not check_invariants([], rows, {}, ZONES, SETTLED)[2].ok
