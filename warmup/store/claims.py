"""Claiming messages for sending: `claim` takes one, `claim_many` a batch; of any number of concurrent
claimers of a message exactly one wins, and a day never uses more slots than its quota.

A claim locks the number (shared) and its pace row (exclusive), re-checks that the number is active,
that the message is due (its scheduled time and its retry time `not_before` both passed), that its
local day is not over and its send window (`window_end`) still open, and that the number's PACE allows
a send now (`warmup.core.pacing.next_claim_at`: no send in flight, the last one ended at least the
day's minimum gap ago, fewer than `per_hour` claims in the last 60 minutes); it then moves the message
planned|queued -> sending (conditional UPDATE), takes a quota slot (`used = used + 1 WHERE used <
quota`) and marks the pace busy with this message. A paused number, a full quota or a past day turn
the message `skipped` with the reason and its cause (`SkipCause`); a message that is not due, or too
early for the pace, is left waiting (NOT_DUE with its turn). A message whose window closed before its
turn moves to the day's next window (the day plan keeps the day's windows); only after the day's last
window is it skipped. The window has NO grace: a claim at or after `window_end` is not made, so a send
can land after its window only by the provider round trip of a claim made inside it.

A Cloud API number of a Meta business portfolio also needs a slot of its portfolio's messaging limit
(unique business-initiated recipients in a moving 24 h, shared by the portfolio's numbers): after the
pace, `warmup.store.portfolios.turn` locks the portfolio row and says whether the send counts and may
go; the claim writes the count with the message, in its transaction. A message to a new recipient of a
full portfolio waits until the next slot frees, moved to the day's window holding that moment, or is
skipped with `SkipCause.PORTFOLIO` when the day's last window closes first.

The rules are written once per form:

- `_pg_claim`, PostgreSQL's one statement, claims the messages that are simply claimable (the hot
  path: one round trip for one message or a batch): `claim` runs its one-message form, `claim_many`
  its batch form. It leaves the messages of portfolio numbers to `_checked`.
- `_checked` decides every other case, one message at a time, with portable statements and the rules
  in Python (`warmup.core.pacing.due_at`): it is SQLite's only path, and PostgreSQL's when the
  statement did not claim a message that still looks claimable (refused, not due, a lost race), so
  the reason given is always the checked path's.

The statement's local day comes from PostgreSQL's time zone data; Python's (`local_date_of`, the
authority everywhere else) checks it, and should they ever disagree the statement's transaction is
rolled back and the checked path answers.

Batches: messages of DIFFERENT numbers that fall due together are independent, so the dispatcher
hands them over in small batches and a worker claims them together. Two guards in `_pg_claim` keep a
batch exactly as safe as one claim: messages sharing a number are left out (one UPDATE of a day plan or
pace row takes ONE slot and one turn, however many messages join it), and numbers another transaction
is updating (a pause, a claim or a record) are skipped rather than waited for, so a batch holding
several numbers' share locks can never deadlock with a multi-number update. Two batches sharing
numbers can still lock day plans in opposite orders; PostgreSQL then aborts one after its deadlock
timeout and that batch claims one by one: slower, never wrong. Everything a batch leaves out goes
through `claim` one by one.

The price of a batch is the hard-crash case: a worker killed in the middle of a batch leaves all of
its claims `sending`, and the stale-claim recovery turns them `unknown` (counted, never re-sent): the
ones not sent yet AND the ones accepted but not recorded yet. A graceful stop lets the batch finish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError

from warmup.core.domain import SkipCause
from warmup.core.localtime import local_date_of, local_day_bounds
from warmup.core.pacing import Pace, due_at, next_claim_at, next_window
from warmup.store import portfolios
from warmup.store.models import MessageState, NumberStatus, UTCDateTime
from warmup.store.tables import (
    CLAIMABLE,
    DAY_PLANS,
    MESSAGES,
    NUMBERS,
    PACES,
    aware,
    ensure_paces,
    in_line,
    is_postgres,
    read,
    skip_where,
    write,
)


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"  # the caller owns the send: call the provider, then record the outcome
    NOT_CLAIMABLE = "not_claimable"  # missing, already claimed by someone else, or finished: do nothing
    NOT_DUE = "not_due"  # still waiting (scheduled_at or not_before in the future): unchanged
    PAUSED = "paused"  # the number is paused or retired: the message is now skipped
    QUOTA_REACHED = "quota_reached"  # the day's quota is used up: the message is now skipped
    DAY_OVER = "day_over"  # its local day has passed in the number's time zone: now skipped
    WINDOW_CLOSED = "window_closed"  # the send window it was planned in has ended: now skipped
    PORTFOLIO_LIMIT = (
        "portfolio_limit"  # its portfolio has no slot left before the day's windows end: skipped
    )


@dataclass(frozen=True)
class ClaimedMessage:
    """Everything a send worker needs, read in the claiming transaction (no second query)."""

    id: int
    number_id: int
    day_plan_id: int
    local_date: date
    recipient: str
    kind: str
    text: str
    typing_seconds: float
    scheduled_at: datetime
    attempts: int  # including this one
    in_reply_to: int | None
    phone: str
    provider: str
    token_ref: str  # environment variable NAME; resolve it with warmup.secrets at send time
    base_url: str | None
    phone_number_id: str | None
    timezone: str
    recipient_is_number: bool | None = None  # the recipient is a number of the fleet (None: not looked up)


@dataclass(frozen=True)
class ClaimResult:
    status: ClaimStatus
    message: ClaimedMessage | None = None  # set only when CLAIMED
    reason: str | None = None
    due_at: datetime | None = None  # NOT_DUE: when to come back (None: it is handed over when due)

    @property
    def claimed(self) -> bool:
        return self.status is ClaimStatus.CLAIMED


QUOTA_REACHED = "the day's quota is reached"


def claim(engine: Engine, message_id: int, worker_id: str, now: datetime) -> ClaimResult:
    """Take one message for sending (see the module docstring for the checks and the outcomes).

    PostgreSQL tries `_PG_CLAIM_ONE` first. On SQLite a cheap read-only look comes first, so a redelivered
    or duplicate broker message is turned away without taking the write lock.
    """
    now = aware(now)
    worker_id = worker_id[:128]
    if is_postgres(engine):
        fast = _claim_one_pg(engine, message_id, worker_id, now)
        if fast is not None:
            return fast
    else:
        with read(engine) as conn:
            current = conn.execute(
                sa.select(MESSAGES.c.state).where(MESSAGES.c.id == message_id)
            ).scalar_one_or_none()
        if current is None:
            return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="no such message")
        if current not in CLAIMABLE:
            return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason=f"message is {current}")
    with write(engine) as conn:
        return _checked(conn, message_id, worker_id, now)


def claim_many(
    engine: Engine, message_ids: Sequence[int], worker_id: str, now: datetime
) -> dict[int, ClaimResult]:
    """Claim each of ``message_ids`` as `claim` would; the result of every id.

    PostgreSQL: one statement (one commit) claims every message that is simply claimable; the others
    (refused, not due, claimed elsewhere, missing, left out by a guard) each get `claim`, so their
    outcome and reason are the single path's. Any database error in the batch statement (a deadlock
    detected with another transaction, an unknown time zone) rolls it back and claims one by one.
    SQLite claims one by one.
    """
    ids = list(dict.fromkeys(message_ids))
    now = aware(now)
    worker_id = worker_id[:128]
    results: dict[int, ClaimResult] = {}
    if is_postgres(engine) and len(ids) > 1:
        try:
            results = _claim_many_pg(engine, ids, worker_id, now)
        except (_Disagree, DBAPIError):
            results = {}
    for message_id in ids:
        if message_id not in results:
            results[message_id] = claim(engine, message_id, worker_id, now)
    return results


# ------------------------------------------------------------------------------- PostgreSQL statement

_MESSAGE_COLUMNS: dict[str, Any] = {
    "id": sa.Integer(),
    "number_id": sa.Integer(),
    "day_plan_id": sa.Integer(),
    "local_date": sa.Date(),
    "recipient": sa.String(),
    "kind": sa.String(),
    "text": sa.Text(),
    "typing_seconds": sa.Float(),
    "scheduled_at": UTCDateTime(),
    "attempts": sa.Integer(),
    "in_reply_to": sa.Integer(),
}

_NUMBER_COLUMNS: dict[str, Any] = {
    "timezone": sa.String(),
    "phone": sa.String(),
    "provider": sa.String(),
    "token_ref": sa.String(),
    "base_url": sa.String(),
    "phone_number_id": sa.String(),
    "recipient_is_number": sa.Boolean(),
    "slot": sa.Boolean(),
}


def _pg_claim(*, many: bool) -> sa.TextualSelect:
    """The claim on PostgreSQL in ONE statement: lock the numbers FOR SHARE and their pace rows FOR
    UPDATE, then (in the lock order of `warmup.store`) move each message to `sending` only if its number
    is active and in no Meta portfolio (`_checked` counts those), it is due, in its day and window, and
    the pace allows a send (nothing in flight, the gap since the last send's end, the hourly cap), then
    take one slot per day plan (`slot` is false when the quota was full) and, with the slot, the
    number's turn (`k`: busy with this message, its claim time added to the hour's). The rules are
    written here once; the two forms differ only in which messages they take; what it does not claim,
    `_checked` decides and explains.

    One message (``:message_id``): waits for a number row another transaction holds; one row, also
    when nothing was claimed (the message columns are NULL then): `current_state` is the message's
    state before the statement (no row: no such message).

    A batch (``:ids``): messages sharing a number are left out (one UPDATE of a day plan or pace row
    takes ONE slot and one turn, however many messages join it) and numbers or paces another
    transaction holds are skipped rather than waited for (a batch holding several numbers' share locks
    never deadlocks with a multi-number update); one row per message claimed.
    """
    if many:
        ids = "WITH ids AS (SELECT DISTINCT unnest(CAST(:ids AS bigint[])) AS id),"
        taken = "o.id IN (SELECT id FROM ids)"
        shared = """shared AS (
            SELECT o.number_id
            FROM outbound_messages o
            WHERE o.id IN (SELECT id FROM ids)
            GROUP BY o.number_id
            HAVING count(*) > 1
        ),"""
        unshared = "AND NOT EXISTS (SELECT 1 FROM shared WHERE shared.number_id = o.number_id)"
        lock = "ORDER BY numbers.id FOR SHARE SKIP LOCKED"
        pace_lock = "FOR UPDATE SKIP LOCKED"
        rows = "FROM m JOIN n ON n.id = m.number_id"
        current = "m.id AS message_id, NULL AS current_state"
    else:
        ids, shared, unshared = "WITH", "", ""
        taken = "o.id = :message_id"
        lock = "FOR SHARE"
        pace_lock = "FOR UPDATE"
        rows = """FROM (SELECT id, state FROM outbound_messages WHERE id = :message_id) AS cur
        LEFT JOIN m ON true
        LEFT JOIN n ON n.id = m.number_id"""
        current = "cur.id AS message_id, cur.state AS current_state"
    sql = f"""
        {ids}
        {shared}
        n AS (
            SELECT numbers.id, numbers.state, numbers.timezone, numbers.phone, numbers.provider,
                   numbers.token_ref, numbers.base_url, numbers.phone_number_id, numbers.portfolio
            FROM numbers
            WHERE numbers.id IN (SELECT o.number_id FROM outbound_messages o WHERE {taken})
            {lock}
        ),
        p AS (
            SELECT paces.number_id, paces.busy_id, paces.free_at, paces.recent
            FROM paces
            WHERE paces.number_id IN (SELECT id FROM n)
            ORDER BY paces.number_id
            {pace_lock}
        ),
        m AS (
            UPDATE outbound_messages AS o
            SET state = 'sending', claimed_by = :worker_id, claimed_at = :now,
                attempts = o.attempts + 1, reason = NULL
            FROM n, p, day_plans AS dp
            WHERE {taken}
              AND o.number_id = n.id
              AND p.number_id = n.id
              AND dp.id = o.day_plan_id
              {unshared}
              AND o.state IN ('planned', 'queued')
              AND n.state = 'active'
              AND n.portfolio IS NULL
              AND GREATEST(o.scheduled_at, COALESCE(o.not_before, o.scheduled_at)) <= :now
              AND (o.window_end IS NULL OR o.window_end > :now)
              AND o.local_date >= (CAST(:now AS timestamptz) AT TIME ZONE n.timezone)::date
              AND p.busy_id IS NULL
              AND (p.free_at IS NULL OR p.free_at + dp.gap_seconds * interval '1 second' <= :now)
              AND (dp.per_hour IS NULL OR (
                  SELECT count(*) FROM json_array_elements_text(p.recent) AS r(t)
                  WHERE CAST(r.t AS float8) > :epoch - 3600) < dp.per_hour)
            RETURNING o.id, o.number_id, o.day_plan_id, o.local_date, o.recipient, o.kind, o.text,
                      o.typing_seconds, o.scheduled_at, o.attempts, o.in_reply_to
        ),
        d AS (
            UPDATE day_plans
            SET used = day_plans.used + 1
            FROM m
            WHERE day_plans.id = m.day_plan_id AND day_plans.used < day_plans.quota
            RETURNING day_plans.id
        ),
        k AS (
            UPDATE paces
            SET busy_id = m.id, busy_since = :now
            FROM m JOIN d ON d.id = m.day_plan_id
            WHERE paces.number_id = m.number_id
            RETURNING paces.number_id
        )
        SELECT {current}, m.*,
               n.timezone, n.phone, n.provider, n.token_ref, n.base_url, n.phone_number_id,
               EXISTS (SELECT 1 FROM numbers p WHERE p.phone = m.recipient) AS recipient_is_number,
               EXISTS (SELECT 1 FROM d WHERE d.id = m.day_plan_id) AS slot
        {rows}
    """
    return (
        sa.text(sql)
        .bindparams(sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("epoch", type_=sa.Float()))
        .columns(message_id=sa.Integer(), current_state=sa.String(), **_MESSAGE_COLUMNS, **_NUMBER_COLUMNS)
    )


_PG_CLAIM_ONE = _pg_claim(many=False)
_PG_CLAIM_MANY = _pg_claim(many=True)


class _Disagree(Exception):
    """PostgreSQL's and Python's time zone data disagree on a local date: roll the statement back."""


def _run_pg_claim(
    conn: Connection, statement: sa.TextualSelect, params: dict[str, Any], now: datetime
) -> Sequence[sa.Row[Any]]:
    """The claim statement's rows; `_Disagree` when a claimed message's day is over by Python's clock."""
    rows = conn.execute(statement, {**params, "now": now, "epoch": now.timestamp()}).all()
    if any(row.id is not None and row.local_date < local_date_of(now, row.timezone) for row in rows):
        raise _Disagree
    return rows


