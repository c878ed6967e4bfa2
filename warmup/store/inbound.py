"""What comes back from the other side: inbound events (replies, delivery statuses) and the recipients
of a number (who it writes to, who replied, who is invalid, when each was first contacted).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DataError
from sqlmodel import col, select

from warmup.store.db import session_scope
from warmup.store.models import InboundKind, Recipient, RecipientKind
from warmup.store.outcomes import oldest_unknown_on
from warmup.store.tables import (
    INBOUND,
    RECIPIENTS,
    InvalidWrite,
    aggregate_time,
    aware,
    check_phone,
    choice,
    insert_ignore,
    is_postgres,
    read,
    stamp,
    write,
)

MAX_EVENT_ID = 128
"""Characters of a provider id (`provider_message_id`, `ref_message_id`): the columns' length."""
MAX_STATUS = 32
"""Characters of a status word: the column's length."""
MAX_CHAT_PHONE = 32

_NOT_IN_TEXT = re.compile("[\x00\ud800-\udfff]")
"""What neither database stores in a text: NUL (PostgreSQL refuses it) and lone surrogates (not UTF-8)."""
_NOT_IN_ID = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class InboundEvent:
    """One inbound event to store (`add_inbound_events`): for kind `status`, `provider_message_id` is the
    id of the outbound message the status is about and `status` is required."""

    number_id: int
    kind: str
    provider_message_id: str
    received_at: datetime
    chat_phone: str | None = None
    from_me: bool = False
    text: str | None = None
    status: str | None = None
    ref_message_id: str | None = None

    def key(self) -> tuple[int, str, str, str]:
        """What makes it the same event (the table's unique key)."""
        return (self.number_id, self.kind, self.provider_message_id, self.status or "")


def check_event(event: InboundEvent) -> dict[str, Any]:
    """The row of an event, or `InvalidWrite` for one the database could not carry (checked before any
    write, so a batch with one bad event writes nothing and no database error is raised)."""
    choice(event.kind, InboundKind, "kind")
    if event.kind == InboundKind.STATUS and not event.status:
        raise InvalidWrite("a status event needs its status")
    if not event.provider_message_id:
        raise InvalidWrite("an inbound event needs its provider id")
    for what, value, limit in (
        ("provider id", event.provider_message_id, MAX_EVENT_ID),
        ("reference id", event.ref_message_id, MAX_EVENT_ID),
        ("status", event.status, MAX_STATUS),
        ("chat phone", event.chat_phone, MAX_CHAT_PHONE),
    ):
        if value is not None and (len(value) > limit or _NOT_IN_ID.search(value)):
            raise InvalidWrite(
                f"an inbound event's {what} is not a printable text of at most {limit} characters"
            )
    if event.text is not None and _NOT_IN_TEXT.search(event.text):
        raise InvalidWrite("an inbound event's text holds NUL or a lone surrogate")
    return {
        "number_id": event.number_id,
        "kind": event.kind,
        "provider_message_id": event.provider_message_id,
        "chat_phone": event.chat_phone,
        "from_me": event.from_me,
        "text": event.text,
        "status": event.status or "",
        "ref_message_id": event.ref_message_id,
        "received_at": aware(event.received_at, "received_at"),
    }


INSERT_CHUNK = 5000
"""Events per INSERT statement of `add_inbound_events` (SQLite: 9 parameters each, split further by
SQLAlchemy under its limit; PostgreSQL: one array per column)."""

_PG_INBOUND_TYPES = {
    "number_id": "int8",
    "kind": "text",
    "provider_message_id": "text",
    "chat_phone": "text",
    "from_me": "bool",
    "text": "text",
    "status": "text",
    "ref_message_id": "text",
    "received_at": "timestamptz",
}
_INSERT_INBOUND_PG = f"""
    INSERT INTO inbound_messages ({", ".join(_PG_INBOUND_TYPES)})
    SELECT * FROM unnest({", ".join(f"CAST(:{c} AS {t}[])" for c, t in _PG_INBOUND_TYPES.items())})
    ON CONFLICT DO NOTHING
    RETURNING number_id, kind, provider_message_id, status
"""
"""Inbound events over `unnest` arrays, one per column (built from fixed column names only), in the
order given."""


def add_inbound_events(engine: Engine, events: Sequence[InboundEvent]) -> list[int]:
    """Store a batch of inbound events (of one number or several) in ONE write transaction, each event
    once; the positions in ``events`` of those newly stored (an event already stored, or repeated
    earlier in the batch, is not new).

    All or nothing: every event is checked first (`InvalidWrite`, nothing written), and a database
    failure rolls the whole batch back, so the caller may run what a NEW event triggers (an admin's
    chat command) exactly once: an event is new only in the one transaction that inserted it, as the
    INSERT's RETURNING says (two stores of the same batch at once cannot both see it as new). An
    incoming message (not `from_me`) marks its chat's recipient as `replied`.
    """
    rows = [check_event(event) for event in events]
    first: dict[tuple[int, str, str, str], int] = {}
    for at, event in enumerate(events):
        first.setdefault(event.key(), at)
    if not first:
        return []
    # inserted in key order: two batches with events in common (a redelivery while the first delivery
    # is being stored) wait for each other on PostgreSQL instead of deadlocking
    unique = [first[key] for key in sorted(first)]
    try:
        return _insert_events(engine, events, rows, unique)
    except (DataError, UnicodeEncodeError) as exc:  # a value the checks missed: rolled back whole
        raise InvalidWrite(f"the database refused an event of the batch: {type(exc).__name__}") from None


