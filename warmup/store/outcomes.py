"""Recording what became of a claimed send: sent, failed, unknown, skipped, released for a retry or
given back unused; and turning claims whose worker died `unknown` (`recover_stale`).

Only the two paths where nothing went out give the slot back (`record_skipped`, `release_for_retry`,
and `give_back` for a claim never used); a failed or unknown send keeps it, since the provider may
have counted it. A portfolio number's send that did not go out (those paths, and a refused one:
`record_failed`) also stops counting against its portfolio's messaging limit; an unknown one keeps
counting (`warmup.store.portfolios`). Every write is conditional on the state it leaves, so a repeat
changes nothing.

A send that went out also notes its text and first contact on the recipient row; that update is
written once (`_RECIPIENT_AFTER_SEND`) and joins every way a message becomes `sent`: one or many
at once on PostgreSQL (`_record_sent_pg`, one statement), on SQLite, and by a late confirmation
(`confirm_unknown`: an `unknown` send found in the provider's list of the number's own messages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from warmup.core.domain import SkipCause
from warmup.store import portfolios
from warmup.store.models import MessageState, UTCDateTime
from warmup.store.tables import (
    DAY_PLANS,
    MESSAGES,
    RECIPIENTS,
    aggregate_time,
    aware,
    free_pace,
    is_postgres,
    lock_number,
    read,
    write,
)

_RECIPIENT_AFTER_SEND = """
    UPDATE recipients
    SET last_text = m.text,
        first_contacted_on = COALESCE(recipients.first_contacted_on, m.local_date),
        updated_at = :now
    FROM m
    WHERE recipients.number_id = m.number_id AND recipients.phone = m.recipient