def _taken(conn: Connection, row: sa.Row[Any], now: datetime) -> ClaimResult:
    """The answer for a message the claim statement moved to `sending`: claimed, or skipped at a full
    quota."""
    if row.slot:
        return ClaimResult(ClaimStatus.CLAIMED, _claimed_message(row, row))
    return _unclaim(conn, row.id, ClaimStatus.QUOTA_REACHED, QUOTA_REACHED, now)


def _claim_one_pg(engine: Engine, message_id: int, worker_id: str, now: datetime) -> ClaimResult | None:
    """The claim of a message that is simply claimable, NOT_CLAIMABLE for a missing or finished one (a
    duplicate delivery), or None when neither holds and nothing was changed: `_checked` then decides."""
    try:
        with write(engine) as conn:
            params = {"message_id": message_id, "worker_id": worker_id}
            found = _run_pg_claim(conn, _PG_CLAIM_ONE, params, now)
            if not found:
                return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="no such message")
            [row] = found
            if row.id is not None:
                return _taken(conn, row, now)
    except (_Disagree, DataError):  # DataError: a time zone PostgreSQL does not know
        return None
    if row.current_state not in CLAIMABLE:
        return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason=f"message is {row.current_state}")
    return None


def _claim_many_pg(engine: Engine, ids: list[int], worker_id: str, now: datetime) -> dict[int, ClaimResult]:
    """The answers for the messages of ``ids`` that `_PG_CLAIM_MANY` claimed (or skipped at the quota)."""
    with write(engine) as conn:
        return {
            row.id: _taken(conn, row, now)
            for row in _run_pg_claim(conn, _PG_CLAIM_MANY, {"ids": ids, "worker_id": worker_id}, now)
        }


