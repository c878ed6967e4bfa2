"""Meta business portfolios: their tiers (written by the fleet sync) and the messaging limit the claim
enforces for their numbers (`warmup.core.portfolio` says what is counted and why).

The claim of a message of a portfolio number (`warmup.store.claims`) asks `turn` in its transaction:

- a recipient inside their customer-service window (they wrote to THAT number in the last 24 h, less
  `SERVICE_MARGIN`) is not business-initiated: nothing is counted;
- otherwise the portfolio row is locked (FOR UPDATE: of two claimers on two numbers of one portfolio
  the second reads the log after the first committed, so they cannot both take the last slot) and the
  log of counted sends (`portfolio_sends`) is read: a recipient counted in the moving 24 h takes no new
  slot, a new one takes one if the tier leaves one, else the answer is when the next slot frees;
- the claim then writes the row (`count`) with the message, in the same transaction.

A row's time is never earlier than the newest row of its portfolio (a claimer whose clock lags a little
counts from the newest send instead): the log grows in time order, which is what makes the check above
hold for every moving 24 h, not only for the one ending at the claim (see `count`).

A send that definitely did not go out (skipped, released for a retry, given back, failed with the
provider's refusal) deletes its row (`release`); an `unknown` one keeps it, and a crashed claim's row
ages out of the 24 h like any other. Rows older than `KEEP` are purged by later claims.

Lock order: number -> pace -> portfolio -> message -> day plan (`warmup.store`): the claim locks the
portfolio after its number's pace; the fleet sync, the only other writer of the row, locks nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from warmup.core.plan.fields import TIERS
from warmup.core.portfolio import WINDOW, PortfolioUse, Tier, TierSource, normalize_tier, tier_of
from warmup.store.models import InboundKind
from warmup.store.tables import (
    INBOUND,
    NUMBERS,
    PORTFOLIO_SENDS,
    PORTFOLIOS,
    READINGS,
    InvalidWrite,
    aggregate_time,
    aware,
    insert_ignore,
    read,
    stamp,
    write,
)

SERVICE_MARGIN = timedelta(minutes=10)
"""A recipient is inside their customer-service window for the claim only if they wrote less than
24 h - this ago: the send follows its claim by seconds (a batch by its budget), and one that lands
after the window closed is business-initiated, uncounted. Erring this way counts a slot too many."""

TIER_LOOKBACK = timedelta(days=30)
"""Meta's tier is read from the readings of the last 30 days (planning stores one a day per number);
with none, the tier is assumed (`warmup.core.portfolio.NEW_PORTFOLIO_TIER`)."""

KEEP = 2 * WINDOW
"""Rows older than this count for nothing (a send counts for 24 h); claims purge them as they go."""

NAME_MAX = 64  # portfolios.name, numbers.portfolio
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""What a portfolio may be called (the fleet file's `portfolios:` keys)."""


# ---------------------------------------------------------------------------------------- the claim


@dataclass(frozen=True)
class Turn:
    """What the claim of one message of a portfolio number may do.

    ``counts``: a business-initiated send: the claim writes its row (`count`) at ``at``. ``free_at``
    set: the portfolio has no slot for this NEW recipient until then (the claim takes nothing)."""

    portfolio: str
    counts: bool
    at: datetime
    use: PortfolioUse | None = None  # read under the lock (None: the recipient was inside their window)
    free_at: datetime | None = None

    @property
    def full(self) -> bool:
        return self.free_at is not None


