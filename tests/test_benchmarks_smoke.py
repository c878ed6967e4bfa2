"""`benchmarks/chaos.py --quick` runs end to end and reports a clean fleet (about 70 s: slow); one
embedded day of `benchmarks/delivery.py` accounts for every message (about 30 s)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import require_service
from tests.paths import REPO_ROOT
from warmup.testing.services import pg_available

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(240)]

ROOT = REPO_ROOT


def test_chaos_quick_reports_every_must_be_zero_as_zero() -> None:
    if shutil.which("redis-server") is None:
        require_service("redis-server", "the binary is not on PATH (the chaos run restarts its own Redis)")
    if not pg_available():
        require_service("PostgreSQL", "cannot connect (WARMUP_TEST_DATABASE_URL)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "chaos"
    for key in ("stuck", "over_quota_number_days", "duplicates", "sent_not_in_log"):
        assert result[key] == 0, (key, result)
    assert result["unexpected_exits"] == [], result
    assert result["sent"] > 0 and result["planned"] >= result["sent"]
    assert {event["event"] for event in result["events"]} == {"kill_worker", "kill_leader", "restart_redis"}
    assert done.returncode == 0, done.stderr[-3000:]


def test_delivery_accounts_for_one_embedded_day_of_each_number() -> None:
    """One Monday of 3 numbers in embedded mode at the demo's speed (SQLite: no service; about 30 s).
    Delivery itself depends on the machine: only what must hold everywhere is asserted."""
    options = ["--modes", "embedded", "--speeds", "10800", "--days", "1", "--numbers", "3"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "delivery.py"), *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "delivery" and result["broken_runs"] == [], result
    run = result["runs"]["embedded"]["x10800"]
    assert run["number_days"] == 3, run  # each number's Monday, finished and with a quota
    assert run["invariants_ok"] and run["gap_violations"] == 0, run
    assert run["pending_on_finished_days"] == 0 and run["unexplained_shortfall"]["messages"] == 0, run
    assert 0 < run["sent"] <= run["quota"] == run["baseline"]["quota"]
    assert run["delivered_pct_of_quota"]["total"] == round(100 * run["sent"] / run["quota"], 2)
    assert result["targets"]["fleet_x1440_delivered_pct_of_quota_min"]["met"] is None  # no fleet run
    assert done.returncode == 0, done.stderr[-3000:]
