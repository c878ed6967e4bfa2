"""The daily cycle of one number, run at the start of its local day (docs/design.md, "The daily cycle").

reading -> yesterday's outcome -> decide (pure) -> audience + content -> spread (pure) -> one
transaction (`store.days.plan_day`, unique per number and local date, so planning twice does nothing).
The random generators are seeded from (number id, local date), so a day replays exactly.

Which days are due for planning the scheduler asks the store (`warmup.store.days.unplanned`).
"""

from __future__ import annotations

import logging
import random
import threading
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from warmup.core.audience import AudienceResult, Pick, choose
from warmup.core.domain import Decision, Reading
from warmup.core.localtime import local_date_of, window_spans
from warmup.core.pacing import span_end
from warmup.core.plan.model import Plan
from warmup.core.plan.values import escaped
from warmup.core.portfolio import cap_by_portfolio
from warmup.core.ramp import decide
from warmup.core.spread import spread
from warmup.files.content import NO_REPEAT
from warmup.services import metrics
from warmup.services.readings import Metered, meter_reading, meter_readings, taken_on
from warmup.services.runtime import Runtime
from warmup.services.texts import CONTACTS, FIRST_NAMES, PlanFiles, choose_texts, pool_of, texts_of
from warmup.store import history, inbound, readings
from warmup.store import numbers as store_numbers
from warmup.store.days import (
    DayPacing,
    DayToPlan,
    get_day_plan,
    plan_day,
    plan_days,
    planned_on,
    record_planning_failure,
    worth_retrying,
)
from warmup.store.db import Engine
from warmup.store.facts import Facts, read_facts
from warmup.store.models import (
    MessageKind,
    Number,
    NumberStatus,
    RecipientKind,
)
from warmup.store.numbers import get_number, get_numbers, state_of
from warmup.store.sends import PlannedSend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayResult:
    """What planning one day did (for logs and tests)."""

    planned: bool  # False: already planned, not today, or the number is retired
    decision: Decision | None = None
    sends: int = 0
    cut: int = 0
    cut_reason: str | None = None
    error: str | None = None  # why the day could not be planned (recorded on the number), if so


def day_rng(number_id: int, local_date: date, purpose: str) -> random.Random:
    """A generator that is the same for the same number, day and purpose in every process and run."""
    return random.Random(f"warmup:{number_id}:{local_date.isoformat()}:{purpose}")


# ------------------------------------------------------------------------------------------ planning


class ActivePhones:
    """The phones of the fleet's active numbers (ordered by phone), per engine, re-read only when the
    active set changes.

    Every day planned needs its peers; reading the whole fleet each time made planning a fleet O(N^2).
    A cheap aggregate (`warmup.store.numbers.ActiveKey`) tells whether the set changed since the last
    read: enrolling, pausing, resuming or retiring a number changes it, planning does not (the cost of
    a missed change is a peer list one change behind).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: weakref.WeakKeyDictionary[
            Engine, tuple[store_numbers.ActiveKey, tuple[tuple[int, str], ...]]
        ]
        self._cache = weakref.WeakKeyDictionary()

    def __call__(self, engine: Engine) -> tuple[tuple[int, str], ...]:
        """(id, phone) of every active number, ordered by phone."""
        with self._lock:
            cached = self._cache.get(engine)
        key, phones = store_numbers.active_phones(engine, unless=cached[0] if cached is not None else None)
        if phones is None:
            assert cached is not None
            return cached[1]
        with self._lock:
            self._cache[engine] = (key, phones)
        return phones


active_phones = ActivePhones()


@dataclass(frozen=True)
class Known:
    """What the store knows that choosing a number's audience depends on, read once per batch."""

    peer_phones: tuple[str, ...]  # the fleet's active numbers (its own phone too: `choose` leaves it out)
    recipients: Sequence[inbound.KnownRecipient]  # the number's recipient rows, invalid ones too
    files: PlanFiles | None = None
    recent: Mapping[str, Mapping[str, datetime]] | None = None  # `recent_texts` of the number (None: read it)