def turn(
    conn: Connection, portfolio: str, number_id: int, recipient: str, now: datetime, *, window: bool = True
) -> Turn:
    """Whether a send of ``number_id`` (of ``portfolio``) to ``recipient`` at ``now`` counts against the
    portfolio and may take a slot, in the claim's transaction (the portfolio row stays locked until it
    ends, unless the recipient is inside their customer-service window). ``window=False``: Meta said the
    recipient is outside it, whatever our inbound messages say."""
    if window and in_service_window(conn, number_id, recipient, now):
        return Turn(portfolio, counts=False, at=now)
    hand = _lock(conn, portfolio, now)
    tier = _tier(conn, portfolio, hand, now)
    newest, used, known = conn.execute(
        sa.select(
            sa.func.max(PORTFOLIO_SENDS.c.counted_at),
            sa.func.count(sa.distinct(PORTFOLIO_SENDS.c.recipient)),
            sa.func.max(sa.case((PORTFOLIO_SENDS.c.recipient == recipient, 1), else_=0)),
        ).where(*_counting(portfolio, now))
    ).one()
    at = max(now, aggregate_time(newest) or now)
    use = PortfolioUse(portfolio, tier, int(used))
    if known or tier.limit is None or int(used) < tier.limit:
        return Turn(portfolio, counts=True, at=at, use=use)
    free_at = _free_at(conn, portfolio, now, int(used), tier.limit)
    return Turn(
        portfolio, counts=True, at=at, use=PortfolioUse(portfolio, tier, int(used), free_at), free_at=free_at
    )


def count(conn: Connection, taken: Turn, message_id: int, recipient: str) -> None:
    """Write the claimed message's row (a `Turn` that counts and is not full), in the claim's
    transaction, and purge the portfolio's rows older than `KEEP`.

    Why the moving 24 h holds everywhere: rows are written in time order under the portfolio's lock.
    Take any 24 h span and its newest row R (recipient r). If r was new, its check saw every older row
    of the span and fewer than the limit of others. If r was counted already (a row R' less than 24 h
    before R), then the span before R lies inside the 24 h before the row just older than R, which also
    holds R': that span kept to the limit with r in it, so adding r again adds nobody. Deleting rows
    (`release`) only lowers counts."""
    if not taken.counts or taken.full:
        raise InvalidWrite("only a turn that counts and has a slot is written")
    conn.execute(
        sa.insert(PORTFOLIO_SENDS).values(
            portfolio=taken.portfolio, recipient=recipient, message_id=message_id, counted_at=taken.at
        )
    )
    conn.execute(
        sa.delete(PORTFOLIO_SENDS).where(
            PORTFOLIO_SENDS.c.portfolio == taken.portfolio, PORTFOLIO_SENDS.c.counted_at < taken.at - KEEP
        )
    )


def count_late(engine: Engine, number_id: int, message_id: int, recipient: str, now: datetime) -> bool:
    """Take a slot for a message in flight that the claim did not count (it saw the recipient inside
    their customer-service window) and that Meta refused as outside it (131047), before it goes out as a
    template: under the portfolio's lock, as a claim would. True when it may go out (counted, or the
    number has no portfolio); False when the portfolio has no slot left."""
    with write(engine) as conn:
        portfolio = portfolios_of(conn, [number_id]).get(number_id)
        if portfolio is None:
            return True
        taken = turn(conn, portfolio, number_id, recipient, now, window=False)
        if taken.full:
            return False
        if not conn.execute(
            sa.select(sa.exists().where(PORTFOLIO_SENDS.c.message_id == message_id))
        ).scalar():
            count(conn, taken, message_id, recipient)
        return True


def release(conn: Connection, message_ids: Sequence[int]) -> int:
    """The sends of ``message_ids`` did not go out: their recipients no longer count (how many rows)."""
    if not message_ids:
        return 0
    return int(
        conn.execute(
            sa.delete(PORTFOLIO_SENDS).where(PORTFOLIO_SENDS.c.message_id.in_(list(message_ids)))
        ).rowcount
    )


