"""One number's day that cannot be planned never stops the others of its batch (issue 14, item 1).

A pool text holding a NUL (a YAML ``"\\u0000"``) once passed validation; on PostgreSQL the batch it was
in failed as a whole (`CharacterNotInRepertoire`), retried, and three numbers got no day at all. Here a
text the store cannot hold is slipped past validation (validation refuses it: tests/files) into one
number's day: the two others are planned in full, the third is left unplanned with the reason recorded
on it (an audit row, a log line, `warmup_planning_failures_total`), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.clock import ManualClock
from warmup.core.localtime import local_date_of
from warmup.services import metrics
from warmup.services import planning as cycle
from warmup.services.admin import explain
from warmup.services.planning import plan_number_day, plan_number_days
from warmup.services.runtime import ProviderPool, Runtime, Timings
from warmup.services.scheduler import Scheduler
from warmup.store import audit, history, tables
from warmup.store.days import PLANNING_FAILED, get_day_plan, unplanned

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

SURROGATE = "ok \ud800 lone"  # neither database (nor UTF-8) can hold it
NUL = "ok \x00 nul"  # PostgreSQL cannot store it; SQLite can


def _poisons(engine: Engine) -> list[str]:
    return [SURROGATE, NUL] if engine.dialect.name == "postgresql" else [SURROGATE]


def _poison(monkeypatch: pytest.MonkeyPatch, number_id: int, text: str) -> None:
    """The texts chosen for ``number_id``'s day get ``text`` as their first (past validation)."""
    real = cycle.opener_texts

    def poisoned(engine: Engine, number: Any, *args: Any, **kwargs: Any) -> list[str]:
        texts = real(engine, number, *args, **kwargs)
        return [text, *texts[1:]] if number.id == number_id and texts else texts

    monkeypatch.setattr(cycle, "opener_texts", poisoned)


def _failures(stage: str) -> float:
    return metrics.REGISTRY.get_sample_value("warmup_planning_failures_total", {"stage": stage}) or 0.0


def _failed_rows(engine: Engine, number_id: int) -> list[Any]:
    return [row for row in audit.list_audit(engine, number_id) if row.action == PLANNING_FAILED]


@pytest.mark.parametrize("which", [0, 1])
def test_a_text_the_store_refuses_leaves_only_its_number_unplanned(
    engine: Engine,
    make_fleet: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    which: int,
) -> None:
    poisons = _poisons(engine)
    if which >= len(poisons):
        pytest.skip("SQLite stores a NUL")
    poison = poisons[which]
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=3, timezones=("UTC",), volume=6)
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    first, second, bad = fleet.number_ids
    day = local_date_of(clock.now(), "UTC")
    real = cycle.opener_texts
    _poison(monkeypatch, bad, poison)
    before = _failures("store")
    try:
        with caplog.at_level(logging.WARNING):
            results = plan_number_days(runtime, fleet.number_ids, day)
        assert [r.planned for r in results] == [True, True, False]
        assert results[2].error and not results[0].error and not results[1].error
        for number_id in (first, second):  # planned in full: the day, its six messages, the ramp
            plan = get_day_plan(engine, number_id, day)
            assert plan is not None and plan.quota == 6
            assert len(history.list_messages(engine, number_id, day)) + plan.cut == 6
        assert get_day_plan(engine, bad, day) is None
        assert history.list_messages(engine, bad, day) == []
        assert unplanned(engine, clock.now()) == [(bad, day)]

        rows = _failed_rows(engine, bad)
        assert len(rows) == 1 and rows[0].actor == "planning"
        assert rows[0].detail["local_date"] == day.isoformat()
        error = rows[0].detail["error"]
        assert error == results[2].error
        assert "\x00" not in error and "\ud800" not in error  # the reason itself is storable
        assert "INSERT" not in error and "COPY" not in error and poison not in error  # no statement
        assert _failures("store") == before + 1
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == cycle.log.name]
        assert len(lines) == 1 and lines[0].exc_info is None  # one line, no traceback
        assert f"number {bad}" in lines[0].getMessage() and "not planned" in lines[0].getMessage()

        # planned again (the scheduler's next request): the same failure adds no audit row
        again = plan_number_days(runtime, fleet.number_ids, day)
        assert [r.planned for r in again] == [False, False, False] and again[2].error == error
        assert len(_failed_rows(engine, bad)) == 1
        assert _failures("store") == before + 2

        monkeypatch.setattr(cycle, "opener_texts", real)  # the text fixed: the day is planned
        assert [r.planned for r in plan_number_days(runtime, fleet.number_ids, day)] == [False, False, True]
        assert get_day_plan(engine, bad, day) is not None
    finally:
        runtime.close()


