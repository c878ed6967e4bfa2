"""Read-only queries that check and watch a run: what `warmup.testing.invariants` compares with the
simulator's send log, and what the demo (`warmup.cli.demo`, `warmup.cli.live`) shows of each day.

They never write and they read in read-only transactions (a plain BEGIN on SQLite), so a checker or a
live view polling the store never takes the write lock from the workers it watches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.store.models import COUNTED_STATES, MessageState
from warmup.store.tables import DAY_PLANS, MESSAGES, NUMBERS, read

SLOT_STATES = frozenset(COUNTED_STATES | {MessageState.FAILED})
"""States whose message holds a quota slot (`DayPlan.used`): it went out or may have (sent, sending,
unknown), or failed (the provider may have counted it, so its slot is not given back)."""


@dataclass(frozen=True)
class StoredMessage:
    """The columns of one outbound row the invariant checks need."""

    id: int
    number_id: int
    phone: str  # the sender
    timezone: str
    local_date: date
    recipient: str
    text: str
    state: str
    provider_message_id: str | None
    reason: str | None = None


@dataclass(frozen=True)
class DayTally:
    """One day plan and the slots its messages hold, counted in the same statement as `used` (one
    snapshot: a claim committing meanwhile changes both or neither)."""

    id: int
    number_id: int
    phone: str
    local_date: date
    plan_day: int
    action: str
    quota: int
    used: int
    held: int  # messages in a `SLOT_STATES` state
    not_skipped: int  # messages of the day in any state but skipped
    gap_seconds: float = 0.0  # the day's minimum gap between two sends (0: not paced)


def stored_messages(engine: Engine) -> list[StoredMessage]:
    """Every outbound row with its number's phone and time zone, oldest first."""
    m, n = MESSAGES, NUMBERS
    query = (
        sa.select(
            m.c.id,
            m.c.number_id,
            n.c.phone,
            n.c.timezone,
            m.c.local_date,
            m.c.recipient,
            m.c.text,
            m.c.state,
            m.c.provider_message_id,
            m.c.reason,
        )
        .join(n, n.c.id == m.c.number_id)
        .order_by(m.c.id)
    )
    with read(engine) as conn:
        return [StoredMessage(**row._asdict()) for row in conn.execute(query)]


def day_tallies(engine: Engine, number_id: int | None = None) -> list[DayTally]:
    """Every day plan (of ``number_id``, or of all numbers) with its messages counted, by number and
    local date."""
    d, m, n = DAY_PLANS, MESSAGES, NUMBERS
    holding = m.c.state.in_([state.value for state in SLOT_STATES])
    live = m.c.state != MessageState.SKIPPED.value
    query = (
        sa.select(
            d.c.id,
            d.c.number_id,
            n.c.phone,
            d.c.local_date,
            d.c.plan_day,
            d.c.action,
            d.c.quota,
            d.c.used,
            sa.func.count(sa.case((holding, m.c.id))).label("held"),
            sa.func.count(sa.case((live, m.c.id))).label("not_skipped"),
            d.c.gap_seconds,
        )
        .join(n, n.c.id == d.c.number_id)
        .outerjoin(m, m.c.day_plan_id == d.c.id)
        .group_by(d.c.id, n.c.phone)
        .order_by(d.c.number_id, d.c.local_date)
    )
    if number_id is not None:
        query = query.where(d.c.number_id == number_id)
    with read(engine) as conn:
        return [DayTally(**row._asdict()) for row in conn.execute(query)]


def number_timezones(engine: Engine) -> dict[str, str]:
    """phone -> IANA time zone of every number."""
    with read(engine) as conn:
        return {
            row.phone: row.timezone for row in conn.execute(sa.select(NUMBERS.c.phone, NUMBERS.c.timezone))
        }


def state_counts(engine: Engine) -> dict[str, int]:
    """How many outbound messages are in each state (a run's progress at a glance)."""
    m = MESSAGES
    with read(engine) as conn:
        rows = conn.execute(sa.select(m.c.state, sa.func.count()).group_by(m.c.state)).all()
    return {str(state): int(count) for state, count in rows}


def claimed_by(engine: Engine, workers: Sequence[str]) -> list[int]:
    """Ids of the ``sending`` rows claimed by any of ``workers`` (``host:pid``, as claims record them)."""
    if not workers:
        return []
    m = MESSAGES
    with read(engine) as conn:
        query = sa.select(m.c.id).where(m.c.state == MessageState.SENDING.value, m.c.claimed_by.in_(workers))
        return [int(i) for i in conn.execute(query).scalars()]