def known_of(engine: Engine, number: Number) -> Known:
    """`Known` for one number, read now (a re-spread, or a day planned alone)."""
    assert number.id is not None
    recipients = inbound.known_recipients(engine, number.id)
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
        contacts = files.contacts(plan.audience.contacts) if files else CONTACTS(plan.audience.contacts)
    rows = known.recipients
    return choose(
        count,
        peers=known.peer_phones if plan.audience.peers is not None else (),
        contacts=contacts,
        known={r.phone for r in rows if r.first_contacted_on is not None},
        invalid={r.phone for r in rows if r.invalid},
        last_text={},  # nobody passed over for a repeat: `opener_texts` words the sends once they have times
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
) -> tuple[list[PlannedSend], list[str]]:
    """Up to ``count`` messages addressed and timed inside the day's windows after ``now``, and why
    fewer, if so. Each send names its recipient's kind: `days.plan_day` gives the recipients a row (so
    the store can track their last text) in the transaction that stores the messages.

    ``earlier`` are the day's sends already made or pending: the new ones keep the gap and hourly
    rules with them (a re-spread right after a pause must not land seconds after the last send).
    """
    assert number.id is not None
    why: list[str] = []
    if known is None:
        known = known_of(engine, number)
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
    texts = opener_texts(
        engine, number, plan, local_date, list(zip(picks, timing.times, strict=False)), known, seed
    )
    spans = window_spans(local_date, plan, number.timezone)
    opener, peer, contact = MessageKind.OPENER.value, RecipientKind.PEER.value, RecipientKind.CONTACT.value
    sends = [
        PlannedSend(
            recipient=pick.to,
            text=text,
            scheduled_at=at,
            kind=opener,
            typing_seconds=round(typing, 3),
            window_end=span_end(spans, at),
            recipient_kind=peer if pick.peer else contact,
        )
        for pick, at, typing, text in zip(picks, timing.times, timing.typing, texts, strict=False)
    ]
    return sends, why


def recent_since(local_date: date) -> date:
    """The first local day whose messages may be within `NO_REPEAT` of a send on ``local_date`` (a day
    more, for a DST change or a claim late in a day)."""
    return local_date - NO_REPEAT - timedelta(days=1)


def opener_texts(
    engine: Engine,
    number: Number,
    plan: Plan,
    local_date: date,
    sends: Sequence[tuple[Pick, datetime]],
    known: Known,
    seed: str,
) -> list[str]:
    """The text of each addressed and timed send: allowed by the pool at its local time, with the
    contact's first name, and new to its recipient for a week when the pool allows
    (`texts.choose_texts`). The recent texts come with ``known`` (batch planning reads them for the
    batch), else they are read now: one statement per day planned."""
    assert number.id is not None
    files = known.files
    recent = known.recent
    if recent is None:
        recent = history.recent_texts(engine, [number.id], recent_since(local_date)).get(number.id, {})
    names: Mapping[str, str] = {}
    if plan.audience.contacts:
        path = plan.audience.contacts
        known_names = files.first_names(path) if files else FIRST_NAMES(path)
        names = {p.to: known_names[p.to] for p, _ in sends if not p.peer and p.to in known_names}
    return choose_texts(
        files.pool(plan) if files else pool_of(plan),
        "opener",
        [(pick.to, at) for pick, at in sends],
        number.timezone,
        names,
        recent,
        day_rng(number.id, local_date, "text" + seed),
    )