def test_a_day_planned_alone_records_the_failure_instead_of_raising(
    engine: Engine, make_fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The single-day path (the `plan_day` actor) does the same: no exception for the broker to retry
    with a traceback each time, the failure on the number."""
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, timezones=("UTC",), volume=4)
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    bad = fleet.number_ids[1]
    day = local_date_of(clock.now(), "UTC")
    _poison(monkeypatch, bad, SURROGATE)
    try:
        result = plan_number_day(runtime, bad, day)
        assert not result.planned and result.error
        assert get_day_plan(engine, bad, day) is None
        assert [row.detail["error"] for row in _failed_rows(engine, bad)] == [result.error]
        assert plan_number_day(runtime, fleet.number_ids[0], day).planned
    finally:
        runtime.close()


def test_a_pool_edited_after_validation_fails_only_its_numbers(
    engine: Engine, make_fleet: Any, tmp_path: Path
) -> None:
    """The third number's plan has its own pool, which gets a NUL text (YAML escape) after the fleet was
    applied: its day is not planned (the pool is refused where it is read, the line named in the
    reason), the two others are planned in full."""
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=3, timezones=("UTC",), volume=6)
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    first, second, bad = fleet.number_ids
    day = local_date_of(clock.now(), "UTC")
    own = tmp_path / "own"
    shutil.copytree(fleet.plan_path.parent, own)
    pool = own / "pool.yaml"
    pool.write_text('language: en\nopeners:\n  - Hi there\n  - "ok \\u0000 nul"\nreplies: [Sure]\n')
    with engine.begin() as conn:
        conn.execute(
            sa.update(tables.NUMBERS)
            .where(tables.NUMBERS.c.id == bad)
            .values(plan_path=str(own / "plan.yaml"))
        )
    before = _failures("decide")
    try:
        results = plan_number_days(runtime, fleet.number_ids, day)
        assert [r.planned for r in results] == [True, True, False]
        for number_id in (first, second):
            plan = get_day_plan(engine, number_id, day)
            assert plan is not None and plan.quota == 6
            assert len(history.list_messages(engine, number_id, day)) + plan.cut == 6
        assert get_day_plan(engine, bad, day) is None
        error = results[2].error
        assert error is not None and f"{pool}:4:5" in error and "NUL character (U+0000)" in error
        assert [row.detail["error"] for row in _failed_rows(engine, bad)] == [error]
        assert _failures("decide") == before + 1
        why = explain(engine, fleet.phones[2], clock.now()).lines()
        assert why[0] == f"{fleet.phones[2]} on {day}: no decision was made (planning it failed: {error})."
    finally:
        runtime.close()


def test_a_database_that_is_away_still_fails_the_batch(
    engine: Engine, make_fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Isolation is for what a day holds: when the database itself fails (connection lost, deadlock),
    the batch raises so the broker retries it, and no number is marked as failed."""
    import psycopg

    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, timezones=("UTC",))
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    day = local_date_of(clock.now(), "UTC")

    def away(*_args: Any, **_kwargs: Any) -> list[int]:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(cycle, "plan_days", away)
    try:
        with pytest.raises(psycopg.OperationalError):
            plan_number_days(runtime, fleet.number_ids, day)
        assert all(_failed_rows(engine, n) == [] for n in fleet.number_ids)
    finally:
        runtime.close()


@dataclass
class _Planner:
    """A batch dispatch that plans at once, counting what it was asked."""

    runtime: Runtime
    asked: list[int] = field(default_factory=list)

    def plan_day(self, number_id: int, local_date: date) -> None:
        self.plan_days([number_id], local_date)

    def plan_days(self, number_ids: Sequence[int], local_date: date) -> None:
        self.asked.extend(number_ids)
        plan_number_days(self.runtime, list(number_ids), local_date)

    def send_message(self, message_id: int) -> None:
        return None

    def ingest_replies(self, number_id: int) -> None:
        return None


def test_the_scheduler_backs_off_a_day_that_keeps_failing(
    engine: Engine, make_fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day that cannot be planned stays unplanned; the scheduler asks for it again after
    replan_wall, then twice that, and so on (`REPLAN_DOUBLINGS`), not on every tick."""
    replan = 0.1
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=3, timezones=("UTC",), volume=4)
    timings = Timings(
        tick_wall=0.01,
        stale_after=timedelta(minutes=10),
        lost_after=timedelta(minutes=5),
        ingest_every=timedelta(hours=1),
        replan_wall=replan,
        lock_ttl_wall=1.0,
    )
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=timings)
    bad = fleet.number_ids[2]
    _poison(monkeypatch, bad, SURROGATE)
    planner = _Planner(runtime)
    scheduler = Scheduler(runtime, dispatch=planner, poll_replies=False)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 16 * replan:
            scheduler.tick(clock.now())
            time.sleep(replan / 5)
        assert planner.asked.count(fleet.number_ids[0]) == planner.asked.count(fleet.number_ids[1]) == 1
        # asked at 0, then after 1, 2, 4, 8 x replan_wall: at most 5 times in 16 x replan_wall
        assert 2 <= planner.asked.count(bad) <= 5, planner.asked
        assert len(_failed_rows(engine, bad)) == 1
        assert [n for n, _ in unplanned(engine, clock.now())] == [bad]
    finally:
        runtime.close()