"""
"""The recipient row of each sent message ``m`` (number_id, recipient, text, local_date) notes the
text and its first contact."""


def _record_sent_pg(*, many: bool) -> sa.TextClause:
    """`record_sent` on PostgreSQL: the messages, then their recipient rows, in ONE statement (one round
    trip in autocommit); returns the ids recorded. One message (``:message_id``,
    ``:provider_message_id``) or many (the arrays ``:ids`` and ``:provider_ids``)."""
    if many:
        sent = """v AS (
            SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:provider_ids AS text[])) AS v(id, pid)
        ),
        m AS (
            UPDATE outbound_messages AS o
            SET state = 'sent', provider_message_id = v.pid, finished_at = :now, reason = NULL
            FROM v
            WHERE o.id = v.id AND o.state IN ('sending', 'unknown')"""
    else:
        sent = """m AS (
            UPDATE outbound_messages AS o
            SET state = 'sent', provider_message_id = :provider_message_id, finished_at = :now, reason = NULL
            WHERE o.id = :message_id AND o.state IN ('sending', 'unknown')"""
    sql = f"""
        WITH {sent}
            RETURNING o.id, o.number_id, o.recipient, o.text, o.local_date
        ),
        r AS ({_RECIPIENT_AFTER_SEND}),
        f AS (
            UPDATE paces SET busy_id = NULL, free_at = :now,
                recent = (COALESCE(
                    (SELECT jsonb_agg(CAST(r.t AS float8) ORDER BY CAST(r.t AS float8))
                     FROM json_array_elements_text(paces.recent) AS r(t)
                     WHERE CAST(r.t AS float8) > :epoch - 3600),
                    '[]'::jsonb) || to_jsonb(CAST(:epoch AS float8)))::json
            FROM m WHERE paces.busy_id = m.id
        )
        SELECT m.id FROM m
    """
    return sa.text(sql).bindparams(
        sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("epoch", type_=sa.Float())
    )


_RECORD_SENT_ONE = _record_sent_pg(many=False)
_RECORD_SENT_MANY = _record_sent_pg(many=True)

NOTE_SENT = sa.text(
    f"""
    WITH last AS (
        SELECT number_id, recipient, max(id) AS id, min(local_date) AS local_date
        FROM outbound_messages
        WHERE id IN :ids
        GROUP BY number_id, recipient
    ),
    m AS (
        SELECT last.number_id, last.recipient, o.text, last.local_date
        FROM last JOIN outbound_messages AS o ON o.id = last.id
    )
    {_RECIPIENT_AFTER_SEND}
    """
).bindparams(sa.bindparam("ids", expanding=True), sa.bindparam("now", type_=UTCDateTime()))
"""The recipient rows of messages (``ids``) just recorded `sent` in the same transaction: ONE update per
recipient (an UPDATE ... FROM with two rows for one recipient would take either), the text of its newest
message and the first contact on its earliest day, as recording them one by one in order did."""


@dataclass(frozen=True)
class Sent:
    """A send the provider accepted, to be recorded."""

    message_id: int
    provider_message_id: str | None


def record_sent(engine: Engine, message_id: int, provider_message_id: str | None, now: datetime) -> bool:
    """sending -> sent (also unknown -> sent, when a late confirmation proves it went out).

    Also notes the text and first contact on the recipient row, if there is one. False when the
    message was in neither state (nothing changed).
    """
    now = aware(now)
    if is_postgres(engine):
        params = {
            "message_id": message_id,
            "provider_message_id": provider_message_id,
            "now": now,
            "epoch": now.timestamp(),
        }
        return message_id in _recorded_pg(engine, _RECORD_SENT_ONE, params)
    with write(engine) as conn:
        values = {
            "state": MessageState.SENT.value,
            "provider_message_id": provider_message_id,
            "finished_at": now,
            "reason": None,
        }
        if (
            _finish(conn, message_id, (MessageState.SENDING.value, MessageState.UNKNOWN.value), values, now)
            is None
        ):
            return False
        conn.execute(NOTE_SENT, {"ids": [message_id], "now": now})
        return True


def record_sent_many(engine: Engine, sends: Sequence[Sent], now: datetime) -> set[int]:
    """`record_sent` for each of ``sends``; the ids recorded (the others had left `sending`).

    PostgreSQL: one autocommit statement, tried once more on a fresh connection when the server was
    gone (as for one message); a deadlock with another transaction falls back to one by one.
    """
    now = aware(now)
    if not sends:
        return set()
    if is_postgres(engine) and len(sends) > 1:
        try:
            params = {
                "ids": [s.message_id for s in sends],
                "provider_ids": [s.provider_message_id for s in sends],
                "now": now,
                "epoch": now.timestamp(),
            }
            return _recorded_pg(engine, _RECORD_SENT_MANY, params)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "40P01":  # anything but a deadlock is real
                raise
    return {s.message_id for s in sends if record_sent(engine, s.message_id, s.provider_message_id, now)}


def _recorded_pg(engine: Engine, statement: sa.TextClause, params: dict[str, Any]) -> set[int]:
    """The ids a `_record_sent_pg` statement recorded, in autocommit (see `_recorded`)."""
    recorded: set[int] = set()

    def write_sent(conn: Connection) -> bool:
        recorded.update(int(i) for i in conn.execute(statement, params).scalars())
        return True

    _recorded(engine, write_sent, _one_statement)
    return recorded


def record_failed(
    engine: Engine, message_id: int, reason: str, now: datetime, *, recipient_invalid: bool = False
) -> bool:
    """sending -> failed; the day's quota slot stays used (the provider may have counted it against the
    number). The provider refused it, so nothing reached the recipient: it does not count against the
    portfolio's messaging limit (`portfolios.release`). With `recipient_invalid` the recipient row is
    marked invalid with the same reason, in the same transaction.
    """
    now = aware(now)
    with write(engine) as conn:
        values = {"state": MessageState.FAILED.value, "reason": reason[:500], "finished_at": now}
        row = _finish(conn, message_id, (MessageState.SENDING.value,), values, now)
        if row is None:
            return False
        portfolios.release(conn, [message_id])
        if recipient_invalid:
            conn.execute(
                sa.update(RECIPIENTS)
                .where(RECIPIENTS.c.number_id == row.number_id, RECIPIENTS.c.phone == row.recipient)
                .values(invalid=True, invalid_reason=reason[:500], updated_at=now)
            )
        return True


def record_unknown(engine: Engine, message_id: int, reason: str, now: datetime) -> bool:
    """sending -> unknown: the outcome is ambiguous (e.g. a read timeout). Counts against the quota and
    is never re-sent automatically."""
    values = {"state": MessageState.UNKNOWN.value, "reason": reason[:500], "finished_at": aware(now)}
    return _finish_sending(engine, message_id, values, aware(now), free_slot=False)


def record_skipped(
    engine: Engine, message_id: int, reason: str, now: datetime, cause: SkipCause = SkipCause.RETRIES
) -> bool:
    """sending -> skipped when nothing went out (e.g. retries exhausted); gives the slot back."""
    values = {
        "state": MessageState.SKIPPED.value,
        "reason": reason[:500],
        "finished_at": aware(now),
        "cause": cause.value,
    }
    return _finish_sending(engine, message_id, values, aware(now), free_slot=True)


def release_for_retry(
    engine: Engine,
    message_id: int,
    not_before: datetime,
    reason: str,
    now: datetime | None = None,
    *,
    window_end: datetime | None = None,
) -> bool:
    """sending -> queued with `not_before` (retry later); gives the slot back, keeps `attempts`.

    The caller re-enqueues it (with a delay) itself; if that broker message is lost, `requeue_lost`
    finds it again. `now` (the time of release) is recorded as `queued_at`; without it, `not_before`.
    `window_end` moves the message to the window `not_before` lies in (a retry in a later window).
    False when the message is not `sending` any more (e.g. its claim was recovered as `unknown`).
    """
    not_before = aware(not_before, "not_before")
    queued_at = aware(now) if now is not None else not_before
    values: dict[str, Any] = {
        "state": MessageState.QUEUED.value,
        "not_before": not_before,
        "reason": reason[:500],
        "queued_at": queued_at,
        "claimed_by": None,
        "claimed_at": None,
    }
    if window_end is not None:
        values["window_end"] = aware(window_end, "window_end")
    return _finish_sending(engine, message_id, values, queued_at, free_slot=True)


def give_back(engine: Engine, message_id: int, reason: str, now: datetime) -> bool:
    """sending -> queued as if never claimed (slot and attempt given back): a batch that ran long
    returns the claims it has not used yet; the caller enqueues them again. False when the message was
    not `sending` any more."""
    now = aware(now)
    values: dict[str, Any] = {
        "state": MessageState.QUEUED.value,
        "reason": reason[:500],
        "queued_at": now,
        "claimed_by": None,
        "claimed_at": None,
        "attempts": MESSAGES.c.attempts - 1,
    }
    return _finish_sending(engine, message_id, values, now, free_slot=True)


def recover_stale(engine: Engine, older_than: datetime, now: datetime | None = None) -> int:
    """`sending` claims taken before `older_than` (their worker died) become `unknown`; returns how many.

    Unknown still counts against the quota and is never re-sent: we cannot tell whether it went out.
    """
    older_than = aware(older_than, "older_than")
    at = aware(now) if now is not None else older_than
    with write(engine) as conn:
        recovered = int(
            conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.state == MessageState.SENDING.value, MESSAGES.c.claimed_at < older_than)
                .values(
                    state=MessageState.UNKNOWN.value,
                    reason="claim expired: the worker stopped before recording the outcome",
                    finished_at=at,
                )
            ).rowcount
        )
        free_pace(conn, None, at)  # a pace busy with a recovered claim is free from now (its worker died)
        return recovered


# -------------------------------------------------------------------------------------------- helpers


def _finish(
    conn: Connection,
    message_id: int,
    from_states: Sequence[str],
    values: dict[str, Any],
    now: datetime,
    free_slot: bool = False,
) -> sa.Row[Any] | None:
    """Move the message from one of ``from_states`` as ``values`` say (giving its slot back with
    ``free_slot``); its (day_plan_id, number_id, recipient), or None when it was in none of them.

    Leaving `sending` ends the send: the number's pace is freed first (the claim's lock order: pace,
    then message, then day plan)."""
    if MessageState.SENDING.value in from_states:
        free_pace(conn, [message_id], now)
    row = conn.execute(
        sa.update(MESSAGES)
        .where(MESSAGES.c.id == message_id, MESSAGES.c.state.in_(from_states))
        .values(**values)
        .returning(MESSAGES.c.day_plan_id, MESSAGES.c.number_id, MESSAGES.c.recipient)
    ).one_or_none()
    if row is not None and free_slot:
        conn.execute(
            sa.update(DAY_PLANS)
            .where(DAY_PLANS.c.id == row.day_plan_id, DAY_PLANS.c.used > 0)
            .values(used=DAY_PLANS.c.used - 1)
        )
        portfolios.release(conn, [message_id])  # nothing went out: its recipient counts for nobody
    return row


@contextmanager
def _one_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for ONE statement that is its own transaction (PostgreSQL autocommit): a single
    statement is atomic anyway, and BEGIN and COMMIT would cost two more round trips."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def _recorded(
    engine: Engine,
    write_outcome: Callable[[Connection], bool],
    transaction: Callable[[Engine], AbstractContextManager[Connection]] = write,
) -> bool:
    """``write_outcome`` in its own `transaction`, once more on a fresh connection when the first try
    found the server gone (a restarted PostgreSQL: the pool was invalidated). An outcome is recorded
    after the provider call, when losing it would turn a sent message `unknown`; a repeat is harmless,
    since every outcome write is conditional on the state it leaves (a second try after a commit whose
    answer was lost changes nothing and reports False)."""
    try:
        with transaction(engine) as conn:
            return write_outcome(conn)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with transaction(engine) as conn:
        return write_outcome(conn)


def _finish_sending(
    engine: Engine, message_id: int, values: dict[str, Any], now: datetime, free_slot: bool
) -> bool:
    """sending -> whatever `values` say, in its own transaction; False when it is not `sending` any more."""
    sending = (MessageState.SENDING.value,)
    return _recorded(
        engine, lambda conn: _finish(conn, message_id, sending, values, now, free_slot) is not None
    )


# ------------------------------------------------------------------------------ late confirmation


@dataclass(frozen=True)
class UnknownSend:
    """An `unknown` send without a provider id, claimed at ``claimed_at``: a late confirmation may
    prove it went out."""

    id: int
    recipient: str
    text: str
    claimed_at: datetime


@dataclass(frozen=True)
class Evidence:
    """What a late confirmation weighs, read under the number's lock."""

    unknown: Sequence[UnknownSend]  # earliest claim first
    taken: frozenset[str]  # provider ids another row holds already
    in_flight: frozenset[tuple[str, str]]  # (recipient, text) of the number's sends still `sending`