def in_service_window(conn: Connection, number_id: int, recipient: str, now: datetime) -> bool:
    """Whether ``recipient`` wrote to the number recently enough that a send now is not
    business-initiated (see `SERVICE_MARGIN`)."""
    return bool(
        conn.execute(
            sa.select(
                sa.exists().where(
                    INBOUND.c.number_id == number_id,
                    INBOUND.c.kind == InboundKind.MESSAGE.value,
                    INBOUND.c.from_me.is_(False),
                    INBOUND.c.chat_phone == recipient,
                    INBOUND.c.received_at > now - (WINDOW - SERVICE_MARGIN),
                )
            )
        ).scalar()
    )


def _counting(portfolio: str, now: datetime) -> list[sa.ColumnElement[bool]]:
    """The portfolio's rows that count at ``now`` (sent in the moving 24 h; a later one too)."""
    return [PORTFOLIO_SENDS.c.portfolio == portfolio, PORTFOLIO_SENDS.c.counted_at > now - WINDOW]


def _lock(conn: Connection, portfolio: str, now: datetime) -> str | None:
    """Lock the portfolio row (created first if the sync has not written it: a number may name a
    portfolio the store has no row of, e.g. enrolled by code); its tier set by hand."""
    query = sa.select(PORTFOLIOS.c.tier).where(PORTFOLIOS.c.name == portfolio).with_for_update()
    row = conn.execute(query).one_or_none()
    if row is None:
        conn.execute(
            insert_ignore(conn, PORTFOLIOS).values(name=portfolio, tier=None, created_at=now, updated_at=now)
        )
        row = conn.execute(query).one()
    tier: str | None = row.tier
    return tier


def _tier(conn: Connection, portfolio: str, hand: str | None, now: datetime) -> Tier:
    """The portfolio's tier: by hand, else Meta's newest on a reading of its numbers, else assumed."""
    if tier_of(hand).source is TierSource.FLEET:
        return tier_of(hand)
    newest = conn.execute(
        sa.select(READINGS.c.tier, READINGS.c.taken_at)
        .join(NUMBERS, NUMBERS.c.id == READINGS.c.number_id)
        .where(
            NUMBERS.c.portfolio == portfolio,
            READINGS.c.tier.is_not(None),
            READINGS.c.taken_at > now - TIER_LOOKBACK,
        )
        .order_by(READINGS.c.taken_at.desc(), READINGS.c.id.desc())
        .limit(1)
    ).one_or_none()
    if newest is None:
        return tier_of(hand)
    return tier_of(hand, newest.tier, aggregate_time(newest.taken_at))


def _free_at(conn: Connection, portfolio: str, now: datetime, used: int, limit: int) -> datetime | None:
    """When the count drops below ``limit``: a recipient stops counting 24 h after their latest
    counted send, so with ``used`` counted the (used - limit + 1)-th to leave frees the first slot."""
    last = sa.func.max(PORTFOLIO_SENDS.c.counted_at)
    leaving = conn.execute(
        sa.select(last)
        .where(*_counting(portfolio, now))
        .group_by(PORTFOLIO_SENDS.c.recipient)
        .order_by(last)
        .offset(used - limit)
        .limit(1)
    ).scalar_one_or_none()
    moment = aggregate_time(leaving)
    return moment + WINDOW if moment is not None else None


# ------------------------------------------------------------------------------------ what is shown


def uses_on(conn: Connection, names: Sequence[str], now: datetime) -> dict[str, PortfolioUse]:
    """Where each of ``names`` stands at ``now`` (read, nothing locked)."""
    tiers = dict(
        conn.execute(
            sa.select(PORTFOLIOS.c.name, PORTFOLIOS.c.tier).where(PORTFOLIOS.c.name.in_(list(names)))
        ).all()
    )
    uses: dict[str, PortfolioUse] = {}
    for name in dict.fromkeys(names):
        tier = _tier(conn, name, tiers.get(name), now)
        used = int(
            conn.execute(
                sa.select(sa.func.count(sa.distinct(PORTFOLIO_SENDS.c.recipient))).where(
                    *_counting(name, now)
                )
            ).scalar_one()
        )
        free_at = None
        if tier.limit is not None and used >= tier.limit:
            free_at = _free_at(conn, name, now, used, tier.limit)
        uses[name] = PortfolioUse(name, tier, used, free_at)
    return uses


