"""What a batch of numbers' day depends on, read in a few statements for the whole batch.

Planning a day one number at a time cost ~20 statements (yesterday's plan and outcome, the latest
reading, the recipients...); for a fleet planned at its local midnight those round trips, not the
deciding, were the time. Each read here is one statement for the whole batch, and the answers are
exactly what the per-number reads return (`warmup.store.readings`, `warmup.store.history`,
`warmup.store.inbound`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, Engine

from warmup.core.domain import DayOutcome, Reading
from warmup.core.portfolio import PortfolioUse
from warmup.store.history import day_outcomes
from warmup.store.inbound import KnownRecipient, recipients_of
from warmup.store.portfolios import portfolios_of, uses_on
from warmup.store.readings import latest_readings
from warmup.store.tables import read


@dataclass(frozen=True)
class Facts:
    """What the store knows that one number's day depends on."""

    latest_reading: Reading | None  # the most recent one taken since the batch's `since`
    yesterday: DayOutcome | None  # None when yesterday has no day plan
    recipients: tuple[KnownRecipient, ...]
    portfolio: PortfolioUse | None = None  # its Meta portfolio's use at the batch's `now` (None: none)


def planning_facts(
    conn: Connection,
    timezones: Mapping[int, str],
    local_date: date,
    since: datetime,
    now: datetime | None = None,
) -> dict[int, Facts]:
    """`Facts` for every number id of ``timezones`` (id -> its time zone), in five or so statements
    (and a few per Meta portfolio of the batch, with ``now``: where each stands at ``now``).

    ``since`` bounds the readings looked at: callers pass a moment before the start of ``local_date``
    in every zone (a reading older than that cannot be today's, so the latest reading overall and the
    latest one since then decide the same thing: whether today's reading is stored).
    """
    ids = sorted(timezones)
    if not ids:
        return {}
    readings = latest_readings(conn, ids, since)
    yesterday = day_outcomes(conn, timezones, local_date - timedelta(days=1))
    recipients = recipients_of(conn, ids)
    names = portfolios_of(conn, ids) if now is not None else {}
    uses = uses_on(conn, sorted(set(names.values())), now) if now is not None and names else {}
    return {
        n: Facts(
            readings.get(n),
            yesterday.get(n),
            tuple(recipients.get(n, ())),
            uses.get(names[n]) if n in names else None,
        )
        for n in ids
    }


def read_facts(
    engine: Engine,
    timezones: Mapping[int, str],
    local_date: date,
    since: datetime,
    now: datetime | None = None,
) -> dict[int, Facts]:
    """`planning_facts` in a read-only transaction of its own (SQLite: a deferred BEGIN, no writer waits)."""
    with read(engine) as conn:
        return planning_facts(conn, timezones, local_date, since, now)