# -------------------------------------------------------------------------------------- checked path

_RECIPIENT = NUMBERS.alias("p")


def _claim_read(conn: Connection, message_id: int) -> sa.Row[Any] | None:
    """The message and its number's send details, the number row locked FOR SHARE (PostgreSQL: so a
    committed pause is seen, and a pause in progress waits for this claim). PostgreSQL also looks up
    whether the recipient is a number of the fleet (SQLite leaves that to the worker)."""
    columns: list[Any] = [
        MESSAGES.c.id,
        MESSAGES.c.state,
        MESSAGES.c.local_date,
        MESSAGES.c.scheduled_at,
        MESSAGES.c.not_before,
        MESSAGES.c.window_end,
        MESSAGES.c.number_id,
        MESSAGES.c.day_plan_id,
        DAY_PLANS.c.quota,
        DAY_PLANS.c.used,
        DAY_PLANS.c.gap_seconds,
        DAY_PLANS.c.per_hour,
        DAY_PLANS.c.windows,
        NUMBERS.c.state.label("number_state"),
        NUMBERS.c.paused_reason,
        NUMBERS.c.timezone,
        NUMBERS.c.phone,
        NUMBERS.c.provider,
        NUMBERS.c.token_ref,
        NUMBERS.c.base_url,
        NUMBERS.c.phone_number_id,
        NUMBERS.c.portfolio,
        MESSAGES.c.recipient,
    ]
    if is_postgres(conn):
        columns.append(
            sa.exists().where(_RECIPIENT.c.phone == MESSAGES.c.recipient).label("recipient_is_number")
        )
    return conn.execute(
        sa.select(*columns)
        .select_from(
            MESSAGES.join(NUMBERS, NUMBERS.c.id == MESSAGES.c.number_id).join(
                DAY_PLANS, DAY_PLANS.c.id == MESSAGES.c.day_plan_id
            )
        )
        .where(MESSAGES.c.id == message_id)
        .with_for_update(read=True, of=NUMBERS)
    ).one_or_none()


