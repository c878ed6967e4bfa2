"""Re-spreading the rest of a resumed day (`add_respread`, once per resume).

It holds the number row lock while it decides, so two schedulers, or a retried tick, never re-spread
the same resume twice (twice the messages squeezed into the same time would be a burst). A backlog
after an outage needs no re-spread: the claim keeps every number's pace (`warmup.store.claims`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.store import audit
from warmup.store.models import NumberStatus
from warmup.store.sends import PlannedSend, message_rows, recipient_kinds, upsert_recipients
from warmup.store.tables import (
    AUDIT,
    MESSAGES,
    NUMBERS,
    day_row,
    pending,
    read,
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
