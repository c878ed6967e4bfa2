"""What every store module shares: the table handles, the two kinds of transaction, time checks, input
checks, and the few row-level steps several operations take (lock a number, skip messages, count a
day's pending ones).

Outside `warmup.store` only tests and benchmarks use the table handles (to read or plant rows behind
the store's back), and callers catch `InvalidWrite`.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite

from warmup.core.domain import SkipCause
from warmup.store.db import READ_ONLY
from warmup.store.models import MessageState, metadata

NUMBERS = metadata.tables["numbers"]
DAY_PLANS = metadata.tables["day_plans"]
MESSAGES = metadata.tables["outbound_messages"]
READINGS = metadata.tables["readings"]
INBOUND = metadata.tables["inbound_messages"]
RECIPIENTS = metadata.tables["recipients"]
AUDIT = metadata.tables["audit_log"]
PACES = metadata.tables["paces"]
PORTFOLIOS = metadata.tables["portfolios"]
PORTFOLIO_SENDS = metadata.tables["portfolio_sends"]

CLAIMABLE = (MessageState.PLANNED.value, MessageState.QUEUED.value)
"""The states of a message that may still take a slot (and may be claimed, re-timed or skipped)."""

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class InvalidWrite(ValueError):
    """A write refused before it touched the database (nothing was changed)."""


# ------------------------------------------------------------------------------------------ transactions


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite): committed on success, rolled back on error.

    SQLite has one writer at a time; a second one that finds the file locked is put to sleep by
    SQLite's busy handler, in steps of 1, 2, 5, 10 ... ms, however soon the lock is free. The writers of
    one process (an embedded run's workers and scheduler) therefore queue on a lock of their own
    first, which hands over at once; other processes still meet the busy timeout.
    """
    lock = _sqlite_writers(engine)
    if lock is None:
        with engine.begin() as conn:
            yield conn
        return
    with lock, engine.begin() as conn:
        yield conn


_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def _sqlite_writers(engine: Engine) -> threading.RLock | None:
    """The in-process writer lock of a SQLite engine (None for PostgreSQL: it has row locks)."""
    if engine.dialect.name != "sqlite":
        return None
    with _WRITERS_LOCK:
        lock = _WRITERS.get(engine)
        if lock is None:
            lock = _WRITERS[engine] = threading.RLock()
        return lock


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: a deferred BEGIN on SQLite, so readers never wait for writers."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        with conn.begin():
            yield conn


def is_postgres(conn_or_engine: Connection | Engine) -> bool:
    return conn_or_engine.dialect.name == "postgresql"


def pg_cursor(conn: Connection) -> Any:
    """A psycopg cursor on the connection's current transaction (SQLAlchemy's BEGIN is already sent),
    for the set-based writes of a batch (`unnest` arrays, COPY).

    Binary: parameters (the arrays of a batch, thousands of values) go in PostgreSQL's binary form,
    which spares a quoting check of every string of every array (a third of the cost of sending them).
    """
    return conn.connection.dbapi_connection.cursor(binary=True)  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------------ time


def aware(value: datetime, name: str = "now") -> datetime:
    """``value`` in UTC; a naive datetime is refused (`InvalidWrite`), it would compare wrongly."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidWrite(f"{name} must be an aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def stamp(now: datetime | None) -> datetime:
    """Bookkeeping time: the caller's clock if given, else the wall clock."""
    return aware(now) if now is not None else datetime.now(UTC)


def aggregate_time(value: datetime | str | None) -> datetime | None:
    """A min()/max() of a time column as an aware UTC datetime: SQLite hands aggregates back as naive
    text, bypassing the column type."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def falls_due(moment: datetime, *, before: bool = False) -> sa.ColumnElement[bool]:
    """The due rule (`warmup.core.pacing.due_at`) as a condition for a query: the message falls due at or
    before ``moment`` (strictly before it with ``before``): its scheduled time and its retry time both."""
    if before:
        return sa.and_(
            MESSAGES.c.scheduled_at < moment,
            sa.or_(MESSAGES.c.not_before.is_(None), MESSAGES.c.not_before < moment),
        )
    return sa.and_(
        MESSAGES.c.scheduled_at <= moment,
        sa.or_(MESSAGES.c.not_before.is_(None), MESSAGES.c.not_before <= moment),
    )


# ---------------------------------------------------------------------------------------------- checks


def check_phone(phone: str, what: str = "phone") -> str:
    if not E164.match(phone):
        raise InvalidWrite(f"{what} {phone!r} is not an E.164 number like +5511999990001")
    return phone


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidWrite(f"unknown time zone {name!r} (use an IANA name like America/Sao_Paulo)") from exc
    return name


def choice(value: str, allowed: type[StrEnum], what: str) -> str:
    values = [member.value for member in allowed]
    if value not in values:
        raise InvalidWrite(f"{what} must be one of {', '.join(values)}, got {value!r}")
    return value


# ------------------------------------------------------------------------------------------ row steps


def insert_ignore(conn: Connection, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the connection's dialect."""
    if is_postgres(conn):
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def lock_number(conn: Connection, number_id: int) -> None:
    """Lock the number row first (the lock order, see `warmup.store`): its writers take turns."""
    conn.execute(sa.select(NUMBERS.c.id).where(NUMBERS.c.id == number_id).with_for_update()).first()


