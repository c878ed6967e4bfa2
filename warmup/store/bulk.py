"""Batch planning's reads and writes: what a batch of numbers' day depends on in a few queries, and the
batch's rows written with set-based statements on PostgreSQL.

Planning a day one number at a time cost ~20 statements (yesterday's plan and outcome, the latest
reading, the recipients, one UPDATE of the number...); for a fleet planned at its local midnight those
round trips, not the deciding, were the time. Here each read is one statement for the whole batch
(the answers are exactly what the per-number reads in `warmup.store.ops` return), and on PostgreSQL
the writes are one statement per table: `unnest` arrays for the day plans (with RETURNING), the
recipient upsert and the numbers' UPDATE, and COPY for the messages. SQLite keeps the portable
SQLAlchemy statements (`ops.plan_days`), since its single writer gains nothing from them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from warmup.core.domain import DayOutcome, Reading
from warmup.store.db import READ_ONLY
from warmup.store.models import InboundKind, MessageState, metadata

NUMBERS = metadata.tables["numbers"]
DAY_PLANS = metadata.tables["day_plans"]
MESSAGES = metadata.tables["outbound_messages"]
READINGS = metadata.tables["readings"]
INBOUND = metadata.tables["inbound_messages"]
RECIPIENTS = metadata.tables["recipients"]

GAVE_WAY = "gave way to a reply to a peer"
"""Same text as `ops.GAVE_WAY` (an opener replaced by a reply is left out of a day's outcome)."""
DELIVERED_STATUSES = ("delivered", "read", "played")


# --------------------------------------------------------------------------------------------- reads


class KnownRecipient(NamedTuple):
    """What audience choice needs of one recipient row."""

    phone: str
    first_contacted_on: date | None
    invalid: bool
    last_text: str | None


@dataclass(frozen=True)
class Facts:
    """What the store knows that one number's day depends on (read for a whole batch at once)."""

    latest_reading: Reading | None  # the most recent one taken since the batch's `since`
    yesterday: DayOutcome | None  # None when yesterday has no day plan
    recipients: tuple[KnownRecipient, ...]


def planning_facts(
    conn: Connection, timezones: Mapping[int, str], local_date: date, since: datetime
) -> dict[int, Facts]:
    """`Facts` for every number id of ``timezones`` (id -> its time zone), in five or so statements.

    ``since`` bounds the readings looked at: callers pass a moment before the start of ``local_date``
    in every zone (a reading older than that cannot be today's, so the latest reading overall and the
    latest one since then decide the same thing: whether today's reading is stored).
    """
    ids = sorted(timezones)
    if not ids:
        return {}
    readings = latest_readings(conn, ids, since)
    yesterday = day_outcomes(conn, timezones, local_date - timedelta(days=1))
    recipients = recipients_of(conn, ids)
    return {n: Facts(readings.get(n), yesterday.get(n), tuple(recipients.get(n, ()))) for n in ids}


def latest_readings(conn: Connection, ids: Sequence[int], since: datetime) -> dict[int, Reading]:
    """Each number's most recent reading taken at or after ``since`` (by `taken_at`, then id), as
    `ops.latest_reading` orders them; one statement (a window function: SQLite >= 3.25 and PostgreSQL)."""
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
        int(row.number_id): Reading(
            overall=row.overall,
            lifetime=row.lifetime,
            response_rate=row.response_rate,
            contacts=row.contacts,
            taken_at=row.taken_at,
            source=row.source,
        )
        for row in conn.execute(sa.select(ranked).where(ranked.c.rank == 1))
    }