def _checked(conn: Connection, message_id: int, worker_id: str, now: datetime) -> ClaimResult:
    """`claim` with every check in Python and every refusal named, in the caller's write transaction.

    The write is conditional on the state, so of concurrent claimers exactly one gets the row; the
    pace row is locked (FOR UPDATE) before the pacing rule is read, so of two claimers of one number
    the second sees the first's claim.
    """
    row = _claim_read(conn, message_id)
    if row is None:
        return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="no such message")
    if row.state not in CLAIMABLE:
        return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason=f"message is {row.state}")
    due = due_at(row.scheduled_at, row.not_before)
    if due > now:
        return ClaimResult(ClaimStatus.NOT_DUE, reason=f"due at {due.isoformat()}", due_at=due)
    if row.number_state != NumberStatus.ACTIVE:
        why = f"number {row.number_state}" + (f": {row.paused_reason}" if row.paused_reason else "")
        return _refuse(conn, message_id, ClaimStatus.PAUSED, why, now, SkipCause.PAUSED)
    if row.local_date < local_date_of(now, row.timezone):
        why = f"its day {row.local_date} ended before its turn"
        return _refuse(conn, message_id, ClaimStatus.DAY_OVER, why, now, SkipCause.DAY_ENDED)
    pace = _lock_pace(conn, row.number_id)  # before any write of the message: the fast path's lock order
    if row.window_end is not None and now >= row.window_end:
        moved = _next_window(conn, row, now)
        if moved is not None:
            return moved
    if row.used >= row.quota:  # no slot to wait for (a slot given back later is for the next message)
        return _refuse(conn, message_id, ClaimStatus.QUOTA_REACHED, QUOTA_REACHED, now, SkipCause.QUOTA)
    gap = timedelta(seconds=row.gap_seconds or 0.0)
    earliest = next_claim_at(pace, now, gap, row.per_hour)
    if earliest > now:
        return _wait_for_pace(conn, row, now, pace, earliest)
    limit = None
    if row.portfolio is not None:  # after the pace: the lock order is number, pace, portfolio, message
        limit = portfolios.turn(conn, row.portfolio, row.number_id, row.recipient, now)
        if limit.full:
            return _wait_for_portfolio(conn, row, now, limit)
    claimed = conn.execute(
        sa.update(MESSAGES)
        .where(MESSAGES.c.id == message_id, MESSAGES.c.state.in_(CLAIMABLE))
        .values(
            state=MessageState.SENDING.value,
            claimed_by=worker_id,
            claimed_at=now,
            attempts=MESSAGES.c.attempts + 1,
            reason=None,
        )
        .returning(*MESSAGES.c)
    ).one_or_none()
    if claimed is None:
        return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="claimed by another worker")
    slot = conn.execute(
        sa.update(DAY_PLANS)
        .where(DAY_PLANS.c.id == claimed.day_plan_id, DAY_PLANS.c.used < DAY_PLANS.c.quota)
        .values(used=DAY_PLANS.c.used + 1)
    )
    if slot.rowcount != 1:
        return _unclaim(conn, message_id, ClaimStatus.QUOTA_REACHED, QUOTA_REACHED, now)
    if limit is not None and limit.counts:
        portfolios.count(conn, limit, message_id, row.recipient)
    conn.execute(
        sa.update(PACES).where(PACES.c.number_id == row.number_id).values(busy_id=message_id, busy_since=now)
    )
    return ClaimResult(ClaimStatus.CLAIMED, _claimed_message(claimed, row))