def day_row(conn: Connection, number_id: int, local_date: date, *columns: Any) -> sa.Row[Any] | None:
    """The day plan's `columns` (id, quota, used by default) for that number and local day, or None."""
    return conn.execute(
        sa.select(*(columns or (DAY_PLANS.c.id, DAY_PLANS.c.quota, DAY_PLANS.c.used))).where(
            DAY_PLANS.c.number_id == number_id, DAY_PLANS.c.local_date == local_date
        )
    ).one_or_none()


def pending(conn: Connection, day_plan_id: int) -> int:
    """Messages of the day that may still take a slot (planned or queued)."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                MESSAGES.c.day_plan_id == day_plan_id, MESSAGES.c.state.in_(CLAIMABLE)
            )
        ).scalar_one()
    )


def skip_where(conn: Connection, condition: Any, reason: str, at: datetime, cause: SkipCause) -> int:
    """Skip the claimable messages matching `condition`, locking them in id order first; how many.

    A bare multi-row UPDATE locks rows in whatever order the plan scans them, so two bulk updates (a
    pause and `expire_day`) could each hold a row the other waits for: a PostgreSQL deadlock. Taking
    the row locks with `SELECT ... ORDER BY id FOR UPDATE` gives every bulk writer the same order
    (numbers first, by id, then messages by id), so they queue behind each other instead. ``cause``
    is stored with each skip (the day's accounting counts by it).
    """
    ids = list(
        conn.execute(
            sa.select(MESSAGES.c.id).where(condition).order_by(MESSAGES.c.id).with_for_update()
        ).scalars()
    )
    total = 0
    for start in range(0, len(ids), 500):
        total += conn.execute(
            sa.update(MESSAGES)
            .where(MESSAGES.c.id.in_(ids[start : start + 500]), MESSAGES.c.state.in_(CLAIMABLE))
            .values(state=MessageState.SKIPPED.value, reason=reason[:500], finished_at=at, cause=cause.value)
        ).rowcount
    return total


def skip_pending(
    conn: Connection,
    number_ids: list[int],
    reason: str,
    at: datetime,
    local_date: date | None = None,
    cause: SkipCause = SkipCause.PAUSED,
) -> int:
    """Skip the claimable messages of these numbers (of ``local_date`` only, if given); how many."""
    condition = sa.and_(MESSAGES.c.number_id.in_(number_ids), MESSAGES.c.state.in_(CLAIMABLE))
    if local_date is not None:
        condition = sa.and_(condition, MESSAGES.c.local_date == local_date)
    return skip_where(conn, condition, reason, at, cause)


def ensure_paces(conn: Connection, number_ids: list[int]) -> None:
    """The pace rows of these numbers (a claim needs one; created with the number, or here)."""
    if number_ids:
        conn.execute(insert_ignore(conn, PACES), [{"number_id": n, "recent": []} for n in number_ids])


def free_pace(conn: Connection, message_ids: list[int] | None, now: datetime) -> None:
    """The send of each of ``message_ids`` ended at ``now`` (None: every pace busy with a message that
    is not `sending` any more, i.e. recovered): its number is free for the next one, a gap from now,
    and the end counts for the hourly cap (only a pace still busy with that very message: a late
    record never frees a newer claim). `busy_since` stays: with `free_at` it tells how long the last
    send took.

    The hourly cap counts ENDS, not claims: a send reaches the provider between its claim and its end,
    so with at most `per_hour` ends in the hour before a claim, the provider never sees more than
    `per_hour` sends in 60 minutes, however long each one took to arrive."""
    busy: sa.ColumnElement[bool] = PACES.c.busy_id.is_not(None)
    if message_ids is not None:
        if not message_ids:
            return
        busy = PACES.c.busy_id.in_(message_ids)
    else:
        busy = sa.and_(
            busy,
            ~sa.exists().where(
                MESSAGES.c.id == PACES.c.busy_id, MESSAGES.c.state == MessageState.SENDING.value
            ),
        )
    rows = conn.execute(
        sa.select(PACES.c.number_id, PACES.c.busy_id, PACES.c.recent).where(busy).with_for_update()
    ).all()
    epoch = now.timestamp()
    for row in rows:
        recent = [float(t) for t in (row.recent or ()) if float(t) > epoch - 3600] + [epoch]
        conn.execute(
            sa.update(PACES)
            .where(PACES.c.number_id == row.number_id, PACES.c.busy_id == row.busy_id)
            .values(busy_id=None, free_at=now, recent=sorted(recent))
        )


def in_line(number_id: int) -> sa.Select[Any]:
    """A number's claimable messages in the order they go out (earliest due, then id): the one rule for
    which message is next, read by the claim (only the head of a waiting backlog gets a time) and by
    the hand-over when a send ends (`queue.next_turn`). Select the columns with `with_only_columns`."""
    return (
        sa.select(MESSAGES.c.id)
        .where(MESSAGES.c.number_id == number_id, MESSAGES.c.state.in_(CLAIMABLE))
        .order_by(sa.func.coalesce(MESSAGES.c.not_before, MESSAGES.c.scheduled_at), MESSAGES.c.id)
    )
