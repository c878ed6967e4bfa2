"""The scheduler's batched hand-over: `group_due` (pure, properties) and ticks with a dispatch that takes
`send_messages`, against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, decision
from warmup.clock import ManualClock
from warmup.services.runtime import ProviderPool, Runtime, Timings
from warmup.services.scheduler import (
    SEND_BATCH,
    SEND_BATCH_SPREAD_WALL,
    Scheduler,
    SendBatchDispatch,
    group_due,
)
from warmup.store import days, history, numbers
from warmup.store.queue import Due
from warmup.store.sends import PlannedSend

MS = timedelta(milliseconds=1)


# ------------------------------------------------------------------------------------ group_due


@st.composite
def due_lists(draw: st.DrawFn) -> list[Due]:
    ids = draw(st.lists(st.integers(1, 10_000), max_size=40, unique=True))
    return [
        Due(message_id, draw(st.integers(1, 6)), NOW + draw(st.integers(-3000, 3000)) * MS)
        for message_id in ids
    ]


@settings(max_examples=300, deadline=None)
@given(due=due_lists(), spread_ms=st.integers(0, 2000), size=st.integers(1, 12))
def test_group_due_properties(due: list[Due], spread_ms: int, size: int) -> None:
    spread = spread_ms * MS
    batches = group_due(due, NOW, spread, size)
    by_id = {d.message_id: d for d in due}

    def at(message_id: int) -> datetime:
        return max(by_id[message_id].due_at, NOW)  # an overdue message counts as due now

    # every message in exactly one batch
    assert Counter(m for _, ids in batches for m in ids) == Counter(list(by_id))
    for when, ids in batches:
        assert 1 <= len(ids) <= size
        assert len({by_id[m].number_id for m in ids}) == len(ids)  # at most one per number
        first = at(ids[0])
        assert all(first <= at(m) <= first + spread for m in ids)  # due together with the first
        assert all(when >= at(m) for m in ids)  # none handed over before it is due
        assert when <= first + spread  # none waits more than the spread
        assert when == max(at(m) for m in ids)  # handed over when its last member falls due
    assert [when for when, _ in batches] == sorted(when for when, _ in batches)


def test_group_due_examples() -> None:
    spread = 50 * MS
    # due at the same moment, different numbers: one batch up to the size, then the next
    same = [Due(i, i, NOW) for i in range(1, 8)]
    assert group_due(same, NOW, spread, 3) == [(NOW, [1, 2, 3]), (NOW, [4, 5, 6]), (NOW, [7])]
    # two of one number never share a batch
    assert group_due([Due(1, 1, NOW), Due(2, 1, NOW)], NOW, spread, 10) == [(NOW, [1]), (NOW, [2])]
    # overdue ones count as due now, and a batch waits for its last member (within the spread)
    mixed = [Due(1, 1, NOW - timedelta(hours=1)), Due(2, 2, NOW + 30 * MS), Due(3, 3, NOW + 80 * MS)]
    assert group_due(mixed, NOW, spread, 10) == [(NOW + 30 * MS, [1, 2]), (NOW + 80 * MS, [3])]
    assert group_due([], NOW, spread, 10) == []


# ---------------------------------------------------------------------------------------- ticks

TIMINGS = Timings(
    tick_wall=0.05,
    stale_after=timedelta(minutes=10),
    lost_after=timedelta(minutes=5),
    ingest_every=timedelta(minutes=30),
    replan_wall=60.0,
    lock_ttl_wall=0.6,
)


@dataclass
class BatchRecorder:
    """A dispatch that takes batches (not delayed ones): records what the scheduler hands over."""

    plans: list[tuple[int, date]] = field(default_factory=list)
    sends: list[int] = field(default_factory=list)
    batches: list[tuple[list[int], float]] = field(default_factory=list)

    def plan_day(self, number_id: int, local_date: date) -> None:
        self.plans.append((number_id, local_date))

    def send_message(self, message_id: int) -> None:
        self.sends.append(message_id)

    def send_messages(self, message_ids: list[int], wall_seconds: float) -> None:
        self.batches.append((list(message_ids), wall_seconds))

    def ingest_replies(self, number_id: int) -> None:
        return None

    def handed(self) -> list[int]:
        return [*self.sends, *(m for ids, _ in self.batches for m in ids)]


@dataclass
class DelayedBatchRecorder(BatchRecorder):
    later: list[tuple[int, float]] = field(default_factory=list)

    def send_message_later(self, message_id: int, wall_seconds: float) -> None:
        self.later.append((message_id, wall_seconds))

    def handed(self) -> list[int]:
        return [*super().handed(), *(m for m, _ in self.later)]


@pytest.fixture
def runtime(engine: Engine) -> Iterator[tuple[Runtime, ManualClock]]:
    clock = ManualClock(NOW)
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=TIMINGS)
    yield runtime, clock
    runtime.close()


def numbers_with(engine: Engine, offsets: list[list[timedelta]]) -> tuple[list[int], list[list[int]]]:
    """One UTC number per list of offsets from NOW, its day planned with a message at each."""
    number_ids, message_ids = [], []
    for index, times in enumerate(offsets):
        number_id = numbers.add_number(
            engine,
            phone=f"+55119666{index:05d}",
            provider="whapi",
            token_ref=f"WHAPI_TOKEN_{index}",
            plan_name="p",
            plan_path="p.yaml",
            timezone="UTC",
            now=NOW - timedelta(hours=1),
        )
        todo = [PlannedSend("+5511988880000", f"m{i}", NOW + t) for i, t in enumerate(times)]
        assert days.plan_day(engine, number_id, decision(len(times)), todo, now=NOW - timedelta(hours=1))
        number_ids.append(number_id)
        message_ids.append([m.id or 0 for m in history.list_messages(engine, number_id, DAY)])
    return number_ids, message_ids


def number_of(engine: Engine, message_id: int) -> int:
    row = history.get_message(engine, message_id)
    assert row is not None
    return row.number_id


def test_ticks_hand_over_due_messages_in_batches_one_per_number_each_once(
    engine: Engine, runtime: tuple[Runtime, ManualClock]
) -> None:
    rt, clock = runtime
    minute = timedelta(minutes=1)
    _, (a, b, c) = numbers_with(
        engine,
        [
            [-minute, minute, 2 * minute],
            [-minute / 2, minute],
            [minute + 20 * MS, 4 * minute],
        ],
    )
    recorder = BatchRecorder()
    assert isinstance(recorder, SendBatchDispatch)
    scheduler = Scheduler(rt, dispatch=recorder, poll_replies=False)
    steps = [
        NOW,
        NOW + minute,
        NOW + minute + 20 * MS,
        NOW + 2 * minute,
        NOW + 4 * minute,
        NOW + 4 * minute + minute / 2,  # before `lost_after` of the first ones: nothing twice
    ]
    seen: list[tuple[list[list[int]], list[int]]] = []
    for moment in steps:
        clock.set(moment)
        before_batches, before_sends = len(recorder.batches), len(recorder.sends)
        report = scheduler.tick(clock.now())
        assert report.errors == []
        seen.append(([ids for ids, _ in recorder.batches[before_batches:]], recorder.sends[before_sends:]))
    assert seen == [
        ([[a[0], b[0]]], []),  # both overdue: due together now, of different numbers
        ([[a[1], b[1]]], []),
        ([], [c[0]]),  # a lone message goes as a single send
        ([], [a[2]]),
        ([], [c[1]]),
        ([], []),  # nothing twice
    ]
    assert all(wall == 0.0 for _, wall in recorder.batches)  # without a delayed dispatch: at once
    assert sorted(recorder.handed()) == sorted([*a, *b, *c])
    assert {history.get_message(engine, m).state for m in [*a, *b, *c]} == {"queued"}  # type: ignore[union-attr]


def test_many_numbers_due_together_are_split_into_batches_of_at_most_send_batch(
    engine: Engine, runtime: tuple[Runtime, ManualClock]
) -> None:
    rt, clock = runtime
    count = SEND_BATCH + SEND_BATCH // 2
    _, ids = numbers_with(engine, [[-timedelta(seconds=i), timedelta(0)] for i in range(count)])
    recorder = BatchRecorder()
    scheduler = Scheduler(rt, dispatch=recorder, poll_replies=False)
    assert scheduler.tick(clock.now()).enqueued == 2 * count
    assert scheduler.tick(clock.now()).enqueued == 0
    assert recorder.sends == []
    assert sorted(len(batch) for batch, _ in recorder.batches) == sorted(
        [SEND_BATCH, SEND_BATCH, count - SEND_BATCH, count - SEND_BATCH]
    )
    for batch, _ in recorder.batches:
        assert len({number_of(engine, m) for m in batch}) == len(batch)
    assert Counter(recorder.handed()) == Counter(m for per_number in ids for m in per_number)


def test_a_delayed_batch_is_handed_over_for_its_last_members_due_time(
    engine: Engine, runtime: tuple[Runtime, ManualClock]
) -> None:
    rt, clock = runtime
    spread = SEND_BATCH_SPREAD_WALL * clock.scale
    assert spread == pytest.approx(0.05)
    _, (a, b, c) = numbers_with(engine, [[10 * MS], [30 * MS], [30 * MS + 60 * MS]])
    recorder = DelayedBatchRecorder()
    scheduler = Scheduler(rt, dispatch=recorder, poll_replies=False)
    report = scheduler.tick(clock.now())  # looks 2 ticks (0.1 s) ahead: all three are in sight
    assert report.errors == [] and report.enqueued == 3
    [(batch, wall)] = recorder.batches
    assert batch == [a[0], b[0]] and wall == pytest.approx(0.03)  # when b falls due, not before
    [(alone, delay)] = recorder.later
    assert alone == c[0] and delay == pytest.approx(0.09)  # 60 ms after b: past the spread, alone
    assert recorder.sends == []
    scheduler.tick(clock.now())
    assert sorted(recorder.handed()) == sorted([a[0], b[0], c[0]])


def test_requeued_and_lost_messages_still_go_as_single_sends(
    engine: Engine, runtime: tuple[Runtime, ManualClock]
) -> None:
    rt, clock = runtime
    _, (a, b) = numbers_with(engine, [[timedelta(0)], [timedelta(0)]])
    recorder = BatchRecorder()
    scheduler = Scheduler(rt, dispatch=recorder, poll_replies=False)
    scheduler.tick(clock.now())
    assert recorder.batches == [([a[0], b[0]], 0.0)]
    # the broker lost the batch: after `lost_after` each message is enqueued again, once
    clock.advance(TIMINGS.lost_after + timedelta(seconds=1))
    report = scheduler.tick(clock.now())
    assert report.requeued == 2 and sorted(recorder.sends) == sorted([a[0], b[0]])
    assert len(recorder.batches) == 1
