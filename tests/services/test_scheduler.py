"""The scheduler's tick against a real store and simulator, and leader election over a real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.clock import ManualClock
from warmup.core.localtime import local_date_of
from warmup.services.leader import RedisLeaderLock
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime, Timings
from warmup.services.scheduler import Scheduler, poll_offset
from warmup.store import claims, history, numbers, pauses, tables

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TIMINGS = Timings(
    tick_wall=0.05,
    stale_after=timedelta(minutes=10),
    lost_after=timedelta(minutes=5),
    ingest_every=timedelta(minutes=30),
    replan_wall=60.0,
    lock_ttl_wall=0.6,
)


@dataclass
class Recorder:
    """A dispatch that records what the scheduler hands to the workers."""

    plans: list[tuple[int, date]] = field(default_factory=list)
    sends: list[int] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)

    def plan_day(self, number_id: int, local_date: date) -> None:
        self.plans.append((number_id, local_date))

    def send_message(self, message_id: int) -> None:
        self.sends.append(message_id)

    def ingest_replies(self, number_id: int) -> None:
        self.polls.append(number_id)


@pytest.fixture
def world(engine: Engine, make_fleet: Any) -> Iterator[tuple[Runtime, Any, ManualClock, Recorder, Scheduler]]:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, volume=6)
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=TIMINGS)
    recorder = Recorder()
    yield runtime, fleet, clock, recorder, Scheduler(runtime, dispatch=recorder)
    runtime.close()


def test_tick_requests_each_started_day_once(world: Any) -> None:
    _runtime, fleet, clock, recorder, scheduler = world
    report = scheduler.tick(clock.now())
    assert report.errors == []
    assert sorted(recorder.plans) == sorted(
        (n, local_date_of(clock.now(), tz))
        for n, tz in zip(fleet.number_ids, ("America/Sao_Paulo", "Europe/Berlin"), strict=False)
    )
    scheduler.tick(clock.now())
    assert len(recorder.plans) == 2  # asked recently: not asked again
    clock.advance(TIMINGS.ingest_every)  # within one polling period every number is polled once
    scheduler.tick(clock.now())
    assert sorted(recorder.polls) == sorted(fleet.number_ids)


def test_reply_polls_of_a_large_fleet_are_spread_over_the_period() -> None:
    """10,000 numbers seen at the first tick must not all be polled at once (it held up planning)."""
    every = timedelta(minutes=5)
    offsets = [poll_offset(number_id, every) for number_id in range(1, 10_001)]
    assert all(timedelta(0) <= o < every for o in offsets)
    buckets = [0] * 10
    for offset in offsets:
        buckets[int(offset / every * 10)] += 1
    assert max(buckets) <= 1_100 and min(buckets) >= 900  # about a tenth of the fleet in each tenth
    assert poll_offset(42, every) == poll_offset(42, every)  # a restarted scheduler keeps each place


def test_tick_enqueues_due_messages_once_and_requeues_lost_ones(world: Any) -> None:
    runtime, fleet, clock, recorder, scheduler = world
    firsts = []
    for number in fleet.number_ids:
        tz = numbers.get_number(runtime.engine, number).timezone  # type: ignore[union-attr]
        assert plan_number_day(runtime, number, local_date_of(clock.now(), tz)).planned
        first, *rest = history.list_messages(runtime.engine, number, local_date_of(clock.now(), tz))
        firsts.append(first)
        # one message per number in play: the rest waits an hour (two overdue of one number are a backlog)
        with runtime.engine.begin() as conn:
            for m in rest:
                conn.execute(
                    sa.update(tables.MESSAGES)
                    .where(tables.MESSAGES.c.id == m.id)
                    .values(scheduled_at=m.scheduled_at + timedelta(hours=1))
                )
    clock.set(max(m.scheduled_at for m in firsts))
    scheduler.tick(clock.now())
    ids = sorted(m.id for m in firsts)
    assert sorted(recorder.sends) == ids
    assert {history.get_message(runtime.engine, m).state for m in ids} == {"queued"}  # type: ignore[union-attr]
    scheduler.tick(clock.now())
    assert sorted(recorder.sends) == ids  # not enqueued twice
    # the broker lost them (e.g. Redis restarted): after `lost_after` they are enqueued again
    clock.advance(TIMINGS.lost_after + timedelta(seconds=1))
    recorder.sends.clear()
    report = scheduler.tick(clock.now())
    assert report.requeued >= 2 and set(ids) <= set(recorder.sends)


def test_tick_recovers_stale_claims_as_unknown(world: Any) -> None:
    runtime, fleet, clock, _recorder, scheduler = world
    number = fleet.number_ids[0]
    day = local_date_of(clock.now(), "America/Sao_Paulo")
    plan_number_day(runtime, number, day)
    first = history.list_messages(runtime.engine, number, day)[0]
    clock.set(first.scheduled_at)
    assert claims.claim(runtime.engine, first.id, "dead-worker", clock.now()).claimed  # then the worker dies
    scheduler.tick(clock.now())
    assert history.get_message(runtime.engine, first.id).state == "sending"  # type: ignore[union-attr]
    clock.advance(TIMINGS.stale_after + timedelta(seconds=1))
    report = scheduler.tick(clock.now())
    assert report.recovered == 1
    recovered = history.get_message(runtime.engine, first.id)
    assert recovered is not None and recovered.state == "unknown"
    assert history.day_count(runtime.engine, number, day) == 1  # still counts against the quota


def test_tick_closes_past_days_with_a_reason(world: Any) -> None:
    runtime, fleet, clock, recorder, scheduler = world
    number = fleet.number_ids[0]
    day = local_date_of(clock.now(), "America/Sao_Paulo")
    plan_number_day(runtime, number, day)
    clock.set(datetime(2026, 11, 24, 4, 0, tzinfo=UTC))  # 01:00 next day in Sao Paulo
    report = scheduler.tick(clock.now())
    assert report.closed == 6
    for message in history.list_messages(runtime.engine, number, day):
        assert message.state == "skipped" and message.reason and "day ended" in message.reason
    assert (number, date(2026, 11, 24)) in recorder.plans


def test_tick_ends_an_expired_pause_and_respreads_the_day(world: Any) -> None:
    runtime, fleet, clock, _recorder, scheduler = world
    number = fleet.number_ids[0]
    day = local_date_of(clock.now(), "America/Sao_Paulo")
    plan_number_day(runtime, number, day)
    until = clock.now() + timedelta(hours=1)
    pauses.pause_numbers(
        runtime.engine, reason="lunch", actor="admin", now=clock.now(), until=until, number_ids=[number]
    )
    clock.set(until + timedelta(minutes=1))
    report = scheduler.tick(clock.now())
    assert report.resumed == 1 and report.respread > 0
    number_row = numbers.get_number(runtime.engine, number)
    assert number_row is not None and number_row.state == "active"
    fresh = [
        m for m in history.list_messages(runtime.engine, number, day) if m.state in ("planned", "queued")
    ]
    assert len(fresh) == report.respread and all(m.scheduled_at >= until for m in fresh)
    assert scheduler.tick(clock.now()).respread == 0  # once per resume


@pytest.mark.redis
def test_only_the_leader_ticks_and_a_standby_takes_over(world: Any, redis_url: str) -> None:
    runtime, _fleet, _clock, _recorder, _ = world
    key = f"warmup:test:leader:{uuid.uuid4().hex}"
    ticks = {"a": 0, "b": 0}
    schedulers = {}
    for name in ticks:
        lock = RedisLeaderLock.from_url(redis_url, ttl=TIMINGS.lock_ttl_wall, key=key)
        scheduler = Scheduler(runtime, leadership=lock, dispatch=Recorder())

        def counting(now: datetime, name: str = name) -> Any:
            ticks[name] += 1
            return None

        scheduler.tick = counting  # type: ignore[method-assign]
        schedulers[name] = (scheduler, lock, threading.Event())
    threads = {
        name: threading.Thread(target=s.run, args=(stop,)) for name, (s, _lock, stop) in schedulers.items()
    }
    threads["a"].start()
    time.sleep(0.3)
    threads["b"].start()
    time.sleep(1.0)
    assert ticks["a"] > 5 and ticks["b"] == 0
    # the leader dies without releasing: simulate it by stopping its renewals (the key then expires)
    lock_a = schedulers["a"][1]
    lock_a.hold = lambda: False  # type: ignore[method-assign]
    lock_a.release = lambda: None  # type: ignore[method-assign]
    a_ticks = ticks["a"]
    deadline = time.monotonic() + 5
    while ticks["b"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ticks["b"] > 0, "the standby never took over"
    assert ticks["a"] == a_ticks
    for _scheduler, _lock, stop in schedulers.values():
        stop.set()
    for thread in threads.values():
        thread.join(5)
    for _scheduler, lock, _stop in schedulers.values():
        lock.close()
