"""The send path in batches: claim many due messages in one statement, record their sends in another.

Why: one message at a time cost two commits, two driver round trips and one broker message each way
per send, and on a small machine that bookkeeping, not the provider call, set the pace. Messages of
DIFFERENT numbers that fall due together are independent, so the dispatcher hands them over in small
batches (`warmup.services.scheduler.SEND_BATCH`) and the worker claims them together (`claim_many`), calls the
provider for each in turn, and records the accepted ones together (`record_sent_many`).

Every guarantee of the single path holds per message: the same checks in the same statement shape
(number active, due, day not over, window open, one quota slot under ``used < quota``), the same lock
order (number -> message -> day plan), and anything the fast statement does not claim cleanly goes
through `ops.claim` one by one, which finds out why. On SQLite (the single-machine mode) both are
loops over the single-message operations.

The price of a batch is the hard-crash case: a worker killed (SIGKILL, power loss) in the middle of a
batch leaves all of the batch's claims `sending`, and the stale-claim recovery turns them `unknown`
(counted against the quota, never re-sent): the ones it had not sent yet AND the ones the provider had
accepted but that were not recorded yet (their provider ids are lost, so later delivery statuses cannot
be matched to them). One message's claim meets the same fate today; a batch multiplies it by its size
(`warmup.services.scheduler.SEND_BATCH`). A graceful stop (SIGTERM) lets the batch finish. Nothing is sent
twice
and no quota is exceeded either way. `warmup.services.sending.send_batch` stops sending and gives the rest
back once a batch runs long, so no claim is used long after its checks.

Two batches sharing numbers (a backlog: the dispatcher puts one message per number in a batch, but
successive batches may hold the same numbers) can lock day plans in opposite orders; PostgreSQL then
aborts one after its deadlock timeout and that batch claims one by one: slower, never wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from warmup.store import ops
from warmup.store.models import MessageState, UTCDateTime

_CLAIM_MANY = (
    sa.text(
        "WITH ids AS (SELECT DISTINCT unnest(CAST(:ids AS bigint[])) AS id),"
        " shared AS (SELECT o.day_plan_id FROM outbound_messages o WHERE o.id IN (SELECT id FROM ids)"
        " GROUP BY o.day_plan_id HAVING count(*) > 1),"
        " n AS (SELECT numbers.id, numbers.state, numbers.timezone, numbers.phone, numbers.provider,"
        " numbers.token_ref, numbers.base_url, numbers.phone_number_id FROM numbers"
        " WHERE numbers.id IN (SELECT o.number_id FROM outbound_messages o"
        " WHERE o.id IN (SELECT id FROM ids))"
        " ORDER BY numbers.id FOR SHARE SKIP LOCKED),"
        " m AS (UPDATE outbound_messages SET state = 'sending', claimed_by = :worker_id,"
        " claimed_at = :now, attempts = outbound_messages.attempts + 1, reason = NULL FROM n"
        " WHERE outbound_messages.id IN (SELECT id FROM ids) AND outbound_messages.number_id = n.id"
        " AND NOT EXISTS (SELECT 1 FROM shared WHERE shared.day_plan_id = outbound_messages.day_plan_id)"
        " AND outbound_messages.state IN ('planned', 'queued') AND n.state = 'active'"
        " AND GREATEST(outbound_messages.scheduled_at,"
        " COALESCE(outbound_messages.not_before, outbound_messages.scheduled_at)) <= :now"
        " AND (outbound_messages.window_end IS NULL OR outbound_messages.window_end > :now)"
        " AND outbound_messages.local_date >= (CAST(:now AS timestamptz) AT TIME ZONE n.timezone)::date"
        " RETURNING outbound_messages.id, outbound_messages.number_id, outbound_messages.day_plan_id,"
        " outbound_messages.local_date, outbound_messages.recipient, outbound_messages.kind,"
        " outbound_messages.text, outbound_messages.typing_seconds, outbound_messages.scheduled_at,"
        " outbound_messages.attempts, outbound_messages.in_reply_to),"
        " d AS (UPDATE day_plans SET used = day_plans.used + 1 FROM m"
        " WHERE day_plans.id = m.day_plan_id AND day_plans.used < day_plans.quota RETURNING day_plans.id)"
        " SELECT m.*, n.timezone, n.phone, n.provider, n.token_ref, n.base_url, n.phone_number_id,"
        " EXISTS (SELECT 1 FROM numbers p WHERE p.phone = m.recipient) AS recipient_is_number,"
        " EXISTS (SELECT 1 FROM d WHERE d.id = m.day_plan_id) AS slot"
        " FROM m JOIN n ON n.id = m.number_id"
    )
    .bindparams(sa.bindparam("now", type_=UTCDateTime()))
    .columns(**ops._message_columns(), **ops.NUMBER_RESULT_COLUMNS)
)
"""`_PG_CLAIM_FAST` for many messages at once. Two guards keep it exactly as safe as the single one:
messages sharing a day plan are left out (one UPDATE of a day plan row takes ONE slot, however many
messages join it), and numbers another transaction is updating (a pause, say) are skipped rather than
waited for, so a batch holding several numbers' share locks can never deadlock with a multi-number
update. Everything left out goes to `ops.claim` one by one."""


class _Disagree(Exception):
    """PostgreSQL's and Python's time zone data disagree on a local date: roll the batch back."""


def claim_many(
    engine: Engine, message_ids: Sequence[int], worker_id: str, now: datetime
) -> dict[int, ops.ClaimResult]:
    """Claim each of ``message_ids`` as `ops.claim` would; the result of every id.

    PostgreSQL: one statement (one commit) claims every message that is simply claimable; the others
    (refused, not due, claimed elsewhere, missing, left out by a guard) each get `ops.claim`, so their
    outcome and reason are the single path's. Any database error in the batch statement (a deadlock
    detected with another transaction, an unknown time zone) rolls it back and claims one by one.
    """
    ids = list(dict.fromkeys(message_ids))
    now = ops._aware(now)
    worker_id = worker_id[:128]
    results: dict[int, ops.ClaimResult] = {}
    if engine.dialect.name == "postgresql" and len(ids) > 1:
        try:
            results = _claim_many_pg(engine, ids, worker_id, now)
        except (_Disagree, DBAPIError):
            results = {}
    for message_id in ids:
        if message_id not in results:
            results[message_id] = ops.claim(engine, message_id, worker_id, now)
    return results


def _claim_many_pg(
    engine: Engine, ids: list[int], worker_id: str, now: datetime
) -> dict[int, ops.ClaimResult]:
    results: dict[int, ops.ClaimResult] = {}
    with ops._write(engine) as conn:
        rows = conn.execute(_CLAIM_MANY, {"ids": ids, "worker_id": worker_id, "now": now}).all()
        for row in rows:
            if row.local_date < ops.local_date_of(row.timezone, now):
                raise _Disagree
        for row in rows:
            if row.slot:
                results[row.id] = ops.ClaimResult(ops.ClaimStatus.CLAIMED, ops._claimed_message(row, row))
            else:
                results[row.id] = ops._unclaim(
                    conn, row.id, ops.ClaimStatus.QUOTA_REACHED, "the day's quota is reached", now
                )
    return results


_RECORD_SENT_MANY = sa.text(
    "WITH v AS (SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:provider_ids AS text[])) AS v(id, pid)),"
    " m AS (UPDATE outbound_messages SET state = 'sent', provider_message_id = v.pid, finished_at = :now,"
    " reason = NULL FROM v WHERE outbound_messages.id = v.id"
    " AND outbound_messages.state IN ('sending', 'unknown')"
    " RETURNING outbound_messages.id, outbound_messages.number_id, outbound_messages.recipient,"
    " outbound_messages.text, outbound_messages.local_date),"
    " r AS (UPDATE recipients SET last_text = m.text,"
    " first_contacted_on = COALESCE(recipients.first_contacted_on, m.local_date), updated_at = :now"
    " FROM m WHERE recipients.number_id = m.number_id AND recipients.phone = m.recipient)"
    " SELECT m.id FROM m"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))
"""`_PG_RECORD_SENT` for many messages: every message, then its recipient row, in ONE statement."""


@dataclass(frozen=True)
class Sent:
    """A send the provider accepted, to be recorded."""

    message_id: int
    provider_message_id: str | None


def record_sent_many(engine: Engine, sends: Sequence[Sent], now: datetime) -> set[int]:
    """`ops.record_sent` for each of ``sends``; the ids recorded (the others had left `sending`).

    PostgreSQL: one autocommit statement, tried once more on a fresh connection when the server was
    gone (as the single path does); a deadlock with another transaction falls back to one by one.
    """
    now = ops._aware(now)
    if not sends:
        return set()
    if engine.dialect.name == "postgresql" and len(sends) > 1:
        params: dict[str, Any] = {
            "ids": [s.message_id for s in sends],
            "provider_ids": [s.provider_message_id for s in sends],
            "now": now,
        }
        recorded: set[int] = set()

        def write(conn: Connection) -> bool:
            recorded.update(int(i) for i in conn.execute(_RECORD_SENT_MANY, params).scalars())
            return True

        try:
            ops._recorded(engine, write, ops._one_statement)
            return recorded
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "40P01":  # anything but a deadlock is real
                raise
    return {s.message_id for s in sends if ops.record_sent(engine, s.message_id, s.provider_message_id, now)}


def give_back(engine: Engine, message_id: int, reason: str, now: datetime) -> bool:
    """sending -> queued as if never claimed (slot and attempt given back): a batch that ran long
    returns the claims it has not used yet; the caller enqueues them again. False when the message was
    not `sending` any more."""
    now = ops._aware(now)
    values: dict[str, Any] = {
        "state": MessageState.QUEUED.value,
        "reason": reason[:500],
        "queued_at": now,
        "claimed_by": None,
        "claimed_at": None,
        "attempts": ops.MESSAGES.c.attempts - 1,
    }
    return ops._finish_sending(engine, message_id, values, free_slot=True)


@dataclass(frozen=True)
class Due:
    """A planned message that falls due soon: what the dispatcher needs to batch it."""

    message_id: int
    number_id: int
    due_at: datetime


def due_within(engine: Engine, until: datetime, limit: int) -> list[Due]:
    """`ops.due_within` with each message's number (a batch holds one message per number)."""
    until = ops._aware(until, "until")
    table = ops.MESSAGES
    with ops._read(engine) as conn:
        rows = conn.execute(
            sa.select(table.c.id, table.c.number_id, table.c.scheduled_at, table.c.not_before)
            .where(
                table.c.state == MessageState.PLANNED.value,
                table.c.scheduled_at <= until,
                sa.or_(table.c.not_before.is_(None), table.c.not_before <= until),
            )
            .order_by(table.c.scheduled_at, table.c.id)
            .limit(limit)
        ).all()
    return [
        Due(
            int(r.id), int(r.number_id), max(r.scheduled_at, r.not_before) if r.not_before else r.scheduled_at
        )
        for r in rows
    ]
