"""The scheduler: one loop whose `tick(now)` moves every number's day along.

A tick plans the local days that have started, ends expired pauses, acts on provider signals that
came after a day was decided (a quality webhook pauses or throttles), recovers stale claims and
messages the broker lost, closes days that are over, enqueues the messages that are due and asks
for replies to be polled. Every step is a database operation that is safe to repeat or to run
twice at once, so a second scheduler, a restarted one or a stale leader can do no harm beyond
wasted work; the leader lock (`warmup.services.leader`) only keeps that waste away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol, runtime_checkable

from warmup.services.leader import AlwaysLeader, Leadership
from warmup.services.runtime import Runtime
from warmup.services.signals import SignalWatch
from warmup.services.upkeep import (
    close_past_days,
    end_expired_pauses,
    respread_rest_of_day,
)
from warmup.store import days, outcomes, queue
from warmup.store import respread as store_respread
from warmup.store.numbers import apply_timezone_changes, not_retired
from warmup.store.queue import Due

log = logging.getLogger(__name__)

DUE_BATCH = 500
"""Messages enqueued per tick at most; the rest go on the next tick (ticks are a second apart at most)."""

PLAN_BATCH = 2000
"""plan_day requests sent per tick at most: a 10,000-number fleet's first tick does not hold up the other
duties while it fills the broker; the rest go on the next ticks."""

REPLAN_DOUBLINGS = 5
"""An unanswered plan_day request is sent again after replan_wall, then 2, 4, ... up to 2**5 times that:
a fleet planning slower than it asks must not flood the broker with copies of the same request."""

PLAN_DAYS_BATCH = 100
"""Numbers per `plan_days` request (with a `BatchDispatch`): one message and one transaction plan them
all, while a large fleet still gives every worker thread a batch of its own."""

SEND_BATCH = 20
"""Messages per `send_messages` request at most: messages of different numbers that fall due together
share one claim, one record and one broker message (`warmup.store.claims`). Small, because a worker
killed mid-batch loses the claims it had not sent yet to `unknown`."""

SEND_BATCH_SPREAD_WALL = 0.05
SEND_BATCH_SPREAD = timedelta(seconds=1)
"""Messages fall due "together" when their due times are within this much: 50 ms of wall time, and
never more than a simulated second in an accelerated run. A batch is handed over when its LAST
message falls due, so none is claimed early and none is later than this."""

LOOKAHEAD_TICKS = 2.0
"""With a `DelayedDispatch`, messages due within this many ticks are enqueued now with a delay."""


class Dispatch(Protocol):
    """How the scheduler hands work to the workers (the actors, or direct calls in tests)."""

    def plan_day(self, number_id: int, local_date: date) -> None: ...

    def send_message(self, message_id: int) -> None: ...

    def ingest_replies(self, number_id: int) -> None: ...


@runtime_checkable
class DelayedDispatch(Protocol):
    """A dispatch that can also hand a message over ahead of time, to be delivered after a wall delay.

    With it the scheduler looks ahead: messages due before the next ticks are enqueued now with the
    exact wall-clock delay, so they are claimed on time rather than up to a tick late.
    """

    def send_message_later(self, message_id: int, wall_seconds: float) -> None: ...


@runtime_checkable
class BatchDispatch(Protocol):
    """A dispatch that can also ask for many numbers' same local day to be planned in one request."""

    def plan_days(self, number_ids: list[int], local_date: date) -> None: ...


@runtime_checkable
class SendBatchDispatch(Protocol):
    """A dispatch that can also hand over messages that fall due together as one request, delivered
    after a wall delay (0: at once)."""

    def send_messages(self, message_ids: list[int], wall_seconds: float) -> None: ...


def group_due(
    due: Sequence[Due], now: datetime, spread: timedelta, size: int
) -> list[tuple[datetime, list[int]]]:
    """Batches of messages that fall due together: (when to hand it over, ids), earliest first.

    Pure. A batch holds at most ``size`` messages, at most one per number (the batch claim takes one
    quota slot per day plan), all due within ``spread`` of its first; it is handed over at its last
    message's due time (an overdue message counts as due ``now``), so no message is claimed before it
    is due and none waits more than ``spread``. Every message is in exactly one batch.
    """
    batches: list[tuple[datetime, list[int], set[int], list[datetime]]] = []
    open_from = 0  # batches before this index started more than `spread` ago: closed
    for item in sorted(due, key=lambda d: (max(d.due_at, now), d.message_id)):
        at = max(item.due_at, now)
        while open_from < len(batches) and batches[open_from][0] < at - spread:
            open_from += 1
        for _start, ids, numbers, times in batches[open_from:]:
            if len(ids) < size and item.number_id not in numbers:
                ids.append(item.message_id)
                numbers.add(item.number_id)
                times.append(at)
                break
        else:
            batches.append((at, [item.message_id], {item.number_id}, [at]))
    return sorted(((max(times), ids) for _, ids, _, times in batches), key=lambda b: (b[0], b[1][0]))


