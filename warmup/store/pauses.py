"""Pausing and resuming numbers (an admin, a chat command, a provider's ban signal, an expired pause).

Once `pause_numbers` has committed, no claim of that number can succeed any more: a claim re-checks
the state under a shared lock on the number row (the lock order of `warmup.store`). Sends claimed
before keep going. (A PAUSE decision pauses a number too, when its day is planned: `warmup.store.days`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from warmup.core.domain import SkipCause
from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of
from warmup.store import audit
from warmup.store.models import NumberStatus
from warmup.store.tables import NUMBERS, InvalidWrite, aware, skip_pending, write


def _select_numbers(
    conn: Connection,
    phones: Sequence[str] | None,
    plan_name: str | None,
    all_numbers: bool,
    number_ids: Sequence[int] | None,
) -> list[sa.Row[Any]]:
    """The targeted numbers, locked in id order; unknown phones or ids are a `UserError`."""
    chosen = sum(x is not None for x in (phones, plan_name, number_ids)) + int(all_numbers)
    if chosen != 1:
        raise InvalidWrite("choose exactly one target: phones, plan_name, number_ids or all_numbers")
    statement = sa.select(NUMBERS).order_by(NUMBERS.c.id).with_for_update()
    if phones is not None:
        statement = statement.where(NUMBERS.c.phone.in_(list(phones)))
    elif number_ids is not None:
        statement = statement.where(NUMBERS.c.id.in_(list(number_ids)))
    elif plan_name is not None:
        statement = statement.where(NUMBERS.c.plan_name == plan_name)
    rows = list(conn.execute(statement).all())
    if phones is not None:
        missing = sorted(set(phones) - {row.phone for row in rows})
        if missing:
            raise UserError(f"unknown number(s): {', '.join(missing)}")
    if number_ids is not None:
        missing_ids = sorted(set(number_ids) - {row.id for row in rows})
        if missing_ids:
            raise UserError(f"unknown number id(s): {', '.join(map(str, missing_ids))}")
    if plan_name is not None and not rows:
        raise UserError(f"no number uses plan {plan_name!r}")
    return rows


def pause_numbers(
    engine: Engine,
    *,
    reason: str,
    actor: str,
    now: datetime,
    until: datetime | None = None,
    phones: Sequence[str] | None = None,
    plan_name: str | None = None,
    number_ids: Sequence[int] | None = None,
    all_numbers: bool = False,
) -> list[int]:
    """Pause the targeted active numbers; returns the ids that were paused (already paused or retired
    ones are left as they are).

    In the same transaction: the state change, the skipping of their planned|queued messages and one
    `pause` audit row per number. Once this returns no claim of those numbers can succeed (a claim
    re-checks the state under a shared lock on the number row); sends claimed before keep going.
    `until` makes the pause expire (see `resume_expired`).
    """
    now = aware(now)
    if until is not None:
        until = aware(until, "until")
    with write(engine) as conn:
        rows = _select_numbers(conn, phones, plan_name, all_numbers, number_ids)
        return pause_rows(conn, rows, reason=reason, actor=actor, now=now, until=until)


def pause_rows(
    conn: Connection,
    rows: Sequence[sa.Row[Any]],
    *,
    reason: str,
    actor: str,
    now: datetime,
    until: datetime | None = None,
    action: str = "pause",
) -> list[int]:
    """`pause_numbers` in the caller's transaction, for number rows it has locked (all columns): the
    active ones are paused, their pending messages skipped, one ``action`` audit row each; their ids."""
    targets = [row for row in rows if row.state == NumberStatus.ACTIVE]
    for row in targets:
        conn.execute(
            sa.update(NUMBERS)
            .where(NUMBERS.c.id == row.id)
            .values(
                state=NumberStatus.PAUSED.value,
                paused_reason=reason[:500],
                paused_until=until,
                paused_at=now,
                paused_volume=row.last_volume,
                advance_pending=False,
                updated_at=now,
            )
        )
        skipped = skip_pending(conn, [row.id], f"number paused: {reason}", now)
        detail = {"reason": reason, "until": until.isoformat() if until else None, "skipped": skipped}
        audit.record(conn, actor, action, row.id, detail, now)
    return [row.id for row in targets]


def resume_numbers(
    engine: Engine,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
    phones: Sequence[str] | None = None,
    plan_name: str | None = None,
    number_ids: Sequence[int] | None = None,
    all_numbers: bool = False,
) -> list[int]:
    """Resume the targeted paused numbers; returns the ids resumed (active or retired ones untouched).

    Sets `resumed_on` to the local date in each number's time zone (the resume policy climbs back from
    there) and keeps `paused_volume`; writes one `resume` audit row per number. Re-spreading the rest
    of today is the scheduler's job (`add_respread`, once per resume), never a burst.
    """
    now = aware(now)
    with write(engine) as conn:
        rows = _select_numbers(conn, phones, plan_name, all_numbers, number_ids)
        return _resume(conn, [row for row in rows if row.state == NumberStatus.PAUSED], actor, reason, now)


def resume_expired(engine: Engine, now: datetime, actor: str = "scheduler") -> list[int]:
    """Resume paused numbers whose `paused_until` has passed; returns their ids."""
    now = aware(now)
    with write(engine) as conn:
        rows = list(
            conn.execute(
                sa.select(NUMBERS)
                .where(NUMBERS.c.state == NumberStatus.PAUSED.value, NUMBERS.c.paused_until <= now)
                .order_by(NUMBERS.c.id)
                .with_for_update()
            ).all()
        )
        return _resume(conn, rows, actor, "pause expired", now)


def _resume(
    conn: Connection, rows: Sequence[sa.Row[Any]], actor: str, reason: str | None, now: datetime
) -> list[int]:
    for row in rows:
        conn.execute(
            sa.update(NUMBERS)
            .where(NUMBERS.c.id == row.id)
            .values(
                state=NumberStatus.ACTIVE.value,
                resumed_on=local_date_of(now, row.timezone),
                paused_volume=row.paused_volume if row.paused_volume is not None else row.last_volume,
                paused_reason=None,
                paused_until=None,
                paused_at=None,
                advance_pending=False,
                updated_at=now,
            )
        )
        detail = {"reason": reason, "paused_reason": row.paused_reason}
        audit.record(conn, actor, "resume", row.id, detail, now)
    return [row.id for row in rows]


def set_lifecycle(engine: Engine, number_id: int, state: NumberStatus, reason: str, now: datetime) -> int:
    """Retire a number (skipping its pending messages with ``reason``) or make it active again, in one
    transaction, clearing any pause; how many messages were skipped. The number row is locked first,
    as a claim locks it."""
    now = aware(now)
    with write(engine) as conn:
        return set_lifecycle_on(conn, number_id, state, reason, now)


def set_lifecycle_on(
    conn: Connection, number_id: int, state: NumberStatus, reason: str, now: datetime
) -> int:
    """`set_lifecycle` in the caller's transaction (`warmup apply` writes the whole fleet in one)."""
    now = aware(now)
    conn.execute(sa.select(NUMBERS.c.id).where(NUMBERS.c.id == number_id).with_for_update()).one()
    conn.execute(
        sa.update(NUMBERS)
        .where(NUMBERS.c.id == number_id)
        .values(
            state=state.value,
            paused_reason=None,
            paused_until=None,
            paused_at=None,
            advance_pending=False,
            updated_at=now,
        )
    )
    if state != NumberStatus.RETIRED:
        return 0
    return skip_pending(conn, [number_id], reason, now, cause=SkipCause.PAUSED)
