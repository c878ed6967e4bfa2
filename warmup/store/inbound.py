"""What comes back from the other side: inbound events (replies, delivery statuses) and the recipients
of a number (who it writes to, who replied, who is invalid, when each was first contacted).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
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
    read,
    stamp,
    write,
)


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
    """Store one inbound event once; False if it was already stored (re-ingesting is a no-op).

    For kind `status`, `provider_message_id` is the id of the outbound message the status is about and
    `status` is required. An incoming message (not `from_me`) marks its chat's recipient as `replied`.
    """
    choice(kind, InboundKind, "kind")
    if kind == InboundKind.STATUS and not status:
        raise InvalidWrite("a status event needs its status")
    if not provider_message_id:
        raise InvalidWrite("an inbound event needs its provider id")
    received_at = aware(received_at, "received_at")
    with write(engine) as conn:
        inserted: bool = (
            conn.execute(
                insert_ignore(conn, INBOUND)
                .values(
                    number_id=number_id,
                    kind=kind,
                    provider_message_id=provider_message_id,
                    chat_phone=chat_phone,
                    from_me=from_me,
                    text=text,
                    status=status or "",
                    ref_message_id=ref_message_id,
                    received_at=received_at,
                )
                .returning(INBOUND.c.id)
            ).scalar_one_or_none()
            is not None
        )
        if inserted and kind == InboundKind.MESSAGE and not from_me and chat_phone:
            conn.execute(
                sa.update(RECIPIENTS)
                .where(RECIPIENTS.c.number_id == number_id, RECIPIENTS.c.phone == chat_phone)
                .values(replied=True, updated_at=received_at)
            )
        return inserted


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
"""Provider ids asked about in one query by `stored_already`."""


def stored_already(engine: Engine, number_id: int, provider_ids: Sequence[str]) -> set[tuple[str, str, str]]:
    """(kind, provider id, status) of the number's stored inbound events with these provider ids, read in
    one transaction: a poll hands over many events the store has already, and `add_inbound` would
    ignore each in a write transaction of its own."""
    ids = sorted(set(provider_ids))
    found: set[tuple[str, str, str]] = set()
    if not ids:
        return found
    with read(engine) as conn:
        for at in range(0, len(ids), STORED_LOOKUP_CHUNK):
            rows = conn.execute(
                sa.select(INBOUND.c.kind, INBOUND.c.provider_message_id, INBOUND.c.status).where(
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