def plan_number_day(runtime: Runtime, number_id: int, local_date: date) -> DayResult:
    """Plan one number's local day, once. Only today's date is planned: a past day stays unplanned
    (the scheduler was down), a future one waits for its start."""
    engine = runtime.engine
    now = runtime.clock.now()
    number = get_number(engine, number_id)
    if number is None or number.state == NumberStatus.RETIRED:
        return DayResult(False)
    if local_date != local_date_of(now, number.timezone):
        log.info(
            "number %s (%s): not planning %s, its local day is not today", number_id, number.phone, local_date
        )
        return DayResult(False)
    if get_day_plan(engine, number_id, local_date) is not None:
        return DayResult(False)
    facts = read_facts(engine, {number_id: number.timezone}, local_date, _readings_since(now), now)[number_id]
    reading = facts.latest_reading
    if not taken_on(reading, number, local_date):
        metered = meter_reading(runtime, number, local_date, now)
        reading = metered.reading
        if metered.new and reading is not None:
            readings.save_reading(engine, number_id, local_date, reading)
            metrics.READINGS.labels(source=reading.source).inc()
    recent = history.recent_texts(engine, [number_id], recent_since(local_date)).get(number_id, {})
    stage = "decide"
    try:
        day = _decide_day(
            runtime,
            number,
            local_date,
            now,
            reading,
            facts,
            _phones(active_phones(engine)),
            PlanFiles(runtime),
            recent,
        )
        stage = "store"
        planned = plan_day(
            engine,
            number_id,
            day.decision,
            day.sends,
            cut=day.cut,
            cut_reason=day.cut_reason,
            pacing=day.pacing,
            now=now,
        )
    except Exception as exc:
        if worth_retrying(exc):
            raise  # the database is away or busy: the request is retried
        return DayResult(False, error=_failed(runtime, number, local_date, stage, exc, now))
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
    (`store.facts`), the missing risk-meter readings are fetched concurrently while the days whose
    reading has arrived are decided, the readings are stored in one insert, and all the days in one
    transaction (`days.plan_days`, which skips a day planned meanwhile).
    """
    with _planning_slots:
        return _plan_number_days(runtime, number_ids, local_date)


def _plan_number_days(runtime: Runtime, number_ids: Sequence[int], local_date: date) -> list[DayResult]:
    engine = runtime.engine
    now = runtime.clock.now()
    numbers = {n.id: n for n in get_numbers(engine, number_ids) if n.id is not None}
    already = planned_on(engine, list(numbers), local_date)
    todo: list[Number] = []
    for number_id in dict.fromkeys(number_ids):
        number = numbers.get(number_id)
        if number is None or number.state == NumberStatus.RETIRED or number_id in already:
            continue
        if local_date != local_date_of(now, number.timezone):
            log.info(
                "number %s (%s): not planning %s, its local day is not today",
                number_id,
                number.phone,
                local_date,
            )
            continue
        todo.append(number)
    if not todo:
        return [DayResult(False) for _ in number_ids]
    timezones = {n.id: n.timezone for n in todo if n.id}
    facts = read_facts(engine, timezones, local_date, _readings_since(now), now)
    peers = _phones(active_phones(engine))
    files = PlanFiles(runtime)
    recent = history.recent_texts(engine, [n.id for n in todo if n.id], recent_since(local_date))
    stored: dict[int, Reading] = {}  # today's reading, already taken (a retried batch)
    for number in todo:
        assert number.id is not None
        latest = facts[number.id].latest_reading
        if latest is not None and taken_on(latest, number, local_date):
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
    fetched: dict[int, Metered] = {}
    days: list[_Day] = []
    taken: list[tuple[int, date, Reading]] = []
    failures: list[tuple[Number, str, Exception]] = []  # (number, stage, error): planned without them
    try:
        for number in todo:  # decide each day as soon as its reading is there
            assert number.id is not None
            reading = stored.get(number.id)
            if reading is None:
                while number.id not in fetched:  # the chunks come in the order of `todo`
                    fetched.update(next(chunks).result())
                reading = fetched[number.id].reading
                if fetched[number.id].new and reading is not None:
                    taken.append((number.id, local_date, reading))
            try:
                days.append(
                    _decide_day(
                        runtime,
                        number,
                        local_date,
                        now,
                        reading,
                        facts[number.id],
                        peers,
                        files,
                        recent.get(number.id, {}),
                    )
                )
            except Exception as exc:  # this number's plan, files or decision: the others go on
                if worth_retrying(exc):
                    raise
                failures.append((number, "decide", exc))
    finally:  # the readings taken are stored even if a decision failed: a retry will not read them again
        readings.save_readings(engine, taken)
        for _, _, reading in taken:
            metrics.READINGS.labels(source=reading.source).inc()
    stored_days = _store_days(engine, days, now, {n.id: n for n in todo if n.id is not None}, failures)
    results = {d.number_id: _planned(d, d.number_id in stored_days) for d in days}
    for number, stage, error in failures:
        assert number.id is not None
        results[number.id] = DayResult(False, error=_failed(runtime, number, local_date, stage, error, now))
    return [results.get(number_id, DayResult(False)) for number_id in number_ids]


def _store_days(
    engine: Engine,
    days: Sequence[_Day],
    now: datetime,
    numbers: Mapping[int, Number],
    failures: list[tuple[Number, str, Exception]],
) -> set[int]:
    """Store the batch's days in one transaction; the number ids stored. When the database refuses the
    batch for what is in it (not for being away: that is raised, and the request retried), each day is
    stored alone, so only the day it refuses is left out, added to ``failures``."""
    try:
        return set(plan_days(engine, [d.to_store() for d in days], now=now))
    except Exception as exc:
        if worth_retrying(exc):
            raise
        if len(days) == 1:
            failures.append((numbers[days[0].number_id], "store", exc))
            return set()
    stored: set[int] = set()
    for day in days:
        try:
            stored.update(plan_days(engine, [day.to_store()], now=now))
        except Exception as refused:
            if worth_retrying(refused):
                raise
            failures.append((numbers[day.number_id], "store", refused))
    return stored


def failure_text(exc: BaseException) -> str:
    """What went wrong, on one line, for the audit log and the log: the driver's own message for a
    database error (never the statement or its parameters, which hold the texts), characters the
    store cannot hold escaped."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    lines = str(cause).strip().splitlines()
    first = lines[0].strip() if lines else ""
    return escaped(f"{type(cause).__name__}: {first}" if first else type(cause).__name__)[:500]


