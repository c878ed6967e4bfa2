"""A backlog after an outage never bursts: the pure check and re-spread, and whole days with an outage
of workers, of the scheduler, or of both, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.core.test_spread import make_plan
from warmup.clock import ManualClock
from warmup.core.localtime import local_date_of, window_spans
from warmup.core.spread import backlog_reason, spread
from warmup.services.admin import explain
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime, Timings
from warmup.services.scheduler import Scheduler
from warmup.services.sending import send_one
from warmup.services.upkeep import respread_backlog, retime_backlog
from warmup.store import claims, days, history
from warmup.store.audit import list_audit
from warmup.store.models import MessageState
from warmup.store.queue import due_within
from warmup.store.respread import BACKLOG_ACTION, DayMessage

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday
TIMINGS = Timings(
    tick_wall=0.05,
    stale_after=timedelta(minutes=10),
    lost_after=timedelta(minutes=5),
    ingest_every=timedelta(days=1),
    replan_wall=60.0,
    lock_ttl_wall=0.6,
)


def check_pacing(sends: list[datetime], gap: timedelta, max_per_hour: int) -> None:
    """No two sends closer than ``gap``, no 60-minute interval with more than ``max_per_hour``."""
    sends = sorted(sends)
    for a, b in pairwise(sends):
        assert b - a >= gap, f"sends {a:%H:%M:%S} and {b:%H:%M:%S} are {b - a} apart, under {gap}"
    for i in range(len(sends) - max_per_hour):
        assert sends[i + max_per_hour] - sends[i] >= HOUR


# ------------------------------------------------------------------------------------------ pure check


times_in_day = st.integers(0, 10 * 3600).map(lambda s: NOW - 5 * HOUR + s * SECOND)


@settings(max_examples=300, deadline=None)
@given(
    sent=st.lists(times_in_day, max_size=6),
    overdue=st.lists(st.integers(3, 7200), min_size=2, max_size=6),
    gap_s=st.integers(1, 600),
)
def test_two_overdue_messages_are_always_a_backlog(
    sent: list[datetime], overdue: list[int], gap_s: int
) -> None:
    pending = [NOW - s * SECOND for s in overdue]
    assert backlog_reason(sent, pending, NOW, gap_s * SECOND, 30, 2 * SECOND) is not None


@settings(max_examples=300, deadline=None)
@given(
    last_ago=st.one_of(st.none(), st.integers(0, 7200)),
    offsets=st.lists(st.integers(0, 3 * 3600), max_size=8),
    gap_s=st.integers(1, 600),
    late_s=st.integers(0, 2),
)
def test_pending_messages_at_the_plans_pace_are_no_backlog(
    last_ago: int | None, offsets: list[int], gap_s: int, late_s: int
) -> None:
    """Sends kept ``gap`` apart from each other and from the last send (the first possibly due a little
    ago, within the tolerance) are what a planned day looks like: never re-spread."""
    gap = gap_s * SECOND
    sent = [] if last_ago is None else [NOW - late_s * SECOND - last_ago * SECOND - gap]
    first = NOW - late_s * SECOND
    pending = [first]
    for extra in offsets:
        pending.append(pending[-1] + gap + extra * SECOND)
    assert backlog_reason(sent, pending, NOW, gap, 10_000, 2 * SECOND) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sent_minutes=st.lists(st.integers(0, 180), max_size=10, unique=True),
    now_minutes=st.integers(0, 600),
    count=st.integers(1, 40),
    gap=st.sampled_from(["40s..6m", "2m..6m", "10s..30s", "5m..20m"]),
    per_hour=st.sampled_from([3, 10, 30]),
    seed=st.integers(0, 2**32),
)
def test_a_re_spread_is_never_itself_a_backlog(
    sent_minutes: list[int], now_minutes: int, count: int, gap: str, per_hour: int, seed: int
) -> None:
    """What `spread` gives after the sends made is inside the windows, at the pace, and no backlog."""
    plan = make_plan(gap=gap, max_per_hour=per_hour)
    day = date(2026, 11, 23)
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    now = start + now_minutes * MINUTE
    sent = sorted(start + m * 3 * MINUTE for m in sent_minutes if start + m * 3 * MINUTE < now)
    import random

    result = spread(day, count, plan, "UTC", random.Random(seed), not_before=now, earlier=sent)
    low = max(plan.pacing.gap.low, SECOND)
    assert all(t >= now for t in result.times)
    spans = window_spans(day, plan, "UTC")
    assert all(any(s <= t < e for s, e in spans) for t in result.times)
    if sent and result.times:
        assert result.times[0] - sent[-1] >= low
    assert backlog_reason(sent, result.times, now, low, per_hour, 2 * SECOND) is None


# ------------------------------------------------------------------------------------ pure re-spread


@dataclass(frozen=True)
class Case:
    rows: list[DayMessage]
    now: datetime


@st.composite
def day_cases(draw: st.DrawFn) -> Case:
    now = NOW + draw(st.integers(-3 * 3600, 3 * 3600)) * SECOND
    rows: list[DayMessage] = []
    for i in range(draw(st.integers(0, 30))):
        at = NOW - 3 * HOUR + draw(st.integers(0, 6 * 3600)) * SECOND
        state = draw(st.sampled_from(["planned", "queued", "sent", "skipped", "unknown", "failed"]))
        kind = draw(st.sampled_from(["opener", "opener", "peer_reply"]))
        claimed = at + draw(st.integers(0, 600)) * SECOND if state not in ("planned", "queued") else None
        if claimed is not None and claimed > now:
            state, claimed = "planned", None
        not_before = at + draw(st.integers(1, 900)) * SECOND if draw(st.booleans()) else None
        rows.append(DayMessage(i + 1, state, kind, at, not_before, claimed))
    return Case(rows, now)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=day_cases(), seed=st.integers(0, 2**32))
def test_retime_backlog_re_spreads_every_pending_message_or_skips_it(case: Case, seed: int) -> None:
    import random

    plan = make_plan(windows=[("mon-fri", "09:00-12:30"), ("mon-fri", "14:00-19:00")], gap="40s..6m")
    day = local_date_of(case.now, "Europe/Berlin")
    result = retime_backlog(plan, "Europe/Berlin", day, case.rows, case.now, 2 * SECOND, random.Random(seed))
    pending = [r for r in case.rows if r.state in ("planned", "queued")]
    if result is None:
        return
    waiting = {r.id for r in pending if r.not_before is not None and r.not_before > case.now}
    assert set(result.moves) | set(result.skips) == {r.id for r in pending} - waiting
    assert not set(result.moves) & set(result.skips)
    spans = window_spans(day, plan, "Europe/Berlin")
    new = sorted(at for at, _ in result.moves.values())
    sent = [r.claimed_at for r in case.rows if r.claimed_at is not None and r.state not in ("skipped",)]
    for at, window_end in result.moves.values():
        assert at >= case.now and any(s <= at < e for s, e in spans)
        assert window_end is not None and at < window_end
    check_pacing(new, plan.pacing.gap.low, plan.pacing.max_per_hour)
    fixed = sent + [max(r.scheduled_at, r.not_before or r.scheduled_at) for r in pending if r.id in waiting]
    if fixed and new:
        assert new[0] - max(fixed) >= plan.pacing.gap.low  # after every send made and every fixed retry
    skipped_replies = [r for r in pending if r.id in result.skips and r.kind != "opener"]
    kept_openers = [r for r in pending if r.id in result.moves and r.kind == "opener"]
    assert not (skipped_replies and kept_openers)  # replies are the last to go
    assert (
        backlog_reason(sent, new, case.now, plan.pacing.gap.low, plan.pacing.max_per_hour, 2 * SECOND) is None
    )


def test_a_backlog_on_the_day_clocks_go_back_keeps_real_time_gaps() -> None:
    """Berlin, 2026-10-25: 02:00-03:00 happens twice. A window over it, an outage inside it: the new
    times are apart in real (UTC) time, inside the window's two passes, none after it."""
    import random

    plan = make_plan(windows=[("daily", "01:30-03:30")], gap="2m..3m", max_per_hour=30)
    day = date(2026, 10, 25)
    now = datetime(2026, 10, 25, 0, 40, tzinfo=UTC)  # 02:40 CEST, the first pass
    rows = [DayMessage(1, "sent", "opener", now - 70 * MINUTE, None, now - 70 * MINUTE)]
    rows += [DayMessage(10 + i, "queued", "opener", now - (60 - 3 * i) * MINUTE) for i in range(20)]
    result = retime_backlog(plan, "Europe/Berlin", day, rows, now, 2 * SECOND, random.Random(1))
    assert result is not None and len(result.moves) + len(result.skips) == 20
    spans = window_spans(day, plan, "Europe/Berlin")
    assert spans[-1][1] == datetime(2026, 10, 25, 2, 30, tzinfo=UTC)  # 03:30 CET, after both passes
    new = sorted(at for at, _ in result.moves.values())
    assert len(new) > 20 * 3 // 4  # the repeated hour gives the time for most of them
    assert all(now <= at < spans[-1][1] for at in new)
    check_pacing(new, 2 * MINUTE, 30)


