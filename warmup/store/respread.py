"""Re-spreading a day's remaining messages: the rest of a resumed day (`add_respread`, once per
resume) and a backlog after an outage or a slow stretch (`retime_day`, found by `overdue_numbers`).

Both hold the number row lock while they decide, so two schedulers, or a retried tick, never re-spread
the same day twice (twice the messages squeezed into the same time would be a burst).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from warmup.store import audit
from warmup.store.models import MessageState, NumberStatus
from warmup.store.sends import PlannedSend, message_rows, recipient_kinds, upsert_recipients
from warmup.store.tables import (
    AUDIT,
    CLAIMABLE,
    MESSAGES,
    NUMBERS,
    aware,
    day_row,
    falls_due,
    pending,
    read,
    skip_where,
    stamp,
    write,
)


def add_respread(
    engine: Engine,
    number_id: int,
    local_date: date,
    sends: Sequence[PlannedSend],
    *,
    resume_id: int,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """Add the re-spread of a resumed day at most ONCE per resume; how many messages were added.

    One transaction with the number row locked: if a `respread` audit row already names `resume_id`,
    nothing happens (two schedulers, or a retried tick, re-spreading the same resume would otherwise
    both add the rest of the day: twice the messages, squeezed into the same time, i.e. a burst).
    Otherwise the sends are cut to what is left of the quota NOW (quota - used - still pending), and the
    `respread` audit row is written with `detail`, `resume_id` and `added`. A number that is not active
    any more, or a day without a plan, gets the audit row and no messages.
    """
    at = stamp(now)
    message_rows(number_id, 0, local_date, sends, at)
    with write(engine) as conn:
        number = conn.execute(
            sa.select(NUMBERS.c.id, NUMBERS.c.state).where(NUMBERS.c.id == number_id).with_for_update()
        ).one_or_none()
        done = conn.execute(sa.select(AUDIT.c.detail).where(AUDIT.c.action == "respread")).scalars()
        if any(isinstance(d, dict) and d.get("resume_id") == resume_id for d in done):
            return 0
        added = 0
        day = day_row(conn, number_id, local_date)
        if number is not None and number.state == NumberStatus.ACTIVE and day is not None:
            left = max(day.quota - day.used - pending(conn, day.id), 0)
            rows = message_rows(number_id, day.id, local_date, sends, at)[:left]
            if rows:
                upsert_recipients(conn, recipient_kinds(number_id, sends[:left]), at)
                conn.execute(sa.insert(MESSAGES), rows)
            added = len(rows)
        audit.record(
            conn,
            "scheduler",
            "respread",
            number_id if number is not None else None,
            {**(detail or {}), "resume_id": resume_id, "added": added},
            at,
        )
    return added


@dataclass(frozen=True)
class DayMessage:
    """What a backlog's re-spread reads of one message of the day."""

    id: int
    state: str
    kind: str
    scheduled_at: datetime
    not_before: datetime | None = None
    claimed_at: datetime | None = None


@dataclass(frozen=True)
class Retiming:
    """A backlog's re-spread, decided from the day's messages (see `retime_day`)."""

    moves: Mapping[int, tuple[datetime, datetime | None]]  # message id -> (new scheduled_at, window_end)
    skips: Mapping[int, str]  # message id -> why it is skipped (no time left at the plan's pace)
    detail: Mapping[str, Any]  # what the audit row says about it (the backlog, the cut)


BACKLOG_ACTION = "backlog_respread"


def retime_day(
    engine: Engine,
    number_id: int,
    local_date: date,
    decide: Callable[[Sequence[DayMessage]], Retiming | None],
    *,
    now: datetime,
) -> Retiming | None:
    """Re-time the still-pending messages of a number's day, when ``decide`` finds a backlog.

    One transaction with the number row locked FOR UPDATE (claims, pauses and additions of the number
    wait; a claim taken before holds its row as `sending`): the day's messages are read, ``decide``
    looks at them (pure) and says which pending ones move to which time and which are skipped. So two
    schedulers, or a retried tick, cannot re-spread the same backlog twice: the second finds the
    messages already spaced and ``decide`` returns None. A moved message goes back to `planned` at its
    new time (a stale broker copy is refused as not due and re-enqueued for then); nothing else changes.
    The re-spread is recorded as a `backlog_respread` audit row; consecutive ones of the same day (an
    outage re-spreads again each time a send is missed) update that row and count the repeats.
    """
    when = aware(now)
    with read(engine) as conn:  # most candidates need nothing: decide without the write lock first
        if decide(_day_messages(conn, number_id, local_date)) is None:
            return None
    with write(engine) as conn:
        number = conn.execute(
            sa.select(NUMBERS.c.state).where(NUMBERS.c.id == number_id).with_for_update()
        ).one_or_none()
        if number is None or number.state != NumberStatus.ACTIVE:
            return None
        retiming = decide(_day_messages(conn, number_id, local_date))
        if retiming is None:
            return None
        for message_id, (at, window_end) in retiming.moves.items():
            conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.id == message_id, MESSAGES.c.state.in_(CLAIMABLE))
                .values(
                    state=MessageState.PLANNED.value,
                    scheduled_at=aware(at, "scheduled_at"),
                    not_before=None,
                    queued_at=None,
                    window_end=aware(window_end, "window_end") if window_end is not None else None,
                )
            )
        for message_id, reason in retiming.skips.items():
            skip_where(conn, MESSAGES.c.id == message_id, reason, when)
        detail = {"local_date": local_date.isoformat(), **retiming.detail}
        latest = conn.execute(
            sa.select(AUDIT.c.id, AUDIT.c.action, AUDIT.c.detail)
            .where(AUDIT.c.number_id == number_id)
            .order_by(AUDIT.c.id.desc())
            .limit(1)
        ).one_or_none()
        before = latest.detail if latest is not None and isinstance(latest.detail, dict) else None
        if (
            latest is not None
            and latest.action == BACKLOG_ACTION
            and before is not None
            and (before.get("local_date") == detail["local_date"])
        ):
            detail = {
                **detail,
                "first_at": before.get("first_at", ""),
                "repeats": int(before.get("repeats", 1)) + 1,
                "skipped": int(before.get("skipped", 0)) + int(detail.get("skipped", 0)),
            }
            conn.execute(sa.update(AUDIT).where(AUDIT.c.id == latest.id).values(detail=detail, at=when))
        else:
            audit.record(
                conn, "scheduler", BACKLOG_ACTION, number_id, {**detail, "first_at": when.isoformat()}, when
            )
        return retiming