def _failed(
    runtime: Runtime, number: Number, local_date: date, stage: str, exc: Exception, now: datetime
) -> str:
    """Record that the number's day could not be planned (an audit row on the number, once per day and
    reason; a log line without a traceback; `warmup_planning_failures_total`); the reason."""
    assert number.id is not None
    error = failure_text(exc)
    metrics.PLANNING_FAILURES.labels(stage=stage).inc()
    log.warning(
        "number %s (%s): day %s not planned (%s failed): %s",
        number.id,
        number.phone,
        local_date,
        stage,
        error,
    )
    log.debug("number %s: planning failure", number.id, exc_info=exc)
    try:
        record_planning_failure(runtime.engine, number.id, local_date, error, now=now)
    except Exception as record_exc:  # the log line and the metric above still tell
        log.warning(
            "number %s: could not record the planning failure: %s", number.id, failure_text(record_exc)
        )
    return error


def _read_meters(
    runtime: Runtime, numbers: Sequence[Number], local_date: date, now: datetime
) -> dict[int, Metered]:
    """`meter_reading` of each number in turn (a reading thread's share of a batch): a batch's reads
    go to the pool as `READING_THREADS` tasks, not one per number (each hand-over costs a thread
    switch under the GIL, a tenth of a number's planning)."""
    return meter_readings(runtime, numbers, local_date, now)


@dataclass(frozen=True)
class _Day:
    """A day decided and spread, not yet stored."""

    number_id: int
    decision: Decision
    sends: list[PlannedSend]
    cut: int
    cut_reason: str | None
    pacing: DayPacing

    def to_store(self) -> DayToPlan:
        return DayToPlan(self.number_id, self.decision, self.sends, self.cut, self.cut_reason, self.pacing)


def day_pacing(plan: Plan, local_date: date, timezone: str) -> DayPacing:
    """The day's pacing rules and windows as the claim will enforce them."""
    return DayPacing(
        gap=plan.pacing.gap.low,
        per_hour=plan.pacing.max_per_hour,
        windows=window_spans(local_date, plan, timezone),
    )


def _decide_day(
    runtime: Runtime,
    number: Number,
    local_date: date,
    now: datetime,
    reading: Reading | None,
    facts: Facts,
    peers: tuple[str, ...],
    files: PlanFiles,
    recent: Mapping[str, Mapping[str, datetime]],
) -> _Day:
    """The decision and the day's sends from what was read (no I/O but the plan's files): the part
    single and batch planning share."""
    assert number.id is not None
    plan = files.plan(number.plan_path)
    decision = decide(plan, state_of(number), reading, facts.yesterday, local_date, now)
    decision = cap_by_portfolio(decision, facts.portfolio, reading)  # what its Meta portfolio has left
    sends: list[PlannedSend] = []
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
            known=Known(peers, facts.recipients, files, recent),
        )
    cut = decision.quota - len(sends)
    pacing = day_pacing(plan, local_date, number.timezone)
    return _Day(number.id, decision, sends, cut, "; ".join(why)[:500] or None, pacing)


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
