"""Planning a day: a number's decision and its messages, stored together and only once; and lowering
a planned day's quota (`cut_quota`).

`plan_day` stores one number's day and `plan_days` a batch of them in ONE transaction; both take the
same steps (`_store`): lock the numbers in id order, leave out days already planned, insert the day
plans, the recipients and the messages, then move the numbers' ramp columns to
`warmup.core.ramp.state_after(state, decision)`, the one definition the preview uses too. On
PostgreSQL the rows go in with set-based statements (`unnest` arrays, COPY for the messages): for a
fleet planned at its local midnight the round trips, not the deciding, were the time. SQLite keeps
portable multi-row inserts, since its single writer gains nothing from them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import select

from warmup.core.domain import Decision, SkipCause
from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of
from warmup.core.ramp import pause_reason, state_after
from warmup.store import audit
from warmup.store.db import session_scope
from warmup.store.models import DayPlan, MessageKind, NumberStatus
from warmup.store.numbers import STATE_COLUMNS, state_of
from warmup.store.sends import (
    MESSAGE_COLUMNS,
    PlannedSend,
    check_replies_exist,
    check_sends,
    message_values,
    recipient_kinds,
    upsert_recipients,
)
from warmup.store.tables import (
    AUDIT,
    CLAIMABLE,
    DAY_PLANS,
    MESSAGES,
    NUMBERS,
    InvalidWrite,
    day_row,
    ensure_paces,
    is_postgres,
    lock_number,
    pending,
    pg_cursor,
    read,
    skip_where,
    stamp,
    write,
)


@dataclass(frozen=True)
class DayPacing:
    """The day's pacing and send windows as planned, stored on the day plan: the claim enforces them
    (`warmup.store.claims`) without reading the plan file, which may change meanwhile."""

    gap: timedelta = timedelta(0)  # the plan's minimum gap between two sends
    per_hour: int | None = None  # the plan's max_per_hour
    windows: Sequence[tuple[datetime, datetime]] | None = None  # the day's send windows (aware, sorted)


@dataclass(frozen=True)
class DayToPlan:
    """One number's planned day for `plan_days`: what `plan_day` takes, for one number."""

    number_id: int
    decision: Decision
    sends: Sequence[PlannedSend]
    cut: int = 0
    cut_reason: str | None = None
    pacing: DayPacing = DayPacing()


# ------------------------------------------------------------------------------------------ planning


def plan_day(
    engine: Engine,
    number_id: int,
    decision: Decision,
    sends: Sequence[PlannedSend],
    *,
    cut: int = 0,
    cut_reason: str | None = None,
    pacing: DayPacing | None = None,
    now: datetime | None = None,
) -> bool:
    """Store the day's decision and its messages in ONE transaction; False if the day was already planned.

    Unique per (number, local date): a second call (sequential or concurrent) changes nothing. Invalid
    sends (bad recipient, naive time, more sends than the quota, ...) raise `InvalidWrite` and nothing
    is stored, not even the decision. `cut`/`cut_reason` record what the scheduler could not fit.

    The number's ramp columns follow `warmup.core.ramp.state_after(state, decision)`: `plan_day` becomes the
    decision's plan day, `advance_pending` is `next_plan_day > plan_day` (the next `decide` moves the
    ramp on if today went well), `last_volume` becomes the quota on a sending day; a PAUSE decision
    pauses an active number (remembering its last volume) with an `auto_pause` audit row.
    """
    day = DayToPlan(number_id, decision, sends, cut, cut_reason, pacing or DayPacing())
    _check_day(day, "")
    at = stamp(now)
    try:
        with write(engine) as conn:
            numbers = _lock_numbers(conn, [number_id])
            if not numbers:
                raise UserError(f"no number with id {number_id}")
            return _store(conn, numbers, [day], at) == [number_id]
    except IntegrityError as exc:  # a day plan inserted by a writer that did not lock the number first
        if "uq_day_plans_number_date" in str(exc.orig) or "day_plans.number_id" in str(exc.orig):
            return False
        raise


