"""Handing due messages to the broker: which are due (or fall due soon), marking them queued, and
finding those whose broker message was lost.

The broker only ever carries message ids; a duplicate or a stale copy is harmless, because the claim
(`warmup.store.claims`) is conditional and re-checks everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.core.pacing import due_at
from warmup.store.models import MessageState
from warmup.store.tables import (
    CLAIMABLE,
    DAY_PLANS,
    MESSAGES,
    aggregate_time,
    aware,
    falls_due,
    in_line,
    read,
    write,
)


@dataclass(frozen=True)
class Due:
    """A planned message that falls due soon: what the dispatcher needs to batch it."""

    message_id: int
    number_id: int
    due_at: datetime


def due_within(engine: Engine, until: datetime, limit: int) -> list[Due]:
    """The `planned` messages due by `until` (scheduled_at and not_before both <= it), earliest first,
    with their number (a batch holds one message per number) and due time: the dispatcher hands these
    to the broker with a delay, so they are claimed on time."""
    until = aware(until, "until")
    with read(engine) as conn:
        rows = conn.execute(
            sa.select(MESSAGES.c.id, MESSAGES.c.number_id, MESSAGES.c.scheduled_at, MESSAGES.c.not_before)
            .where(
                MESSAGES.c.state == MessageState.PLANNED.value,
                falls_due(until),
            )
            .order_by(MESSAGES.c.scheduled_at, MESSAGES.c.id)
            .limit(limit)
        ).all()
    return [Due(int(r.id), int(r.number_id), due_at(r.scheduled_at, r.not_before)) for r in rows]


def due_messages(engine: Engine, now: datetime, limit: int) -> list[int]:
    """Ids of `planned` messages that are due (scheduled_at <= now, not_before unset or passed),
    oldest first."""
    return [due.message_id for due in due_within(engine, aware(now), limit)]


def mark_queued(engine: Engine, ids: Sequence[int], now: datetime | None = None) -> list[int]:
    """planned -> queued for those of `ids` still planned; returns the ids actually moved (enqueue those).

    `now` is stored as `queued_at` (used by `requeue_lost`); without it, the message's scheduled time.
    """
    if not ids:
        return []
    queued_at: Any = aware(now) if now is not None else MESSAGES.c.scheduled_at
    with write(engine) as conn:
        return sorted(
            conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.id.in_(list(ids)), MESSAGES.c.state == MessageState.PLANNED.value)
                .values(state=MessageState.QUEUED.value, queued_at=queued_at)
                .returning(MESSAGES.c.id)
            ).scalars()
        )


def requeue_lost(engine: Engine, older_than: datetime, now: datetime | None = None) -> list[int]:
    """Ids of `queued` messages eligible since before `older_than` (queued_at and not_before both
    earlier): their broker message was probably lost (e.g. a Redis restart). Re-enqueue them; a
    duplicate is harmless because the claim is conditional. With `now`, their `queued_at` becomes `now`
    so the next call does not return them again before another grace period.
    """
    older_than = aware(older_than, "older_than")
    with write(engine) as conn:
        condition = sa.and_(
            MESSAGES.c.state == MessageState.QUEUED.value,
            MESSAGES.c.queued_at < older_than,
            sa.or_(MESSAGES.c.not_before.is_(None), MESSAGES.c.not_before < older_than),
        )
        if now is None:
            return list(
                conn.execute(sa.select(MESSAGES.c.id).where(condition).order_by(MESSAGES.c.id)).scalars()
            )
        return sorted(
            conn.execute(
                sa.update(MESSAGES).where(condition).values(queued_at=aware(now)).returning(MESSAGES.c.id)
            ).scalars()
        )


def oldest_due(engine: Engine, now: datetime) -> datetime | None:
    """The scheduled time of the oldest planned|queued message due by ``now`` (None when there is none):
    how late the queue runs."""
    with read(engine) as conn:
        oldest = conn.execute(
            sa.select(sa.func.min(MESSAGES.c.scheduled_at)).where(
                MESSAGES.c.state.in_(CLAIMABLE), MESSAGES.c.scheduled_at <= aware(now)
            )
        ).scalar_one_or_none()
    return aggregate_time(oldest)


@dataclass(frozen=True)
class Turn:
    """A number's next message once its send in flight ended: when it may go (its due time, and not
    before the day's minimum gap after ``free_at``)."""

    message_id: int
    at: datetime


def next_turn(engine: Engine, number_id: int, free_at: datetime) -> Turn | None:
    """The number's earliest pending message if it is overdue at ``free_at`` (its send in flight held
    it back), marked queued, and when it may go: the day's gap after ``free_at``. The worker that just
    ended a send hands it over for that moment, instead of it waiting for a guess or the scheduler's
    next tick. None when nothing of the number is overdue (the scheduler hands it over on time)."""
    free_at = aware(free_at, "free_at")
    with write(engine) as conn:
        row = conn.execute(
            in_line(number_id)
            .with_only_columns(
                MESSAGES.c.id, MESSAGES.c.scheduled_at, MESSAGES.c.not_before, DAY_PLANS.c.gap_seconds
            )
            .join_from(MESSAGES, DAY_PLANS, DAY_PLANS.c.id == MESSAGES.c.day_plan_id)
            .limit(1)
        ).one_or_none()
        if row is None:
            return None
        if due_at(row.scheduled_at, row.not_before) > free_at:
            return None
        at = free_at + timedelta(seconds=row.gap_seconds or 0.0)
        conn.execute(
            sa.update(MESSAGES)
            .where(MESSAGES.c.id == row.id, MESSAGES.c.state.in_(CLAIMABLE))
            .values(state=MessageState.QUEUED.value, queued_at=free_at)
        )
        return Turn(int(row.id), at)