def test_a_backlog_left_when_the_window_is_nearly_over_is_skipped_with_the_reason() -> None:
    import random

    plan = make_plan(windows=[("daily", "09:00-12:00")], gap="2m..4m", max_per_hour=30)
    now = datetime(2026, 11, 23, 11, 52, tzinfo=UTC)
    rows = [DayMessage(i, "planned", "opener", now - (40 - i) * MINUTE) for i in range(1, 11)]
    result = retime_backlog(plan, "UTC", now.date(), rows, now, 2 * SECOND, random.Random(3))
    assert result is not None
    assert 1 <= len(result.moves) <= 4 and len(result.skips) == 10 - len(result.moves)
    assert all(
        why.startswith("backlog after an outage: no send-window time left") for why in result.skips.values()
    )
    assert all(at < datetime(2026, 11, 23, 12, 0, tzinfo=UTC) for at, _ in result.moves.values())
    assert result.detail["skipped"] == len(result.skips)
    assert "overdue" in str(result.detail["reason"])


# ----------------------------------------------------------------------------- a whole day with an outage


@dataclass
class Broker:
    """The dispatch: what the scheduler enqueued and the workers have not taken yet."""

    queue: list[int] = field(default_factory=list)

    def plan_day(self, number_id: int, local_date: date) -> None:
        pass

    def send_message(self, message_id: int) -> None:
        self.queue.append(message_id)

    def ingest_replies(self, number_id: int) -> None:
        pass