def plan_days(engine: Engine, days: Sequence[DayToPlan], *, now: datetime | None = None) -> list[int]:
    """Store many days (as `plan_day` each) in ONE transaction; the number ids whose day was stored.

    A day already planned (or a number that no longer exists) is skipped, so a batch planned twice, or
    at the same time as a single `plan_day`, changes nothing. Invalid sends raise `InvalidWrite` before
    anything is written.
    """
    at = stamp(now)
    by_number: dict[int, DayToPlan] = {}
    for day in days:
        _check_day(day, f"number {day.number_id}: ")
        if day.number_id in by_number:
            raise InvalidWrite(f"number {day.number_id} appears twice in one batch")
        by_number[day.number_id] = day
    if not by_number:
        return []
    with write(engine) as conn:
        numbers = _lock_numbers(conn, list(by_number))
        return _store(conn, numbers, [by_number[n] for n in sorted(numbers)], at)


PLANNING_FAILED = "planning_failed"
"""The audit action of a number whose day could not be planned (its batch went on without it)."""


def worth_retrying(exc: BaseException) -> bool:
    """Whether storing failed for a reason a later retry may clear (the database unreachable or
    restarting, a lock or statement timeout, a deadlock) rather than for what was being stored."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout):
        return True  # SQLAlchemy's wrapping of the drivers' errors, and its own pool's
    # the drivers' own, raised through a raw cursor (COPY) or unwrapped: psycopg's OperationalError
    # covers deadlocks, serialization failures and cancelled statements; sqlite3's a locked database
    return any(
        base.__name__ in ("OperationalError", "InterfaceError")
        and base.__module__.startswith(("psycopg", "sqlite3"))
        for base in type(exc).__mro__
    )


def record_planning_failure(
    engine: Engine, number_id: int, local_date: date, error: str, *, now: datetime | None = None
) -> bool:
    """Record on the number that its day could not be planned: a `PLANNING_FAILED` audit row, unless
    its newest one already says the same about the same day (a scheduler retrying the day every few
    minutes adds no row each time). True when a row was added."""
    detail = {"local_date": local_date.isoformat(), "error": error[:500]}
    with write(engine) as conn:
        last = conn.execute(
            sa.select(AUDIT.c.detail)
            .where(AUDIT.c.number_id == number_id, AUDIT.c.action == PLANNING_FAILED)
            .order_by(AUDIT.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if last == detail:
            return False
        audit.record(conn, "planning", PLANNING_FAILED, number_id, detail, stamp(now))
        return True


def planning_failure(engine: Engine, number_id: int, local_date: date) -> str | None:
    """Why the number's day ``local_date`` could not be planned, while it is still unplanned (its newest
    `PLANNING_FAILED` row about that day); None when it is planned or nothing failed."""
    with read(engine) as conn:
        if day_row(conn, number_id, local_date, DAY_PLANS.c.id) is not None:
            return None
        details = conn.execute(
            sa.select(AUDIT.c.detail)
            .where(AUDIT.c.number_id == number_id, AUDIT.c.action == PLANNING_FAILED)
            .order_by(AUDIT.c.id.desc())
            .limit(20)
        ).scalars()
        for detail in details:
            if isinstance(detail, dict) and detail.get("local_date") == local_date.isoformat():
                return str(detail.get("error") or "no reason recorded")
    return None


def _check_day(day: DayToPlan, where: str) -> None:
    """Refuse a day that cannot be stored (`InvalidWrite`), before any write."""
    if len(day.sends) > day.decision.quota:
        raise InvalidWrite(f"{where}{len(day.sends)} sends exceed the day's quota {day.decision.quota}")
    if day.cut < 0:
        raise InvalidWrite("cut must not be negative")
    check_sends(day.sends)


def _lock_numbers(conn: Connection, ids: Sequence[int]) -> dict[int, sa.Row[Any]]:
    """The ramp state of those of these numbers that exist, their rows locked in id order."""
    return {
        int(row.id): row
        for row in conn.execute(
            sa.select(*STATE_COLUMNS)
            .where(NUMBERS.c.id.in_(sorted(ids)))
            .order_by(NUMBERS.c.id)
            .with_for_update()
        )
    }


def _store(
    conn: Connection, numbers: Mapping[int, sa.Row[Any]], days: Sequence[DayToPlan], at: datetime
) -> list[int]:
    """Store ``days`` (their numbers locked: ``numbers``) but those already planned; the number ids stored.

    The existence check cannot race a concurrent writer: every writer of a day plan locks its number
    first.
    """
    existing = {
        (int(row.number_id), row.local_date)
        for row in conn.execute(
            sa.select(DAY_PLANS.c.number_id, DAY_PLANS.c.local_date).where(
                DAY_PLANS.c.number_id.in_([d.number_id for d in days]),
                DAY_PLANS.c.local_date.in_({d.decision.local_date for d in days}),
            )
        )
    }
    todo = [
        d for d in days if d.number_id in numbers and (d.number_id, d.decision.local_date) not in existing
    ]
    if not todo:
        return []
    check_replies_exist(conn, [send for day in todo for send in day.sends])
    plan_ids = _insert_day_plans(conn, [_plan_row(day, at) for day in todo])
    ensure_paces(conn, [day.number_id for day in todo])
    kinds = {key: kind for day in todo for key, kind in recipient_kinds(day.number_id, day.sends).items()}
    upsert_recipients(conn, kinds, at)
    rows = [
        row
        for day in todo
        for row in message_values(
            day.number_id, plan_ids[day.number_id], day.decision.local_date, day.sends, at
        )
    ]
    _insert_messages(conn, rows)
    _apply_decisions(conn, [(numbers[day.number_id], day.decision) for day in todo], at)
    return [day.number_id for day in todo]


PLAN_COLUMNS = (
    "number_id",
    "local_date",
    "plan_day",
    "next_plan_day",
    "action",
    "quota",
    "plan_volume",
    "max_new_contacts",
    "reasons",
    "used",
    "cut",
    "cut_reason",
    "gap_seconds",
    "per_hour",
    "windows",
    "created_at",
)
"""The day plan columns a planned day fills, in the order of `_plan_row`."""


def _plan_row(day: DayToPlan, at: datetime) -> tuple[Any, ...]:
    decision = day.decision
    return (
        day.number_id,
        decision.local_date,
        decision.plan_day,
        decision.next_plan_day,
        str(decision.action),
        decision.quota,
        decision.plan_volume,
        decision.max_new_contacts,
        [{"rule": r.rule, "action": str(r.action), "text": r.text} for r in decision.reasons],
        0,
        day.cut,
        day.cut_reason,
        day.pacing.gap.total_seconds(),
        day.pacing.per_hour,
        None
        if day.pacing.windows is None
        else [[a.isoformat(), b.isoformat()] for a, b in day.pacing.windows],
        at,
    )


_PG_PLAN_TYPES = {
    "number_id": "int4",
    "local_date": "date",
    "plan_day": "int4",
    "next_plan_day": "int4",
    "action": "text",
    "quota": "int4",
    "plan_volume": "int4",
    "max_new_contacts": "int4",
    "reasons": "text",
    "used": "int4",
    "cut": "int4",
    "cut_reason": "text",
    "gap_seconds": "float8",
    "per_hour": "int4",
    "windows": "text",
    "created_at": "timestamptz",
}

_JSON_COLUMNS = ("reasons", "windows")

_INSERT_DAY_PLANS_PG = f"""
    INSERT INTO day_plans ({", ".join(PLAN_COLUMNS)})
    SELECT {", ".join(f"t.{c}::json" if c in _JSON_COLUMNS else f"t.{c}" for c in PLAN_COLUMNS)}
    FROM unnest({", ".join(f"%s::{_PG_PLAN_TYPES[c]}[]" for c in PLAN_COLUMNS)})
        AS t({", ".join(PLAN_COLUMNS)})
    RETURNING number_id, id
