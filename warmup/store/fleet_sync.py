"""The fleet sync's transaction: `warmup apply` writes every change of a fleet file in ONE transaction.

Numbers, portfolios, lifecycle changes, the admin list and every audit row of an apply commit together
or not at all: a database error, an `InvalidWrite` or a killed process (kill -9) mid-apply leaves the
fleet exactly as it was (the transaction is rolled back, or never committed).

Lock order (`warmup.store`): `FleetWriter.lock` takes the rows the apply changes first, numbers in id
order then portfolios in name order, so the later steps, in whatever order the file lists them, wait
for nobody a claim or a pause could be holding while it waits for them. Claims of the fleet's numbers
wait until the apply commits (seconds, for ten thousand numbers).

A database failure becomes `FleetWriteFailed`: one line naming the kind of error, never the SQL or
its parameters; the driver's message goes to the log at debug level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Unpack

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from warmup.store import audit, pauses, portfolios
from warmup.store.models import NumberStatus
from warmup.store.numbers import NumberConfig, add_numbers_on, upsert_number_on
from warmup.store.tables import NUMBERS, PORTFOLIOS, stamp, write

log = logging.getLogger(__name__)

_IN_CHUNK = 500


class FleetWriteFailed(RuntimeError):
    """The database refused the apply; it was rolled back (nothing of it was written)."""


class FleetWriter:
    """The steps of one apply, all in the caller's single transaction."""

    def __init__(self, conn: Connection, now: datetime) -> None:
        self._conn = conn
        self.now = now

    def lock(self, phones: Iterable[str], portfolio_names: Iterable[str]) -> None:
        """Lock the stored rows the apply will change: numbers by id, then portfolios by name."""
        wanted = sorted(set(phones))
        found: list[int] = []
        for start in range(0, len(wanted), _IN_CHUNK):
            part = wanted[start : start + _IN_CHUNK]
            found += self._conn.execute(sa.select(NUMBERS.c.id).where(NUMBERS.c.phone.in_(part))).scalars()
        ids = sorted(found)
        for start in range(0, len(ids), _IN_CHUNK):
            self._conn.execute(
                sa.select(NUMBERS.c.id)
                .where(NUMBERS.c.id.in_(ids[start : start + _IN_CHUNK]))
                .order_by(NUMBERS.c.id)
                .with_for_update()
            ).all()
        names = sorted(set(portfolio_names))
        if names:
            self._conn.execute(
                sa.select(PORTFOLIOS.c.name)
                .where(PORTFOLIOS.c.name.in_(names))
                .order_by(PORTFOLIOS.c.name)
                .with_for_update()
            ).all()

    def upsert_number(self, **config: Unpack[NumberConfig]) -> tuple[int, bool]:
        """`warmup.store.numbers.upsert_number` in this transaction: (id, created)."""
        return upsert_number_on(self._conn, self.now, **config)

    def add_numbers(self, configs: list[NumberConfig]) -> list[int]:
        """Enroll numbers not stored yet, in one statement: their ids, in the order given."""
        return add_numbers_on(self._conn, configs, self.now)

    def number_id(self, phone: str) -> int | None:
        found = self._conn.execute(sa.select(NUMBERS.c.id).where(NUMBERS.c.phone == phone)).scalar()
        return None if found is None else int(found)

    def set_lifecycle(self, number_id: int, state: NumberStatus, reason: str) -> int:
        """`warmup.store.pauses.set_lifecycle` in this transaction: messages skipped."""
        return pauses.set_lifecycle_on(self._conn, number_id, state, reason, self.now)

    def set_portfolio(self, name: str, tier: str | None) -> None:
        portfolios.set_portfolio_on(self._conn, name, tier, self.now)

    def drop_portfolio(self, name: str) -> int:
        return portfolios.drop_portfolio_on(self._conn, name)

    def audit(self, actor: str, action: str, number_id: int | None, detail: dict[str, Any]) -> None:
        audit.record(self._conn, actor, action, number_id, detail, self.now)

    def audit_many(self, rows: list[dict[str, Any]]) -> None:
        """Audit rows (actor, action, number_id, detail) in one statement."""
        audit.record_many(self._conn, rows, self.now)


@contextmanager
def fleet_transaction(engine: Engine, now: datetime | None = None) -> Iterator[FleetWriter]:
    """One write transaction for a whole apply: committed when the block ends, rolled back on any error.

    A database error is re-raised as `FleetWriteFailed` (after the rollback), without SQL or parameters.
    """
    try:
        with write(engine) as conn:
            yield FleetWriter(conn, stamp(now))
    except SQLAlchemyError as exc:
        raise FleetWriteFailed(_summary(exc)) from None


def _summary(exc: SQLAlchemyError) -> str:
    """The kind of database error and the first line of the driver's message (no SQL, no parameters)."""
    kind = type(exc).__name__  # IntegrityError, DataError, OperationalError ... on either database
    origin = exc.orig if isinstance(exc, DBAPIError) else None
    text = str(origin).strip().splitlines()[0] if origin is not None and str(origin).strip() else ""
    log.debug("fleet apply rolled back: %s (%s): %s", kind, type(origin).__name__, text)
    return f"{kind}: {text[:200]}" if text else kind
