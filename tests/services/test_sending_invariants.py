"""Trying to break invariants 1-5 through `send_one`, the daily cycle and the scheduler, against a real
store (SQLite and PostgreSQL) and the simulator over HTTP: parallel senders, redeliveries, crashes,
pauses racing sends, resumes, retries, local midnight and two schedulers ticking at once.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from tests.invariant_checks import assert_accounting, assert_all_terminal, assert_quota_held, overfill, states
from warmup.clock import ManualClock
from warmup.core.domain import Reading
from warmup.core.localtime import local_date_of, window_spans
from warmup.files.plans import load_plan
from warmup.providers.base import Health, Inbound, OutcomeAction, SendResult
from warmup.services import planning as cycle
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime, Timings
from warmup.services.scheduler import Scheduler
from warmup.services.sending import MAX_ATTEMPTS, SendOutcome, send_one
from warmup.services.upkeep import respread_rest_of_day
from warmup.store import audit, claims, days, expiry, history, numbers, pauses, queue, sends
from warmup.store.models import OutboundMessage
from warmup.store.respread import pending_resumes

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 09:00 in Sao Paulo, 13:00 in Berlin
SAO_PAULO = "America/Sao_Paulo"
TIMINGS = Timings(
    tick_wall=0.05,
    stale_after=timedelta(minutes=10),
    lost_after=timedelta(minutes=5),
    ingest_every=timedelta(minutes=30),
    replan_wall=60.0,
    lock_ttl_wall=0.6,
)


class World:
    """A fleet, its runtime on a manual clock, and helpers to plan and send."""

    def __init__(self, engine: Engine, fleet: Fleet, clock: ManualClock) -> None:
        self.engine = engine
        self.fleet = fleet
        self.clock = clock
        self.runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=TIMINGS)
        self.requeued: list[tuple[int, float]] = []
        self.number = fleet.number_ids[0]
        self.phone = fleet.phones[0]

    def day(self, number_id: int | None = None) -> date:
        number = numbers.get_number(self.engine, number_id or self.number)
        assert number is not None
        return local_date_of(self.clock.now(), number.timezone)

    def plan(self, number_id: int | None = None) -> list[OutboundMessage]:
        number_id = number_id or self.number
        assert plan_number_day(self.runtime, number_id, self.day(number_id)).planned
        return history.list_messages(self.engine, number_id, self.day(number_id))

    def send(self, message_id: int, provider_for: Any = None, worker: str = "w") -> SendOutcome:
        return send_one(
            self.engine,
            message_id,
            worker,
            self.clock,
            provider_for or self.runtime.provider_for,
            plans=self.runtime.plans,
            requeue=lambda mid, delay: self.requeued.append((mid, delay)),
        )

    def pending(self, number_id: int | None = None) -> list[OutboundMessage]:
        number_id = number_id or self.number
        return [
            m
            for m in history.list_messages(self.engine, number_id, self.day(number_id))
            if m.state in ("planned", "queued")
        ]

    def send_due_in_order(self, count: int) -> list[OutboundMessage]:
        """Send the next `count` messages, each at its scheduled time; returns them as recorded."""
        done = []
        for _ in range(count):
            message = min(self.pending(), key=lambda m: max(m.scheduled_at, m.not_before or m.scheduled_at))
            self.clock.set(
                max(self.clock.now(), message.scheduled_at, message.not_before or message.scheduled_at)
            )
            assert self.send(message.id).state == "sent"
            row = history.get_message(self.engine, message.id)
            assert row is not None
            done.append(row)
        return done


@pytest.fixture
def world(engine: Engine, make_fleet: Any) -> Iterator[World]:
    clock = ManualClock(MONDAY_NOON)
    w = World(engine, make_fleet(engine, clock, count=2, volume=6), clock)
    yield w
    w.runtime.close()


def run_threads(count: int, target: Any) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)


# ---------------------------------------------------------------------------- parallel senders (1, 2)


def test_many_threads_sending_the_same_message_send_it_once(world: World) -> None:
    messages = world.plan()
    target = messages[0]
    world.clock.set(target.scheduled_at)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def run(i: int) -> None:
        barrier.wait()
        outcomes.append(world.send(target.id, worker=f"w{i}").status)

    run_threads(8, run)
    assert Counter(outcomes) == {"ok": 1, "not_claimable": 7}
    assert len(world.fleet.sends(world.phone)) == 1
    assert_accounting(world.engine)


def test_parallel_senders_at_the_quota_send_exactly_the_quota(world: World) -> None:
    messages = world.plan()
    day = world.day()
    assert len(messages) == 6
    extra = [
        sends.PlannedSend(recipient="+5511977770003", text=f"extra {i}", scheduled_at=world.clock.now())
        for i in range(6)
    ]
    overfill(world.engine, world.number, day, extra)  # past the quota, behind the store's back
    ids = [m.id for m in history.list_messages(world.engine, world.number, day)]
    world.clock.set(max(m.scheduled_at for m in messages))
    day_plan = days.get_day_plan(world.engine, world.number, day)
    assert day_plan is not None and day_plan.gap_seconds > 0
    results: list[str] = []
    lock = threading.Lock()

    def run(i: int, round_: int) -> None:
        order = ids[:]
        random.Random(i * 1000 + round_).shuffle(order)
        for mid in order:
            outcome = world.send(mid, worker=f"w{i}")
            with lock:
                results.append(outcome.status)

    # the threads race in rounds, the clock advanced by the number's pace between rounds: one number
    # has at most one send in flight and the next starts a gap after it ended, so a round sends at most one
    for round_ in range(60):
        before = len(results)
        run_threads(6, lambda i, r=round_: run(i, r))
        assert Counter(results[before:])["ok"] <= 1, f"round {round_} sent more than one of the number"
        assert len(world.fleet.sends(world.phone)) == Counter(results)["ok"]
        if Counter(results)["ok"] == 6 and not [m for m in world.pending() if m.id in ids]:
            break
        world.clock.advance(day_plan.gap_seconds)
    assert Counter(results)["ok"] == 6
    assert len(world.fleet.sends(world.phone)) == 6
    assert states(world.engine, world.number, day) == {"sent": 6, "skipped": 6}
    assert_all_terminal(world.engine, world.number, day)
    assert_accounting(world.engine)


def test_peer_replies_never_push_a_nearly_full_peer_over_its_quota(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, volume=4, reply_probability=1.0)
    w = World(engine, fleet, clock)
    try:
        peer = fleet.number_ids[1]
        w.plan()
        peer_own = w.plan(peer)
        day, peer_day = w.day(), w.day(peer)
        # the peer has used 3 of its 4 slots
        for message in sorted(peer_own, key=lambda m: m.scheduled_at)[:3]:
            clock.set(max(clock.now(), message.scheduled_at))
            assert w.send(message.id).state == "sent"
        # the sender writes to the peer three times (its own plan set aside); each would be answered
        expiry.skip_remaining(engine, w.number, day, "set aside for the test", clock.now())
        notes = [sends.PlannedSend(fleet.phones[1], f"ping {i}", clock.now()) for i in range(3)]
        sender_plan = days.get_day_plan(engine, w.number, day)
        assert sender_plan is not None
        outcomes = []
        for mid in sends.add_sends(engine, w.number, day, notes, now=clock.now()):
            outcomes.append(w.send(mid))
            clock.advance(sender_plan.gap_seconds)  # the sender's pace: one send a gap after the last
        assert [o.state for o in outcomes] == ["sent"] * 3
        # the peer's last pending opener gives way to the first reply; nothing is left to give way after
        reply_ids = [o.reply_id for o in outcomes if o.reply_id is not None]
        assert len(reply_ids) == 1
        gave_way = history.get_message(engine, max(peer_own, key=lambda m: m.scheduled_at).id)
        assert gave_way is not None and (gave_way.state, gave_way.reason) == ("skipped", sends.GAVE_WAY)
        skipped = [r for r in audit.list_audit(engine, peer) if r.action == "peer_reply_skipped"]
        assert len(skipped) == 2
        assert_quota_held(engine)
        for message in sorted(history.list_messages(engine, peer, peer_day), key=lambda m: m.scheduled_at):
            if message.id in reply_ids:
                clock.set(max(clock.now(), message.scheduled_at))
                assert w.send(message.id).state == "sent"
        peer_plan = days.get_day_plan(engine, peer, peer_day)
        assert peer_plan is not None and peer_plan.used == peer_plan.quota == 4
        assert len(fleet.sends(fleet.phones[1])) == 4
        outcome = history.day_outcome(engine, peer, peer_day)
        assert (outcome.planned, outcome.sent, outcome.skipped) == (4, 4, 0)
        assert_accounting(engine)
    finally:
        w.runtime.close()


# --------------------------------------------------------------------------------- crash recovery (2)


def test_a_worker_dying_after_its_claim_never_leads_to_a_resend(world: World) -> None:
    messages = world.plan()
    target = messages[0]
    world.clock.set(target.scheduled_at)
    assert claims.claim(world.engine, target.id, "dead-worker", world.clock.now()).claimed  # then: kill -9
    now = world.clock.advance(TIMINGS.stale_after + timedelta(seconds=1))
    report = Scheduler(world.runtime, dispatch=_Recorder(), poll_replies=False).tick(now)
    assert report.recovered == 1
    assert world.send(target.id).status == "not_claimable"  # the broker redelivers the message
    assert world.fleet.sends(world.phone) == []
    assert history.day_count(world.engine, world.number, world.day()) == 1
    assert_accounting(world.engine)


# ----------------------------------------------------------------------------------- pause racing (4)


def test_nothing_is_claimed_or_sent_after_a_pause_returns(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(MONDAY_NOON)
    w = World(engine, make_fleet(engine, clock, count=2, volume=60, gap="1m..2m", max_new=60), clock)
    try:
        messages = w.plan()
        day = w.day()
        clock.set(max(m.scheduled_at for m in messages))
        ids = [m.id for m in messages]
        queue.mark_queued(engine, ids, clock.now())
        frozen: dict[str, set[int]] = {}
        started = threading.Event()
        paused = threading.Event()

        def run(i: int) -> None:
            order = ids[:]
            random.Random(i).shuffle(order)
            for n, mid in enumerate(order):
                if n == 3:
                    started.set()
                if n == 6:
                    # Sends 3..5 of each thread race the pause; no thread gets further before it returns,
                    # so on a fast machine the pause still finds messages left to stop.
                    paused.wait(30)
                w.send(mid, worker=f"w{i}")

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        assert started.wait(30)
        pauses.pause_numbers(engine, reason="admin", actor="admin", now=clock.now(), number_ids=[w.number])
        frozen["claimed"] = {m.id for m in history.list_messages(engine, w.number, day) if m.attempts > 0}
        paused.set()
        for thread in threads:
            thread.join(60)
        went_out = {
            m.id
            for m in history.list_messages(engine, w.number, day)
            if m.state in ("sent", "sending", "unknown", "failed")
        }
        assert went_out <= frozen["claimed"]
        assert 0 < len(w.fleet.sends(w.phone)) == len(went_out) < len(ids)
        assert_all_terminal(engine, w.number, day)
        assert_accounting(engine)
    finally:
        w.runtime.close()


# ------------------------------------------------------------------------------------------- resume (5)


def _assert_paced(times: list[datetime], gap_low: timedelta, per_hour: int) -> None:
    times = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= gap_low for g in gaps), f"a gap under {gap_low}: {min(gaps)}"
    for i in range(len(times) - per_hour):
        assert times[i + per_hour] - times[i] >= timedelta(hours=1), f"more than {per_hour} sends in an hour"


def _resume_world(engine: Engine, make_fleet: Any) -> World:
    clock = ManualClock(MONDAY_NOON)
    # a two-hour window (09:00-11:00 Sao Paulo) that the day's quota fills close to the hourly cap
    fleet = make_fleet(
        engine, clock, count=2, volume=16, hours="09:00-11:00", gap="1m..8m", max_per_hour=10, max_new=16
    )
    return World(engine, fleet, clock)


def _went_out_at(engine: Engine, number_id: int, day: date) -> list[datetime]:
    return [
        m.claimed_at
        for m in history.list_messages(engine, number_id, day)
        if m.claimed_at is not None and m.state in ("sent", "sending", "unknown", "failed")
    ]


def test_resume_respread_keeps_pacing_with_the_sends_already_made(engine: Engine, make_fleet: Any) -> None:
    w = _resume_world(engine, make_fleet)
    try:
        w.plan()
        day = w.day()
        w.send_due_in_order(8)
        paused_at = w.clock.advance(timedelta(seconds=1))
        pauses.pause_numbers(engine, reason="admin", actor="admin", now=paused_at, number_ids=[w.number])
        resumed_at = w.clock.advance(timedelta(seconds=1))
        pauses.resume_numbers(engine, actor="admin", now=resumed_at, number_ids=[w.number])
        [(resume_id, _)] = pending_resumes(engine, resumed_at - timedelta(days=1))
        respread_rest_of_day(w.runtime, w.number, resumed_at, resume_id)
        fresh = w.pending()
        assert fresh, "something of the day should be left to re-spread"
        plan = load_plan(w.fleet.plan_path)
        spans = window_spans(day, plan, SAO_PAULO)
        assert all(any(s <= m.scheduled_at < e for s, e in spans) for m in fresh)
        assert all(m.scheduled_at >= resumed_at for m in fresh)
        _assert_paced(
            _went_out_at(engine, w.number, day) + [m.scheduled_at for m in fresh], plan.pacing.gap.low, 10
        )
        # and sending them as scheduled keeps the pacing too
        w.send_due_in_order(len(fresh))
        _assert_paced(_went_out_at(engine, w.number, day), plan.pacing.gap.low, 10)
        assert_accounting(engine)
    finally:
        w.runtime.close()


def test_resume_twice_and_after_the_windows_closed_never_bursts(engine: Engine, make_fleet: Any) -> None:
    w = _resume_world(engine, make_fleet)
    try:
        w.plan()
        day = w.day()
        plan = load_plan(w.fleet.plan_path)
        w.send_due_in_order(3)
        for _ in range(2):  # pause and resume twice in a row, a few seconds apart
            now = w.clock.advance(timedelta(seconds=2))
            pauses.pause_numbers(engine, reason="admin", actor="admin", now=now, number_ids=[w.number])
            now = w.clock.advance(timedelta(seconds=2))
            pauses.resume_numbers(engine, actor="admin", now=now, number_ids=[w.number])
            Scheduler(w.runtime, dispatch=_Recorder(), poll_replies=False).tick(now)
            if w.pending():
                w.send_due_in_order(1)
        _assert_paced(
            _went_out_at(engine, w.number, day) + [m.scheduled_at for m in w.pending()],
            plan.pacing.gap.low,
            10,
        )
        day_plan = days.get_day_plan(engine, w.number, day)
        assert day_plan is not None and day_plan.used + len(w.pending()) <= day_plan.quota
        # a pause and resume after the window closed adds nothing: the rest of the day is skipped
        w.clock.set(datetime(2026, 11, 23, 14, 30, tzinfo=UTC))  # 11:30 local, the window ended at 11:00
        now = w.clock.now()
        pauses.pause_numbers(engine, reason="admin", actor="admin", now=now, number_ids=[w.number])
        pauses.resume_numbers(engine, actor="admin", now=now, number_ids=[w.number])
        report = Scheduler(w.runtime, dispatch=_Recorder(), poll_replies=False).tick(now)
        assert report.respread == 0 and w.pending() == []
        respread = [a for a in audit.list_audit(engine, w.number) if a.action == "respread"]
        assert len(respread) == 3 and respread[0].detail is not None
        assert_all_terminal(engine, w.number, day)
        assert_accounting(engine)
    finally:
        w.runtime.close()


def test_two_respreads_of_one_resume_at_once_add_the_rest_only_once(
    engine: Engine, make_fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = _resume_world(engine, make_fleet)
    try:
        w.plan()
        w.send_due_in_order(2)
        now = w.clock.advance(timedelta(seconds=1))
        pauses.pause_numbers(engine, reason="admin", actor="admin", now=now, number_ids=[w.number])
        pauses.resume_numbers(engine, actor="admin", now=now, number_ids=[w.number])
        # both schedulers have computed what is left before either one writes
        barrier = threading.Barrier(2, timeout=10)
        original = cycle.build_sends

        def build_then_wait(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            barrier.wait()
            return result

        monkeypatch.setattr(cycle, "build_sends", build_then_wait)
        schedulers = [Scheduler(w.runtime, dispatch=_Recorder(), poll_replies=False) for _ in range(2)]
        run_threads(2, lambda i: schedulers[i].tick(now))
        day_plan = days.get_day_plan(engine, w.number, w.day())
        assert day_plan is not None
        assert day_plan.used + len(w.pending()) <= day_plan.quota
        assert sum(s.last_report.respread for s in schedulers if s.last_report) == len(w.pending())
        assert [a.action for a in audit.list_audit(engine, w.number)].count("respread") == 1
        assert_accounting(engine)
    finally:
        w.runtime.close()


# --------------------------------------------------------------------------- two schedulers at once


class _Recorder:
    def __init__(self) -> None:
        self.plans: list[tuple[int, date]] = []
        self.sends: list[int] = []
        self.lock = threading.Lock()

    def plan_day(self, number_id: int, local_date: date) -> None:
        with self.lock:
            self.plans.append((number_id, local_date))

    def send_message(self, message_id: int) -> None:
        with self.lock:
            self.sends.append(message_id)

    def ingest_replies(self, number_id: int) -> None:
        return None


def test_two_schedulers_ticking_at_once_never_plan_or_enqueue_twice(world: World) -> None:
    recorders = [_Recorder(), _Recorder()]
    schedulers = [Scheduler(world.runtime, dispatch=r, poll_replies=False) for r in recorders]
    end = world.clock.now() + timedelta(hours=12)
    while world.clock.now() < end:
        now = world.clock.now()
        run_threads(2, lambda i, now=now: schedulers[i].tick(now))
        for number_id, local_date in {p for r in recorders for p in r.plans}:
            plan_number_day(world.runtime, number_id, local_date)  # both workers run it: one plan
            plan_number_day(world.runtime, number_id, local_date)
        enqueued = [mid for r in recorders for mid in r.sends]
        assert len(enqueued) == len(set(enqueued)), "a message was enqueued by both schedulers"
        for mid in enqueued:
            world.send(mid)
        assert all(not s.last_report.errors for s in schedulers if s.last_report)
        # the next tick at the next due time (hourly ticks would leave every hour a backlog, re-spread)
        due = queue.due_within(world.engine, end, 1)
        world.clock.set(
            min(max(due[0].due_at, now + timedelta(seconds=1)) if due else end, now + timedelta(hours=1))
        )
    for number_id in world.fleet.number_ids:
        day = local_date_of(MONDAY_NOON, numbers.get_number(world.engine, number_id).timezone)  # type: ignore[union-attr]
        assert days.get_day_plan(world.engine, number_id, day) is not None
        assert_all_terminal(world.engine, number_id, day)
    assert world.fleet.sends(), "the day should have sent something"
    sent_ids = [
        m.provider_message_id
        for n in world.fleet.number_ids
        for m in _all_messages(world.engine, n)
        if m.state == "sent"
    ]
    assert len(sent_ids) == len(set(sent_ids)) == len(world.fleet.sends())
    assert_accounting(world.engine)


def _all_messages(engine: Engine, number_id: int) -> list[OutboundMessage]:
    return [
        m
        for d in range(-1, 3)
        for m in history.list_messages(engine, number_id, date(2026, 11, 23) + timedelta(days=d))
    ]


# -------------------------------------------------------------------------------- retries and midnight


class FixedProvider:
    """A provider that answers every send with the same result and counts the calls."""

    last_reading_error: str | None = None

    def __init__(self, result: SendResult) -> None:
        self.result = result
        self.calls = 0

    def send_text(self, to: str, body: str, typing_seconds: float = 0.0) -> SendResult:
        self.calls += 1
        return self.result

    def health(self) -> Health:
        return Health(OutcomeAction.OK, "ok", "")

    def fetch_reading(self, today: date) -> Reading | None:
        return None

    def list_inbound(self, since: datetime) -> list[Inbound]:
        return []

    def close(self) -> None:
        return None


@pytest.mark.parametrize("retry_after", [float("inf"), 1e12, 86_400.0 * 400, float("nan"), -5.0])
def test_any_retry_after_ends_queued_today_or_skipped_with_a_reason(world: World, retry_after: float) -> None:
    world.plan()
    message = world.pending()[0]
    world.clock.set(message.scheduled_at)
    provider = FixedProvider(
        SendResult(OutcomeAction.RETRY, None, "429", http_status=429, retry_after=retry_after)
    )
    outcome = world.send(message.id, provider_for=lambda _n: provider)
    row = history.get_message(world.engine, message.id)
    assert row is not None and outcome.state == row.state
    if row.state == "queued":
        assert row.not_before is not None and local_date_of(row.not_before, SAO_PAULO) == world.day()
    else:
        assert row.state == "skipped" and row.cause == "retries"
        assert row.reason and "would fall after today's last send window" in row.reason
    assert_accounting(world.engine)


def test_a_message_that_keeps_hitting_the_rate_limit_is_skipped_after_the_last_attempt(world: World) -> None:
    world.plan()
    message = world.pending()[0]
    world.fleet.set_faults(world.phone, rate_limit=1.0, retry_after=1)
    day_plan = days.get_day_plan(world.engine, world.number, world.day())
    assert day_plan is not None and day_plan.gap_seconds > 1  # the pace, not the Retry-After, sets the wait
    gap = timedelta(seconds=day_plan.gap_seconds)
    outcomes = []
    released: datetime | None = None  # a 429'd attempt is a request: the next one waits a gap from it
    for _ in range(MAX_ATTEMPTS + 2):
        row = history.get_message(world.engine, message.id)
        assert row is not None
        due = max(world.clock.now(), row.scheduled_at, row.not_before or row.scheduled_at)
        if released is not None and row.state == "queued":  # its Retry-After passed, its pace not yet
            world.clock.set(max(due, released + gap - timedelta(microseconds=1)))
            assert world.send(message.id).status == "not_due"
        world.clock.set(due if released is None else max(due, released + gap))
        released = world.clock.now()
        outcomes.append(world.send(message.id).state)
    assert outcomes == ["queued"] * (MAX_ATTEMPTS - 1) + ["skipped", None, None]
    row = history.get_message(world.engine, message.id)
    assert row is not None and row.attempts == MAX_ATTEMPTS and row.reason and "gave up" in row.reason
    assert world.fleet.sends(world.phone) == []
    day_plan = days.get_day_plan(world.engine, world.number, world.day())
    assert day_plan is not None and day_plan.used == 0
    assert_accounting(world.engine)


def test_a_queued_message_past_local_midnight_is_skipped_not_sent_on_the_next_day(world: World) -> None:
    world.plan()
    day = world.day()
    late = max(world.pending(), key=lambda m: m.scheduled_at)
    queue.mark_queued(world.engine, [late.id], world.clock.now())
    world.clock.set(datetime(2026, 11, 24, 3, 0, 1, tzinfo=UTC))  # 00:00:01 on Tuesday in Sao Paulo
    assert plan_number_day(world.runtime, world.number, world.day()).planned
    outcome = world.send(late.id)  # the broker delivers it only now
    assert outcome.status == "day_over"
    assert world.fleet.sends(world.phone) == []
    Scheduler(world.runtime, dispatch=_Recorder(), poll_replies=False).tick(world.clock.now())
    assert_all_terminal(world.engine, world.number, day)
    tuesday = days.get_day_plan(world.engine, world.number, world.day())
    assert tuesday is not None and tuesday.used == 0
    assert_accounting(world.engine)


def test_a_provider_answering_garbage_is_unknown_counted_and_not_resent(world: World) -> None:
    world.plan()
    message = world.pending()[0]
    world.clock.set(message.scheduled_at)
    world.fleet.set_faults(world.phone, malformed=1.0)
    assert world.send(message.id).state == "unknown"
    world.fleet.admin("DELETE", "/_sim/faults")
    queue.mark_queued(world.engine, [message.id], world.clock.now())
    assert world.send(message.id).status == "not_claimable"
    assert len(world.fleet.sends(world.phone)) == 1
    assert history.day_count(world.engine, world.number, world.day()) == 1
    assert_accounting(world.engine)
