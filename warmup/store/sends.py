"""The messages of a day: what a planned send is, its checks and rows, and adding sends to a day
already planned (a peer's reply, an extra note) without ever overfilling it.

The day's books hold at all times: its messages that are not skipped never outnumber its quota. A
REPLY that finds the day full takes the place of the day's latest still-pending opener (`GAVE_WAY`),
because replies build the response rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import sqlite

from warmup.core.domain import SkipCause
from warmup.core.errors import UserError
from warmup.store import audit
from warmup.store.models import MessageKind, MessageState, RecipientKind
from warmup.store.tables import (
    CLAIMABLE,
    E164,
    MESSAGES,
    RECIPIENTS,
    InvalidWrite,
    aware,
    check_phone,
    choice,
    day_row,
    is_postgres,
    lock_number,
    pending,
    pg_cursor,
    skip_where,
    stamp,
    write,
)

GAVE_WAY = "gave way to a reply to a peer"
"""Reason of an opener skipped so that a reply fits in its day's quota (replies build the response rate)."""

REPLY_KINDS = (MessageKind.PEER_REPLY.value, MessageKind.REPLY.value)


@dataclass(frozen=True)
class PlannedSend:
    """One message to insert with a day plan (or later with `add_sends`)."""

    recipient: str  # E.164
    text: str
    scheduled_at: datetime  # aware
    kind: str = MessageKind.OPENER.value
    typing_seconds: float = 0.0
    in_reply_to: int | None = None  # outbound message id this answers (peer replies)
    window_end: datetime | None = None  # end of the send window it lies in: no claim from then on
    recipient_kind: str | None = None  # if set, the recipient gets a row of that kind


# ------------------------------------------------------------------------------------ sends and rows

_MESSAGE_KINDS = frozenset(k.value for k in MessageKind)
_RECIPIENT_KINDS = frozenset(k.value for k in RecipientKind)

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
"""The message columns of a planned send, in the order of the rows `message_values` gives."""


def check_sends(sends: Sequence[PlannedSend]) -> None:
    """Refuse invalid sends with `InvalidWrite` (the first bad one named), before anything is written.

    Each send is checked with plain comparisons first and only a suspect one goes through the full
    checks that name the problem: a fleet's day is 200,000 sends, all of them valid.
    """
    match, kinds, recipient_kinds = E164.match, _MESSAGE_KINDS, _RECIPIENT_KINDS
    for index, send in enumerate(sends):
        at, end = send.scheduled_at, send.window_end
        if (
            match(send.recipient)
            and send.kind in kinds
            and send.typing_seconds >= 0
            and (send.recipient_kind is None or send.recipient_kind in recipient_kinds)
            and at.tzinfo is not None
            and at.utcoffset() is not None
            and (not end or (end.tzinfo is not None and end.utcoffset() is not None))
            and send.text.strip()
        ):
            continue
        _check_send(index, send)


def _check_send(index: int, send: PlannedSend) -> None:
    """Name what is wrong with a send `check_sends` found suspect (raises `InvalidWrite`)."""
    where = f"send {index}"
    if not E164.match(send.recipient):
        check_phone(send.recipient, f"{where}: recipient")
    if send.kind not in _MESSAGE_KINDS:
        choice(send.kind, MessageKind, f"{where}: kind")
    if not send.text.strip():
        raise InvalidWrite(f"{where}: empty text")
    if not send.typing_seconds >= 0:
        raise InvalidWrite(f"{where}: typing_seconds must be a number >= 0")
    if send.recipient_kind is not None and send.recipient_kind not in _RECIPIENT_KINDS:
        choice(send.recipient_kind, RecipientKind, f"{where}: recipient_kind")
    aware(send.scheduled_at, f"{where}: scheduled_at")
    if send.window_end:
        aware(send.window_end, f"{where}: window_end")


def message_values(
    number_id: int, day_plan_id: int, local_date: date, sends: Sequence[PlannedSend], at: datetime
) -> list[tuple[Any, ...]]:
    """The rows of ``sends`` (checked by `check_sends`) in `MESSAGE_COLUMNS` order."""
    planned = MessageState.PLANNED.value
    return [
        (
            number_id,
            day_plan_id,
            local_date,
            send.recipient,
            send.kind,
            send.text,
            float(send.typing_seconds),
            send.scheduled_at.astimezone(UTC),
            planned,
            send.in_reply_to,
            send.window_end.astimezone(UTC) if send.window_end else None,
            0,
            at,
        )
        for send in sends
    ]


def message_rows(
    number_id: int, day_plan_id: int, local_date: date, sends: Sequence[PlannedSend], at: datetime
) -> list[dict[str, Any]]:
    """The checked rows of ``sends`` as `sa.insert(MESSAGES)` takes them."""
    check_sends(sends)
    return [
        dict(zip(MESSAGE_COLUMNS, row, strict=True))
        for row in message_values(number_id, day_plan_id, local_date, sends, at)
    ]


def check_replies_exist(conn: Connection, sends: Sequence[PlannedSend]) -> None:
    """Refuse sends answering a message that does not exist (the foreign key would raise a raw error)."""
    wanted = {send.in_reply_to for send in sends if send.in_reply_to is not None}
    if not wanted:
        return
    found = set(conn.execute(sa.select(MESSAGES.c.id).where(MESSAGES.c.id.in_(wanted))).scalars())
    missing = sorted(wanted - found)
    if missing:
        raise InvalidWrite(f"in_reply_to names no stored message: {', '.join(map(str, missing))}")