def _lock_pace(conn: Connection, number_id: int) -> Pace:
    """The number's pace row, locked for this transaction (created first if the number has none; a
    select comes first, so the usual case takes one statement)."""
    query = (
        sa.select(PACES.c.busy_id, PACES.c.busy_since, PACES.c.free_at, PACES.c.recent)
        .where(PACES.c.number_id == number_id)
        .with_for_update()
    )
    pace = conn.execute(query).one_or_none()
    if pace is None:
        ensure_paces(conn, [number_id])
        pace = conn.execute(query).one()
    recent = tuple(datetime.fromtimestamp(float(t), UTC) for t in (pace.recent or ()))
    busy_since = None
    if pace.busy_id is not None:
        busy_since = pace.busy_since or datetime.fromtimestamp(0, UTC)
    return Pace(busy_since=busy_since, free_at=pace.free_at, recent=recent)


def _next_window(conn: Connection, row: sa.Row[Any], now: datetime) -> ClaimResult | None:
    """A message whose window closed before its turn moves to the day's next window (its day's
    windows, as planned, are on the day plan): None when that window is open now (claim on), NOT_DUE
    when it opens later; skipped with `SkipCause.WINDOWS_ENDED` when the day's last window has closed."""
    spans = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in (row.windows or [])]
    window = next_window(spans, now)
    if window is None:
        closed = max((end for _, end in spans), default=row.window_end)
        why = f"the day's last send window closed at {closed.isoformat()} before its turn"
        refused = _refuse(conn, row.id, ClaimStatus.WINDOW_CLOSED, why, now, SkipCause.WINDOWS_ENDED)
        if spans:  # what else of that day still waits has no window left either: say so now, not at midnight
            rest = sa.and_(
                MESSAGES.c.day_plan_id == row.day_plan_id,
                MESSAGES.c.state.in_(CLAIMABLE),
                MESSAGES.c.window_end <= now,
            )
            skip_where(conn, rest, why, now, SkipCause.WINDOWS_ENDED)
        return refused
    start, end = window
    values: dict[str, Any] = {"window_end": end}
    if start > now:
        values.update(not_before=start, reason="its window closed before its turn: waits for the next one")
    conn.execute(
        sa.update(MESSAGES).where(MESSAGES.c.id == row.id, MESSAGES.c.state.in_(CLAIMABLE)).values(**values)
    )
    if start > now:
        return ClaimResult(
            ClaimStatus.NOT_DUE, reason=f"waits for the next send window at {start.isoformat()}", due_at=start
        )
    return None