def uses(engine: Engine, now: datetime, names: Sequence[str] | None = None) -> dict[str, PortfolioUse]:
    """`uses_on` of ``names`` (None: every portfolio the store knows), in a read-only transaction."""
    now = aware(now)
    with read(engine) as conn:
        if names is None:
            names = list(conn.execute(sa.select(PORTFOLIOS.c.name).order_by(PORTFOLIOS.c.name)).scalars())
        return uses_on(conn, names, now)


def portfolios_of(conn: Connection, number_ids: Sequence[int]) -> dict[int, str]:
    """The portfolio of each of ``number_ids`` that has one."""
    if not number_ids:
        return {}
    rows = conn.execute(
        sa.select(NUMBERS.c.id, NUMBERS.c.portfolio).where(
            NUMBERS.c.id.in_(list(number_ids)), NUMBERS.c.portfolio.is_not(None)
        )
    )
    return {int(row.id): str(row.portfolio) for row in rows}


# ------------------------------------------------------------------------------------- the fleet sync


def stored_tiers(engine: Engine) -> dict[str, str | None]:
    """Every portfolio the store knows, with its tier set by hand (None: Meta's, or assumed)."""
    with read(engine) as conn:
        return {
            str(name): tier for name, tier in conn.execute(sa.select(PORTFOLIOS.c.name, PORTFOLIOS.c.tier))
        }


def set_portfolio(engine: Engine, name: str, tier: str | None, now: datetime | None = None) -> None:
    """Create the portfolio or set its tier by hand (None: leave it to Meta's readings)."""
    with write(engine) as conn:
        set_portfolio_on(conn, name, tier, now)


def set_portfolio_on(conn: Connection, name: str, tier: str | None, now: datetime | None = None) -> None:
    """`set_portfolio` in the caller's transaction (`warmup apply` writes the whole fleet in one)."""
    at = stamp(now)
    if tier is not None:
        known = normalize_tier(tier)
        if known is None:
            raise InvalidWrite(f"portfolio {name}: unknown tier {tier!r} (one of {', '.join(TIERS)})")
        tier = known
    if len(name) > NAME_MAX:
        raise InvalidWrite(f"portfolio name over {NAME_MAX} characters")
    conn.execute(insert_ignore(conn, PORTFOLIOS).values(name=name, tier=tier, created_at=at, updated_at=at))
    conn.execute(
        sa.update(PORTFOLIOS)
        .where(PORTFOLIOS.c.name == name, _differs(PORTFOLIOS.c.tier, tier))
        .values(tier=tier, updated_at=at)
    )


def drop_portfolio(engine: Engine, name: str) -> int:
    """Forget a portfolio no longer in the fleet file: the numbers still naming it (retired ones; the
    fleet file's own numbers were moved first) name none any more; how many. Its counted sends stay
    until they age out: a portfolio declared again under the same name still counts them."""
    with write(engine) as conn:
        return drop_portfolio_on(conn, name)


def drop_portfolio_on(conn: Connection, name: str) -> int:
    """`drop_portfolio` in the caller's transaction (`warmup apply` writes the whole fleet in one)."""
    ids = list(
        conn.execute(
            sa.select(NUMBERS.c.id)
            .where(NUMBERS.c.portfolio == name)
            .order_by(NUMBERS.c.id)
            .with_for_update()
        ).scalars()
    )
    if ids:
        conn.execute(sa.update(NUMBERS).where(NUMBERS.c.id.in_(ids)).values(portfolio=None))
    conn.execute(sa.delete(PORTFOLIOS).where(PORTFOLIOS.c.name == name))
    return len(ids)


def _differs(column: Any, value: str | None) -> sa.ColumnElement[bool]:
    return column.is_not(None) if value is None else sa.or_(column.is_(None), column != value)