def _unconfirmed(number_id: int, since: datetime) -> list[sa.ColumnElement[bool]]:
    return [
        MESSAGES.c.number_id == number_id,
        MESSAGES.c.state == MessageState.UNKNOWN.value,
        MESSAGES.c.provider_message_id.is_(None),
        MESSAGES.c.claimed_at.is_not(None),
        MESSAGES.c.claimed_at >= since,
    ]


def oldest_unknown_on(conn: Connection, number_id: int, since: datetime) -> datetime | None:
    """The claim time of the number's oldest `UnknownSend` claimed at or after ``since``, on a connection
    the caller holds (a reply poll reads it with its other state)."""
    return aggregate_time(
        conn.execute(
            sa.select(sa.func.min(MESSAGES.c.claimed_at)).where(*_unconfirmed(number_id, since))
        ).scalar_one_or_none()
    )


def oldest_unknown(engine: Engine, number_id: int, since: datetime) -> datetime | None:
    """`oldest_unknown_on` in a read-only transaction of its own (None: nothing needs asking)."""
    with read(engine) as conn:
        return oldest_unknown_on(conn, number_id, since)


def confirm_unknown(
    engine: Engine,
    number_id: int,
    since: datetime,
    provider_ids: Sequence[str],
    match: Callable[[Evidence], Sequence[tuple[int, str]]],
    now: datetime,
) -> list[int]:
    """Record `sent` the number's unknown sends that ``match`` pairs with a provider id; their ids.

    One write transaction holding the number's row lock (taken first, see `warmup.store`), so two
    confirmations of one number at once (a poll and a webhook) cannot give the same provider id to two
    rows. ``match`` (pure) sees the `UnknownSend` rows claimed since ``since``, which of
    ``provider_ids`` other rows hold already, and the sends still in flight, and returns (message id,
    provider id) pairs; each is recorded as `record_sent` records a late confirmation.
    """
    now = aware(now)
    since = aware(since, "since")
    with write(engine) as conn:
        lock_number(conn, number_id)
        unknown = [
            UnknownSend(int(row.id), row.recipient, row.text, row.claimed_at)
            for row in conn.execute(
                sa.select(MESSAGES.c.id, MESSAGES.c.recipient, MESSAGES.c.text, MESSAGES.c.claimed_at)
                .where(*_unconfirmed(number_id, since))
                .order_by(MESSAGES.c.claimed_at, MESSAGES.c.id)
            )
        ]
        if not unknown:
            return []
        taken = frozenset(
            conn.execute(
                sa.select(MESSAGES.c.provider_message_id).where(
                    MESSAGES.c.provider_message_id.in_(list(provider_ids))
                )
            ).scalars()
        )
        in_flight = frozenset(
            (row.recipient, row.text)
            for row in conn.execute(
                sa.select(MESSAGES.c.recipient, MESSAGES.c.text).where(
                    MESSAGES.c.number_id == number_id, MESSAGES.c.state == MessageState.SENDING.value
                )
            )
        )
        confirmed = []
        for message_id, provider_message_id in match(Evidence(unknown, taken, in_flight)):
            values = {
                "state": MessageState.SENT.value,
                "provider_message_id": provider_message_id,
                "finished_at": now,
                "reason": None,
            }
            if _finish(conn, message_id, (MessageState.UNKNOWN.value,), values, now) is not None:
                confirmed.append(message_id)
        if confirmed:
            conn.execute(NOTE_SENT, {"ids": confirmed, "now": now})
    return confirmed


def note_template(engine: Engine, message_id: int, template: dict[str, Any]) -> bool:
    """Note on a message in flight the approved template it went out as (Cloud API, recipient outside
    the 24 h customer-service window), so its history says what the recipient got. False when the
    message is no longer `sending`."""
    with write(engine) as conn:
        changed = conn.execute(
            sa.update(MESSAGES)
            .where(MESSAGES.c.id == message_id, MESSAGES.c.state == MessageState.SENDING.value)
            .values(template=template)
        ).rowcount
    return bool(changed)