def _wait_for_pace(
    conn: Connection, row: sa.Row[Any], now: datetime, pace: Pace, earliest: datetime
) -> ClaimResult:
    """Too early for the number's pace: the message waits, marked `queued` (not sent, not skipped;
    `queued_at` renewed, so the lost-message recovery does not take it for a lost one).

    While the number has a send in flight, nobody can know when it may go: the worker that ends that
    send hands the number's next overdue message over for the exact moment (`queue.next_turn`), so
    this answer carries no time to come back (``due_at`` None) and the caller does not re-enqueue it;
    a number's backlog then goes one at a time, one broker message at a time. Otherwise (the gap since
    the last send, or the hour is full) the moment is known: ``due_at``."""
    conn.execute(
        sa.update(MESSAGES)
        .where(MESSAGES.c.id == row.id, MESSAGES.c.state.in_(CLAIMABLE))
        .values(state=MessageState.QUEUED.value, queued_at=now)
    )
    if pace.busy_since is not None:
        why = "paced: its number has a send in flight; it is handed over when that send ends"
        return ClaimResult(ClaimStatus.NOT_DUE, reason=why)
    if not _heads_the_queue(conn, row):  # the head goes first; its end hands over the next one
        why = "paced: it waits behind the number's earlier messages; it is handed over in its turn"
        return ClaimResult(ClaimStatus.NOT_DUE, reason=why)
    why = f"paced: the number's next send may start at {earliest.isoformat()}"
    return ClaimResult(ClaimStatus.NOT_DUE, reason=why, due_at=earliest)


