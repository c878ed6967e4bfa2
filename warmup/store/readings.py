"""Risk-meter readings: one number's (`save_reading`, `latest_reading`) and a batch's (`save_readings`,
`latest_readings`, what batch planning stores and reads in one statement each).

A day may hold several readings of a number; the latest (by `taken_at`, then id) wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from warmup.core.domain import Reading
from warmup.store.tables import READINGS, InvalidWrite, aware, is_postgres, pg_cursor, read, write

READING_COLUMNS = (
    "number_id",
    "local_date",
    "overall",
    "lifetime",
    "response_rate",
    "contacts",
    "source",
    "taken_at",
    "quality",
    "status",
    "tier",
    "meter_error",
)

_INSERT_READINGS_PG = f"""
    INSERT INTO readings ({", ".join(READING_COLUMNS)})
    SELECT * FROM unnest(
        %s::int4[], %s::date[], %s::int4[], %s::int4[], %s::int4[], %s::int4[], %s::text[], %s::timestamptz[],
        %s::text[], %s::text[], %s::text[], %s::text[]
    )
"""


def _row(number_id: int, local_date: date, reading: Reading) -> tuple[Any, ...]:
    """The row of one reading (in `READING_COLUMNS` order), checked: `InvalidWrite` for a bad one."""
    for factor in ("overall", "lifetime", "response_rate", "contacts"):
        if reading.factor(factor) not in (1, 2, 3):
            raise InvalidWrite(f"reading {factor} must be 1, 2 or 3, got {reading.factor(factor)!r}")
    return (
        number_id,
        local_date,
        reading.overall,
        reading.lifetime,
        reading.response_rate,
        reading.contacts,
        reading.source[:16],
        aware(reading.taken_at, "taken_at").astimezone(UTC),
        _clip(reading.quality, 16),
        _clip(reading.status, 16),
        _clip(reading.tier, 24),
        _clip(reading.meter_error, 300),
    )


def _clip(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


def save_reading(engine: Engine, number_id: int, local_date: date, reading: Reading) -> int:
    """Store one risk-meter result; returns its id."""
    with write(engine) as conn:
        return insert_reading(conn, number_id, local_date, reading)


def insert_reading(conn: Connection, number_id: int, local_date: date, reading: Reading) -> int:
    """Store one reading in the caller's transaction; returns its id."""
    row = dict(zip(READING_COLUMNS, _row(number_id, local_date, reading), strict=True))
    reading_id: int = conn.execute(sa.insert(READINGS).values(**row).returning(READINGS.c.id)).scalar_one()
    return reading_id


def save_readings(engine: Engine, readings: Sequence[tuple[int, date, Reading]]) -> None:
    """Store risk-meter results (number id, local date, reading) in ONE transaction and one statement,
    every reading checked first: over `unnest` arrays on PostgreSQL (no per-row parameters to render),
    a multi-row insert elsewhere."""
    rows = [_row(number_id, local_date, reading) for number_id, local_date, reading in readings]
    if not rows:
        return
    with write(engine) as conn:
        if not is_postgres(conn):
            conn.execute(sa.insert(READINGS), [dict(zip(READING_COLUMNS, row, strict=True)) for row in rows])
            return
        with pg_cursor(conn) as cur:
            cur.execute(_INSERT_READINGS_PG, [list(column) for column in zip(*rows, strict=True)])


def reading_from(row: sa.Row[Any]) -> Reading:
    """A row of the `readings` columns as a `Reading`."""
    return _reading(row)


def _reading(row: sa.Row[Any]) -> Reading:
    return Reading(
        overall=row.overall,
        lifetime=row.lifetime,
        response_rate=row.response_rate,
        contacts=row.contacts,
        taken_at=row.taken_at,
        source=row.source,
        quality=row.quality,
        status=row.status,
        tier=row.tier,
        meter_error=row.meter_error,
    )


def latest_reading(engine: Engine, number_id: int) -> Reading | None:
    """The number's most recent reading (by `taken_at`), or None."""
    with read(engine) as conn:
        row = conn.execute(
            sa.select(READINGS)
            .where(READINGS.c.number_id == number_id)
            .order_by(READINGS.c.taken_at.desc(), READINGS.c.id.desc())
            .limit(1)
        ).one_or_none()
    return _reading(row) if row is not None else None


def latest_readings(conn: Connection, ids: Sequence[int], since: datetime) -> dict[int, Reading]:
    """Each number's most recent reading taken at or after ``since``, ordered as `latest_reading` orders
    them; one statement (a window function: SQLite >= 3.25 and PostgreSQL)."""
    rank = (
        sa.func.row_number()
        .over(partition_by=READINGS.c.number_id, order_by=(READINGS.c.taken_at.desc(), READINGS.c.id.desc()))
        .label("rank")
    )
    ranked = (
        sa.select(READINGS, rank)
        .where(READINGS.c.number_id.in_(ids), READINGS.c.taken_at >= since)
        .subquery()
    )
    return {
        int(row.number_id): _reading(row) for row in conn.execute(sa.select(ranked).where(ranked.c.rank == 1))
    }


def reading_of_day(engine: Engine, number_id: int, local_date: date) -> Reading | None:
    """The newest reading stored for that local day, or None: the one the day's decision used, unless a
    later one came during the day (a Meta webhook: `warmup.services.signals`)."""
    with read(engine) as conn:
        row = conn.execute(
            sa.select(READINGS)
            .where(READINGS.c.number_id == number_id, READINGS.c.local_date == local_date)
            .order_by(READINGS.c.taken_at.desc(), READINGS.c.id.desc())
            .limit(1)
        ).one_or_none()
    return _reading(row) if row is not None else None


def read_from_on(engine: Engine, number_id: int, local_date: date, source: str) -> bool:
    """Whether a reading from `source` (a provider's meter) is stored for that local day of the number:
    its meter was read that day, so the day's POST (the one computation a day) already happened."""
    return number_id in read_on(engine, [number_id], local_date, [source])


def read_on(engine: Engine, number_ids: Sequence[int], local_date: date, sources: Sequence[str]) -> set[int]:
    """`read_from_on` for many numbers in one statement: those with a reading from one of `sources`
    stored for that local day."""
    if not number_ids:
        return set()
    with read(engine) as conn:
        rows = conn.execute(
            sa.select(READINGS.c.number_id)
            .where(
                READINGS.c.number_id.in_(sorted(set(number_ids))),
                READINGS.c.local_date == local_date,
                READINGS.c.source.in_(list(sources)),
            )
            .distinct()
        )
        return {int(row.number_id) for row in rows}