def run_day(
    runtime: Runtime,
    clock: ManualClock,
    until: datetime,
    *,
    workers_up: Callable[[datetime], bool],
    scheduler_up: Callable[[datetime], bool],
) -> Broker:
    """Step the clock to every due time (and at least once a minute): the scheduler ticks, the workers
    take EVERYTHING the broker holds at once (the worst case when they come back); a message not due
    yet stays in the broker, as dramatiq's delayed re-enqueue would keep it."""
    broker = Broker()
    scheduler = Scheduler(runtime, dispatch=broker, poll_replies=False)
    while clock.now() < until:
        now = clock.now()
        if scheduler_up(now):
            assert scheduler.tick(now).errors == []
        if workers_up(now):
            held, broker.queue = broker.queue, []
            for message_id in held:
                outcome = send_one(
                    runtime.engine, message_id, "w", clock, runtime.provider_for, plans=runtime.plans
                )
                if outcome.status == claims.ClaimStatus.NOT_DUE:
                    broker.queue.append(message_id)
        due = [d.due_at for d in due_within(runtime.engine, until, 1)]
        waiting = [history.get_message(runtime.engine, m) for m in broker.queue]
        due += [max(m.scheduled_at, m.not_before or m.scheduled_at) for m in waiting if m is not None]
        step = min([t for t in due if t > now] + [now + MINUTE])
        clock.set(min(step, until))
    return broker


OUTAGES = {
    "workers": (True, False),  # (workers down, scheduler down)
    "scheduler": (False, True),
    "both": (True, True),
}


