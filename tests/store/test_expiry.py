"""warmup.store.expiry: skipping what is left of a day, and days that are over, without deadlocks.
Both databases (the `engine` fixture)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, PEER, add, decision, sends
from warmup.store import claims, days, expiry, history, pauses, tables


def test_skip_remaining_and_expire_day(engine: Engine) -> None:
    utc = add(engine)
    tokyo = add(engine, PEER, timezone="Asia/Tokyo")
    assert days.plan_day(engine, utc, decision(5), sends(2))
    assert days.plan_day(engine, tokyo, decision(5), sends(2))
    [first, _] = [m.id for m in history.list_messages(engine, utc, DAY)]
    assert first is not None and claims.claim(engine, first, "w", NOW).claimed
    # 2026-11-23 23:00 UTC is already the 24th in Tokyo, still the 23rd in UTC
    assert expiry.expire_day(engine, datetime(2026, 11, 23, 23, 0, tzinfo=UTC)) == 2
    assert {m.state for m in history.list_messages(engine, tokyo, DAY)} == {"skipped"}
    assert expiry.skip_remaining(engine, utc, DAY, "throttled to zero", NOW) == 1
    assert [m.state for m in history.list_messages(engine, utc, DAY)] == ["sending", "skipped"]
    assert expiry.skip_remaining(engine, utc, DAY, "again", NOW) == 0


@pytest.mark.postgres
def test_expire_day_with_nothing_past_never_waits_on_locked_numbers(engine: Engine) -> None:
    """The scheduler calls it every tick: it must not queue behind (or hold up) a day being planned,
    which holds its numbers' rows FOR UPDATE."""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    number_id = add(engine)
    assert days.plan_day(engine, number_id, decision(5), sends(2))
    with engine.connect() as locker, locker.begin():
        locker.execute(sa.select(tables.NUMBERS.c.id).with_for_update())  # every number row
        done: list[int] = []
        thread = threading.Thread(target=lambda: done.append(expiry.expire_day(engine, NOW)))
        thread.start()
        thread.join(10)
        assert done == [0]  # nothing of a past day: no lock asked for, no wait
    tomorrow = datetime.combine(DAY + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=1)
    assert expiry.expire_day(engine, tomorrow) == 2  # once the day is over, its messages are skipped


@pytest.mark.postgres
def test_concurrent_pause_and_expire_day_never_deadlock(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row-lock order only matters on PostgreSQL")
    numbers = [
        add(engine, phone=f"+55119999900{i:02d}", timezone=tz)
        for i, tz in enumerate(["UTC", "Asia/Tokyo"] * 2)
    ]
    errors: list[BaseException] = []
    for round_ in range(15):
        yesterday = DAY - timedelta(days=round_ + 1)
        for number_id in numbers:
            days.plan_day(
                engine,
                number_id,
                decision(60, local_date=yesterday),
                sends(60, NOW - timedelta(days=round_ + 1)),
            )
        barrier = threading.Barrier(3)

        def pause(barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                pauses.pause_numbers(
                    engine, reason="r", actor="t", now=NOW, number_ids=list(reversed(numbers))
                )
                pauses.resume_numbers(engine, actor="t", now=NOW, number_ids=numbers)
            except BaseException as exc:
                errors.append(exc)

        def expire(barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                expiry.expire_day(engine, NOW + timedelta(days=1))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=f) for f in (pause, expire, expire)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == [], errors
    with engine.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).where(tables.MESSAGES.c.state.in_(["planned", "queued"]))
        ).scalar_one()
    assert left == 0