def day_outcomes(conn: Connection, timezones: Mapping[int, str], local_date: date) -> dict[int, DayOutcome]:
    """`ops.day_outcome` of ``local_date`` for every number of ``timezones`` that has a day plan then.

    Counted with GROUP BY number: messages by state (openers that gave way to a reply left out),
    delivered sends, and replies received during the number's local day (one statement per zone).
    """
    planned = sorted(
        int(n)
        for n in conn.execute(
            sa.select(DAY_PLANS.c.number_id).where(
                DAY_PLANS.c.number_id.in_(sorted(timezones)), DAY_PLANS.c.local_date == local_date
            )
        ).scalars()
    )
    if not planned:
        return {}
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for number_id, state, count in conn.execute(
        sa.select(MESSAGES.c.number_id, MESSAGES.c.state, sa.func.count())
        .where(
            MESSAGES.c.number_id.in_(planned),
            MESSAGES.c.local_date == local_date,
            sa.or_(MESSAGES.c.reason.is_(None), MESSAGES.c.reason != GAVE_WAY),
        )
        .group_by(MESSAGES.c.number_id, MESSAGES.c.state)
    ):
        counts[int(number_id)][state] = int(count)
    delivered: dict[int, int] = {
        int(number_id): int(count)
        for number_id, count in conn.execute(
            sa.select(MESSAGES.c.number_id, sa.func.count(sa.distinct(MESSAGES.c.id)))
            .where(
                MESSAGES.c.number_id.in_(planned),
                MESSAGES.c.local_date == local_date,
                MESSAGES.c.state == MessageState.SENT.value,
                sa.exists().where(
                    INBOUND.c.number_id == MESSAGES.c.number_id,
                    INBOUND.c.kind == InboundKind.STATUS.value,
                    INBOUND.c.provider_message_id == MESSAGES.c.provider_message_id,
                    INBOUND.c.status.in_(DELIVERED_STATUSES),
                ),
            )
            .group_by(MESSAGES.c.number_id)
        )
    }
    by_zone: dict[str, list[int]] = defaultdict(list)
    for number_id in planned:
        by_zone[timezones[number_id]].append(number_id)
    replies: dict[int, int] = {}
    for timezone, zone_ids in by_zone.items():
        zone = ZoneInfo(timezone)
        start = datetime.combine(local_date, datetime.min.time(), zone).astimezone(UTC)
        end = datetime.combine(local_date + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
        replies.update(
            (int(number_id), int(count))
            for number_id, count in conn.execute(
                sa.select(INBOUND.c.number_id, sa.func.count())
                .where(
                    INBOUND.c.number_id.in_(zone_ids),
                    INBOUND.c.kind == InboundKind.MESSAGE.value,
                    INBOUND.c.from_me.is_(False),
                    INBOUND.c.received_at >= start,
                    INBOUND.c.received_at < end,
                )
                .group_by(INBOUND.c.number_id)
            )
        )
    outcomes: dict[int, DayOutcome] = {}
    for number_id in planned:
        states = counts.get(number_id, {})
        outcomes[number_id] = DayOutcome(
            planned=sum(states.values()),
            sent=states.get(MessageState.SENT.value, 0),
            delivered=delivered.get(number_id, 0),
            failed=states.get(MessageState.FAILED.value, 0),
            skipped=states.get(MessageState.SKIPPED.value, 0),
            unknown=states.get(MessageState.UNKNOWN.value, 0),
            replies=replies.get(number_id, 0),
        )
    return outcomes


def recipients_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[KnownRecipient]]:
    """Every recipient row (invalid ones too) of these numbers, by number, ordered by phone."""
    table = RECIPIENTS
    found: dict[int, list[KnownRecipient]] = defaultdict(list)
    for row in conn.execute(
        sa.select(
            table.c.number_id, table.c.phone, table.c.first_contacted_on, table.c.invalid, table.c.last_text
        )
        .where(table.c.number_id.in_(ids))
        .order_by(table.c.number_id, table.c.phone)
    ):
        found[int(row.number_id)].append(
            KnownRecipient(row.phone, row.first_contacted_on, bool(row.invalid), row.last_text)
        )
    return found


# -------------------------------------------------------------------------------------------- writes


READING_COLUMNS = (
    "number_id",
    "local_date",
    "overall",
    "lifetime",
    "response_rate",
    "contacts",
    "source",
    "taken_at",
)


def insert_readings(conn: Connection, readings: Sequence[tuple[int, date, Reading]]) -> None:
    """Store risk-meter results (number id, local date, reading) in one statement: over `unnest`
    arrays on PostgreSQL (no per-row parameters to render), a multi-row insert elsewhere."""
    if not readings:
        return
    rows = [
        (
            number_id,
            local_date,
            reading.overall,
            reading.lifetime,
            reading.response_rate,
            reading.contacts,
            reading.source[:16],
            reading.taken_at.astimezone(UTC),
        )
        for number_id, local_date, reading in readings
    ]
    if conn.dialect.name != "postgresql":
        conn.execute(sa.insert(READINGS), [dict(zip(READING_COLUMNS, row, strict=True)) for row in rows])
        return
    with _cursor(conn) as cur:
        cur.execute(
            f"INSERT INTO readings ({', '.join(READING_COLUMNS)}) SELECT * FROM unnest("  # fixed names
            "%s::int4[], %s::date[], %s::int4[], %s::int4[], %s::int4[], %s::int4[], %s::text[],"
            " %s::timestamptz[])",
            [list(column) for column in zip(*rows, strict=True)],
        )


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
    "created_at",
)
"""The day plan columns `ops.plan_days` fills, in the order of the rows it passes."""

MESSAGE_COLUMNS = (
    "number_id",
    "day_plan_id",
    "local_date",
    "recipient",
    "kind",
    "text",
    "typing_seconds",
    "scheduled_at",
    "state",
    "in_reply_to",
    "window_end",
    "attempts",
    "created_at",
)
"""The message columns of a planned send, in the order of the rows `copy_messages` takes."""

_PG_TYPES = {
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
    "created_at": "timestamptz",
}