"""
"""Day plans over `unnest` arrays, one per column (built from fixed column names only)."""


def _insert_day_plans(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> dict[int, int]:
    """Insert day plans (tuples in `PLAN_COLUMNS` order) in ONE statement; number id -> day plan id."""
    if not is_postgres(conn):
        inserted = conn.execute(
            sa.insert(DAY_PLANS).returning(
                DAY_PLANS.c.id, DAY_PLANS.c.number_id, sort_by_parameter_order=True
            ),
            [dict(zip(PLAN_COLUMNS, row, strict=True)) for row in rows],
        ).all()
        return {int(row.number_id): int(row.id) for row in inserted}
    params = [list(column) for column in zip(*rows, strict=True)]
    for name in _JSON_COLUMNS:
        at = PLAN_COLUMNS.index(name)
        params[at] = [None if value is None else json.dumps(value) for value in params[at]]
    with pg_cursor(conn) as cur:
        try:
            cur.execute(_INSERT_DAY_PLANS_PG, params)
        except Exception as exc:
            # The raw cursor's errors are psycopg's: a unique violation (SQLSTATE 23505) becomes the
            # IntegrityError SQLAlchemy raises on every other path, so `plan_day` recognises it alike.
            if getattr(exc, "sqlstate", None) == "23505":
                raise IntegrityError(_INSERT_DAY_PLANS_PG, None, exc) from exc
            raise
        return {int(number_id): int(plan_id) for number_id, plan_id in cur.fetchall()}


_MESSAGE_COPY_TYPES = {
    "number_id": "int4",
    "day_plan_id": "int4",
    "local_date": "date",
    "recipient": "text",
    "kind": "text",
    "text": "text",
    "typing_seconds": "float8",
    "scheduled_at": "timestamptz",
    "state": "text",
    "in_reply_to": "int4",
    "window_end": "timestamptz",
    "attempts": "int4",
    "created_at": "timestamptz",
}
"""PostgreSQL types of `MESSAGE_COLUMNS` (text is varchar's binary form too), for a binary COPY."""


def _insert_messages(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert messages (tuples in `MESSAGE_COLUMNS` order). PostgreSQL: a binary COPY, no per-row
    statement and about a tenth of the CPU of a text COPY (formatting times as text cost ~4 us a row)."""
    if not rows:
        return
    if not is_postgres(conn):
        conn.execute(sa.insert(MESSAGES), [dict(zip(MESSAGE_COLUMNS, row, strict=True)) for row in rows])
        return
    with (
        pg_cursor(conn) as cur,
        cur.copy(f"COPY outbound_messages ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types([_MESSAGE_COPY_TYPES[column] for column in MESSAGE_COLUMNS])
        for row in rows:
            copy.write_row(row)


_UPDATE_RAMPS_PG = """
    UPDATE numbers
    SET plan_day = t.plan_day,
        advance_pending = t.advance_pending,
        last_volume = t.last_volume,
        updated_at = %s
    FROM unnest(%s::int4[], %s::int4[], %s::bool[], %s::int4[])
        AS t(id, plan_day, advance_pending, last_volume)
    WHERE numbers.id = t.id
"""


def _apply_decisions(conn: Connection, decided: Sequence[tuple[sa.Row[Any], Decision]], at: datetime) -> None:
    """Move each number's ramp columns to `state_after(its state, its decision)`.

    A PAUSE decision for an active number pauses it (its reason, the volume before the pause) with an
    `auto_pause` audit row. PostgreSQL updates the other numbers in ONE statement over `unnest` arrays.
    """
    ramps: list[tuple[int, int, bool, int]] = []
    for number, decision in decided:
        before = state_of(number)
        after = state_after(before, decision)
        values: dict[str, Any] = {
            "plan_day": after.plan_day,
            "advance_pending": after.advance_pending,
            "last_volume": after.last_volume,
        }
        if after.paused and not before.paused:
            values.update(
                state=NumberStatus.PAUSED.value,
                paused_reason=pause_reason(decision)[:500],
                paused_at=at,
                paused_until=None,
                paused_volume=after.paused_volume,
            )
        elif is_postgres(conn):
            ramps.append((int(number.id), after.plan_day, after.advance_pending, after.last_volume))
            continue
        conn.execute(sa.update(NUMBERS).where(NUMBERS.c.id == number.id).values(**values, updated_at=at))
        if "paused_reason" in values:
            audit.record(conn, "decide", "auto_pause", number.id, {"reason": values["paused_reason"]}, at)
    if ramps:
        ids, plan_days, pending, volumes = (list(column) for column in zip(*ramps, strict=True))
        with pg_cursor(conn) as cur:
            cur.execute(_UPDATE_RAMPS_PG, [at, ids, plan_days, pending, volumes])


def cut_quota(
    engine: Engine,
    number_id: int,
    local_date: date,
    new_quota: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> int | None:
    """Lower the day's quota (a throttle from the provider); never below the slots already used.

    Returns the new quota, or None when the day has no plan. Pending (planned|queued) messages that no
    longer fit are skipped at once with the reason, the latest first and openers before replies, so the
    day's messages that are not skipped never outnumber its quota. Number row locked first, like every
    writer that adds to or trims a day (`add_sends`, `claim`, `pause_numbers`).
    """
    if new_quota < 0:
        raise InvalidWrite("a quota cannot be negative")
    at = stamp(now)
    with write(engine) as conn:
        lock_number(conn, number_id)
        return cut_day(conn, number_id, local_date, new_quota, reason, at)


def cut_day(
    conn: Connection,
    number_id: int,
    local_date: date,
    new_quota: int,
    reason: str,
    at: datetime,
    actor: str = "worker",
) -> int | None:
    """`cut_quota` in the caller's transaction, the number row locked by the caller."""
    if new_quota < 0:
        raise InvalidWrite("a quota cannot be negative")
    row = day_row(
        conn, number_id, local_date, DAY_PLANS.c.id, DAY_PLANS.c.quota, DAY_PLANS.c.used, DAY_PLANS.c.cut
    )
    if row is None:
        return None
    # `used` can only shrink meanwhile (a claim needs the number row), so `quota >= used` holds
    quota: int = max(row.used, min(row.quota, new_quota))
    excess = row.used + pending(conn, row.id) - quota
    trimmed = 0
    if excess > 0:
        latest = conn.execute(
            sa.select(MESSAGES.c.id)
            .where(MESSAGES.c.day_plan_id == row.id, MESSAGES.c.state.in_(CLAIMABLE))
            .order_by(
                (MESSAGES.c.kind == MessageKind.OPENER.value).desc(),
                MESSAGES.c.scheduled_at.desc(),
                MESSAGES.c.id.desc(),
            )
            .limit(excess)
        ).scalars()
        trimmed = skip_where(
            conn, MESSAGES.c.id.in_(list(latest)), f"quota cut: {reason}", at, SkipCause.QUOTA
        )
    conn.execute(
        sa.update(DAY_PLANS)
        .where(DAY_PLANS.c.id == row.id)
        .values(
            quota=quota,
            cut=row.cut + (row.quota - quota),
            quota_cut=DAY_PLANS.c.quota_cut + (row.quota - quota),
            cut_reason=reason[:500],
        )
    )
    if quota < row.quota:
        detail = {
            "local_date": local_date.isoformat(),
            "from": row.quota,
            "to": quota,
            "reason": reason,
            "skipped": trimmed,
        }
        audit.record(conn, actor, "cut_quota", number_id, detail, at)
    return quota


# ------------------------------------------------------------------------------------------- reading


def planned_on(engine: Engine, number_ids: Sequence[int], local_date: date) -> set[int]:
    """Which of these numbers have a day plan for ``local_date`` (one query)."""
    if not number_ids:
        return set()
    with read(engine) as conn:
        return {
            int(n)
            for n in conn.execute(
                sa.select(DAY_PLANS.c.number_id).where(
                    DAY_PLANS.c.number_id.in_(sorted(set(number_ids))), DAY_PLANS.c.local_date == local_date
                )
            ).scalars()
        }


def get_day_plan(engine: Engine, number_id: int, local_date: date) -> DayPlan | None:
    """The decision stored for that number and local day (what `warmup why` explains)."""
    with session_scope(engine, read_only=True) as session:
        return session.exec(
            select(DayPlan).where(DayPlan.number_id == number_id, DayPlan.local_date == local_date)
        ).first()


def unplanned(engine: Engine, now: datetime) -> list[tuple[int, date]]:
    """(number, local date) of every non-retired number whose local day has started but has no plan
    (ordered by phone).

    Asked every tick: one anti-join in the database (today's date per zone, the few zones of the
    fleet first), so a tick's cost follows the days still unplanned, not the size of the fleet.
    """
    active = NUMBERS.c.state != NumberStatus.RETIRED.value
    with read(engine) as conn:
        zones = sorted(conn.execute(sa.select(NUMBERS.c.timezone).where(active).distinct()).scalars())
        if not zones:
            return []
        today = {zone: local_date_of(now, zone) for zone in zones}
        local_today = sa.case(*((NUMBERS.c.timezone == zone, day) for zone, day in today.items()))
        rows = conn.execute(
            sa.select(NUMBERS.c.id, NUMBERS.c.timezone)
            .where(
                active,
                ~sa.exists().where(
                    DAY_PLANS.c.number_id == NUMBERS.c.id, DAY_PLANS.c.local_date == local_today
                ),
            )
            .order_by(NUMBERS.c.phone)
        ).all()
    return [(int(row.id), today[row.timezone]) for row in rows]


def planned_dates(engine: Engine, number_id: int, limit: int) -> list[date]:
    """The local dates of the number's day plans, newest first (at most ``limit``)."""
    with read(engine) as conn:
        return list(
            conn.execute(
                sa.select(DAY_PLANS.c.local_date)
                .where(DAY_PLANS.c.number_id == number_id)
                .order_by(DAY_PLANS.c.local_date.desc())
                .limit(limit)
            ).scalars()
        )
