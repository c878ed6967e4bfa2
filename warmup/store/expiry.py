"""Ending what is left of a day: a number's remaining messages (`skip_remaining`), and every message
whose local day is over (`expire_day`, run by the dispatcher), so nothing stays pending past its day.

Stuck `sending` rows are not this module's job: `warmup.store.outcomes.recover_stale` turns them
`unknown`.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.core.domain import SkipCause
from warmup.core.localtime import local_date_of
from warmup.store.tables import (
    CLAIMABLE,
    MESSAGES,
    NUMBERS,
    aware,
    read,
    skip_pending,
    skip_where,
    stamp,
    write,
)


def skip_remaining(
    engine: Engine,
    number_id: int,
    local_date: date,
    reason: str,
    now: datetime | None = None,
    cause: SkipCause = SkipCause.QUOTA,
) -> int:
    """planned|queued -> skipped for that number and day (pause, throttle to zero, day end); how many."""
    with write(engine) as conn:
        return skip_pending(conn, [number_id], reason, stamp(now), local_date, cause)


def _past_day_numbers(engine: Engine, now: datetime) -> list[int]:
    """Numbers (id order) with a planned|queued message of a local day before today, read WITHOUT locks.

    Such a message is overdue (its day, and so its time, is over), so only overdue messages are looked
    at (the state/scheduled_at index): usually a handful, where locking every number row each tick
    (10,000 at a time) held up every day being planned meanwhile. `expire_day` re-checks under lock.
    """
    with read(engine) as conn:
        rows = conn.execute(
            sa.select(MESSAGES.c.number_id, NUMBERS.c.timezone, MESSAGES.c.local_date)
            .join(NUMBERS, NUMBERS.c.id == MESSAGES.c.number_id)
            .where(MESSAGES.c.state.in_(CLAIMABLE), MESSAGES.c.scheduled_at < now)
            .distinct()
        ).all()
    today: dict[str, date] = {}
    found = set()
    for row in rows:
        if row.timezone not in today:
            today[row.timezone] = local_date_of(now, row.timezone)
        if row.local_date < today[row.timezone]:
            found.add(int(row.number_id))
    return sorted(found)


def expire_day(engine: Engine, now: datetime, reason: str = "day over") -> int:
    """Skip every planned|queued message whose local day (in its number's time zone) is before today's."""
    now = aware(now)
    candidates = _past_day_numbers(engine, now)
    if not candidates:
        return 0
    with write(engine) as conn:
        # The lock order (see `warmup.store`): number rows (by id), then messages (by id).
        numbers = conn.execute(
            sa.select(NUMBERS.c.id, NUMBERS.c.timezone)
            .where(NUMBERS.c.id.in_(candidates))
            .order_by(NUMBERS.c.id)
            .with_for_update(read=True)
        ).all()
        by_zone: dict[str, list[int]] = {}
        for number in numbers:
            by_zone.setdefault(number.timezone, []).append(number.id)
        conditions = [
            sa.and_(MESSAGES.c.number_id.in_(ids), MESSAGES.c.local_date < local_date_of(now, zone))
            for zone, ids in by_zone.items()
        ]
        if not conditions:
            return 0
        condition = sa.and_(MESSAGES.c.state.in_(CLAIMABLE), sa.or_(*conditions))
        return skip_where(conn, condition, reason, now, SkipCause.DAY_ENDED)
