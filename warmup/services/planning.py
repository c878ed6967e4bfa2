"""The daily cycle of one number, run at the start of its local day (DESIGN "The daily cycle").

reading -> yesterday's outcome -> decide (pure) -> audience + content -> spread (pure) -> one
transaction (`store.ops.plan_day`, unique per number and local date, so planning twice does nothing).
The random generators are seeded from (number id, local date), so a day replays exactly.

Also here: what the scheduler asks about days (which have started, closing past ones), the
re-spread of the rest of a day after a pause ends, and of a backlog after an outage (never a burst).
"""

from __future__ import annotations

import logging
import random
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.core.audience import AudienceResult, choose
from warmup.core.domain import Decision, Reading
from warmup.core.plan.model import Plan
from warmup.core.plan.values import format_duration
from warmup.core.ramp import decide
from warmup.core.risk import local_reading
from warmup.core.spread import backlog_reason, local_date_of, spread, window_spans
from warmup.files.content import MessagePool, load_pool
from warmup.services import metrics
from warmup.services.runtime import FileCache, Runtime, provider_from_row
from warmup.services.sending import holds_time, send_time, span_end
from warmup.store import bulk, ops
from warmup.store.db import READ_ONLY
from warmup.store.models import (
    MessageKind,
    MessageState,
    Number,
    NumberStatus,
    RecipientKind,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

LOCAL_METER_DAYS = 7
"""The trailing window, in local days, the local risk meter counts sends and replies over."""

DEFAULT_OPENERS: tuple[str, ...] = (
    "Hi! How are you doing?",
    "Hello, hope your day is going well",
    "Hey, how have you been?",
    "Good to hear from you, how is everything?",
)
"""Used when a plan names no message pool, so a minimal plan still sends something human."""

DEFAULT_REPLIES: tuple[str, ...] = (
    "All good here, thanks! And you?",
    "Doing well, thanks for asking",
    "Great, thanks! Talk soon",
)


@dataclass(frozen=True)
class DayResult:
    """What planning one day did (for logs and tests)."""

    planned: bool  # False: already planned, not today, or the number is retired
    decision: Decision | None = None
    sends: int = 0
    cut: int = 0
    cut_reason: str | None = None


def day_rng(number_id: int, local_date: date, purpose: str) -> random.Random:
    """A generator that is the same for the same number, day and purpose in every process and run."""
    return random.Random(f"warmup:{number_id}:{local_date.isoformat()}:{purpose}")


_POOLS: FileCache[MessagePool] = FileCache(load_pool)
"""Message pools by path: `texts_of` runs for every peer reply, the file is read again only when edited."""


def texts_of(plan: Plan, kind: str = "opener") -> tuple[str, ...]:
    """The plan's texts of one kind (``opener`` or ``reply``), or neutral defaults without a pool."""
    if plan.content:
        return _POOLS(plan.content).options("reply" if kind == "reply" else "opener")
    return DEFAULT_REPLIES if kind == "reply" else DEFAULT_OPENERS


# --------------------------------------------------------------------------------------- the reading


def todays_reading(runtime: Runtime, number: Number, local_date: date, now: datetime) -> Reading:
    """Today's reading: the stored one if taken today, else the provider meter (once), else the local one."""
    assert number.id is not None
    latest = ops.latest_reading(runtime.engine, number.id)
    if _taken_on(latest, number, local_date):
        assert latest is not None
        return latest
    reading = meter_reading(runtime, number, local_date, now)
    ops.save_reading(runtime.engine, number.id, local_date, reading)
    metrics.READINGS.labels(source=reading.source).inc()
    return reading


def _taken_on(reading: Reading | None, number: Number, local_date: date) -> bool:
    return reading is not None and local_date_of(reading.taken_at, number.timezone) == local_date


def meter_reading(
    runtime: Runtime, number: Number, local_date: date, now: datetime, *, own_client: bool = False
) -> Reading:
    """A new reading, not stored: the provider meter (one HTTP call), else the local meter.

    ``own_client``: call the meter through a client built here from the row in hand and closed after
    the call, instead of the process's shared one (`runtime.provider_for`). Batch planning reads every
    number's meter at once: the shared pool builds clients one at a time under one lock, each after a
    query for the number's row, which made the meter reads of a fleet wait in line.
    """
    assert number.id is not None
    reading: Reading | None = None
    try:
        provider = provider_from_row(number) if own_client else runtime.provider_for(number.id)
        try:
            reading = provider.fetch_reading(local_date)
            if reading is None:
                log.info("number %s: provider meter unavailable: %s", number.id, provider.last_reading_error)
        finally:
            if own_client:
                provider.close()
    except Exception as exc:  # no token, bad URL...: the local meter still gives an honest reading
        log.warning("number %s: provider meter failed: %s", number.id, type(exc).__name__)
    if reading is None:
        reading = local_meter(runtime.engine, number, local_date, now)
    return reading


def local_meter(engine: Engine, number: Number, local_date: date, now: datetime) -> Reading:
    """The local risk meter from our own data: age, replies vs sends over a week, engaged recipients."""
    assert number.id is not None
    sent = replies = 0
    for back in range(1, LOCAL_METER_DAYS + 1):
        outcome = ops.day_outcome(engine, number.id, local_date - timedelta(days=back))
        sent += outcome.sent
        replies += outcome.replies
    recipients = [r for r in ops.list_recipients(engine, number.id) if r.first_contacted_on is not None]
    engaged = sum(1 for r in recipients if r.replied or r.kind == RecipientKind.PEER)
    registered = number.registered or local_date_of(number.created_at, number.timezone)
    return local_reading(registered, local_date, sent, replies, len(recipients), engaged, now)


def refresh_reading(runtime: Runtime, number_id: int) -> Reading | None:
    """Take today's reading for a number now (the `refresh_reading` actor); None for an unknown number."""
    number = ops.get_number(runtime.engine, number_id)
    if number is None:
        return None
    now = runtime.clock.now()
    return todays_reading(runtime, number, local_date_of(now, number.timezone), now)


# ------------------------------------------------------------------------------------------ planning


_ActiveKey = tuple[int, int, int]


class ActivePhones:
    """The phones of the fleet's active numbers (ordered by phone), per engine, re-read only when the
    active set changes.

    Every day planned needs its peers; reading the whole fleet each time made planning a fleet O(N^2).
    A cheap aggregate (count, sum and sum of squares of the active ids) tells whether the set changed
    since the last read: enrolling, pausing, resuming or retiring a number changes it, planning does
    not. (Two sets with equal count, sum and sum of squares are possible but need a deliberate
    swap of several numbers at once; the cost of missing one is a peer list one change behind.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: weakref.WeakKeyDictionary[Engine, tuple[_ActiveKey, tuple[tuple[int, str], ...]]]
        self._cache = weakref.WeakKeyDictionary()

    def __call__(self, engine: Engine) -> tuple[tuple[int, str], ...]:
        """(id, phone) of every active number, ordered by phone."""
        table = ops.NUMBERS
        active = table.c.state == NumberStatus.ACTIVE.value
        with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            ids = table.c.id
            count, total, squares = conn.execute(
                sa.select(
                    sa.func.count(ids),
                    sa.func.coalesce(sa.func.sum(ids), 0),
                    sa.func.coalesce(sa.func.sum(ids * ids), 0),
                ).where(active)
            ).one()
            key = (int(count), int(total), int(squares))
            with self._lock:
                cached = self._cache.get(engine)
            if cached is not None and cached[0] == key:
                return cached[1]
            rows = conn.execute(sa.select(table.c.id, table.c.phone).where(active).order_by(table.c.phone))
            phones = tuple((int(row.id), str(row.phone)) for row in rows)
        with self._lock:
            self._cache[engine] = (key, phones)
        return phones


active_phones = ActivePhones()


def _contact_phones(path: str) -> tuple[str, ...]:
    from warmup.files.content import load_contacts

    return tuple(c.phone for c in load_contacts(path))


_CONTACTS: FileCache[tuple[str, ...]] = FileCache(_contact_phones)
"""Contact phones by CSV path: every day planned needs them, the file is read again only when edited."""


class PlanFiles:
    """The plans, contact lists and message pools of one batch, each looked up once per batch.

    The process-wide caches behind them (`Runtime.plans`, `_CONTACTS`, `_POOLS`) check the file's
    modification time on every call; a batch plans many numbers on the same few files.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._plans: dict[str, Plan] = {}
        self._contacts: dict[str, tuple[str, ...]] = {}
        self._texts: dict[str | None, tuple[str, ...]] = {}

    def plan(self, path: str) -> Plan:
        plan = self._plans.get(path)
        if plan is None:
            plan = self._plans[path] = self._runtime.plans(path)
        return plan

    def contacts(self, path: str) -> tuple[str, ...]:
        phones = self._contacts.get(path)
        if phones is None:
            phones = self._contacts[path] = _CONTACTS(path)
        return phones

    def texts(self, plan: Plan) -> tuple[str, ...]:
        texts = self._texts.get(plan.content)
        if texts is None:
            texts = self._texts[plan.content] = texts_of(plan)
        return texts


@dataclass(frozen=True)
class Known:
    """What the store knows that choosing a number's audience depends on, read once per batch."""

    peer_phones: tuple[str, ...]  # the fleet's active numbers (its own phone too: `choose` leaves it out)
    recipients: Sequence[bulk.KnownRecipient]  # the number's recipient rows, invalid ones too
    files: PlanFiles | None = None


def known_of(engine: Engine, number: Number) -> Known:
    """`Known` for one number, read now (a re-spread, or a day planned alone)."""
    assert number.id is not None
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        recipients = bulk.recipients_of(conn, [number.id]).get(number.id, [])
    return Known(_phones(active_phones(engine)), recipients)


_last_phones: tuple[tuple[tuple[int, str], ...], tuple[str, ...]] | None = None


def _phones(active: tuple[tuple[int, str], ...]) -> tuple[str, ...]:
    """The phones of `active_phones`; the same tuple object for as long as the active set is the same,
    so `audience.choose` recognises the peer list it has already deduplicated, whichever batch or
    thread asks (one slot, replaced atomically)."""
    global _last_phones
    last = _last_phones
    if last is None or last[0] is not active:
        last = _last_phones = (active, tuple(phone for _, phone in active))
    return last[1]


def pick_audience(
    engine: Engine,
    number: Number,
    plan: Plan,
    count: int,
    max_new: int,
    rng: random.Random,
    known: Known | None = None,
) -> AudienceResult:
    """Recipients and texts for ``count`` messages, from what the store knows about this number
    (``known``, else read now)."""
    assert number.id is not None
    if known is None:
        known = known_of(engine, number)
    files = known.files
    contacts: Sequence[str] = ()
    if plan.audience.contacts:
        contacts = files.contacts(plan.audience.contacts) if files else _CONTACTS(plan.audience.contacts)
    rows = known.recipients
    return choose(
        count,
        peers=known.peer_phones if plan.audience.peers is not None else (),
        contacts=contacts,
        known={r.phone for r in rows if r.first_contacted_on is not None},
        invalid={r.phone for r in rows if r.invalid},
        last_text={r.phone: r.last_text for r in rows if r.last_text},
        max_new_contacts=max_new,
        texts=files.texts(plan) if files else texts_of(plan),
        rng=rng,
        self_phone=number.phone,
    )


def build_sends(
    engine: Engine,
    number: Number,
    plan: Plan,
    local_date: date,
    count: int,
    max_new: int,
    now: datetime,
    seed: str,
    earlier: Sequence[datetime] = (),
    known: Known | None = None,
) -> tuple[list[ops.PlannedSend], list[str]]:
    """Up to ``count`` messages addressed and timed inside the day's windows after ``now``, and why
    fewer, if so. Each send names its recipient's kind: `ops.plan_day` gives the recipients a row (so
    the store can track their last text) in the transaction that stores the messages.

    ``earlier`` are the day's sends already made or pending: the new ones keep the gap and hourly
    rules with them (a re-spread right after a pause must not land seconds after the last send).
    """
    assert number.id is not None
    why: list[str] = []
    audience = pick_audience(
        engine, number, plan, count, max_new, day_rng(number.id, local_date, "audience" + seed), known
    )
    if audience.shortfall_reason:
        why.append(audience.shortfall_reason)
    timing = spread(
        local_date,
        len(audience.picks),
        plan,
        number.timezone,
        day_rng(number.id, local_date, "spread" + seed),
        not_before=now,
        earlier=earlier,
    )
    if timing.reason:
        why.append(timing.reason)
    picks = audience.picks[: len(timing.times)]
    spans = window_spans(local_date, plan, number.timezone)
    opener, peer, contact = MessageKind.OPENER.value, RecipientKind.PEER.value, RecipientKind.CONTACT.value
    sends = [
        ops.PlannedSend(
            recipient=pick.to,
            text=pick.text,
            scheduled_at=at,
            kind=opener,
            typing_seconds=round(typing, 3),
            window_end=span_end(spans, at),
            recipient_kind=peer if pick.peer else contact,
        )
        for pick, at, typing in zip(picks, timing.times, timing.typing, strict=False)
    ]
    return sends, why


def plan_number_day(runtime: Runtime, number_id: int, local_date: date) -> DayResult:
    """Plan one number's local day, once. Only today's date is planned: a past day stays unplanned
    (the scheduler was down), a future one waits for its start."""
    engine = runtime.engine
    now = runtime.clock.now()
    number = ops.get_number(engine, number_id)
    if number is None or number.state == NumberStatus.RETIRED:
        return DayResult(False)
    if local_date != local_date_of(now, number.timezone):
        log.info("number %s: not planning %s, its local day is not today", number_id, local_date)
        return DayResult(False)
    if ops.get_day_plan(engine, number_id, local_date) is not None:
        return DayResult(False)
    facts = bulk.read_facts(engine, {number_id: number.timezone}, local_date, _readings_since(now))[number_id]
    reading = facts.latest_reading
    if not _taken_on(reading, number, local_date):
        reading = meter_reading(runtime, number, local_date, now)
        ops.save_reading(engine, number_id, local_date, reading)
        metrics.READINGS.labels(source=reading.source).inc()
    assert reading is not None
    day = _decide_day(
        runtime, number, local_date, now, reading, facts, _phones(active_phones(engine)), PlanFiles(runtime)
    )
    planned = ops.plan_day(
        engine, number_id, day.decision, day.sends, cut=day.cut, cut_reason=day.cut_reason, now=now
    )
    return _planned(day, planned)


def _readings_since(now: datetime) -> datetime:
    """A moment before the start of today in every time zone (local days start at most ~26 h ago)."""
    return now - timedelta(days=2)


READING_THREADS = 16
"""Risk-meter reads in flight at once in a process, whatever the number of batches being planned:
each is an HTTP round trip; more threads than the provider answers at once only add switching."""

_readers_lock = threading.Lock()
_readers: ThreadPoolExecutor | None = None


def _reading_pool() -> ThreadPoolExecutor:
    """The process's meter-reading threads, shared by every batch (started on first use)."""
    global _readers
    with _readers_lock:
        if _readers is None:
            _readers = ThreadPoolExecutor(READING_THREADS, thread_name_prefix="reading")
        return _readers


PLANNING_SLOTS = 4
"""Batches planned at once in a process, whatever its number of worker threads. Planning a batch is CPU
work with short database waits; with every thread of two 8-thread workers planning at once on two
cores, the threads contended for the GIL and PostgreSQL for the cores, and a fleet's day took ~10% longer
than with four at a time (interleaved runs of `benchmarks/planning.py`). Threads beyond it wait here,
holding their request; scale out with worker processes."""

_planning_slots = threading.BoundedSemaphore(PLANNING_SLOTS)


def plan_number_days(runtime: Runtime, number_ids: Sequence[int], local_date: date) -> list[DayResult]:
    """Plan many numbers' same local day, once each (results in the order of ``number_ids``), at most
    `PLANNING_SLOTS` batches at once in this process.

    Every decision, audience and spread is the one `plan_number_day` would make (the same functions
    and seeded generators, over the same facts); what changes is the I/O: the numbers, the days
    already planned and everything the decisions depend on (latest readings, yesterday's plans and
    outcomes, recipients, the active peers) are read in a few queries for the whole batch
    (`store.bulk`), the missing risk-meter readings are fetched concurrently while the days whose
    reading has arrived are decided, the readings are stored in one insert, and all the days in one
    transaction (`ops.plan_days`, which skips a day planned meanwhile).
    """
    with _planning_slots:
        return _plan_number_days(runtime, number_ids, local_date)


def _plan_number_days(runtime: Runtime, number_ids: Sequence[int], local_date: date) -> list[DayResult]:
    engine = runtime.engine
    now = runtime.clock.now()
    numbers = {n.id: n for n in ops.get_numbers(engine, number_ids) if n.id is not None}
    already = ops.planned_on(engine, list(numbers), local_date)
    todo: list[Number] = []
    for number_id in dict.fromkeys(number_ids):
        number = numbers.get(number_id)
        if number is None or number.state == NumberStatus.RETIRED or number_id in already:
            continue
        if local_date != local_date_of(now, number.timezone):
            log.info("number %s: not planning %s, its local day is not today", number_id, local_date)
            continue
        todo.append(number)
    if not todo:
        return [DayResult(False) for _ in number_ids]
    facts = bulk.read_facts(
        engine, {n.id: n.timezone for n in todo if n.id}, local_date, _readings_since(now)
    )
    peers = _phones(active_phones(engine))
    files = PlanFiles(runtime)
    stored: dict[int, Reading] = {}  # today's reading, already taken (a retried batch, refresh_reading)
    for number in todo:
        assert number.id is not None
        latest = facts[number.id].latest_reading
        if latest is not None and _taken_on(latest, number, local_date):
            stored[number.id] = latest
    to_read = [n for n in todo if n.id not in stored]
    size = -(-len(to_read) // READING_THREADS) if to_read else 1
    pool = _reading_pool()
    chunks = iter(
        [
            pool.submit(_read_meters, runtime, to_read[at : at + size], local_date, now)
            for at in range(0, len(to_read), size)
        ]
    )
    fetched: dict[int, Reading] = {}
    days: list[_Day] = []
    taken: list[tuple[int, date, Reading]] = []
    try:
        for number in todo:  # decide each day as soon as its reading is there
            assert number.id is not None
            reading = stored.get(number.id)
            if reading is None:
                while number.id not in fetched:  # the chunks come in the order of `todo`
                    fetched.update(next(chunks).result())
                reading = fetched[number.id]
                taken.append((number.id, local_date, reading))
            days.append(
                _decide_day(runtime, number, local_date, now, reading, facts[number.id], peers, files)
            )
    finally:  # the readings taken are stored even if a decision failed: a retry will not read them again
        bulk.save_readings(engine, taken)
        for _, _, reading in taken:
            metrics.READINGS.labels(source=reading.source).inc()
    stored_days = set(
        ops.plan_days(
            engine,
            [ops.DayToPlan(d.number_id, d.decision, d.sends, d.cut, d.cut_reason) for d in days],
            now=now,
        )
    )
    results = {d.number_id: _planned(d, d.number_id in stored_days) for d in days}
    return [results.get(number_id, DayResult(False)) for number_id in number_ids]


def _read_meters(
    runtime: Runtime, numbers: Sequence[Number], local_date: date, now: datetime
) -> dict[int, Reading]:
    """`meter_reading` of each number in turn (a reading thread's share of a batch): a batch's reads
    go to the pool as `READING_THREADS` tasks, not one per number (each hand-over costs a thread
    switch under the GIL, a tenth of a number's planning)."""
    return {n.id: meter_reading(runtime, n, local_date, now, own_client=True) for n in numbers if n.id}


@dataclass(frozen=True)
class _Day:
    """A day decided and spread, not yet stored."""

    number_id: int
    decision: Decision
    sends: list[ops.PlannedSend]
    cut: int
    cut_reason: str | None


def _decide_day(
    runtime: Runtime,
    number: Number,
    local_date: date,
    now: datetime,
    reading: Reading,
    facts: bulk.Facts,
    peers: tuple[str, ...],
    files: PlanFiles,
) -> _Day:
    """The decision and the day's sends from what was read (no I/O but the plan's files): the part
    single and batch planning share."""
    assert number.id is not None
    plan = files.plan(number.plan_path)
    decision = decide(plan, ops.state_of(number), reading, facts.yesterday, local_date, now)
    sends: list[ops.PlannedSend] = []
    why: list[str] = []
    if decision.quota > 0:
        sends, why = build_sends(
            runtime.engine,
            number,
            plan,
            local_date,
            decision.quota,
            decision.max_new_contacts,
            now,
            "",
            known=Known(peers, facts.recipients, files),
        )
    cut = decision.quota - len(sends)
    return _Day(number.id, decision, sends, cut, "; ".join(why)[:500] or None)


def _planned(day: _Day, planned: bool) -> DayResult:
    if planned:
        log.info(
            "number %s planned %s: %s quota %s, %s sends",
            day.number_id,
            day.decision.local_date,
            day.decision.action,
            day.decision.quota,
            len(day.sends),
        )
    return DayResult(planned, day.decision, len(day.sends), day.cut, day.cut_reason)


# ------------------------------------------------------------------------------ what the scheduler asks


def days_to_plan(engine: Engine, now: datetime) -> list[tuple[int, date]]:
    """(number, local date) of every non-retired number whose local day has started but has no plan
    (ordered by phone).

    Asked every tick: one anti-join in the database (today's date per zone, the few zones of the
    fleet first), so a tick's cost follows the days still unplanned, not the size of the fleet.
    """
    table, plans = ops.NUMBERS, ops.DAY_PLANS
    active = table.c.state != NumberStatus.RETIRED.value
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        zones = sorted(conn.execute(sa.select(table.c.timezone).where(active).distinct()).scalars())
        if not zones:
            return []
        today = {zone: local_date_of(now, zone) for zone in zones}
        local_today = sa.case(*((table.c.timezone == zone, day) for zone, day in today.items()))
        rows = conn.execute(
            sa.select(table.c.id, table.c.timezone)
            .where(
                active,
                ~sa.exists().where(plans.c.number_id == table.c.id, plans.c.local_date == local_today),
            )
            .order_by(table.c.phone)
        ).all()
    return [(int(row.id), today[row.timezone]) for row in rows]


def sending_numbers(engine: Engine) -> list[int]:
    """Numbers whose replies are worth polling: every one that is not retired (ordered by phone).

    Asked every tick: reads the ids only, not every `Number` row of the fleet.
    """
    table = ops.NUMBERS
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        return [
            int(n)
            for n in conn.execute(
                sa.select(table.c.id)
                .where(table.c.state != NumberStatus.RETIRED.value)
                .order_by(table.c.phone)
            ).scalars()
        ]


def close_past_days(engine: Engine, now: datetime) -> int:
    """Skip what is left of local days that are over, with the reason; how many messages."""
    return ops.expire_day(engine, now, reason="its local day ended before it could be sent")


def end_expired_pauses(runtime: Runtime, now: datetime) -> int:
    """Resume numbers whose timed pause has passed (the re-spread follows via `pending_resumes`)."""
    return len(ops.resume_expired(runtime.engine, now))


def pending_resumes(engine: Engine, since: datetime) -> list[tuple[int, int]]:
    """(audit id, number id) of resumes at or after ``since`` whose day has not been re-spread yet.

    Works from the audit log, so a resume by any process (admin CLI, chat command, an expired pause)
    is seen, and a restarted scheduler does not re-spread twice.
    """
    audit = ops.AUDIT
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        resumes = [
            (int(row.id), int(row.number_id))
            for row in conn.execute(
                sa.select(audit.c.id, audit.c.number_id)
                .where(audit.c.action == "resume", audit.c.at >= since, audit.c.number_id.is_not(None))
                .order_by(audit.c.id)
            ).all()
        ]
        if not resumes:
            return []
        done_rows = conn.execute(
            sa.select(audit.c.detail).where(audit.c.action == "respread", audit.c.at >= since)
        ).scalars()
        done = {int(d["resume_id"]) for d in done_rows if isinstance(d, dict) and "resume_id" in d}
    return [(audit_id, number_id) for audit_id, number_id in resumes if audit_id not in done]


def respread_rest_of_day(runtime: Runtime, number_id: int, now: datetime, resume_id: int) -> int:
    """After a resume, spread the day's unused quota over the window time left (never a burst).

    The new sends keep the plan's gap and hourly cap with the sends the day already made (and those
    still pending), not only among themselves. Returns how many messages were added; 0 when the number
    is not active any more, the day has no plan (it will be planned knowing about the resume), nothing
    is left, or no window time is left. The store adds them at most once per resume, even when two
    schedulers re-spread the same resume at once (`ops.add_respread`), and always records a
    `respread` audit row naming the resume.
    """
    engine = runtime.engine
    number = ops.get_number(engine, number_id)
    local_date = local_date_of(now, number.timezone) if number is not None else now.date()
    day = ops.get_day_plan(engine, number_id, local_date) if number is not None else None
    detail: dict[str, object] = {}
    sends: list[ops.PlannedSend] = []
    if number is not None and day is not None and number.state == NumberStatus.ACTIVE:
        messages = ops.list_messages(engine, number_id, local_date)
        pending = [m for m in messages if m.state in (MessageState.PLANNED, MessageState.QUEUED)]
        left = day.quota - day.used - len(pending)
        detail.update(local_date=local_date.isoformat(), left=max(left, 0))
        if left > 0:
            plan = runtime.plans(number.plan_path)
            already_new = ops.new_contacts_on(engine, number_id, local_date)
            sends, why = build_sends(
                engine,
                number,
                plan,
                local_date,
                left,
                max(day.max_new_contacts - already_new, 0),
                now,
                f":resume:{resume_id}",
                earlier=[send_time(m) for m in messages if holds_time(m)],
            )
            detail.update(why="; ".join(why)[:500])
    return ops.add_respread(engine, number_id, local_date, sends, resume_id=resume_id, detail=detail, now=now)


# ------------------------------------------------------------------------------ a backlog after an outage


BACKLOG_SKIPPED = "backlog after an outage: no send-window time left at the plan's pace"


def retime_backlog(
    plan: Plan,
    timezone: str,
    local_date: date,
    rows: Sequence[ops.DayMessage],
    now: datetime,
    tolerance: timedelta,
    rng: random.Random,
) -> ops.Retiming | None:
    """The re-spread of a day's backlog, or None when its pending messages break no pacing rule.

    Pure (the rows are the day's messages: id, state, kind, scheduled_at, not_before, claimed_at).
    The pending messages keep their order, recipients and texts and get new times from `spread` over
    the window time left after ``now``, keeping the gap and hourly rules with the sends already made;
    those that no longer fit are skipped (openers, latest first: replies build the response rate).
    A message waiting for a provider's Retry-After keeps its time, and the new ones come after it.
    """
    pending = [r for r in rows if r.state in (MessageState.PLANNED, MessageState.QUEUED)]
    sent = [r.claimed_at for r in rows if r.state not in _NOT_SENT and r.claimed_at is not None]
    due = {r.id: max(r.scheduled_at, r.not_before or r.scheduled_at) for r in pending}
    gap = max(plan.pacing.gap.low, timedelta(seconds=1))
    why = backlog_reason(sent, list(due.values()), now, gap, plan.pacing.max_per_hour, tolerance)
    if why is None:
        return None
    waiting = [r for r in pending if r.not_before is not None and r.not_before > now]
    movable = sorted((r for r in pending if r not in waiting), key=lambda r: (due[r.id], r.id))
    timing = spread(
        local_date,
        len(movable),
        plan,
        timezone,
        rng,
        not_before=now,
        earlier=sorted(sent + [due[r.id] for r in waiting]),
    )
    fits = len(timing.times)
    by_priority = sorted(movable, key=lambda r: (r.kind == MessageKind.OPENER, due[r.id], r.id))
    kept = sorted(by_priority[:fits], key=lambda r: (due[r.id], r.id))
    spans = window_spans(local_date, plan, timezone)
    moves = {r.id: (at, span_end(spans, at)) for r, at in zip(kept, timing.times, strict=True)}
    reason = f"{BACKLOG_SKIPPED} ({timing.reason})" if timing.reason else BACKLOG_SKIPPED
    skips = {r.id: reason[:500] for r in by_priority[fits:]}
    detail: dict[str, Any] = {
        "reason": why,
        "pending": len(pending),
        "moved": len(moves),
        "skipped": len(skips),
        "next_at": min(timing.times).isoformat() if timing.times else "",
        "gap": format_duration(gap),
        "why": timing.reason or "",
    }
    return ops.Retiming(moves, skips, detail)


_NOT_SENT = (MessageState.PLANNED, MessageState.QUEUED, MessageState.SKIPPED)
"""States of a message that did not go out (a skipped one may carry the claim that skipped it)."""


def respread_backlog(runtime: Runtime, number_id: int, now: datetime, tolerance: timedelta) -> int:
    """Re-spread the rest of today of a number whose pending messages would go out in a burst (workers
    or the scheduler were down): `retime_backlog` under the number's lock (`ops.retime_day`, so it
    happens once however many schedulers ask). Returns how many messages were re-timed or skipped."""
    number = ops.get_number(runtime.engine, number_id)
    if number is None or number.state != NumberStatus.ACTIVE:
        return 0
    try:
        plan = runtime.plans(number.plan_path)
    except Exception:  # a broken plan file: its sends are not re-timed blind (the claim still checks)
        log.warning("number %s: plan %s unreadable, backlog not re-spread", number_id, number.plan_path)
        return 0
    local_date = local_date_of(now, number.timezone)
    rng = day_rng(number_id, local_date, f"backlog:{now.isoformat()}")
    tolerance = min(tolerance, max(plan.pacing.gap.low, timedelta(seconds=1)) / 2)

    def decide(rows: Sequence[ops.DayMessage]) -> ops.Retiming | None:
        return retime_backlog(plan, number.timezone, local_date, rows, now, tolerance, rng)

    done = ops.retime_day(runtime.engine, number_id, local_date, decide, now=now)
    if done is None:
        return 0
    log.info("number %s: backlog re-spread: %s", number_id, dict(done.detail))
    metrics.BACKLOG_RESPREADS.inc()
    return len(done.moves) + len(done.skips)