def _insert_events(
    engine: Engine, events: Sequence[InboundEvent], rows: list[dict[str, Any]], unique: list[int]
) -> list[int]:
    inserted: set[tuple[int, str, str, str]] = set()
    columns = (INBOUND.c.number_id, INBOUND.c.kind, INBOUND.c.provider_message_id, INBOUND.c.status)
    with write(engine) as conn:
        for start in range(0, len(unique), INSERT_CHUNK):
            chunk = [rows[at] for at in unique[start : start + INSERT_CHUNK]]
            if is_postgres(conn):  # one statement over arrays: no SQL text the size of the batch
                arrays = {name: [row[name] for row in chunk] for name in _PG_INBOUND_TYPES}
                found = conn.execute(sa.text(_INSERT_INBOUND_PG), arrays)
            else:  # executemany with RETURNING: multi-row INSERTs ("insertmanyvalues")
                found = conn.execute(insert_ignore(conn, INBOUND).returning(*columns), chunk)
            # the rows returned are those inserted (a conflict returns none), matched by their key
            for row in found:
                inserted.add((int(row.number_id), row.kind, row.provider_message_id, row.status or ""))
        new = sorted(at for at in unique if events[at].key() in inserted)
        replied: dict[tuple[int, str], datetime] = {}
        for at in new:
            event, received_at = events[at], rows[at]["received_at"]
            if event.kind == InboundKind.MESSAGE and not event.from_me and event.chat_phone:
                key = (event.number_id, event.chat_phone)
                replied[key] = max(replied.get(key, received_at), received_at)
        if replied:
            conn.execute(
                sa.update(RECIPIENTS)
                .where(RECIPIENTS.c.number_id == sa.bindparam("n"), RECIPIENTS.c.phone == sa.bindparam("p"))
                .values(replied=True, updated_at=sa.bindparam("at")),
                [{"n": n, "p": p, "at": at} for (n, p), at in sorted(replied.items())],
            )
    return new


def add_inbound(
    engine: Engine,
    number_id: int,
    *,
    kind: str,
    provider_message_id: str,
    received_at: datetime,
    chat_phone: str | None = None,
    from_me: bool = False,
    text: str | None = None,
    status: str | None = None,
    ref_message_id: str | None = None,
) -> bool:
    """Store one inbound event once (`add_inbound_events`); False if it was already stored
    (re-ingesting is a no-op)."""
    event = InboundEvent(
        number_id,
        kind,
        provider_message_id,
        received_at,
        chat_phone=chat_phone,
        from_me=from_me,
        text=text,
        status=status,
        ref_message_id=ref_message_id,
    )
    return bool(add_inbound_events(engine, [event]))


def upsert_recipient(
    engine: Engine,
    number_id: int,
    phone: str,
    kind: str,
    *,
    name: str | None = None,
    contacted_on: date | None = None,
    last_text: str | None = None,
    invalid_reason: str | None = None,
    now: datetime | None = None,
) -> int:
    """Create or update a recipient of a number; returns its id.

    `first_contacted_on` is set once (the earliest `contacted_on` wins); `last_text` and `name` are
    replaced when given; an `invalid_reason` marks the recipient invalid (never written to again).
    """
    check_phone(phone, "recipient")
    choice(kind, RecipientKind, "kind")
    at = stamp(now)
    with write(engine) as conn:
        conn.execute(
            insert_ignore(conn, RECIPIENTS).values(
                number_id=number_id,
                phone=phone,
                kind=kind,
                name=name,
                replied=False,
                invalid=False,
                created_at=at,
                updated_at=at,
            )
        )
        values: dict[str, Any] = {"updated_at": at}
        if name is not None:
            values["name"] = name
        if contacted_on is not None:
            first = RECIPIENTS.c.first_contacted_on
            values["first_contacted_on"] = sa.case(
                (sa.or_(first.is_(None), first > contacted_on), contacted_on), else_=first
            )
        if last_text is not None:
            values["last_text"] = last_text
        if invalid_reason is not None:
            values.update(invalid=True, invalid_reason=invalid_reason[:500])
        recipient_id: int = conn.execute(
            sa.update(RECIPIENTS)
            .where(RECIPIENTS.c.number_id == number_id, RECIPIENTS.c.phone == phone)
            .values(**values)
            .returning(RECIPIENTS.c.id)
        ).scalar_one()
    return recipient_id


