"""Pacing end to end: a backlog of one number, all due at once, sent by racing threads (`send_one` and
`send_batch`) over a manual clock moved in steps, against a real store (SQLite and PostgreSQL) and the
simulator over HTTP. The simulator's send log is the ground truth: it never shows two sends of a number
closer than the plan's shortest gap, nor more than its hourly cap in any 60 minutes.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from tests.invariant_checks import assert_accounting
from warmup.clock import ManualClock
from warmup.core.domain import Reading
from warmup.core.localtime import local_date_of
from warmup.providers.base import Health, Inbound, Provider, SendResult
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime, Timings
from warmup.services.scheduler import Scheduler
from warmup.services.sending import send_batch, send_one
from warmup.store import days, history, numbers
from warmup.store.models import OutboundMessage

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 09:00 in Sao Paulo, the window 08:00-20:00
THREADS = 4
STEP = timedelta(seconds=25)  # coarser than nothing, finer than the gap: the claim must hold the line
ANSWER = timedelta(seconds=3)  # the provider's answer comes this long after it accepted the send
TICK_EVERY = timedelta(minutes=2)  # the scheduler ticks at least this often
TIMINGS = Timings(
    tick_wall=0.05,
    stale_after=timedelta(minutes=10),
    lost_after=timedelta(minutes=5),
    ingest_every=timedelta(minutes=30),
    replan_wall=60.0,
    lock_ttl_wall=0.6,
)


class _Slow:
    """A provider whose request reaches the API ``reach`` after the call (the clock moves meanwhile) and
    whose answer comes `ANSWER` after the API accepted it, so a send ends after it reached the provider,
    as it does for real."""

    def __init__(self, inner: Provider, clock: ManualClock, reach: timedelta = timedelta(0)) -> None:
        self.inner = inner
        self.clock = clock
        self.reach = reach
        self.last_reading_error: str | None = None

    def send_text(self, to: str, body: str, typing_seconds: float = 0.0) -> SendResult:
        self.clock.advance(self.reach)
        result = self.inner.send_text(to, body, typing_seconds)
        self.clock.advance(ANSWER)
        return result

    def health(self) -> Health:
        return self.inner.health()

    def fetch_reading(self, today: date) -> Reading | None:
        return self.inner.fetch_reading(today)

    def list_inbound(self, since: datetime) -> list[Inbound]:
        return self.inner.list_inbound(since)

    def close(self) -> None:
        self.inner.close()


class Backlog:
    """A fleet on the simulator, its days planned, the real scheduler ticking, a broker in memory and
    racing senders, on a manual clock."""

    def __init__(self, engine: Engine, fleet: Fleet, clock: ManualClock) -> None:
        self.engine = engine
        self.fleet = fleet
        self.clock = clock
        self.runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=TIMINGS)
        self.scheduler = Scheduler(self.runtime, dispatch=self, poll_replies=False)
        self.days: dict[int, date] = {}
        self.inbox: set[tuple[datetime, int]] = set()  # (when the broker delivers it, message id)
        self.lock = threading.Lock()
        self.threads = THREADS
        self.step = STEP  # how far the clock moves after a round of deliveries (0: deliveries on time)
        self.reach: dict[int, list[timedelta]] = {}  # per number: how long its next requests take to
        # reach the API (then none)
        for number_id in fleet.number_ids:
            number = numbers.get_number(engine, number_id)
            assert number is not None
            self.days[number_id] = local_date_of(clock.now(), number.timezone)
            assert plan_number_day(self.runtime, number_id, self.days[number_id]).planned

    # the scheduler's dispatch (`warmup.services.scheduler.Dispatch`): days are planned already
    def plan_day(self, number_id: int, local_date: date) -> None:
        return None

    def send_message(self, message_id: int) -> None:
        self.deliver(message_id, 0.0)

    def ingest_replies(self, number_id: int) -> None:
        return None

    def deliver(self, message_id: int, delay: float) -> None:
        """The broker: deliver ``message_id`` after ``delay`` seconds (the manual clock's scale is 1);
        the same delivery asked twice (by racing threads) is one."""
        with self.lock:
            self.inbox.add((self.clock.now() + timedelta(seconds=delay), message_id))

    def provider_for(self, number_id: int) -> Provider:
        with self.lock:
            waits = self.reach.get(number_id)
            reach = waits.pop(0) if waits else timedelta(0)
        return _Slow(self.runtime.provider_for(number_id), self.clock, reach)

    def messages(self, number_id: int) -> list[OutboundMessage]:
        return history.list_messages(self.engine, number_id, self.days[number_id])

    def unfinished(self) -> bool:
        """Whether any message of the fleet's day is still to be sent (or in flight)."""
        return any(
            m.state in ("planned", "queued", "sending")
            for n in self.fleet.number_ids
            for m in self.messages(n)
        )

    def gap(self, number_id: int) -> timedelta:
        plan = days.get_day_plan(self.engine, number_id, self.days[number_id])
        assert plan is not None and plan.gap_seconds > 0
        return timedelta(seconds=plan.gap_seconds)

    def race(self, ids: list[int], round_: int) -> None:
        """Every thread is handed every id (an at-least-once broker delivering each one to all of
        them), sends them in its own order, released together; the first thread sends them as one
        batch (`send_batch`), the others one by one. Early deliveries come back through ``requeue``, a
        number's next overdue message through ``hand_over``, wired as the workers wire them."""
        barrier = threading.Barrier(self.threads)
        errors: list[BaseException] = []

        wiring: dict[str, Any] = {"requeue": self.deliver, "hand_over": self.deliver}

        def run(index: int) -> None:
            order = random.Random(round_ * 101 + index).sample(ids, len(ids))
            try:
                barrier.wait()
                if index == 0 and self.threads > 1:
                    send_batch(self.engine, order, "batch", self.clock, self.provider_for, **wiring)
                else:
                    for message_id in order:
                        send_one(
                            self.engine, message_id, f"w{index}", self.clock, self.provider_for, **wiring
                        )
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(self.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "a sender hung"
        assert errors == []

    def run_until(self, end: datetime) -> int:
        """Tick the scheduler and deliver what is due, racing the senders on it; the clock moves a step
        after each round (deliveries come up to a step late), else to the next delivery or tick. How
        many rounds raced."""
        rounds = 0
        while self.clock.now() < end:
            now = self.clock.now()
            self.scheduler.tick(now)
            with self.lock:
                due = sorted({m for at, m in self.inbox if at <= now})
                self.inbox = {(at, m) for at, m in self.inbox if at > now}
            if due:
                self.race(due, rounds)
                rounds += 1
                self.clock.advance(self.step)
                continue
            if not self.unfinished():
                break
            with self.lock:
                upcoming = min((at for at, _ in self.inbox), default=now + TICK_EVERY)
            self.clock.set(max(min(upcoming, now + TICK_EVERY), now + timedelta(microseconds=1)))
        return rounds

    def accepted(self, phone: str) -> list[datetime]:
        """When the simulator accepted each send of ``phone``, in order."""
        return sorted(datetime.fromisoformat(s["accepted_at"]) for s in self.fleet.sends(phone))


@pytest.fixture
def backlog(engine: Engine, make_fleet: Any, request: pytest.FixtureRequest) -> Iterator[Backlog]:
    clock = ManualClock(MONDAY_NOON)
    options = getattr(request, "param", {})
    fleet = make_fleet(engine, clock, count=2, timezones=("America/Sao_Paulo",) * 2, **options)
    world = Backlog(engine, fleet, clock)
    yield world
    world.runtime.close()


def closest(times: list[datetime]) -> timedelta | None:
    """The shortest time between two consecutive sends (None with fewer than two)."""
    return min((b - a for a, b in itertools.pairwise(times)), default=None)


def busiest_hour(times: list[datetime]) -> int:
    """The most sends in any 60 minutes (half-open: a send an hour after another is in the next hour)."""
    return max((sum(t <= o < t + timedelta(hours=1) for o in times) for t in times), default=0)


@pytest.mark.parametrize("backlog", [{"volume": 12}], indirect=True)
def test_a_backlog_sent_by_racing_threads_never_reaches_the_provider_closer_than_the_gap(
    backlog: Backlog,
) -> None:
    first, _ = backlog.fleet.number_ids
    scheduled = sorted(m.scheduled_at for m in backlog.messages(first))
    # the workers were down: two thirds of the first number's day are overdue at once
    backlog.clock.set(scheduled[7])
    assert sum(t <= backlog.clock.now() for t in scheduled) >= 8
    window_end = max(m.window_end or m.scheduled_at for m in backlog.messages(first))
    rounds = backlog.run_until(window_end + timedelta(minutes=1))
    assert rounds > 12  # the senders came back many times: the pacing, not the dispatch, spaced the sends
    for number_id, phone in zip(backlog.fleet.number_ids, backlog.fleet.phones, strict=True):
        sent = backlog.accepted(phone)
        gap = backlog.gap(number_id)
        assert gap == timedelta(minutes=2)  # the plan's shortest gap, "2m..6m"
        shortest = closest(sent)
        assert shortest is not None and shortest >= gap + ANSWER, f"{phone}: two sends {shortest} apart"
        # nothing skipped while the day's window still held the backlog: every message went out once
        assert [m.state for m in backlog.messages(number_id)] == ["sent"] * 12 and len(sent) == 12
    assert_accounting(backlog.engine)


@pytest.mark.parametrize("backlog", [{"volume": 12, "gap": "1m..20m", "max_per_hour": 4}], indirect=True)
def test_a_backlog_never_claims_past_the_hourly_cap_even_with_429s(backlog: Backlog) -> None:
    first, second = backlog.fleet.number_ids
    # the second number's API answers 429 about one time in three: every attempt is a request that counts
    backlog.fleet.set_faults(backlog.fleet.phones[1], rate_limit=0.35, retry_after=1)
    scheduled = sorted(m.scheduled_at for m in backlog.messages(first))
    assert len(scheduled) == 12
    backlog.clock.set(scheduled[5])  # six at once: a minute apart they would all go within the hour
    window_end = max(m.window_end or m.scheduled_at for m in backlog.messages(first))
    backlog.run_until(window_end + timedelta(minutes=1))
    for number_id, phone in zip(backlog.fleet.number_ids, backlog.fleet.phones, strict=True):
        assert backlog.gap(number_id) == timedelta(minutes=1)
        shortest = closest(backlog.accepted(phone))
        assert shortest is not None and shortest >= timedelta(minutes=1) + ANSWER, (
            f"{phone}: {shortest} apart"
        )
    # the number without faults was claimed (each of its messages once) at most 4 times in any hour, and
    # the cap was reached: it held the backlog back; it dropped nothing
    claimed = sorted(m.claimed_at for m in backlog.messages(first) if m.claimed_at is not None)
    assert len(claimed) == 12 and busiest_hour(claimed) == 4
    assert [m.state for m in backlog.messages(first)] == ["sent"] * 12
    assert any(m.attempts > 1 for m in backlog.messages(second))  # the 429s did happen
    assert_accounting(backlog.engine)


@pytest.mark.parametrize("backlog", [{"volume": 12, "gap": "1m..20m", "max_per_hour": 4}], indirect=True)
def test_the_provider_never_sees_more_than_the_hourly_cap_in_60_minutes(backlog: Backlog) -> None:
    first, _ = backlog.fleet.number_ids
    backlog.threads, backlog.step = 1, timedelta(0)  # one worker, every delivery on time
    backlog.reach = {first: [timedelta(seconds=3)]}  # its first request takes 3 s to reach the API
    scheduled = sorted(m.scheduled_at for m in backlog.messages(first))
    backlog.clock.set(scheduled[5])
    backlog.run_until(scheduled[5] + timedelta(hours=2))
    sent = backlog.accepted(backlog.fleet.phones[0])
    assert len(sent) >= 5
    assert busiest_hour(sent) <= 4, f"{busiest_hour(sent)} sends in one hour: {[t.time() for t in sent[:5]]}"
