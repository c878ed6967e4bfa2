"""Late confirmation of `unknown` sends: find them in the provider's list of the number's own messages.

A send is recorded `unknown` when we cannot tell whether it went out: a read timeout, a 502/504, a
broken answer, or a worker killed between the provider call and the record (a killed batch leaves all
of its claims so). `unknown` is never re-sent and counts against the quota, which keeps the invariants,
but the message's provider id is missing, so its delivery and read statuses cannot be matched and the
day's outcome undercounts. The provider knows: Whapi lists the channel's own messages with their
recipient, text and id. A message found there with the unknown row's number, recipient and text, sent
no earlier than a little before the claim, and whose id no other row holds, proves the send went out:
the row becomes `sent` with that id (`ops.record_sent` accepts unknown -> sent).

Nothing found means nothing is changed: the request may still have died on the way, or the list may
lag. A row is never re-sent on that evidence (invariant 2). Each provider message confirms at most one
row, earliest claim first, so two unknown rows of the same text to the same recipient need two
messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from warmup.providers.base import Inbound
from warmup.store import ops
from warmup.store.db import READ_ONLY
from warmup.store.models import MessageState

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=2)
"""Unknown rows claimed this long ago at most are still looked for (callers pass more when a claim
takes longer than that to be recovered as unknown, as in an accelerated run)."""

CLOCK_SLACK = timedelta(minutes=2)
"""The provider's timestamp of a send may precede our claim time by this much (clock skew)."""


def pending(engine: Engine, number_id: int, now: datetime, lookback: timedelta = LOOKBACK) -> datetime | None:
    """The claim time of the number's oldest unconfirmed `unknown` row within `LOOKBACK`, or None when
    there is none (then nothing needs asking)."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        return pending_on(conn, number_id, now, lookback)


def pending_on(
    conn: Connection, number_id: int, now: datetime, lookback: timedelta = LOOKBACK
) -> datetime | None:
    """`pending` on a connection the caller holds (a reply poll reads it with its other state)."""
    table = ops.MESSAGES
    return ops.aggregate_time(
        conn.execute(
            sa.select(sa.func.min(table.c.claimed_at)).where(*_unconfirmed(number_id, now, lookback))
        ).scalar_one_or_none()
    )


def _unconfirmed(number_id: int, now: datetime, lookback: timedelta) -> list[sa.ColumnElement[bool]]:
    table = ops.MESSAGES
    return [
        table.c.number_id == number_id,
        table.c.state == MessageState.UNKNOWN.value,
        table.c.provider_message_id.is_(None),
        table.c.claimed_at.is_not(None),
        table.c.claimed_at >= now - lookback,
    ]


def confirm_unknown(
    engine: Engine, number_id: int, own: Sequence[Inbound], now: datetime, lookback: timedelta = LOOKBACK
) -> list[int]:
    """Turn the number's `unknown` rows that ``own`` (the provider's list of our sent messages) proves
    sent into `sent` with the provider's id; the ids of the rows confirmed.

    One write transaction holding the number's row lock (the lock order everywhere: number -> message
    -> recipient), so two confirmations of one number at once (a poll and a webhook) cannot give the
    same provider id to two rows. A message of the same recipient and text still `sending` makes the
    match ambiguous (its worker may be about to record that very id): those rows wait for the next try.
    """
    sent = [m for m in own if m.from_me and m.kind == "message" and m.chat_phone and m.text is not None]
    if not sent:
        return []
    table, numbers = ops.MESSAGES, ops.NUMBERS
    now = ops._aware(now)
    confirmed: list[int] = []
    with ops._write(engine) as conn:
        conn.execute(sa.select(numbers.c.id).where(numbers.c.id == number_id).with_for_update())
        rows = conn.execute(
            sa.select(table.c.id, table.c.recipient, table.c.text, table.c.claimed_at, table.c.local_date)
            .where(*_unconfirmed(number_id, now, lookback))
            .order_by(table.c.claimed_at, table.c.id)
        ).all()
        if not rows:
            return []
        taken = set(
            conn.execute(
                sa.select(table.c.provider_message_id).where(
                    table.c.provider_message_id.in_([m.provider_message_id for m in sent])
                )
            ).scalars()
        )
        in_flight = {
            (row.recipient, row.text)
            for row in conn.execute(
                sa.select(table.c.recipient, table.c.text).where(
                    table.c.number_id == number_id, table.c.state == MessageState.SENDING.value
                )
            )
        }
        candidates = sorted(
            (m for m in sent if m.provider_message_id not in taken),
            key=lambda m: (m.timestamp, m.provider_message_id),
        )
        for row in rows:
            if (row.recipient, row.text) in in_flight:
                continue
            match = next(
                (
                    m
                    for m in candidates
                    if m.chat_phone == row.recipient
                    and m.text == row.text
                    and m.timestamp >= row.claimed_at - CLOCK_SLACK
                ),
                None,
            )
            if match is None:
                continue
            candidates.remove(match)
            updated = conn.execute(
                sa.update(table)
                .where(table.c.id == row.id, table.c.state == MessageState.UNKNOWN.value)
                .values(
                    state=MessageState.SENT.value,
                    provider_message_id=match.provider_message_id,
                    finished_at=now,
                    reason=None,
                )
            ).rowcount
            if not updated:
                continue
            recipients = ops.RECIPIENTS
            conn.execute(
                sa.update(recipients)
                .where(recipients.c.number_id == number_id, recipients.c.phone == row.recipient)
                .values(
                    last_text=row.text,
                    first_contacted_on=sa.func.coalesce(recipients.c.first_contacted_on, row.local_date),
                    updated_at=now,
                )
            )
            confirmed.append(int(row.id))
    for message_id in confirmed:
        log.info("message %s: unknown -> sent, found in the provider's list of our messages", message_id)
    return confirmed
