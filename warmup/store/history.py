"""What happened on a number's local day: its messages, how many went out, and its outcome (what
`warmup.core.ramp.decide` reads of yesterday, and what `warmup why` and the reports show).

`day_outcome` reads one number and `day_outcomes` a batch of them (batch planning); both count with
the same statements (`_outcomes`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlmodel import col, select

from warmup.core.domain import DayOutcome
from warmup.core.localtime import local_day_bounds
from warmup.store.db import session_scope
from warmup.store.models import COUNTED_STATES, InboundKind, MessageState, OutboundMessage
from warmup.store.sends import GAVE_WAY
from warmup.store.tables import DAY_PLANS, INBOUND, MESSAGES, NUMBERS, read

DELIVERED_STATUSES = ("delivered", "read", "played")
"""Statuses that prove a message reached its recipient's phone."""


def get_message(engine: Engine, message_id: int) -> OutboundMessage | None:
    with session_scope(engine, read_only=True) as session:
        return session.get(OutboundMessage, message_id)


def list_messages(engine: Engine, number_id: int, local_date: date) -> list[OutboundMessage]:
    """That day's messages of a number in schedule order."""
    with session_scope(engine, read_only=True) as session:
        return list(
            session.exec(
                select(OutboundMessage)
                .where(OutboundMessage.number_id == number_id, OutboundMessage.local_date == local_date)
                .order_by(col(OutboundMessage.scheduled_at), col(OutboundMessage.id))
            ).all()
        )


NOT_SENT = (MessageState.SKIPPED.value, MessageState.FAILED.value)
"""States of a message its recipient never got (and never will)."""


def recent_texts(
    engine: Engine, number_ids: Sequence[int], since: date
) -> dict[int, dict[str, dict[str, datetime]]]:
    """For each number: the texts each recipient got from it (or will: pending ones count) on local
    days from ``since``, each with when it last went (its claim, else its scheduled time).

    Planning reads it so that nobody gets the same text twice within a week; one statement for a
    whole batch of numbers (on the number-and-day index).
    """
    if not number_ids:
        return {}
    # plain timestamps, not `UTCDateTime`: its conversion of every row was half the time of a batch's
    # read; PostgreSQL's are aware already, SQLite's naive UTC get their zone below
    when = sa.func.max(
        sa.func.coalesce(MESSAGES.c.claimed_at, MESSAGES.c.scheduled_at), type_=sa.DateTime(timezone=True)
    )
    with read(engine) as conn:
        rows = conn.execute(
            sa.select(MESSAGES.c.number_id, MESSAGES.c.recipient, MESSAGES.c.text, when)
            .where(
                MESSAGES.c.number_id.in_(sorted(set(number_ids))),
                MESSAGES.c.local_date >= since,
                MESSAGES.c.state.not_in(NOT_SENT),
            )
            .group_by(MESSAGES.c.number_id, MESSAGES.c.recipient, MESSAGES.c.text)
        ).all()
    found: dict[int, dict[str, dict[str, datetime]]] = {}
    for number_id, recipient, text, at in rows:
        found.setdefault(number_id, {}).setdefault(recipient, {})[text] = (
            at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        )
    return found


def day_count(engine: Engine, number_id: int, local_date: date) -> int:
    """Messages of that day that went out or may have: sent + sending + unknown."""
    with read(engine) as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(MESSAGES)
                .where(
                    MESSAGES.c.number_id == number_id,
                    MESSAGES.c.local_date == local_date,
                    MESSAGES.c.state.in_([s.value for s in COUNTED_STATES]),
                )
            ).scalar_one()
        )


def day_outcome(engine: Engine, number_id: int, local_date: date) -> DayOutcome:
    """What happened on that local day: messages by state, delivered ones (a delivered/read status was
    received), and replies (inbound messages not from us, received during that local day).

    An opener that gave way to a reply (`GAVE_WAY`) was replaced, not lost: it is left out of the
    counts, so a full day reads "8 sent of 8 planned", not "8 of 10"."""
    with read(engine) as conn:
        timezone = conn.execute(sa.select(NUMBERS.c.timezone).where(NUMBERS.c.id == number_id)).scalar_one()
        return _outcomes(conn, {number_id: timezone}, local_date)[number_id]


def day_outcomes(conn: Connection, timezones: Mapping[int, str], local_date: date) -> dict[int, DayOutcome]:
    """`day_outcome` of ``local_date`` for every number of ``timezones`` (id -> its time zone) that has a
    day plan then, in a few statements."""
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
    return _outcomes(conn, {n: timezones[n] for n in planned}, local_date)


def _outcomes(conn: Connection, timezones: Mapping[int, str], local_date: date) -> dict[int, DayOutcome]:
    """The outcome of ``local_date`` for every number of ``timezones``, counted with GROUP BY number:
    messages by state (openers that gave way to a reply left out), delivered sends, and replies
    received during the number's local day (one statement per zone)."""
    ids = sorted(timezones)
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for number_id, state, count in conn.execute(
        sa.select(MESSAGES.c.number_id, MESSAGES.c.state, sa.func.count())
        .where(
            MESSAGES.c.number_id.in_(ids),
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
                MESSAGES.c.number_id.in_(ids),
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
    for number_id in ids:
        by_zone[timezones[number_id]].append(number_id)
    replies: dict[int, int] = {}
    for timezone, zone_ids in by_zone.items():
        start, end = local_day_bounds(local_date, timezone)
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
    for number_id in ids:
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
