"""What every benchmark shares: arguments, the private services, result output and small statistics.

Each benchmark prints ONE JSON object on stdout (machine-readable, comparable between runs) and a short
human summary on stderr. Services are private to the run: a throwaway PostgreSQL database (dropped at
the end) and a private ``redis-server`` on a free port, so nothing else on the machine is touched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psutil
import sqlalchemy as sa

from warmup.core.domain import Action, Decision, Reason
from warmup.store import days, tables
from warmup.testing.harness import FleetHarness, FleetSpec, contact_of
from warmup.testing.services import RedisServer, throwaway_database

# noon UTC: every default time zone of the harness is inside its day, far from midnight
BENCH_START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small, fast run (smoke test, CI)")
    return p


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the machine skews figures
    }


def emit(name: str, result: dict[str, Any], summary: Sequence[str]) -> None:
    """Print the ONE JSON object (stdout) and the human summary (stderr)."""
    payload = {"benchmark": name, "machine": machine(), **result}
    print(json.dumps(payload, default=str, sort_keys=False))
    for line in summary:
        print(line, file=sys.stderr)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` (0..100) percentile by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


@contextlib.contextmanager
def fleet(spec: FleetSpec, *, start_clock: bool = True, enroll: bool = True) -> Iterator[FleetHarness]:
    """A harness on a private Redis and a throwaway database; simulator up, numbers enrolled (unless
    ``enroll`` is False: the caller enrolls them, e.g. once the workers and schedulers are up)."""
    with RedisServer() as redis, throwaway_database(prefix="warmup_bench") as url:
        harness = FleetHarness(spec, url, redis)
        try:
            harness.setup(start_clock=start_clock, enroll=enroll)
            yield harness
        finally:
            harness.close()
        shutil.rmtree(harness.dir, ignore_errors=True)  # kept (with the process logs) when a run fails


def plan_fixed_day(harness: FleetHarness, local_date: date, quota: int) -> None:
    """Give every number of the fleet a day plan with ``quota`` and no messages (add them later)."""
    decision = Decision(
        local_date=local_date,
        plan_day=1,
        next_plan_day=1,
        action=Action.HOLD,
        quota=quota,
        plan_volume=quota,
        max_new_contacts=quota,
        reasons=(Reason("benchmark", Action.HOLD, "fixed quota for a benchmark"),),
    )
    for number_id in harness.number_ids:
        days.plan_day(harness.engine, number_id, decision, [], now=harness.now())


def add_messages(
    harness: FleetHarness,
    local_date: date,
    times: Sequence[datetime],
    *,
    texts: Sequence[str],
    numbers: Sequence[int] | None = None,
) -> int:
    """Add one message per entry of ``times`` round-robin over ``numbers`` (default: the fleet's), in
    one bulk insert; how many.

    The caller keeps each number at its plan's pace: a number whose messages come closer than the
    plan's gap has a backlog, which the scheduler re-spreads over the day (it never bursts).
    """
    rows = []
    plans = _day_plan_ids(harness, local_date)
    stamp = harness.now()
    numbers = list(numbers if numbers is not None else harness.number_ids)
    for i, at in enumerate(times):
        number_id = numbers[i % len(numbers)]
        rows.append(
            {
                "number_id": number_id,
                "day_plan_id": plans[number_id],
                "local_date": local_date,
                "recipient": contact_of(i % 997),
                "kind": "opener",
                "text": texts[i % len(texts)] + f" #{i}",
                "typing_seconds": 0.0,
                "scheduled_at": at,
                "state": "planned",
                "attempts": 0,
                "created_at": stamp,
            }
        )
    with harness.engine.begin() as conn:
        conn.execute(sa.insert(tables.MESSAGES), rows)
    return len(rows)


def _day_plan_ids(harness: FleetHarness, local_date: date) -> dict[int, int]:
    with harness.engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.DAY_PLANS.c.number_id, tables.DAY_PLANS.c.id).where(
                tables.DAY_PLANS.c.local_date == local_date
            )
        ).all()
    return {int(r.number_id): int(r.id) for r in rows}


def open_count(harness: FleetHarness) -> int:
    """Messages not yet in a terminal state."""
    counts = harness.state_counts()
    return sum(counts.get(state, 0) for state in ("planned", "queued", "sending"))


def wait_all_terminal(harness: FleetHarness, timeout: float, poll: float = 0.05) -> float:
    """Wall seconds until no message is open (or ``timeout``); returns the wait."""
    started = time.perf_counter()
    while open_count(harness) and time.perf_counter() - started < timeout:
        time.sleep(poll)
    return time.perf_counter() - started


class CpuMeter:
    """CPU seconds (user + system) each part of a run used between `start` and `stop`: the workers, the
    schedulers, the simulator, PostgreSQL (the backends serving the run's database) and this process;
    on a 2-core machine it shows which part a benchmark is waiting for."""

    def __init__(self, harness: FleetHarness) -> None:
        self.harness = harness
        self._before: dict[int, tuple[str, float]] = {}
        self.used: dict[str, float] = {}

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        h = self.harness
        roles: dict[int, str] = {os.getpid(): "benchmark"}
        for role, procs in (("workers", h.workers), ("schedulers", h.schedulers)):
            for proc in procs:
                roles.update(dict.fromkeys(proc.pids(), role))
        if h.simulator is not None:
            roles.update(dict.fromkeys(h.simulator.pids(), "simulator"))
        database = f" {sa.make_url(h.database_url).database} "  # backends show it in their title
        for process in psutil.process_iter(["name", "cmdline"]):
            title = " ".join(process.info["cmdline"] or ())
            if (process.info["name"] or "").startswith("postgres") and database in title:
                roles[process.pid] = "postgresql"
        found = {}
        for pid, role in roles.items():
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                found[pid] = (role, times.user + times.system)
        return found

    def start(self) -> None:
        self._before = self._snapshot()

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for pid, (role, seconds) in self._snapshot().items():
            earlier = self._before.get(pid, (role, 0.0))[1]  # a process started meanwhile counts from 0
            used[role] = used.get(role, 0.0) + seconds - earlier
        self.used = {role: round(seconds, 2) for role, seconds in sorted(used.items())}
        return self.used


def wait_workers_ready(harness: FleetHarness, count: int, timeout: float = 60.0) -> None:
    """Until the live worker processes (``count`` of them) consume from Redis."""
    assert len(harness.alive_workers()) == count, harness.alive_workers()
    harness.wait_workers_ready(timeout=timeout)


def spread_times(start: datetime, count: int, per_second: float) -> list[datetime]:
    return [start + timedelta(seconds=i / per_second) for i in range(count)]