def _wait_for_portfolio(
    conn: Connection, row: sa.Row[Any], now: datetime, limit: portfolios.Turn
) -> ClaimResult:
    """The number's portfolio has no slot for a new recipient until ``limit.free_at``: the message waits
    for it (NOT_DUE, ``not_before`` then, moved to the day's window holding that moment or the next
    one), or is skipped with `SkipCause.PORTFOLIO` when the day's last window closes before it."""
    assert limit.free_at is not None and limit.use is not None
    use = limit.use
    full = (
        f"portfolio {use.name} is at its limit: {use.used:,} of {use.tier.short} unique business-initiated "
        f"recipients in the moving 24 h"
    )
    spans = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in (row.windows or [])]
    if not spans:  # a day planned without its windows: its message's window, else the local day
        spans = [(now, row.window_end or local_day_bounds(row.local_date, row.timezone)[1])]
    window = next_window(spans, limit.free_at)
    if window is None:
        why = f"{full}; the next slot frees at {limit.free_at.isoformat()}, after the day's last send window"
        return _refuse(conn, row.id, ClaimStatus.PORTFOLIO_LIMIT, why, now, SkipCause.PORTFOLIO)
    start, end = window
    at = max(limit.free_at, start)
    why = f"{full}: waits until {at.isoformat()}, when a slot frees"
    conn.execute(
        sa.update(MESSAGES)
        .where(MESSAGES.c.id == row.id, MESSAGES.c.state.in_(CLAIMABLE))
        .values(not_before=at, window_end=end, reason=why[:500])
    )
    return ClaimResult(ClaimStatus.NOT_DUE, reason=why, due_at=at)


def _heads_the_queue(conn: Connection, row: sa.Row[Any]) -> bool:
    """Whether the message is the number's next to go, in the order `queue.next_turn` hands them over
    (earliest due, then id): of a backlog asked again inside a gap, only the head comes back at the
    gap's end, not all of them at once."""
    head = conn.execute(in_line(row.number_id).limit(1)).scalar_one_or_none()
    return head is None or int(head) == int(row.id)


def _claimed_message(claimed: sa.Row[Any], number: sa.Row[Any]) -> ClaimedMessage:
    """What the worker needs, from the claimed message's row and its number's send details."""
    looked_up = number._mapping.get("recipient_is_number")
    return ClaimedMessage(
        id=claimed.id,
        number_id=claimed.number_id,
        day_plan_id=claimed.day_plan_id,
        local_date=claimed.local_date,
        recipient=claimed.recipient,
        kind=claimed.kind,
        text=claimed.text,
        typing_seconds=claimed.typing_seconds,
        scheduled_at=claimed.scheduled_at,
        attempts=claimed.attempts,
        in_reply_to=claimed.in_reply_to,
        phone=number.phone,
        provider=number.provider,
        token_ref=number.token_ref,
        base_url=number.base_url,
        phone_number_id=number.phone_number_id,
        timezone=number.timezone,
        recipient_is_number=None if looked_up is None else bool(looked_up),
    )


def _refuse(
    conn: Connection, message_id: int, status: ClaimStatus, reason: str, now: datetime, cause: SkipCause
) -> ClaimResult:
    """Skip a still-claimable message (conditional: a concurrent winner keeps it)."""
    moved = conn.execute(
        sa.update(MESSAGES)
        .where(MESSAGES.c.id == message_id, MESSAGES.c.state.in_(CLAIMABLE))
        .values(state=MessageState.SKIPPED.value, reason=reason[:500], finished_at=now, cause=cause.value)
    ).rowcount
    if moved != 1:
        return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="claimed by another worker")
    return ClaimResult(status, reason=reason)


def _unclaim(
    conn: Connection, message_id: int, status: ClaimStatus, reason: str, now: datetime
) -> ClaimResult:
    """Turn a message this transaction just moved to `sending` into `skipped` (no slot was taken)."""
    conn.execute(
        sa.update(MESSAGES)
        .where(MESSAGES.c.id == message_id)
        .values(
            state=MessageState.SKIPPED.value,
            reason=reason[:500],
            cause=SkipCause.QUOTA.value,
            finished_at=now,
            claimed_by=None,
            claimed_at=None,
            attempts=MESSAGES.c.attempts - 1,
        )
    )
    return ClaimResult(status, reason=reason)