_GOLDEN = 0.6180339887498949


def poll_offset(number_id: int, every: timedelta) -> timedelta:
    """Where inside each polling period a number's replies are polled: spread evenly by id (golden-ratio
    steps), so a fleet's polls are spread over the period instead of all landing on the scheduler's
    first tick (10,000 numbers asked at once held up the planning of their day), and the same number
    keeps its place across scheduler restarts."""
    return every * ((number_id * _GOLDEN) % 1.0)


@dataclass
class TickReport:
    """What one tick did, for logs, the demo view and tests."""

    planned_requests: int = 0
    resumed: int = 0
    respread: int = 0
    recovered: int = 0
    requeued: int = 0
    closed: int = 0
    enqueued: int = 0
    polls: int = 0
    rejudged: int = 0  # days a reading that came after their decision made more restrictive
    errors: list[str] = field(default_factory=list)


class Scheduler:
    """Runs `tick` while this process holds the leadership; one per run in embedded mode.

    ``dispatch`` hands work to the workers: `workers.dispatcher.ActorDispatch` in a run (the dramatiq
    actors), a recorder or direct calls in tests. The library never imports `workers/`: it is given one.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        dispatch: Dispatch,
        leadership: Leadership | None = None,
        poll_replies: bool = True,
    ) -> None:
        self.runtime = runtime
        self.leadership: Leadership = leadership or AlwaysLeader()
        self.dispatch = dispatch
        self.poll_replies = poll_replies
        # (number, day) -> (wall time last asked, times asked): re-requests back off
        self._plan_requested: dict[tuple[int, date], tuple[float, int]] = {}
        self._last_poll: dict[int, datetime] = {}
        self._signals = SignalWatch()
        self.last_report: TickReport | None = None

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set; gives the leadership up on the way out."""
        try:
            while not stop.is_set():
                if self.leadership.hold():
                    self.tick(self.runtime.clock.now())
                stop.wait(self.runtime.bounds.tick_wall)
        finally:
            self.leadership.release()

    def tick(self, now: datetime) -> TickReport:
        """One pass over every duty; a failing duty is logged and the others still run."""
        report = TickReport()
        duties: list[tuple[str, Callable[[datetime, TickReport], None]]] = [
            ("apply time zone changes", self._apply_timezone_changes),
            ("end expired pauses", self._end_expired_pauses),
            ("re-spread resumed days", self._respread_resumed),
            ("plan started days", self._plan_started_days),
            ("act on provider signals", self._act_on_signals),
            ("recover stale claims", self._recover_stale),
            ("requeue lost messages", self._requeue_lost),
            ("close past days", self._close_past_days),
            ("enqueue due messages", self._enqueue_due),
        ]
        if self.poll_replies:
            duties.append(("poll replies", self._poll_replies))
        for name, duty in duties:
            try:
                duty(now, report)
            except Exception as exc:
                log.exception("scheduler: %s failed", name)
                report.errors.append(f"{name}: {type(exc).__name__}")
        self.last_report = report
        return report

    # --- duties -----------------------------------------------------------------------------------

    def _plan_started_days(self, now: datetime, report: TickReport) -> None:

        wall = time.monotonic()
        replan = self.runtime.bounds.replan_wall
        unplanned = days.unplanned(self.runtime.engine, now)
        asked_before = self._plan_requested
        self._plan_requested = {key: asked_before[key] for key in unplanned if key in asked_before}
        batches: dict[date, list[int]] = {}
        for key in unplanned:
            if report.planned_requests >= PLAN_BATCH:
                break  # the rest on the next tick
            asked = self._plan_requested.get(key)
            if asked is not None:
                last, times = asked
                if wall - last < replan * 2 ** min(times - 1, REPLAN_DOUBLINGS):
                    continue  # asked recently; a worker may still be on it (or the queue is long)
            if isinstance(self.dispatch, BatchDispatch):
                batches.setdefault(key[1], []).append(key[0])
            else:
                self.dispatch.plan_day(*key)
            self._plan_requested[key] = (wall, 1 if asked is None else asked[1] + 1)
            report.planned_requests += 1
        if isinstance(self.dispatch, BatchDispatch):
            for local_date, number_ids in batches.items():
                for at in range(0, len(number_ids), PLAN_DAYS_BATCH):
                    self.dispatch.plan_days(number_ids[at : at + PLAN_DAYS_BATCH], local_date)

    def _act_on_signals(self, now: datetime, report: TickReport) -> None:
        """Readings that came after a day was decided (Meta's quality webhooks) act on it now: a pause
        pauses, a throttle cuts the rest of the day (`warmup.services.signals`). Before enqueueing, so
        messages beyond a cut quota are never handed over."""

        report.rejudged += self._signals.tick(self.runtime, now)

    def _apply_timezone_changes(self, now: datetime, report: TickReport) -> None:

        for number_id in apply_timezone_changes(self.runtime.engine, now):
            log.info("number %s: its new time zone applies from now", number_id)

    def _end_expired_pauses(self, now: datetime, report: TickReport) -> None:

        report.resumed += end_expired_pauses(self.runtime, now)

    def _respread_resumed(self, now: datetime, report: TickReport) -> None:

        for resume_id, number_id in store_respread.pending_resumes(
            self.runtime.engine, now - timedelta(days=1)
        ):
            report.respread += respread_rest_of_day(self.runtime, number_id, now, resume_id)

    def _recover_stale(self, now: datetime, report: TickReport) -> None:

        older_than = now - self.runtime.bounds.stale_after
        report.recovered += outcomes.recover_stale(self.runtime.engine, older_than, now)

    def _requeue_lost(self, now: datetime, report: TickReport) -> None:

        ids = queue.requeue_lost(self.runtime.engine, now - self.runtime.bounds.lost_after, now)
        for message_id in ids:
            self.dispatch.send_message(message_id)
        report.requeued += len(ids)

    def _close_past_days(self, now: datetime, report: TickReport) -> None:

        report.closed += close_past_days(self.runtime.engine, now)

    def _enqueue_due(self, now: datetime, report: TickReport) -> None:
        """Enqueue what is due, and (with a `DelayedDispatch`) what falls due before the next ticks,
        delayed by its wall-clock distance: a tick of 0.1 s wall is many simulated minutes in a fast
        run, and a message picked up only at the next tick would go out that late. The claim re-checks
        due-ness, and an early delivery is re-queued (`sending.send_one`), so a delay that fires a
        little early is harmless."""

        scale = max(self.runtime.clock.scale, 1e-9)
        later = self.dispatch if isinstance(self.dispatch, DelayedDispatch) else None
        horizon = timedelta(seconds=LOOKAHEAD_TICKS * self.runtime.bounds.tick_wall * scale)
        until = now + horizon if later is not None else now
        if isinstance(self.dispatch, SendBatchDispatch):
            self._enqueue_due_in_batches(self.dispatch, now, until, scale, report)
            return
        while True:
            due = queue.due_within(self.runtime.engine, until, DUE_BATCH)
            if not due:
                return
            due_at = {d.message_id: d.due_at for d in due}
            queued = queue.mark_queued(self.runtime.engine, list(due_at), now)
            # The rows are `queued` before the broker has them: if this process dies right here,
            # `requeue_lost` enqueues them again after `lost_after` (the claim stops a double send).
            for message_id in queued:
                wait = (due_at[message_id] - now).total_seconds() / scale
                if later is not None and wait > 0:
                    later.send_message_later(message_id, wait)
                else:
                    self.dispatch.send_message(message_id)
            report.enqueued += len(queued)
            if len(due) < DUE_BATCH:
                return

    def _enqueue_due_in_batches(
        self, dispatch: SendBatchDispatch, now: datetime, until: datetime, scale: float, report: TickReport
    ) -> None:
        """`_enqueue_due` for a dispatch that takes batches: messages that fall due together (of
        different numbers) go as one request (`group_due`), a lone one as a single send."""

        spread = min(timedelta(seconds=SEND_BATCH_SPREAD_WALL * scale), SEND_BATCH_SPREAD)
        while True:
            due = queue.due_within(self.runtime.engine, until, DUE_BATCH)
            if not due:
                return
            queued = set(queue.mark_queued(self.runtime.engine, [d.message_id for d in due], now))
            # queued before the broker has them: a crash here is healed by `requeue_lost` (see above)
            for when, ids in group_due([d for d in due if d.message_id in queued], now, spread, SEND_BATCH):
                wait = max((when - now).total_seconds() / scale, 0.0)
                if len(ids) > 1:
                    dispatch.send_messages(ids, wait)
                elif wait > 0 and isinstance(self.dispatch, DelayedDispatch):
                    self.dispatch.send_message_later(ids[0], wait)
                else:
                    self.dispatch.send_message(ids[0])
            report.enqueued += len(queued)
            if len(due) < DUE_BATCH:
                return

    def _poll_replies(self, now: datetime, report: TickReport) -> None:

        every = self.runtime.bounds.ingest_every
        for number_id in not_retired(self.runtime.engine):
            last = self._last_poll.get(number_id)
            if last is None:  # first sight: its first poll falls at its own offset inside the period
                last = self._last_poll[number_id] = now - every + poll_offset(number_id, every)
            if now - last < every:
                continue
            self._last_poll[number_id] = now
            self.dispatch.ingest_replies(number_id)
            report.polls += 1