def _day_messages(conn: Connection, number_id: int, local_date: date) -> list[DayMessage]:
    rows = conn.execute(
        sa.select(
            MESSAGES.c.id,
            MESSAGES.c.state,
            MESSAGES.c.kind,
            MESSAGES.c.scheduled_at,
            MESSAGES.c.not_before,
            MESSAGES.c.claimed_at,
        )
        .where(MESSAGES.c.number_id == number_id, MESSAGES.c.local_date == local_date)
        .order_by(MESSAGES.c.id)
    ).all()
    return [DayMessage(int(r.id), r.state, r.kind, r.scheduled_at, r.not_before, r.claimed_at) for r in rows]


def overdue_numbers(engine: Engine, before: datetime, around: timedelta, limit: int = 1000) -> list[int]:
    """Numbers whose day may hold a backlog (`retime_day` decides), lowest id first: those with two or
    more `planned`/`queued` messages due before ``before`` (scheduled_at and not_before both earlier),
    and those with one whose number has another pending message due, or a send claimed, within
    ``around`` of ``before``. A number with one late message and nothing near it (a healthy fleet
    under load) costs no more than this query."""
    before = aware(before, "before")
    overdue = sa.and_(
        MESSAGES.c.state.in_(CLAIMABLE),
        falls_due(before, before=True),
    )
    with read(engine) as conn:
        counts = conn.execute(
            sa.select(MESSAGES.c.number_id, sa.func.count())
            .where(overdue)
            .group_by(MESSAGES.c.number_id)
            .order_by(MESSAGES.c.number_id)
            .limit(limit)
        ).all()
        many = {int(n) for n, count in counts if count >= 2}
        single = [int(n) for n, count in counts if count == 1]
        near: set[int] = set()
        for at in range(0, len(single), 500):
            near.update(
                int(n)
                for n in conn.execute(
                    sa.select(MESSAGES.c.number_id)
                    .where(
                        MESSAGES.c.number_id.in_(single[at : at + 500]),
                        sa.or_(
                            sa.and_(
                                MESSAGES.c.state.in_(CLAIMABLE),
                                MESSAGES.c.scheduled_at >= before,
                                MESSAGES.c.scheduled_at < before + around,
                            ),
                            MESSAGES.c.claimed_at > before - around,
                        ),
                    )
                    .distinct()
                ).scalars()
            )
    return sorted(many | near)


def pending_resumes(engine: Engine, since: datetime) -> list[tuple[int, int]]:
    """(audit id, number id) of resumes at or after ``since`` whose day has not been re-spread yet (no
    `respread` audit row names them, see `add_respread`).

    Works from the audit log, so a resume by any process (admin CLI, chat command, an expired pause)
    is seen, and a restarted scheduler does not re-spread twice.
    """
    with read(engine) as conn:
        resumes = [
            (int(row.id), int(row.number_id))
            for row in conn.execute(
                sa.select(AUDIT.c.id, AUDIT.c.number_id)
                .where(AUDIT.c.action == "resume", AUDIT.c.at >= since, AUDIT.c.number_id.is_not(None))
                .order_by(AUDIT.c.id)
            ).all()
        ]
        if not resumes:
            return []
        done_rows = conn.execute(
            sa.select(AUDIT.c.detail).where(AUDIT.c.action == "respread", AUDIT.c.at >= since)
        ).scalars()
        done = {int(d["resume_id"]) for d in done_rows if isinstance(d, dict) and "resume_id" in d}
    return [(audit_id, number_id) for audit_id, number_id in resumes if audit_id not in done]