def _cursor(conn: Connection) -> Any:
    """A psycopg cursor on the connection's current transaction (SQLAlchemy's BEGIN is already sent).

    Binary: parameters (the arrays of a batch, thousands of values) go in PostgreSQL's binary form,
    which spares a quoting check of every string of every array (a third of the cost of sending them).
    """
    return conn.connection.dbapi_connection.cursor(binary=True)  # type: ignore[union-attr]


def insert_day_plans_pg(conn: Connection, rows: Sequence[Sequence[Any]]) -> dict[int, int]:
    """Insert day plans (tuples in `PLAN_COLUMNS` order, ``reasons`` a list) in ONE statement over
    `unnest` arrays; number id -> new day plan id."""
    columns = ", ".join(PLAN_COLUMNS)
    arrays = ", ".join(f"%s::{_PG_TYPES[c]}[]" for c in PLAN_COLUMNS)
    values = ", ".join("t.reasons::json" if c == "reasons" else f"t.{c}" for c in PLAN_COLUMNS)
    params = [list(column) for column in zip(*rows, strict=True)]
    reasons = PLAN_COLUMNS.index("reasons")
    params[reasons] = [json.dumps(r) for r in params[reasons]]
    with _cursor(conn) as cur:
        cur.execute(
            f"INSERT INTO day_plans ({columns}) SELECT {values} "  # fixed column names only
            f"FROM unnest({arrays}) AS t({columns}) RETURNING number_id, id",
            params,
        )
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


def copy_messages_pg(conn: Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Insert messages (tuples in `MESSAGE_COLUMNS` order) with a binary COPY: no per-row statement, and
    about a tenth of the CPU of a text COPY (formatting dates and times as text cost ~4 us a row)."""
    with (
        _cursor(conn) as cur,
        cur.copy(f"COPY outbound_messages ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types([_MESSAGE_COPY_TYPES[column] for column in MESSAGE_COLUMNS])
        for row in rows:
            copy.write_row(row)


def upsert_recipients_pg(conn: Connection, kinds: Mapping[tuple[int, str], str], stamp: datetime) -> None:
    """`ops._upsert_recipients` in one statement over `unnest` arrays: a new (number, phone) gets a row
    of that kind, a known one only a new `updated_at`. Rows go in (number, phone) order, as everywhere,
    so two batches never wait on each other in opposite orders."""
    if not kinds:
        return
    ordered = sorted(kinds.items())
    with _cursor(conn) as cur:
        cur.execute(
            "INSERT INTO recipients (number_id, phone, kind, replied, invalid, created_at, updated_at) "
            "SELECT t.number_id, t.phone, t.kind, false, false, %(stamp)s, %(stamp)s "
            "FROM unnest(%(ids)s::int4[], %(phones)s::text[], %(kinds)s::text[]) "
            "AS t(number_id, phone, kind) "
            "ON CONFLICT (number_id, phone) DO UPDATE SET updated_at = excluded.updated_at",
            {
                "stamp": stamp,
                "ids": [number_id for (number_id, _), _ in ordered],
                "phones": [phone for (_, phone), _ in ordered],
                "kinds": [kind for _, kind in ordered],
            },
        )


def update_ramps_pg(conn: Connection, rows: Sequence[tuple[int, int, bool, int]], stamp: datetime) -> None:
    """Set (id, plan_day, advance_pending, last_volume) of many numbers in ONE UPDATE ... FROM unnest."""
    if not rows:
        return
    ids, plan_days, pending, volumes = (list(column) for column in zip(*rows, strict=True))
    with _cursor(conn) as cur:
        cur.execute(
            "UPDATE numbers SET plan_day = t.plan_day, advance_pending = t.advance_pending, "
            "last_volume = t.last_volume, updated_at = %s "
            "FROM unnest(%s::int4[], %s::int4[], %s::bool[], %s::int4[]) "
            "AS t(id, plan_day, advance_pending, last_volume) WHERE numbers.id = t.id",
            [stamp, ids, plan_days, pending, volumes],
        )


def read_facts(
    engine: Engine, timezones: Mapping[int, str], local_date: date, since: datetime
) -> dict[int, Facts]:
    """`planning_facts` in a read-only transaction of its own (SQLite: a deferred BEGIN, no writer waits)."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        with conn.begin():
            return planning_facts(conn, timezones, local_date, since)


def save_readings(engine: Engine, readings: Sequence[tuple[int, date, Reading]]) -> None:
    """Store risk-meter results in ONE transaction, checked as `ops.save_reading` checks one."""
    for _, _, reading in readings:
        for factor in ("overall", "lifetime", "response_rate", "contacts"):
            if reading.factor(factor) not in (1, 2, 3):
                raise ValueError(f"reading {factor} must be 1, 2 or 3, got {reading.factor(factor)!r}")
        if reading.taken_at.tzinfo is None or reading.taken_at.utcoffset() is None:
            raise ValueError(f"taken_at must be an aware datetime, got {reading.taken_at.isoformat()}")
    if readings:
        with engine.begin() as conn:
            insert_readings(conn, readings)