def list_recipients(
    engine: Engine, number_id: int, *, kind: str | None = None, include_invalid: bool = False
) -> list[Recipient]:
    """A number's recipients by phone; invalid ones only when asked."""
    statement = select(Recipient).where(Recipient.number_id == number_id).order_by(col(Recipient.phone))
    if kind is not None:
        statement = statement.where(Recipient.kind == choice(kind, RecipientKind, "kind"))
    if not include_invalid:
        statement = statement.where(col(Recipient.invalid).is_(False))
    with session_scope(engine, read_only=True) as session:
        return list(session.exec(statement).all())


def new_contacts_on(engine: Engine, number_id: int, local_date: date) -> int:
    """How many recipients were first contacted on that day (for `max_new_contacts`)."""
    with read(engine) as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    RECIPIENTS.c.number_id == number_id, RECIPIENTS.c.first_contacted_on == local_date
                )
            ).scalar_one()
        )


class KnownRecipient(NamedTuple):
    """What audience choice needs of one recipient row."""

    phone: str
    first_contacted_on: date | None
    invalid: bool
    last_text: str | None


def recipients_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[KnownRecipient]]:
    """Every recipient row (invalid ones too) of these numbers, by number, ordered by phone."""
    found: dict[int, list[KnownRecipient]] = defaultdict(list)
    for row in conn.execute(
        sa.select(
            RECIPIENTS.c.number_id,
            RECIPIENTS.c.phone,
            RECIPIENTS.c.first_contacted_on,
            RECIPIENTS.c.invalid,
            RECIPIENTS.c.last_text,
        )
        .where(RECIPIENTS.c.number_id.in_(ids))
        .order_by(RECIPIENTS.c.number_id, RECIPIENTS.c.phone)
    ):
        found[int(row.number_id)].append(
            KnownRecipient(row.phone, row.first_contacted_on, bool(row.invalid), row.last_text)
        )
    return found


def known_recipients(engine: Engine, number_id: int) -> list[KnownRecipient]:
    """`recipients_of` one number, in a read-only transaction of its own."""
    with read(engine) as conn:
        return recipients_of(conn, [number_id]).get(number_id, [])


def poll_marks(
    engine: Engine, number_id: int, unknown_since: datetime
) -> tuple[datetime | None, datetime | None]:
    """What a reply poll of the number starts from, read together (a poll runs for every number every
    few minutes, and each read of its own cost a transaction): the newest stored inbound event's time,
    and the claim time of the oldest unknown send claimed since ``unknown_since`` that the provider's
    list may confirm (`warmup.store.outcomes.oldest_unknown`)."""
    with read(engine) as conn:
        newest = aggregate_time(
            conn.execute(
                sa.select(sa.func.max(INBOUND.c.received_at)).where(INBOUND.c.number_id == number_id)
            ).scalar_one_or_none()
        )
        return newest, oldest_unknown_on(conn, number_id, unknown_since)


STORED_LOOKUP_CHUNK = 500
"""Provider ids asked about in one query by `stored_already` on SQLite (PostgreSQL takes one array)."""


def stored_already(engine: Engine, number_id: int, provider_ids: Sequence[str]) -> set[tuple[str, str, str]]:
    """(kind, provider id, status) of the number's stored inbound events with these provider ids, read in
    one transaction: a poll hands over many events the store has already, and a poll that brings
    nothing new then costs no write transaction (`add_inbound_events`)."""
    ids = sorted(set(provider_ids))
    found: set[tuple[str, str, str]] = set()
    if not ids:
        return found
    columns = (INBOUND.c.kind, INBOUND.c.provider_message_id, INBOUND.c.status)
    with read(engine) as conn:
        if is_postgres(conn):  # one array parameter, not a list of thousands
            wanted = sa.cast(
                sa.bindparam("ids", ids, type_=postgresql.ARRAY(sa.Text)), postgresql.ARRAY(sa.Text)
            )
            rows = conn.execute(
                sa.select(*columns).where(
                    INBOUND.c.number_id == number_id, INBOUND.c.provider_message_id == sa.any_(wanted)
                )
            )
            found.update((row.kind, row.provider_message_id, row.status or "") for row in rows)
            return found
        for at in range(0, len(ids), STORED_LOOKUP_CHUNK):
            rows = conn.execute(
                sa.select(*columns).where(
                    INBOUND.c.number_id == number_id,
                    INBOUND.c.provider_message_id.in_(ids[at : at + STORED_LOOKUP_CHUNK]),
                )
            )
            found.update((row.kind, row.provider_message_id, row.status or "") for row in rows)
    return found


def last_message_from(engine: Engine, number_id: int, phone: str) -> datetime | None:
    """When ``phone`` last wrote to the number (a message, not a status), or None: the start of their
    24 h customer-service window on Meta's Cloud API."""
    with read(engine) as conn:
        last = conn.execute(
            sa.select(sa.func.max(INBOUND.c.received_at)).where(
                INBOUND.c.number_id == number_id,
                INBOUND.c.kind == InboundKind.MESSAGE.value,
                INBOUND.c.from_me.is_(False),
                INBOUND.c.chat_phone == phone,
            )
        ).scalar_one_or_none()
    return aware(last) if last is not None else None