def recipient_kinds(number_id: int, sends: Iterable[PlannedSend]) -> dict[tuple[int, str], str]:
    """(number id, phone) -> kind of the recipients of ``sends`` that name a `recipient_kind`."""
    return {(number_id, s.recipient): s.recipient_kind for s in sends if s.recipient_kind is not None}


_UPSERT_RECIPIENTS_PG = """
    INSERT INTO recipients (number_id, phone, kind, replied, invalid, created_at, updated_at)
    SELECT t.number_id, t.phone, t.kind, false, false, %(at)s, %(at)s
    FROM unnest(%(ids)s::int4[], %(phones)s::text[], %(kinds)s::text[]) AS t(number_id, phone, kind)
    ON CONFLICT (number_id, phone) DO UPDATE SET updated_at = excluded.updated_at
"""


def upsert_recipients(conn: Connection, kinds: Mapping[tuple[int, str], str], at: datetime) -> None:
    """Recipient rows for (number id, phone) -> kind, in ONE statement; a known recipient keeps its kind
    and only gets `updated_at` (as `warmup.store.inbound.upsert_recipient` without options does).

    Rows go in (number, phone) order everywhere, so two writers never wait on each other in opposite
    orders. PostgreSQL takes them as `unnest` arrays (no per-row parameters to render).
    """
    if not kinds:
        return
    ordered = sorted(kinds.items())
    if is_postgres(conn):
        params = {
            "at": at,
            "ids": [number_id for (number_id, _), _ in ordered],
            "phones": [phone for (_, phone), _ in ordered],
            "kinds": [kind for _, kind in ordered],
        }
        with pg_cursor(conn) as cur:
            cur.execute(_UPSERT_RECIPIENTS_PG, params)
        return
    insert = sqlite.insert(RECIPIENTS)
    conn.execute(  # executemany: one cached statement, sent as one multi-row INSERT (insertmanyvalues)
        insert.on_conflict_do_update(
            index_elements=[RECIPIENTS.c.number_id, RECIPIENTS.c.phone],
            set_={"updated_at": insert.excluded.updated_at},
        ),
        [
            {
                "number_id": number_id,
                "phone": phone,
                "kind": kind,
                "replied": False,
                "invalid": False,
                "created_at": at,
                "updated_at": at,
            }
            for (number_id, phone), kind in ordered
        ],
    )


# ------------------------------------------------------------------------------------------- adding


def add_sends(
    engine: Engine,
    number_id: int,
    local_date: date,
    sends: Sequence[PlannedSend],
    *,
    now: datetime | None = None,
) -> list[int]:
    """Add messages to an existing day plan (a peer's reply, an extra note); the ids of those added.

    One transaction with the number row locked (claims, pauses and other additions of the number wait):
    a send that fits in the room left (quota - used - still pending) is added; a REPLY that does not fit
    takes the place of the day's LATEST still-pending opener (skipped: `GAVE_WAY`); a send that still
    cannot fit (no pending opener to give way) is not added, with an audit row saying why
    (`peer_reply_skipped` for a peer's reply, else `send_not_added`). A day without a plan raises
    `UserError`.
    """
    at = stamp(now)
    message_rows(number_id, 0, local_date, sends, at)
    with write(engine) as conn:
        lock_number(conn, number_id)
        day = day_row(conn, number_id, local_date)
        if day is None:
            raise UserError(f"number {number_id} has no plan for {local_date}")
        check_replies_exist(conn, sends)
        room = day.quota - day.used - pending(conn, day.id)
        ids: list[int] = []
        for send, row in zip(sends, message_rows(number_id, day.id, local_date, sends, at), strict=True):
            while room <= 0 and send.kind in REPLY_KINDS and _give_way(conn, day.id, at):
                room += 1  # (more than once only on a day overfilled behind the store's back)
            if room <= 0:
                why = "the day's quota is full and no pending opener can give way"
                detail = {
                    "local_date": local_date.isoformat(),
                    "kind": send.kind,
                    "in_reply_to": send.in_reply_to,
                    "quota": day.quota,
                    "reason": why,
                }
                action = "peer_reply_skipped" if send.kind == MessageKind.PEER_REPLY else "send_not_added"
                audit.record(conn, "worker", action, number_id, detail, at)
                continue
            ids.append(
                int(conn.execute(sa.insert(MESSAGES).values(**row).returning(MESSAGES.c.id)).scalar_one())
            )
            room -= 1
        return ids


def _give_way(conn: Connection, day_plan_id: int, at: datetime) -> bool:
    """Skip the day's latest still-pending opener (`GAVE_WAY`); False when there is none."""
    latest = conn.execute(
        sa.select(MESSAGES.c.id)
        .where(
            MESSAGES.c.day_plan_id == day_plan_id,
            MESSAGES.c.kind == MessageKind.OPENER.value,
            MESSAGES.c.state.in_(CLAIMABLE),
        )
        .order_by(MESSAGES.c.scheduled_at.desc(), MESSAGES.c.id.desc())
        .limit(1)
        .with_for_update()
    ).scalar_one_or_none()
    if latest is None:
        return False
    return skip_where(conn, MESSAGES.c.id == latest, GAVE_WAY, at, SkipCause.GAVE_WAY) == 1