@pytest.mark.parametrize("outage", sorted(OUTAGES))
def test_an_outage_mid_day_never_bursts(engine: Engine, make_fleet: Any, outage: str) -> None:
    start = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    clock = ManualClock(start)
    zones = ("Europe/Berlin", "UTC", "Atlantic/Azores")
    fleet = make_fleet(engine, clock, count=3, timezones=zones, volume=40, hours="09:00-15:00", gap="2m..6m")
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=TIMINGS)
    try:
        for number_id, tz in zip(fleet.number_ids, zones, strict=True):
            assert plan_number_day(runtime, number_id, local_date_of(start, tz)).planned
        down_from, down_to = (
            datetime(2026, 11, 23, 11, 0, tzinfo=UTC),
            datetime(2026, 11, 23, 12, 30, tzinfo=UTC),
        )
        workers_down, scheduler_down = OUTAGES[outage]

        def up(down: bool) -> Callable[[datetime], bool]:
            return lambda t: not (down and down_from <= t < down_to)

        run_day(
            runtime,
            clock,
            datetime(2026, 11, 23, 16, 5, tzinfo=UTC),
            workers_up=up(workers_down),
            scheduler_up=up(scheduler_down),
        )
        plan = runtime.plans(str(fleet.plan_path))
        for number_id, tz in zip(fleet.number_ids, zones, strict=True):
            day = local_date_of(start, tz)
            messages = history.list_messages(engine, number_id, day)
            assert not [m for m in messages if m.state in ("planned", "queued", "sending")]
            sent = [m for m in messages if m.state == MessageState.SENT]
            assert sent, "the day sent nothing"
            spans = window_spans(day, plan, tz)
            for m in sent:
                assert m.claimed_at is not None
                assert any(s <= m.claimed_at < e for s, e in spans), f"{m.claimed_at} outside the windows"
            check_pacing(
                [m.claimed_at for m in sent if m.claimed_at], plan.pacing.gap.low, plan.pacing.max_per_hour
            )
            plan_row = days.get_day_plan(engine, number_id, day)
            assert plan_row is not None and len(sent) <= plan_row.quota
            audit = [a for a in list_audit(engine, number_id) if a.action == BACKLOG_ACTION]
            assert audit, "the outage left no backlog: the test did not test anything"
            assert all(
                down_from <= a.at for a in audit
            )  # never before the outage: normal days are left alone
            assert len(audit) <= 1 or outage != "scheduler"
            lines = explain(engine, fleet.phones[fleet.number_ids.index(number_id)], clock.now(), day).lines()
            assert any("backlog_respread" in line and "overdue" in line for line in lines)
    finally:
        runtime.close()


def test_two_schedulers_re_spread_a_backlog_once(engine: Engine, make_fleet: Any) -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    clock = ManualClock(start)
    fleet = make_fleet(engine, clock, count=1, timezones=("UTC",), volume=30, hours="09:00-18:00")
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=TIMINGS)
    try:
        number_id = fleet.number_ids[0]
        assert plan_number_day(runtime, number_id, start.date()).planned
        before = {m.id: m.scheduled_at for m in history.list_messages(engine, number_id, start.date())}
        clock.set(sorted(before.values())[5] + MINUTE)  # nobody ran: six messages overdue
        results: list[int] = []
        barrier = threading.Barrier(4)

        def respread() -> None:
            barrier.wait()
            results.append(respread_backlog(runtime, number_id, clock.now(), 2 * SECOND))

        threads = [threading.Thread(target=respread) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [0, 0, 0, len(before)]  # one of them re-spread, the others found it done
        messages = history.list_messages(engine, number_id, start.date())
        pending = [m.scheduled_at for m in messages if m.state == "planned"]
        assert min(pending) >= clock.now()
        check_pacing(pending, 2 * MINUTE, 30)
        audit = [a for a in list_audit(engine, number_id) if a.action == BACKLOG_ACTION]
        assert len(audit) == 1 and audit[0].detail is not None and "repeats" not in audit[0].detail
        assert respread_backlog(runtime, number_id, clock.now(), 2 * SECOND) == 0  # nothing left to do
    finally:
        runtime.close()


def test_overdue_messages_of_a_day_that_ended_are_not_carried_into_the_next(
    engine: Engine, make_fleet: Any
) -> None:
    """The scheduler was down over local midnight: yesterday's leftovers are skipped, not re-spread
    into today (today is planned on its own)."""
    start = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
    clock = ManualClock(start)
    fleet = make_fleet(engine, clock, count=1, timezones=("UTC",), volume=30, hours="17:00-23:59")
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=TIMINGS)
    try:
        number_id = fleet.number_ids[0]
        assert plan_number_day(runtime, number_id, start.date()).planned
        clock.set(datetime(2026, 11, 24, 0, 30, tzinfo=UTC))
        assert respread_backlog(runtime, number_id, clock.now(), 2 * SECOND) == 0
        Scheduler(runtime, dispatch=Broker(), poll_replies=False).tick(clock.now())
        yesterday = history.list_messages(engine, number_id, start.date())
        assert {m.state for m in yesterday} == {"skipped"}
        assert not [a for a in list_audit(engine, number_id) if a.action == BACKLOG_ACTION]
    finally:
        runtime.close()
