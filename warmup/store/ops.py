"""The operations every other part calls: each is ONE short transaction, never held across I/O.

Message state machine (`OutboundMessage.state`)::

    planned --mark_queued--> queued --claim--> sending --record_sent-----> sent
       |                       |  ^               |  --record_failed---> failed   (slot stays used)
       |                       |  |               |  --record_unknown--> unknown  (slot used, never re-sent)
       |                       |  +--release_for_retry (slot freed, not_before set)
       |                       |                  +--record_skipped--> skipped  (slot freed)
       +-----------------------+--claim refused (paused / quota / day over), skip_remaining,
                                  pause_numbers, expire_day --> skipped (with a reason)
    sending --recover_stale--> unknown;   unknown --record_sent--> sent (a late confirmation)

Quota accounting: `DayPlan.used` is the number of slots taken on that local day. `claim` takes one
(`used = used + 1 WHERE used < quota`, atomic under READ COMMITTED on PostgreSQL and under BEGIN
IMMEDIATE on SQLite) and only the two paths where nothing went out give it back. So `used` never
exceeds `quota`, whatever crashes, retries or parallel workers happen (a CHECK constraint backs this).

Concurrency: a claim reads the number row `FOR SHARE` (PostgreSQL) before it touches the message, and a
pause updates the number row before it touches messages; both lock the number first, so they never
deadlock, and once `pause_numbers` has committed no claim of that number can succeed any more.
Rows are locked in the order number -> message -> day plan everywhere.

Times: every `now` is an aware datetime from the run's `Clock` (simulated time in tests and benchmarks);
the store reads the wall clock only for bookkeeping columns (`created_at`, `updated_at`) when no `now`
is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, NotRequired, TypedDict, Unpack
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import col, select

from warmup.core.domain import Action, DayOutcome, Decision, NumberState, Reading
from warmup.core.errors import UserError
from warmup.store import bulk
from warmup.store.bulk import MESSAGE_COLUMNS
from warmup.store.db import READ_ONLY, session_scope
from warmup.store.models import (
    COUNTED_STATES,
    AuditLog,
    DayPlan,
    InboundKind,
    MessageKind,
    MessageState,
    Number,
    NumberStatus,
    OutboundMessage,
    Provider,
    Recipient,
    RecipientKind,
    UTCDateTime,
    metadata,
)

NUMBERS = metadata.tables["numbers"]
DAY_PLANS = metadata.tables["day_plans"]
MESSAGES = metadata.tables["outbound_messages"]
READINGS = metadata.tables["readings"]
INBOUND = metadata.tables["inbound_messages"]
RECIPIENTS = metadata.tables["recipients"]
AUDIT = metadata.tables["audit_log"]

CLAIMABLE = (MessageState.PLANNED.value, MessageState.QUEUED.value)
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
DELIVERED_STATUSES = ("delivered", "read", "played")


class InvalidWrite(ValueError):
    """A write refused before it touched the database (nothing was changed)."""


# --------------------------------------------------------------------------------------------- helpers


@contextmanager
def _write(engine: Engine) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite): committed on success, rolled back on error."""
    with engine.begin() as conn:
        yield conn


@contextmanager
def _read(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: a deferred BEGIN on SQLite, so readers never wait for writers."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        with conn.begin():
            yield conn


def _aware(value: datetime, name: str = "now") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidWrite(f"{name} must be an aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def aggregate_time(value: datetime | str | None) -> datetime | None:
    """A min()/max() of a time column as an aware UTC datetime: SQLite hands aggregates back as naive
    text, bypassing the column type."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _stamp(now: datetime | None) -> datetime:
    """Bookkeeping time: the caller's clock if given, else the wall clock."""
    return _aware(now) if now is not None else datetime.now(UTC)


def local_date_of(timezone: str, at: datetime) -> date:
    """The calendar day at `at` in `timezone` (IANA name): the day quotas belong to."""
    return _aware(at, "at").astimezone(ZoneInfo(timezone)).date()


def _check_phone(phone: str, what: str = "phone") -> str:
    if not E164.match(phone):
        raise InvalidWrite(f"{what} {phone!r} is not an E.164 number like +5511999990001")
    return phone


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidWrite(f"unknown time zone {name!r} (use an IANA name like America/Sao_Paulo)") from exc
    return name


def _check_token_ref(token_ref: str) -> str:
    """Only the NAME of an environment variable may be stored; a token itself is refused unseen."""
    if not ENV_NAME.match(token_ref):
        raise InvalidWrite(
            "token_ref must be the name of an environment variable (e.g. WHAPI_TOKEN_1), "
            "never the token itself"
        )
    return token_ref


def _choice(value: str, allowed: type[StrEnum], what: str) -> str:
    values = [member.value for member in allowed]
    if value not in values:
        raise InvalidWrite(f"{what} must be one of {', '.join(values)}, got {value!r}")
    return value


def _lock_number(conn: Connection, number_id: int) -> None:
    """Lock the number row first (number -> message -> day plan everywhere): its writers take turns."""
    conn.execute(sa.select(NUMBERS.c.id).where(NUMBERS.c.id == number_id).with_for_update()).first()


def _day_row(conn: Connection, number_id: int, local_date: date, *columns: Any) -> sa.Row[Any] | None:
    """The day plan's `columns` (id, quota, used by default) for that number and local day, or None."""
    return conn.execute(
        sa.select(*(columns or (DAY_PLANS.c.id, DAY_PLANS.c.quota, DAY_PLANS.c.used))).where(
            DAY_PLANS.c.number_id == number_id, DAY_PLANS.c.local_date == local_date
        )
    ).one_or_none()


def _insert_ignore(conn: Connection, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


# --------------------------------------------------------------------------------------------- numbers


class NumberConfig(TypedDict):
    """A number's configuration as `add_number` and `upsert_number` take it (keyword arguments)."""

    phone: str
    provider: str
    token_ref: str  # the NAME of the environment variable holding the token
    plan_name: str
    plan_path: str
    timezone: str
    registered: NotRequired[date | None]
    base_url: NotRequired[str | None]
    phone_number_id: NotRequired[str | None]


def add_number(engine: Engine, *, now: datetime | None = None, **config: Unpack[NumberConfig]) -> int:
    """Enroll a number (state active, plan day 1) and return its id; a known phone is a `UserError`.

    `token_ref` is the name of the environment variable holding the token; anything that does not look
    like one is refused (so a pasted token can never land in the database).
    """
    values = _number_config(config)
    stamp = _stamp(now)
    try:
        with _write(engine) as conn:
            number_id: int = conn.execute(
                sa.insert(NUMBERS)
                .values(**values, created_at=stamp, updated_at=stamp)
                .returning(NUMBERS.c.id)
            ).scalar_one()
    except IntegrityError as exc:
        raise UserError(f"number {config['phone']} is already enrolled") from exc
    return number_id


def upsert_number(
    engine: Engine, *, now: datetime | None = None, **config: Unpack[NumberConfig]
) -> tuple[int, bool]:
    """Enroll or update a number's configuration (for `warmup apply`); returns (id, created).

    Only configuration changes; the ramp position and the pause state are never touched here.

    A new time zone for a number whose current local day (in the OLD zone) is already planned does not
    apply at once: that would start a different local day, possibly unplanned, overlapping the planned
    one and bringing a fresh quota. It is stored as `pending_timezone` and takes effect when the old
    zone's local day ends (`timezone_from`, applied by `apply_timezone_changes`). Without a plan for
    today, the change applies at once. Setting the current zone again cancels a pending change.
    """
    values = _number_config(config)
    stamp = _stamp(now)
    with _write(engine) as conn:
        inserted = conn.execute(
            _insert_ignore(conn, NUMBERS)
            .values(**values, created_at=stamp, updated_at=stamp)
            .returning(NUMBERS.c.id)
        ).scalar_one_or_none()
        if inserted is not None:
            return int(inserted), True
        current = conn.execute(
            sa.select(NUMBERS.c.id, NUMBERS.c.timezone)
            .where(NUMBERS.c.phone == values["phone"])
            .with_for_update()
        ).one()
        values.update(pending_timezone=None, timezone_from=None)
        if values["timezone"] != current.timezone:
            today = local_date_of(current.timezone, stamp)
            if _day_row(conn, current.id, today, DAY_PLANS.c.id) is not None:
                values.update(
                    pending_timezone=values["timezone"],
                    timezone_from=_local_midnight(today + timedelta(days=1), current.timezone),
                    timezone=current.timezone,
                )
        number_id: int = conn.execute(
            sa.update(NUMBERS)
            .where(NUMBERS.c.id == current.id)
            .values(**values, updated_at=stamp)
            .returning(NUMBERS.c.id)
        ).scalar_one()
    return number_id, False


def _local_midnight(local_date: date, timezone: str) -> datetime:
    """The instant `local_date` starts in `timezone` (UTC)."""
    return datetime.combine(local_date, datetime.min.time(), ZoneInfo(timezone)).astimezone(UTC)


def apply_timezone_changes(engine: Engine, now: datetime) -> list[int]:
    """Switch numbers whose pending time zone is due (`timezone_from <= now`); their ids, in id order.

    The scheduler calls this before planning, so the first day planned in the new zone starts after
    the last day of the old one ended: the two never overlap.
    """
    now = _aware(now)
    with _write(engine) as conn:
        rows = conn.execute(
            sa.select(NUMBERS.c.id, NUMBERS.c.timezone, NUMBERS.c.pending_timezone)
            .where(NUMBERS.c.pending_timezone.is_not(None), NUMBERS.c.timezone_from <= now)
            .order_by(NUMBERS.c.id)
            .with_for_update()
        ).all()
        for row in rows:
            conn.execute(
                sa.update(NUMBERS)
                .where(NUMBERS.c.id == row.id)
                .values(
                    timezone=row.pending_timezone, pending_timezone=None, timezone_from=None, updated_at=now
                )
            )
            _audit(
                conn,
                "scheduler",
                "timezone_change",
                row.id,
                {"from": row.timezone, "to": row.pending_timezone},
                now,
            )
    return [int(row.id) for row in rows]


def _number_config(config: NumberConfig) -> dict[str, Any]:
    """The checked column values of a number's configuration (`InvalidWrite` for a bad one)."""
    phone = config["phone"]
    phone_number_id = config.get("phone_number_id")
    if config["provider"] == Provider.CLOUD_API and not phone_number_id:
        raise InvalidWrite(f"{phone}: provider cloud_api needs a phone_number_id")
    return {
        "phone": _check_phone(phone),
        "provider": _choice(config["provider"], Provider, "provider"),
        "token_ref": _check_token_ref(config["token_ref"]),
        "plan_name": config["plan_name"],
        "plan_path": config["plan_path"],
        "timezone": _check_timezone(config["timezone"]),
        "registered": config.get("registered"),
        "base_url": config.get("base_url"),
        "phone_number_id": phone_number_id,
    }


def get_number(engine: Engine, number_id: int | None = None, *, phone: str | None = None) -> Number | None:
    """One number by id or by phone, or None."""
    if (number_id is None) == (phone is None):
        raise InvalidWrite("get_number needs exactly one of number_id or phone")
    with session_scope(engine, read_only=True) as session:
        if number_id is not None:
            return session.get(Number, number_id)
        return session.exec(select(Number).where(Number.phone == phone)).first()


def list_numbers(engine: Engine, *, state: str | None = None, plan_name: str | None = None) -> list[Number]:
    """Numbers ordered by phone, optionally only those in `state` or on plan `plan_name`."""
    statement = select(Number).order_by(col(Number.phone))
    if state is not None:
        statement = statement.where(Number.state == _choice(state, NumberStatus, "state"))
    if plan_name is not None:
        statement = statement.where(Number.plan_name == plan_name)
    with session_scope(engine, read_only=True) as session:
        return list(session.exec(statement).all())


def number_state(engine: Engine, number_id: int) -> NumberState:
    """The number's ramp state, as `warmup.core.ramp.decide` takes it (a retired number counts as paused)."""
    number = get_number(engine, number_id)
    if number is None:
        raise UserError(f"no number with id {number_id}")
    return state_of(number)


def state_of(number: Number) -> NumberState:
    """`number_state` of a row already loaded (planning reads the number once)."""
    return NumberState(
        plan_day=number.plan_day,
        last_volume=number.last_volume,
        paused=number.state != NumberStatus.ACTIVE,
        paused_volume=number.paused_volume,
        resumed_on=number.resumed_on,
        registered=number.registered,
        advance_pending=number.advance_pending,
    )


# ------------------------------------------------------------------------------------------- day plans


@dataclass(frozen=True)
class PlannedSend:
    """One message to insert with a day plan (or later with `add_sends`)."""

    recipient: str  # E.164
    text: str
    scheduled_at: datetime  # aware
    kind: str = MessageKind.OPENER.value
    typing_seconds: float = 0.0
    in_reply_to: int | None = None  # outbound message id this answers (peer replies)
    window_end: datetime | None = None  # end of the send window it lies in: no claim from then on
    recipient_kind: str | None = None  # if set, `plan_day` gives the recipient a row of that kind


_MESSAGE_KINDS = frozenset(k.value for k in MessageKind)
_RECIPIENT_KINDS = frozenset(k.value for k in RecipientKind)


def _check_sends(sends: Sequence[PlannedSend]) -> None:
    """Refuse invalid sends with `InvalidWrite` (the first bad one named), before anything is written.

    Each send is checked with plain comparisons first and only a suspect one goes through the full
    checks that name the problem: a fleet's day is 200,000 sends, all of them valid.
    """
    match, kinds, recipient_kinds = E164.match, _MESSAGE_KINDS, _RECIPIENT_KINDS
    for index, send in enumerate(sends):
        at, end = send.scheduled_at, send.window_end
        if (
            match(send.recipient)
            and send.kind in kinds
            and send.typing_seconds >= 0
            and (send.recipient_kind is None or send.recipient_kind in recipient_kinds)
            and at.tzinfo is not None
            and at.utcoffset() is not None
            and (not end or (end.tzinfo is not None and end.utcoffset() is not None))
            and send.text.strip()
        ):
            continue
        _check_send(index, send)


def _check_send(index: int, send: PlannedSend) -> None:
    """Name what is wrong with a send `_check_sends` found suspect (raises `InvalidWrite`)."""
    where = f"send {index}"
    if not E164.match(send.recipient):
        _check_phone(send.recipient, f"{where}: recipient")
    if send.kind not in _MESSAGE_KINDS:
        _choice(send.kind, MessageKind, f"{where}: kind")
    if not send.text.strip():
        raise InvalidWrite(f"{where}: empty text")
    if not send.typing_seconds >= 0:
        raise InvalidWrite(f"{where}: typing_seconds must be a number >= 0")
    if send.recipient_kind is not None and send.recipient_kind not in _RECIPIENT_KINDS:
        _choice(send.recipient_kind, RecipientKind, f"{where}: recipient_kind")
    _aware(send.scheduled_at, f"{where}: scheduled_at")
    if send.window_end:
        _aware(send.window_end, f"{where}: window_end")


def _message_values(
    number_id: int, day_plan_id: int, local_date: date, sends: Sequence[PlannedSend], stamp: datetime
) -> list[tuple[Any, ...]]:
    """The rows of ``sends`` (checked by `_check_sends`) in `bulk.MESSAGE_COLUMNS` order."""
    planned = MessageState.PLANNED.value
    return [
        (
            number_id,
            day_plan_id,
            local_date,
            send.recipient,
            send.kind,
            send.text,
            float(send.typing_seconds),
            send.scheduled_at.astimezone(UTC),
            planned,
            send.in_reply_to,
            send.window_end.astimezone(UTC) if send.window_end else None,
            0,
            stamp,
        )
        for send in sends
    ]


def _message_rows(
    number_id: int, day_plan_id: int, local_date: date, sends: Sequence[PlannedSend], stamp: datetime
) -> list[dict[str, Any]]:
    """The checked rows of ``sends`` as `sa.insert(MESSAGES)` takes them."""
    _check_sends(sends)
    return [
        dict(zip(MESSAGE_COLUMNS, row, strict=True))
        for row in _message_values(number_id, day_plan_id, local_date, sends, stamp)
    ]


class _AlreadyPlanned(Exception):
    pass


def _add_recipients(conn: Connection, number_id: int, sends: Sequence[PlannedSend], stamp: datetime) -> None:
    """Give the recipients of ``sends`` that name a `recipient_kind` a row (see `_upsert_recipients`)."""
    _upsert_recipients(
        conn,
        {(number_id, s.recipient): s.recipient_kind for s in sends if s.recipient_kind is not None},
        stamp,
    )


def _upsert_recipients(conn: Connection, kinds: Mapping[tuple[int, str], str], stamp: datetime) -> None:
    """Recipient rows for (number id, phone) -> kind, in ONE statement; a known recipient keeps its kind
    and only gets `updated_at` (as `upsert_recipient` without options does)."""
    if not kinds:
        return
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(RECIPIENTS)
    conn.execute(  # executemany: one cached statement, sent as one multi-row INSERT (insertmanyvalues)
        insert.on_conflict_do_update(
            index_elements=[RECIPIENTS.c.number_id, RECIPIENTS.c.phone],
            set_={"updated_at": insert.excluded.updated_at},
        ),
        [
            {
                "number_id": number_id,
                "phone": phone,
                "kind": kind,
                "replied": False,
                "invalid": False,
                "created_at": stamp,
                "updated_at": stamp,
            }
            for (number_id, phone), kind in sorted(kinds.items())  # one order everywhere: no deadlock
        ],
    )


def _check_replies_exist(conn: Connection, sends: Sequence[PlannedSend]) -> None:
    """Refuse sends answering a message that does not exist (the foreign key would raise a raw error)."""
    wanted = {send.in_reply_to for send in sends if send.in_reply_to is not None}
    if not wanted:
        return
    found = set(conn.execute(sa.select(MESSAGES.c.id).where(MESSAGES.c.id.in_(wanted))).scalars())
    missing = sorted(wanted - found)
    if missing:
        raise InvalidWrite(f"in_reply_to names no stored message: {', '.join(map(str, missing))}")


def plan_day(
    engine: Engine,
    number_id: int,
    decision: Decision,
    sends: Sequence[PlannedSend],
    *,
    cut: int = 0,
    cut_reason: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Store the day's decision and its messages in ONE transaction; False if the day was already planned.

    Unique per (number, local date): a second call (sequential or concurrent) changes nothing. Invalid
    sends (bad recipient, naive time, more sends than the quota, ...) raise `InvalidWrite` and nothing
    is stored, not even the decision. `cut`/`cut_reason` record what the scheduler could not fit.

    The number's ramp columns follow `warmup.core.ramp.state_after(state, decision)`: `plan_day` becomes the
    decision's plan day, `advance_pending` is `next_plan_day > plan_day` (the next `decide` moves the
    ramp on if today went well), `last_volume` becomes the quota on a sending day; a PAUSE decision
    pauses an active number (remembering its last volume) with an `auto_pause` audit row.
    """
    if len(sends) > decision.quota:
        raise InvalidWrite(f"{len(sends)} sends exceed the day's quota {decision.quota}")
    if cut < 0:
        raise InvalidWrite("cut must not be negative")
    stamp = _stamp(now)
    reasons = [{"rule": r.rule, "action": str(r.action), "text": r.text} for r in decision.reasons]
    _check_sends(sends)  # before any write
    try:
        with _write(engine) as conn:
            number = conn.execute(
                sa.select(NUMBERS).where(NUMBERS.c.id == number_id).with_for_update()
            ).one_or_none()
            if number is None:
                raise UserError(f"no number with id {number_id}")
            if _day_row(conn, number_id, decision.local_date, DAY_PLANS.c.id) is not None:
                raise _AlreadyPlanned
            _check_replies_exist(conn, sends)
            try:
                day_plan_id: int = conn.execute(
                    sa.insert(DAY_PLANS)
                    .values(
                        number_id=number_id,
                        local_date=decision.local_date,
                        plan_day=decision.plan_day,
                        next_plan_day=decision.next_plan_day,
                        action=str(decision.action),
                        quota=decision.quota,
                        plan_volume=decision.plan_volume,
                        max_new_contacts=decision.max_new_contacts,
                        reasons=reasons,
                        used=0,
                        cut=cut,
                        cut_reason=cut_reason,
                        created_at=stamp,
                    )
                    .returning(DAY_PLANS.c.id)
                ).scalar_one()
            except IntegrityError as exc:
                if "uq_day_plans_number_date" in str(exc.orig) or "UNIQUE" in str(exc.orig):
                    raise _AlreadyPlanned from exc
                raise
            _add_recipients(conn, number_id, sends, stamp)
            rows = _message_rows(number_id, day_plan_id, decision.local_date, sends, stamp)
            if rows:
                conn.execute(sa.insert(MESSAGES), rows)
            _apply_decision(conn, number, decision, stamp)
    except _AlreadyPlanned:
        return False
    return True


def get_numbers(engine: Engine, number_ids: Sequence[int]) -> list[Number]:
    """The numbers with these ids that exist, in one query (batch planning reads them together)."""
    if not number_ids:
        return []
    with session_scope(engine, read_only=True) as session:
        return list(session.exec(select(Number).where(col(Number.id).in_(sorted(set(number_ids))))).all())


def planned_on(engine: Engine, number_ids: Sequence[int], local_date: date) -> set[int]:
    """Which of these numbers have a day plan for ``local_date`` (one query)."""
    if not number_ids:
        return set()
    with _read(engine) as conn:
        return {
            int(n)
            for n in conn.execute(
                sa.select(DAY_PLANS.c.number_id).where(
                    DAY_PLANS.c.number_id.in_(sorted(set(number_ids))), DAY_PLANS.c.local_date == local_date
                )
            ).scalars()
        }


@dataclass(frozen=True)
class DayToPlan:
    """One number's planned day for `plan_days`: what `plan_day` takes, for one number."""

    number_id: int
    decision: Decision
    sends: Sequence[PlannedSend]
    cut: int = 0
    cut_reason: str | None = None


def plan_days(engine: Engine, days: Sequence[DayToPlan], *, now: datetime | None = None) -> list[int]:
    """Store many days (as `plan_day` each) in ONE transaction; the number ids whose day was stored.

    A day already planned (or a number that no longer exists) is skipped, so a batch planned twice, or
    at the same time as a single `plan_day`, changes nothing. The number rows are locked in id order
    first (as `plan_day` locks its one number), then the existence check cannot race a concurrent
    writer. On PostgreSQL each table gets one set-based statement (`warmup.store.bulk`: unnest arrays,
    COPY for the messages); elsewhere multi-row inserts. Invalid sends raise `InvalidWrite` before
    anything is written.
    """
    stamp = _stamp(now)
    by_number: dict[int, DayToPlan] = {}
    for day in days:
        if len(day.sends) > day.decision.quota:
            raise InvalidWrite(
                f"number {day.number_id}: {len(day.sends)} sends exceed the day's quota {day.decision.quota}"
            )
        if day.cut < 0:
            raise InvalidWrite("cut must not be negative")
        if day.number_id in by_number:
            raise InvalidWrite(f"number {day.number_id} appears twice in one batch")
        _check_sends(day.sends)
        by_number[day.number_id] = day
    if not by_number:
        return []
    ids = sorted(by_number)
    with _write(engine) as conn:
        numbers = {
            int(row.id): row
            for row in conn.execute(
                sa.select(*_RAMP_READ).where(NUMBERS.c.id.in_(ids)).order_by(NUMBERS.c.id).with_for_update()
            )
        }
        existing = {
            (int(row.number_id), row.local_date)
            for row in conn.execute(
                sa.select(DAY_PLANS.c.number_id, DAY_PLANS.c.local_date).where(
                    DAY_PLANS.c.number_id.in_(ids),
                    DAY_PLANS.c.local_date.in_({d.decision.local_date for d in by_number.values()}),
                )
            )
        }
        todo = [
            by_number[n]
            for n in ids
            if n in numbers and (n, by_number[n].decision.local_date) not in existing
        ]
        if not todo:
            return []
        _check_replies_exist(conn, [send for day in todo for send in day.sends])
        plan_rows = [
            (
                day.number_id,
                day.decision.local_date,
                day.decision.plan_day,
                day.decision.next_plan_day,
                str(day.decision.action),
                day.decision.quota,
                day.decision.plan_volume,
                day.decision.max_new_contacts,
                [{"rule": r.rule, "action": str(r.action), "text": r.text} for r in day.decision.reasons],
                0,
                day.cut,
                day.cut_reason,
                stamp,
            )
            for day in todo
        ]
        kinds = {
            (day.number_id, s.recipient): s.recipient_kind
            for day in todo
            for s in day.sends
            if s.recipient_kind is not None
        }
        fast = conn.dialect.name == "postgresql"
        if fast:
            plan_ids = bulk.insert_day_plans_pg(conn, plan_rows)
            bulk.upsert_recipients_pg(conn, kinds, stamp)
        else:
            inserted = conn.execute(
                sa.insert(DAY_PLANS).returning(
                    DAY_PLANS.c.id, DAY_PLANS.c.number_id, sort_by_parameter_order=True
                ),
                [dict(zip(bulk.PLAN_COLUMNS, row, strict=True)) for row in plan_rows],
            ).all()
            plan_ids = {int(row.number_id): int(row.id) for row in inserted}
            _upsert_recipients(conn, kinds, stamp)
        rows = [
            row
            for day in todo
            for row in _message_values(
                day.number_id, plan_ids[day.number_id], day.decision.local_date, day.sends, stamp
            )
        ]
        if rows and fast:
            bulk.copy_messages_pg(conn, rows)
        elif rows:
            conn.execute(sa.insert(MESSAGES), [dict(zip(MESSAGE_COLUMNS, row, strict=True)) for row in rows])
        ramps = []
        for day in todo:
            number = numbers[day.number_id]
            if fast and not _pauses(number, day.decision):
                ramps.append(_ramp_values(number, day.decision))
            else:
                _apply_decision(conn, number, day.decision, stamp)
        bulk.update_ramps_pg(conn, ramps, stamp)
    return [day.number_id for day in todo]


_RAMP_READ: tuple[sa.Column[Any], ...] = (NUMBERS.c.id, NUMBERS.c.state, NUMBERS.c.last_volume)
"""What storing a decision reads of its number (`_apply_decision`)."""


def _pauses(number: sa.Row[Any], decision: Decision) -> bool:
    """Whether storing ``decision`` auto-pauses the number (a PAUSE decision for an active number)."""
    return decision.action is Action.PAUSE and number.state == NumberStatus.ACTIVE


def _ramp_values(number: sa.Row[Any], decision: Decision) -> tuple[int, int, bool, int]:
    """(id, plan_day, advance_pending, last_volume) after ``decision``, as `_apply_decision` sets them."""
    return (
        int(number.id),
        decision.plan_day,
        decision.next_plan_day > decision.plan_day,
        decision.quota if decision.quota > 0 else number.last_volume,
    )


def _apply_decision(conn: Connection, number: sa.Row[Any], decision: Decision, stamp: datetime) -> None:
    _, plan_day, advance_pending, last_volume = _ramp_values(number, decision)
    values: dict[str, Any] = {
        "plan_day": plan_day,
        "advance_pending": advance_pending,
        "last_volume": last_volume,
        "updated_at": stamp,
    }
    auto_pause = _pauses(number, decision)
    if auto_pause:
        why = "; ".join(r.text for r in decision.reasons if r.action is Action.PAUSE) or "risk policy"
        values.update(
            state=NumberStatus.PAUSED.value,
            paused_reason=why[:500],
            paused_at=stamp,
            paused_until=None,
            paused_volume=number.last_volume,
            advance_pending=False,
        )
    conn.execute(sa.update(NUMBERS).where(NUMBERS.c.id == number.id).values(**values))
    if auto_pause:
        _audit(conn, "decide", "auto_pause", number.id, {"reason": values["paused_reason"]}, stamp)


GAVE_WAY = "gave way to a reply to a peer"
"""Reason of an opener skipped so that a reply fits in its day's quota (replies build the response rate)."""

REPLY_KINDS = (MessageKind.PEER_REPLY.value, MessageKind.REPLY.value)


def add_sends(
    engine: Engine,
    number_id: int,
    local_date: date,
    sends: Sequence[PlannedSend],
    *,
    now: datetime | None = None,
) -> list[int]:
    """Add messages to an existing day plan (a peer's reply, an extra note); the ids of those added.

    The day's books hold at all times: its messages that are not skipped never outnumber its quota.
    One transaction with the number row locked (claims, pauses and other additions of the number wait):
    a send that fits in the room left (quota - used - still pending) is added; a REPLY that does not fit
    takes the place of the day's LATEST still-pending opener (skipped: `GAVE_WAY`), because replies
    build the response rate; a send that still cannot fit (no pending opener to give way) is not added,
    with an audit row saying why (`peer_reply_skipped` for a peer's reply, else `send_not_added`).
    A day without a plan raises `UserError`.
    """
    stamp = _stamp(now)
    _message_rows(number_id, 0, local_date, sends, stamp)
    with _write(engine) as conn:
        _lock_number(conn, number_id)
        day = _day_row(conn, number_id, local_date)
        if day is None:
            raise UserError(f"number {number_id} has no plan for {local_date}")
        _check_replies_exist(conn, sends)
        room = day.quota - day.used - _pending(conn, day.id)
        ids: list[int] = []
        for send, row in zip(sends, _message_rows(number_id, day.id, local_date, sends, stamp), strict=True):
            while room <= 0 and send.kind in REPLY_KINDS and _give_way(conn, day.id, stamp):
                room += 1  # (more than once only on a day overfilled behind the store's back)
            if room <= 0:
                why = "the day's quota is full and no pending opener can give way"
                detail = {
                    "local_date": local_date.isoformat(),
                    "kind": send.kind,
                    "in_reply_to": send.in_reply_to,
                    "quota": day.quota,
                    "reason": why,
                }
                action = "peer_reply_skipped" if send.kind == MessageKind.PEER_REPLY else "send_not_added"
                _audit(conn, "worker", action, number_id, detail, stamp)
                continue
            ids.append(
                int(conn.execute(sa.insert(MESSAGES).values(**row).returning(MESSAGES.c.id)).scalar_one())
            )
            room -= 1
        return ids


def _pending(conn: Connection, day_plan_id: int) -> int:
    """Messages of the day that may still take a slot (planned or queued)."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                MESSAGES.c.day_plan_id == day_plan_id, MESSAGES.c.state.in_(CLAIMABLE)
            )
        ).scalar_one()
    )


def _give_way(conn: Connection, day_plan_id: int, stamp: datetime) -> bool:
    """Skip the day's latest still-pending opener (`GAVE_WAY`); False when there is none."""
    latest = conn.execute(
        sa.select(MESSAGES.c.id)
        .where(
            MESSAGES.c.day_plan_id == day_plan_id,
            MESSAGES.c.kind == MessageKind.OPENER.value,
            MESSAGES.c.state.in_(CLAIMABLE),
        )
        .order_by(MESSAGES.c.scheduled_at.desc(), MESSAGES.c.id.desc())
        .limit(1)
        .with_for_update()
    ).scalar_one_or_none()
    if latest is None:
        return False
    return _skip_where(conn, MESSAGES.c.id == latest, GAVE_WAY, stamp) == 1


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
    stamp = _stamp(now)
    _message_rows(number_id, 0, local_date, sends, stamp)
    with _write(engine) as conn:
        number = conn.execute(
            sa.select(NUMBERS.c.id, NUMBERS.c.state).where(NUMBERS.c.id == number_id).with_for_update()
        ).one_or_none()
        done = conn.execute(sa.select(AUDIT.c.detail).where(AUDIT.c.action == "respread")).scalars()
        if any(isinstance(d, dict) and d.get("resume_id") == resume_id for d in done):
            return 0
        added = 0
        day = _day_row(conn, number_id, local_date)
        if number is not None and number.state == NumberStatus.ACTIVE and day is not None:
            left = max(day.quota - day.used - _pending(conn, day.id), 0)
            rows = _message_rows(number_id, day.id, local_date, sends, stamp)[:left]
            if rows:
                _add_recipients(conn, number_id, sends[:left], stamp)
                conn.execute(sa.insert(MESSAGES), rows)
            added = len(rows)
        _audit(
            conn,
            "scheduler",
            "respread",
            number_id if number is not None else None,
            {**(detail or {}), "resume_id": resume_id, "added": added},
            stamp,
        )
    return added


@dataclass(frozen=True)
class DayMessage:
    """What a backlog's re-spread reads of one message of the day."""

    id: int
    state: str
    kind: str
    scheduled_at: datetime
    not_before: datetime | None = None
    claimed_at: datetime | None = None


@dataclass(frozen=True)
class Retiming:
    """A backlog's re-spread, decided from the day's messages (see `retime_day`)."""

    moves: Mapping[int, tuple[datetime, datetime | None]]  # message id -> (new scheduled_at, window_end)
    skips: Mapping[int, str]  # message id -> why it is skipped (no time left at the plan's pace)
    detail: Mapping[str, Any]  # what the audit row says about it (the backlog, the cut)


BACKLOG_ACTION = "backlog_respread"


def retime_day(
    engine: Engine,
    number_id: int,
    local_date: date,
    decide: Callable[[Sequence[DayMessage]], Retiming | None],
    *,
    now: datetime,
) -> Retiming | None:
    """Re-time the still-pending messages of a number's day, when ``decide`` finds a backlog.

    One transaction with the number row locked FOR UPDATE (claims, pauses and additions of the number
    wait; a claim taken before holds its row as `sending`): the day's messages are read, ``decide``
    looks at them (pure) and says which pending ones move to which time and which are skipped. So two
    schedulers, or a retried tick, cannot re-spread the same backlog twice: the second finds the
    messages already spaced and ``decide`` returns None. A moved message goes back to `planned` at its
    new time (a stale broker copy is refused as not due and re-enqueued for then); nothing else changes.
    The re-spread is recorded as a `backlog_respread` audit row; consecutive ones of the same day (an
    outage re-spreads again each time a send is missed) update that row and count the repeats.
    """
    stamp = _aware(now)
    with _read(engine) as conn:  # most candidates need nothing: decide without the write lock first
        if decide(_day_messages(conn, number_id, local_date)) is None:
            return None
    with _write(engine) as conn:
        number = conn.execute(
            sa.select(NUMBERS.c.state).where(NUMBERS.c.id == number_id).with_for_update()
        ).one_or_none()
        if number is None or number.state != NumberStatus.ACTIVE:
            return None
        retiming = decide(_day_messages(conn, number_id, local_date))
        if retiming is None:
            return None
        for message_id, (at, window_end) in retiming.moves.items():
            conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.id == message_id, MESSAGES.c.state.in_(CLAIMABLE))
                .values(
                    state=MessageState.PLANNED.value,
                    scheduled_at=_aware(at, "scheduled_at"),
                    not_before=None,
                    queued_at=None,
                    window_end=_aware(window_end, "window_end") if window_end is not None else None,
                )
            )
        for message_id, reason in retiming.skips.items():
            _skip_where(conn, MESSAGES.c.id == message_id, reason, stamp)
        detail = {"local_date": local_date.isoformat(), **retiming.detail}
        latest = conn.execute(
            sa.select(AUDIT.c.id, AUDIT.c.action, AUDIT.c.detail)
            .where(AUDIT.c.number_id == number_id)
            .order_by(AUDIT.c.id.desc())
            .limit(1)
        ).one_or_none()
        before = latest.detail if latest is not None and isinstance(latest.detail, dict) else None
        if (
            latest is not None
            and latest.action == BACKLOG_ACTION
            and before is not None
            and (before.get("local_date") == detail["local_date"])
        ):
            detail = {
                **detail,
                "first_at": before.get("first_at", ""),
                "repeats": int(before.get("repeats", 1)) + 1,
                "skipped": int(before.get("skipped", 0)) + int(detail.get("skipped", 0)),
            }
            conn.execute(sa.update(AUDIT).where(AUDIT.c.id == latest.id).values(detail=detail, at=stamp))
        else:
            _audit(
                conn, "scheduler", BACKLOG_ACTION, number_id, {**detail, "first_at": stamp.isoformat()}, stamp
            )
        return retiming


def _day_messages(conn: Connection, number_id: int, local_date: date) -> list[DayMessage]:
    rows = conn.execute(
        sa.select(
            MESSAGES.c.id,
            MESSAGES.c.state,
            MESSAGES.c.kind,
            MESSAGES.c.scheduled_at,
            MESSAGES.c.not_before,
            MESSAGES.c.claimed_at,
        )
        .where(MESSAGES.c.number_id == number_id, MESSAGES.c.local_date == local_date)
        .order_by(MESSAGES.c.id)
    ).all()
    return [DayMessage(int(r.id), r.state, r.kind, r.scheduled_at, r.not_before, r.claimed_at) for r in rows]


def overdue_numbers(engine: Engine, before: datetime, around: timedelta, limit: int = 1000) -> list[int]:
    """Numbers whose day may hold a backlog (`retime_day` decides), lowest id first: those with two or
    more `planned`/`queued` messages due before ``before`` (scheduled_at and not_before both earlier),
    and those with one whose number has another pending message due, or a send claimed, within
    ``around`` of ``before``. A number with one late message and nothing near it (a healthy fleet
    under load) costs no more than this query."""
    before = _aware(before, "before")
    overdue = sa.and_(
        MESSAGES.c.state.in_(CLAIMABLE),
        MESSAGES.c.scheduled_at < before,
        sa.or_(MESSAGES.c.not_before.is_(None), MESSAGES.c.not_before < before),
    )
    with _read(engine) as conn:
        counts = conn.execute(
            sa.select(MESSAGES.c.number_id, sa.func.count())
            .where(overdue)
            .group_by(MESSAGES.c.number_id)
            .order_by(MESSAGES.c.number_id)
            .limit(limit)
        ).all()
        many = {int(n) for n, count in counts if count >= 2}
        single = [int(n) for n, count in counts if count == 1]
        near: set[int] = set()
        for at in range(0, len(single), 500):
            near.update(
                int(n)
                for n in conn.execute(
                    sa.select(MESSAGES.c.number_id)
                    .where(
                        MESSAGES.c.number_id.in_(single[at : at + 500]),
                        sa.or_(
                            sa.and_(
                                MESSAGES.c.state.in_(CLAIMABLE),
                                MESSAGES.c.scheduled_at >= before,
                                MESSAGES.c.scheduled_at < before + around,
                            ),
                            MESSAGES.c.claimed_at > before - around,
                        ),
                    )
                    .distinct()
                ).scalars()
            )
    return sorted(many | near)


def get_day_plan(engine: Engine, number_id: int, local_date: date) -> DayPlan | None:
    """The decision stored for that number and local day (what `warmup why` explains)."""
    with session_scope(engine, read_only=True) as session:
        return session.exec(
            select(DayPlan).where(DayPlan.number_id == number_id, DayPlan.local_date == local_date)
        ).first()


def cut_quota(
    engine: Engine,
    number_id: int,
    local_date: date,
    new_quota: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> int | None:
    """Lower the day's quota (a throttle from the provider); never below the slots already used.

    Returns the new quota, or None when the day has no plan. Pending (planned|queued) messages that no
    longer fit are skipped at once with the reason, the latest first and openers before replies, so the
    day's messages that are not skipped never outnumber its quota. Number row locked first, like every
    writer that adds to or trims a day (`add_sends`, `claim`, `pause_numbers`).
    """
    if new_quota < 0:
        raise InvalidWrite("a quota cannot be negative")
    stamp = _stamp(now)
    with _write(engine) as conn:
        _lock_number(conn, number_id)
        row = _day_row(
            conn, number_id, local_date, DAY_PLANS.c.id, DAY_PLANS.c.quota, DAY_PLANS.c.used, DAY_PLANS.c.cut
        )
        if row is None:
            return None
        # `used` can only shrink meanwhile (a claim needs the number row), so `quota >= used` holds
        quota: int = max(row.used, min(row.quota, new_quota))
        excess = row.used + _pending(conn, row.id) - quota
        trimmed = 0
        if excess > 0:
            latest = conn.execute(
                sa.select(MESSAGES.c.id)
                .where(MESSAGES.c.day_plan_id == row.id, MESSAGES.c.state.in_(CLAIMABLE))
                .order_by(
                    (MESSAGES.c.kind == MessageKind.OPENER.value).desc(),
                    MESSAGES.c.scheduled_at.desc(),
                    MESSAGES.c.id.desc(),
                )
                .limit(excess)
            ).scalars()
            trimmed = _skip_where(conn, MESSAGES.c.id.in_(list(latest)), f"quota cut: {reason}", stamp)
        conn.execute(
            sa.update(DAY_PLANS)
            .where(DAY_PLANS.c.id == row.id)
            .values(quota=quota, cut=row.cut + (row.quota - quota), cut_reason=reason[:500])
        )
        if quota < row.quota:
            detail = {
                "local_date": local_date.isoformat(),
                "from": row.quota,
                "to": quota,
                "reason": reason,
                "skipped": trimmed,
            }
            _audit(conn, "worker", "cut_quota", number_id, detail, stamp)
        return quota


# ----------------------------------------------------------------------------------------------- claim


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"  # the caller owns the send: call the provider, then record_*
    NOT_CLAIMABLE = "not_claimable"  # missing, already claimed by someone else, or finished: do nothing
    NOT_DUE = "not_due"  # still waiting (scheduled_at or not_before in the future): unchanged
    PAUSED = "paused"  # the number is paused or retired: the message is now skipped
    QUOTA_REACHED = "quota_reached"  # the day's quota is used up: the message is now skipped
    DAY_OVER = "day_over"  # its local day has passed in the number's time zone: now skipped
    WINDOW_CLOSED = "window_closed"  # the send window it was planned in has ended: now skipped


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

    @property
    def claimed(self) -> bool:
        return self.status is ClaimStatus.CLAIMED


def claim(engine: Engine, message_id: int, worker_id: str, now: datetime) -> ClaimResult:
    """Take one message for sending; exactly one of any number of concurrent claimers wins.

    In one transaction: lock the number (shared), re-check that it is active, that the message is due,
    its local day not over and its send window (`window_end`) still open, move the message
    planned|queued -> sending (conditional UPDATE), and take a quota slot (`used = used + 1 WHERE
    used < quota`). A paused number, a full quota, a past day or a closed window turn the message
    `skipped` with the reason instead; a message that is not due is left alone.

    The window has NO grace: a claim at or after `window_end` is refused, so the only way a send can
    land after its window is the provider round trip of a claim made inside it (about a second in real
    time). A message dispatched too late for its window is skipped ("window closed"), never sent late.

    On SQLite a cheap read-only look comes first, so a redelivered or duplicate broker message is turned
    away without taking the write lock. PostgreSQL needs no such look: `_claim_pg_fast` claims in one
    statement, and anything but a clean claim falls back to `_claim_pg` (two statements, every reason).
    """
    now = _aware(now)
    if engine.dialect.name == "postgresql":
        fast = _claim_pg_fast(engine, message_id, worker_id[:128], now)
        return fast if fast is not None else _claim_pg(engine, message_id, worker_id[:128], now)
    with _read(engine) as conn:
        current = conn.execute(
            sa.select(MESSAGES.c.state).where(MESSAGES.c.id == message_id)
        ).scalar_one_or_none()
    if current is None:
        return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="no such message")
    if current not in CLAIMABLE:
        return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason=f"message is {current}")
    with _write(engine) as conn:
        row = conn.execute(
            sa.select(
                MESSAGES.c.number_id,
                MESSAGES.c.state,
                MESSAGES.c.local_date,
                MESSAGES.c.scheduled_at,
                MESSAGES.c.not_before,
                MESSAGES.c.window_end,
            ).where(MESSAGES.c.id == message_id)
        ).one_or_none()
        if row is None:
            return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="no such message")
        if row.state not in CLAIMABLE:
            return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason=f"message is {row.state}")
        number = conn.execute(
            sa.select(NUMBERS).where(NUMBERS.c.id == row.number_id).with_for_update(read=True)
        ).one()
        due_at = max(row.scheduled_at, row.not_before) if row.not_before is not None else row.scheduled_at
        if due_at > now:
            return ClaimResult(ClaimStatus.NOT_DUE, reason=f"due at {due_at.isoformat()}")
        if number.state != NumberStatus.ACTIVE:
            why = f"number {number.state}" + (f": {number.paused_reason}" if number.paused_reason else "")
            return _refuse(conn, message_id, ClaimStatus.PAUSED, why, now)
        if row.local_date < local_date_of(number.timezone, now):
            return _refuse(conn, message_id, ClaimStatus.DAY_OVER, f"its day {row.local_date} is over", now)
        if row.window_end is not None and now >= row.window_end:
            why = f"window closed at {row.window_end.isoformat()} before it could be sent"
            return _refuse(conn, message_id, ClaimStatus.WINDOW_CLOSED, why, now)
        claimed = conn.execute(
            sa.update(MESSAGES)
            .where(MESSAGES.c.id == message_id, MESSAGES.c.state.in_(CLAIMABLE))
            .values(
                state=MessageState.SENDING.value,
                claimed_by=worker_id[:128],
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
            return _unclaim(conn, message_id, ClaimStatus.QUOTA_REACHED, "the day's quota is reached", now)
        return ClaimResult(ClaimStatus.CLAIMED, _claimed_message(claimed, number))


_PG_CLAIM_READ = sa.text(
    "SELECT m.state, m.local_date, m.scheduled_at, m.not_before, m.window_end, n.state AS number_state,"
    " n.paused_reason, n.timezone, n.phone, n.provider, n.token_ref, n.base_url, n.phone_number_id,"
    " EXISTS (SELECT 1 FROM numbers p WHERE p.phone = m.recipient) AS recipient_is_number"
    " FROM outbound_messages m JOIN numbers n ON n.id = m.number_id WHERE m.id = :message_id"
    " FOR SHARE OF n"
).columns(
    state=sa.String(),
    local_date=sa.Date(),
    scheduled_at=UTCDateTime(),
    not_before=UTCDateTime(),
    window_end=UTCDateTime(),
    number_state=sa.String(),
    paused_reason=sa.String(),
    timezone=sa.String(),
    phone=sa.String(),
    provider=sa.String(),
    token_ref=sa.String(),
    base_url=sa.String(),
    phone_number_id=sa.String(),
    recipient_is_number=sa.Boolean(),
)
"""The claim's read on PostgreSQL: the message with its number row locked FOR SHARE (one round trip)."""


def _message_columns() -> dict[str, Any]:
    """Result types of the message columns both PostgreSQL claim statements return."""
    return {
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


NUMBER_RESULT_COLUMNS: dict[str, Any] = {
    "timezone": sa.String(),
    "phone": sa.String(),
    "provider": sa.String(),
    "token_ref": sa.String(),
    "base_url": sa.String(),
    "phone_number_id": sa.String(),
    "recipient_is_number": sa.Boolean(),
    "slot": sa.Boolean(),
}
"""Result types of what the claim statements return beside the message columns (`_message_columns`):
the number's send details, whether the recipient is a fleet number, and whether a quota slot was taken."""


_PG_CLAIM_TAKE = (
    sa.text(
        "WITH m AS (UPDATE outbound_messages SET state = 'sending', claimed_by = :worker_id,"
        " claimed_at = :now, attempts = attempts + 1, reason = NULL"
        " WHERE id = :message_id AND state IN ('planned', 'queued')"
        " RETURNING id, number_id, day_plan_id, local_date, recipient, kind, text, typing_seconds,"
        " scheduled_at, attempts, in_reply_to),"
        " d AS (UPDATE day_plans SET used = day_plans.used + 1 FROM m"
        " WHERE day_plans.id = m.day_plan_id AND day_plans.used < day_plans.quota RETURNING day_plans.id)"
        " SELECT m.*, EXISTS (SELECT 1 FROM d) AS slot FROM m"
    )
    .bindparams(sa.bindparam("now", type_=UTCDateTime()))
    .columns(
        **_message_columns(),
        slot=sa.Boolean(),
    )
)
"""The claim's write on PostgreSQL: planned|queued -> sending, then the quota slot, in ONE statement
(message row before day plan row, the lock order everywhere); `slot` is false when the quota is full."""


_PG_CLAIM_FAST = (
    sa.text(
        "WITH n AS (SELECT numbers.id, numbers.state, numbers.timezone, numbers.phone, numbers.provider,"
        " numbers.token_ref, numbers.base_url, numbers.phone_number_id"
        " FROM numbers JOIN outbound_messages o ON o.number_id = numbers.id WHERE o.id = :message_id"
        " FOR SHARE OF numbers),"
        " m AS (UPDATE outbound_messages SET state = 'sending', claimed_by = :worker_id,"
        " claimed_at = :now, attempts = outbound_messages.attempts + 1, reason = NULL FROM n"
        " WHERE outbound_messages.id = :message_id AND outbound_messages.number_id = n.id"
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
        " SELECT cur.state AS current_state, m.*, n.timezone, n.phone, n.provider, n.token_ref,"
        " n.base_url, n.phone_number_id,"
        " EXISTS (SELECT 1 FROM numbers p WHERE p.phone = m.recipient) AS recipient_is_number,"
        " EXISTS (SELECT 1 FROM d) AS slot"
        " FROM (SELECT state FROM outbound_messages WHERE id = :message_id) AS cur"
        " LEFT JOIN m ON true LEFT JOIN n ON n.id = m.number_id"
    )
    .bindparams(sa.bindparam("now", type_=UTCDateTime()))
    .columns(current_state=sa.String(), **_message_columns(), **NUMBER_RESULT_COLUMNS)
)
"""The common claim on PostgreSQL in ONE statement: lock the number FOR SHARE, move the message to
`sending` only if the number is active and the message due, in its day and window, then take the slot
(number -> message -> day plan, the lock order everywhere). `current_state` is the message's state
before the statement (no row: no such message); a claimable one that was not claimed (the message
columns are NULL) goes to `_claim_pg`, which finds out why."""


class _NotFast(Exception):
    """The fast claim must not stand: roll its transaction back and take the checked path."""


def _claim_pg_fast(engine: Engine, message_id: int, worker_id: str, now: datetime) -> ClaimResult | None:
    """The claim of a message that is simply claimable (the hot path: 3 round trips), NOT_CLAIMABLE for
    a missing or finished one (a duplicate delivery, as cheap as the generic path's read-only look), or
    None when neither holds (refused, not due, lost a race...) and nothing was changed: `_claim_pg`
    then decides.

    The local day is checked in SQL with PostgreSQL's time zone data, then again here with Python's
    (`local_date_of`, the authority everywhere else); should they ever disagree the transaction is
    rolled back, so the checked path's answer is the only one that counts.
    """
    params = {"message_id": message_id, "worker_id": worker_id, "now": now}
    try:
        with _write(engine) as conn:
            row = conn.execute(_PG_CLAIM_FAST, params).one_or_none()
            if row is None:
                return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="no such message")
            if row.id is None and row.current_state not in CLAIMABLE:
                return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason=f"message is {row.current_state}")
            if row.id is None or row.local_date < local_date_of(row.timezone, now):
                raise _NotFast
            if not row.slot:
                return _unclaim(
                    conn, message_id, ClaimStatus.QUOTA_REACHED, "the day's quota is reached", now
                )
            return ClaimResult(ClaimStatus.CLAIMED, _claimed_message(row, row))
    except (_NotFast, sa.exc.DataError):  # DataError: a time zone PostgreSQL does not know
        return None


def _claimed_message(claimed: sa.Row[Any], number: sa.Row[Any]) -> ClaimedMessage:
    """What the worker needs, from the claimed message row and its number's row."""
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
        recipient_is_number=_looked_up(number._mapping.get("recipient_is_number")),
    )


def _looked_up(flag: object) -> bool | None:
    """A claim statement's `recipient_is_number` (None: the statement did not look it up)."""
    return None if flag is None else bool(flag)


def _claim_pg(engine: Engine, message_id: int, worker_id: str, now: datetime) -> ClaimResult:
    """`claim` on PostgreSQL: the same checks and locks as the generic path in two statements.

    The read locks the number row FOR SHARE (so a committed pause is seen, and a pause in progress
    waits for this claim) before the write moves the message and takes the slot; the write is
    conditional on the state, so of concurrent claimers exactly one gets a row back.
    """
    with _write(engine) as conn:
        row = conn.execute(_PG_CLAIM_READ, {"message_id": message_id}).one_or_none()
        if row is None:
            return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="no such message")
        if row.state not in CLAIMABLE:
            return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason=f"message is {row.state}")
        due_at = max(row.scheduled_at, row.not_before) if row.not_before is not None else row.scheduled_at
        if due_at > now:
            return ClaimResult(ClaimStatus.NOT_DUE, reason=f"due at {due_at.isoformat()}")
        if row.number_state != NumberStatus.ACTIVE:
            why = f"number {row.number_state}" + (f": {row.paused_reason}" if row.paused_reason else "")
            return _refuse(conn, message_id, ClaimStatus.PAUSED, why, now)
        if row.local_date < local_date_of(row.timezone, now):
            return _refuse(conn, message_id, ClaimStatus.DAY_OVER, f"its day {row.local_date} is over", now)
        if row.window_end is not None and now >= row.window_end:
            why = f"window closed at {row.window_end.isoformat()} before it could be sent"
            return _refuse(conn, message_id, ClaimStatus.WINDOW_CLOSED, why, now)
        claimed = conn.execute(
            _PG_CLAIM_TAKE, {"message_id": message_id, "worker_id": worker_id, "now": now}
        ).one_or_none()
        if claimed is None:
            return ClaimResult(ClaimStatus.NOT_CLAIMABLE, reason="claimed by another worker")
        if not claimed.slot:
            return _unclaim(conn, message_id, ClaimStatus.QUOTA_REACHED, "the day's quota is reached", now)
        return ClaimResult(ClaimStatus.CLAIMED, _claimed_message(claimed, row))


def _refuse(
    conn: Connection, message_id: int, status: ClaimStatus, reason: str, now: datetime
) -> ClaimResult:
    """Skip a still-claimable message (conditional: a concurrent winner keeps it)."""
    moved = conn.execute(
        sa.update(MESSAGES)
        .where(MESSAGES.c.id == message_id, MESSAGES.c.state.in_(CLAIMABLE))
        .values(state=MessageState.SKIPPED.value, reason=reason[:500], finished_at=now)
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
            finished_at=now,
            claimed_by=None,
            claimed_at=None,
            attempts=MESSAGES.c.attempts - 1,
        )
    )
    return ClaimResult(status, reason=reason)


# --------------------------------------------------------------------------------------------- outcome


def _finish(
    conn: Connection, message_id: int, from_states: Sequence[str], values: dict[str, Any], free_slot: bool
) -> sa.Row[Any] | None:
    row = conn.execute(
        sa.update(MESSAGES)
        .where(MESSAGES.c.id == message_id, MESSAGES.c.state.in_(from_states))
        .values(**values)
        .returning(
            MESSAGES.c.day_plan_id,
            MESSAGES.c.number_id,
            MESSAGES.c.recipient,
            MESSAGES.c.text,
            MESSAGES.c.local_date,
        )
    ).one_or_none()
    if row is not None and free_slot:
        conn.execute(
            sa.update(DAY_PLANS)
            .where(DAY_PLANS.c.id == row.day_plan_id, DAY_PLANS.c.used > 0)
            .values(used=DAY_PLANS.c.used - 1)
        )
    return row


@contextmanager
def _one_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for ONE statement that is its own transaction (PostgreSQL autocommit): a single
    statement is atomic anyway, and BEGIN and COMMIT would cost two more round trips."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def _recorded(
    engine: Engine,
    write: Callable[[Connection], bool],
    transaction: Callable[[Engine], AbstractContextManager[Connection]] = _write,
) -> bool:
    """`write` in its own `transaction`, once more on a fresh connection when the first try found the
    server gone (a restarted PostgreSQL: the pool was invalidated). An outcome is recorded after the
    provider call, when losing it would turn a sent message `unknown`; a repeat is harmless, since
    every outcome write is conditional on the state it leaves (a second try after a commit whose
    answer was lost changes nothing and reports False)."""
    try:
        with transaction(engine) as conn:
            return write(conn)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with transaction(engine) as conn:
        return write(conn)


def _finish_sending(engine: Engine, message_id: int, values: dict[str, Any], free_slot: bool) -> bool:
    """sending -> whatever `values` say, in its own transaction; False when it is not `sending` any more."""
    return _recorded(
        engine,
        lambda conn: _finish(conn, message_id, (MessageState.SENDING.value,), values, free_slot) is not None,
    )


_PG_RECORD_SENT = sa.text(
    "WITH m AS (UPDATE outbound_messages SET state = 'sent', provider_message_id = :provider_message_id,"
    " finished_at = :now, reason = NULL WHERE id = :message_id AND state IN ('sending', 'unknown')"
    " RETURNING number_id, recipient, text, local_date),"
    " r AS (UPDATE recipients SET last_text = m.text,"
    " first_contacted_on = COALESCE(recipients.first_contacted_on, m.local_date), updated_at = :now"
    " FROM m WHERE recipients.number_id = m.number_id AND recipients.phone = m.recipient)"
    " SELECT count(*) AS recorded FROM m"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))
"""`record_sent` on PostgreSQL: the message, then its recipient row, in ONE statement (one transaction)."""


def record_sent(engine: Engine, message_id: int, provider_message_id: str | None, now: datetime) -> bool:
    """sending -> sent (also unknown -> sent, when a late confirmation proves it went out).

    Also notes the text and first contact on the recipient row, if there is one. False when the
    message was in neither state (nothing changed).
    """
    now = _aware(now)
    if engine.dialect.name == "postgresql":
        params = {"message_id": message_id, "provider_message_id": provider_message_id, "now": now}

        def write(conn: Connection) -> bool:
            return bool(conn.execute(_PG_RECORD_SENT, params).scalar_one())

        return _recorded(engine, write, _one_statement)
    with _write(engine) as conn:
        row = _finish(
            conn,
            message_id,
            (MessageState.SENDING.value, MessageState.UNKNOWN.value),
            {
                "state": MessageState.SENT.value,
                "provider_message_id": provider_message_id,
                "finished_at": now,
                "reason": None,
            },
            free_slot=False,
        )
        if row is None:
            return False
        conn.execute(
            sa.update(RECIPIENTS)
            .where(RECIPIENTS.c.number_id == row.number_id, RECIPIENTS.c.phone == row.recipient)
            .values(
                last_text=row.text,
                first_contacted_on=sa.func.coalesce(RECIPIENTS.c.first_contacted_on, row.local_date),
                updated_at=now,
            )
        )
        return True


def record_failed(
    engine: Engine, message_id: int, reason: str, now: datetime, *, recipient_invalid: bool = False
) -> bool:
    """sending -> failed; the slot stays used (the provider may have counted it). With
    `recipient_invalid` the recipient row is marked invalid with the same reason, in the same transaction.
    """
    now = _aware(now)
    with _write(engine) as conn:
        row = _finish(
            conn,
            message_id,
            (MessageState.SENDING.value,),
            {"state": MessageState.FAILED.value, "reason": reason[:500], "finished_at": now},
            free_slot=False,
        )
        if row is None:
            return False
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
    values = {"state": MessageState.UNKNOWN.value, "reason": reason[:500], "finished_at": _aware(now)}
    return _finish_sending(engine, message_id, values, free_slot=False)


def record_skipped(engine: Engine, message_id: int, reason: str, now: datetime) -> bool:
    """sending -> skipped when nothing went out (e.g. retries exhausted); gives the slot back."""
    values = {"state": MessageState.SKIPPED.value, "reason": reason[:500], "finished_at": _aware(now)}
    return _finish_sending(engine, message_id, values, free_slot=True)


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
    not_before = _aware(not_before, "not_before")
    queued_at = _aware(now) if now is not None else not_before
    values: dict[str, Any] = {
        "state": MessageState.QUEUED.value,
        "not_before": not_before,
        "reason": reason[:500],
        "queued_at": queued_at,
        "claimed_by": None,
        "claimed_at": None,
    }
    if window_end is not None:
        values["window_end"] = _aware(window_end, "window_end")
    return _finish_sending(engine, message_id, values, free_slot=True)


def recover_stale(engine: Engine, older_than: datetime, now: datetime | None = None) -> int:
    """`sending` claims taken before `older_than` (their worker died) become `unknown`; returns how many.

    Unknown still counts against the quota and is never re-sent: we cannot tell whether it went out.
    """
    older_than = _aware(older_than, "older_than")
    with _write(engine) as conn:
        return int(
            conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.state == MessageState.SENDING.value, MESSAGES.c.claimed_at < older_than)
                .values(
                    state=MessageState.UNKNOWN.value,
                    reason="claim expired: the worker stopped before recording the outcome",
                    finished_at=_aware(now) if now is not None else older_than,
                )
            ).rowcount
        )


# ------------------------------------------------------------------------------------------- dispatch


def due_messages(engine: Engine, now: datetime, limit: int) -> list[int]:
    """Ids of `planned` messages that are due (scheduled_at <= now, not_before unset or passed),
    oldest first."""
    now = _aware(now)
    with _read(engine) as conn:
        return list(
            conn.execute(
                sa.select(MESSAGES.c.id)
                .where(
                    MESSAGES.c.state == MessageState.PLANNED.value,
                    MESSAGES.c.scheduled_at <= now,
                    sa.or_(MESSAGES.c.not_before.is_(None), MESSAGES.c.not_before <= now),
                )
                .order_by(MESSAGES.c.scheduled_at, MESSAGES.c.id)
                .limit(limit)
            ).scalars()
        )


def due_within(engine: Engine, until: datetime, limit: int) -> list[tuple[int, datetime]]:
    """(id, due time) of `planned` messages due by `until` (scheduled_at and not_before both <= it),
    earliest first: the dispatcher hands these to the broker with a delay, so they are claimed on time."""
    until = _aware(until, "until")
    with _read(engine) as conn:
        rows = conn.execute(
            sa.select(MESSAGES.c.id, MESSAGES.c.scheduled_at, MESSAGES.c.not_before)
            .where(
                MESSAGES.c.state == MessageState.PLANNED.value,
                MESSAGES.c.scheduled_at <= until,
                sa.or_(MESSAGES.c.not_before.is_(None), MESSAGES.c.not_before <= until),
            )
            .order_by(MESSAGES.c.scheduled_at, MESSAGES.c.id)
            .limit(limit)
        ).all()
    return [
        (int(row.id), max(row.scheduled_at, row.not_before) if row.not_before else row.scheduled_at)
        for row in rows
    ]


def mark_queued(engine: Engine, ids: Sequence[int], now: datetime | None = None) -> list[int]:
    """planned -> queued for those of `ids` still planned; returns the ids actually moved (enqueue those).

    `now` is stored as `queued_at` (used by `requeue_lost`); without it, the message's scheduled time.
    """
    if not ids:
        return []
    queued_at: Any = _aware(now) if now is not None else MESSAGES.c.scheduled_at
    with _write(engine) as conn:
        return sorted(
            conn.execute(
                sa.update(MESSAGES)
                .where(MESSAGES.c.id.in_(list(ids)), MESSAGES.c.state == MessageState.PLANNED.value)
                .values(state=MessageState.QUEUED.value, queued_at=queued_at)
                .returning(MESSAGES.c.id)
            ).scalars()
        )


def requeue_lost(engine: Engine, older_than: datetime, now: datetime | None = None) -> list[int]:
    """Ids of `queued` messages eligible since before `older_than` (queued_at and not_before both
    earlier): their broker message was probably lost (e.g. a Redis restart). Re-enqueue them; a
    duplicate is harmless because `claim` is conditional. With `now`, their `queued_at` becomes `now`
    so the next call does not return them again before another grace period.
    """
    older_than = _aware(older_than, "older_than")
    with _write(engine) as conn:
        condition = sa.and_(
            MESSAGES.c.state == MessageState.QUEUED.value,
            MESSAGES.c.queued_at < older_than,
            sa.or_(MESSAGES.c.not_before.is_(None), MESSAGES.c.not_before < older_than),
        )
        if now is None:
            return list(
                conn.execute(sa.select(MESSAGES.c.id).where(condition).order_by(MESSAGES.c.id)).scalars()
            )
        return sorted(
            conn.execute(
                sa.update(MESSAGES).where(condition).values(queued_at=_aware(now)).returning(MESSAGES.c.id)
            ).scalars()
        )


def skip_remaining(
    engine: Engine, number_id: int, local_date: date, reason: str, now: datetime | None = None
) -> int:
    """planned|queued -> skipped for that number and day (pause, throttle to zero, day end); how many."""
    with _write(engine) as conn:
        return _skip(conn, [number_id], reason, _stamp(now), local_date)


def _skip(
    conn: Connection, number_ids: Sequence[int], reason: str, stamp: datetime, local_date: date | None = None
) -> int:
    condition = sa.and_(MESSAGES.c.number_id.in_(list(number_ids)), MESSAGES.c.state.in_(CLAIMABLE))
    if local_date is not None:
        condition = sa.and_(condition, MESSAGES.c.local_date == local_date)
    return _skip_where(conn, condition, reason, stamp)


def _skip_where(conn: Connection, condition: Any, reason: str, stamp: datetime) -> int:
    """Skip the claimable messages matching `condition`, locking them in id order first.

    A bare multi-row UPDATE locks rows in whatever order the plan scans them, so two bulk updates (a
    pause and `expire_day`) could each hold a row the other waits for: a PostgreSQL deadlock. Taking
    the row locks with `SELECT ... ORDER BY id FOR UPDATE` gives every bulk writer the same order
    (numbers first, by id, then messages by id), so they queue behind each other instead.
    """
    ids = list(
        conn.execute(
            sa.select(MESSAGES.c.id).where(condition).order_by(MESSAGES.c.id).with_for_update()
        ).scalars()
    )
    total = 0
    for start in range(0, len(ids), 500):
        total += conn.execute(
            sa.update(MESSAGES)
            .where(MESSAGES.c.id.in_(ids[start : start + 500]), MESSAGES.c.state.in_(CLAIMABLE))
            .values(state=MessageState.SKIPPED.value, reason=reason[:500], finished_at=stamp)
        ).rowcount
    return total


def _past_day_numbers(engine: Engine, now: datetime) -> list[int]:
    """Numbers (id order) with a planned|queued message of a local day before today, read WITHOUT locks.

    Such a message is overdue (its day, and so its time, is over), so only overdue messages are looked
    at (the state/scheduled_at index): usually a handful, where locking every number row each tick
    (10,000 at a time) held up every day being planned meanwhile. `expire_day` re-checks under lock.
    """
    with _read(engine) as conn:
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
            today[row.timezone] = local_date_of(row.timezone, now)
        if row.local_date < today[row.timezone]:
            found.add(int(row.number_id))
    return sorted(found)


def expire_day(engine: Engine, now: datetime, reason: str = "day over") -> int:
    """Skip every planned|queued message whose local day (in its number's time zone) is before today's.

    Run it periodically (the dispatcher) so nothing stays non-terminal after its day; stuck `sending`
    rows are `recover_stale`'s job.
    """
    now = _aware(now)
    candidates = _past_day_numbers(engine, now)
    if not candidates:
        return 0
    with _write(engine) as conn:
        # Same lock order as `pause_numbers` and `claim`: number rows (by id), then messages (by id).
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
            sa.and_(MESSAGES.c.number_id.in_(ids), MESSAGES.c.local_date < local_date_of(zone, now))
            for zone, ids in by_zone.items()
        ]
        if not conditions:
            return 0
        condition = sa.and_(MESSAGES.c.state.in_(CLAIMABLE), sa.or_(*conditions))
        return _skip_where(conn, condition, reason, now)


# ------------------------------------------------------------------------------------------- counting


def day_count(engine: Engine, number_id: int, local_date: date) -> int:
    """Messages of that day that went out or may have: sent + sending + unknown."""
    with _read(engine) as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(MESSAGES)
                .where(
                    MESSAGES.c.number_id == number_id,
                    MESSAGES.c.local_date == local_date,
                    MESSAGES.c.state.in_([s.value for s in COUNTED_STATES]),
                )
            ).scalar_one()
        )


def day_outcome(engine: Engine, number_id: int, local_date: date) -> DayOutcome:
    """What happened on that local day: messages by state, delivered ones (a delivered/read status was
    received), and replies (inbound messages not from us, received during that local day).

    An opener that gave way to a reply (`GAVE_WAY`) was replaced, not lost: it is left out of the
    counts, so a full day reads "8 sent of 8 planned", not "8 of 10"."""
    with _read(engine) as conn:
        timezone = conn.execute(sa.select(NUMBERS.c.timezone).where(NUMBERS.c.id == number_id)).scalar_one()
        counts: dict[str, int] = {
            state: count
            for state, count in conn.execute(
                sa.select(MESSAGES.c.state, sa.func.count())
                .where(
                    MESSAGES.c.number_id == number_id,
                    MESSAGES.c.local_date == local_date,
                    sa.or_(MESSAGES.c.reason.is_(None), MESSAGES.c.reason != GAVE_WAY),
                )
                .group_by(MESSAGES.c.state)
            )
        }
        delivered = conn.execute(
            sa.select(sa.func.count(sa.distinct(MESSAGES.c.id))).where(
                MESSAGES.c.number_id == number_id,
                MESSAGES.c.local_date == local_date,
                MESSAGES.c.state == MessageState.SENT.value,
                sa.exists().where(
                    INBOUND.c.number_id == number_id,
                    INBOUND.c.kind == InboundKind.STATUS.value,
                    INBOUND.c.provider_message_id == MESSAGES.c.provider_message_id,
                    INBOUND.c.status.in_(DELIVERED_STATUSES),
                ),
            )
        ).scalar_one()
        zone = ZoneInfo(timezone)
        start = datetime.combine(local_date, datetime.min.time(), zone).astimezone(UTC)
        end = datetime.combine(local_date + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
        replies = conn.execute(
            sa.select(sa.func.count()).where(
                INBOUND.c.number_id == number_id,
                INBOUND.c.kind == InboundKind.MESSAGE.value,
                INBOUND.c.from_me.is_(False),
                INBOUND.c.received_at >= start,
                INBOUND.c.received_at < end,
            )
        ).scalar_one()
    return DayOutcome(
        planned=sum(counts.values()),
        sent=counts.get(MessageState.SENT.value, 0),
        delivered=int(delivered),
        failed=counts.get(MessageState.FAILED.value, 0),
        skipped=counts.get(MessageState.SKIPPED.value, 0),
        unknown=counts.get(MessageState.UNKNOWN.value, 0),
        replies=int(replies),
    )


def get_message(engine: Engine, message_id: int) -> OutboundMessage | None:
    with session_scope(engine, read_only=True) as session:
        return session.get(OutboundMessage, message_id)


def list_messages(engine: Engine, number_id: int, local_date: date) -> list[OutboundMessage]:
    """That day's messages of a number in schedule order."""
    with session_scope(engine, read_only=True) as session:
        return list(
            session.exec(
                select(OutboundMessage)
                .where(OutboundMessage.number_id == number_id, OutboundMessage.local_date == local_date)
                .order_by(col(OutboundMessage.scheduled_at), col(OutboundMessage.id))
            ).all()
        )


# ------------------------------------------------------------------------------------- pause / resume


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
    now = _aware(now)
    if until is not None:
        until = _aware(until, "until")
    with _write(engine) as conn:
        rows = _select_numbers(conn, phones, plan_name, all_numbers, number_ids)
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
            skipped = _skip(conn, [row.id], f"number paused: {reason}", now)
            detail = {"reason": reason, "until": until.isoformat() if until else None, "skipped": skipped}
            _audit(conn, actor, "pause", row.id, detail, now)
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
    now = _aware(now)
    with _write(engine) as conn:
        rows = _select_numbers(conn, phones, plan_name, all_numbers, number_ids)
        return _resume(conn, [row for row in rows if row.state == NumberStatus.PAUSED], actor, reason, now)


def resume_expired(engine: Engine, now: datetime, actor: str = "scheduler") -> list[int]:
    """Resume paused numbers whose `paused_until` has passed; returns their ids."""
    now = _aware(now)
    with _write(engine) as conn:
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
                resumed_on=local_date_of(row.timezone, now),
                paused_volume=row.paused_volume if row.paused_volume is not None else row.last_volume,
                paused_reason=None,
                paused_until=None,
                paused_at=None,
                advance_pending=False,
                updated_at=now,
            )
        )
        detail = {"reason": reason, "paused_reason": row.paused_reason}
        _audit(conn, actor, "resume", row.id, detail, now)
    return [row.id for row in rows]


# ---------------------------------------------------------------------------------- readings, inbound


def save_reading(engine: Engine, number_id: int, local_date: date, reading: Reading) -> int:
    """Store one risk-meter result; returns its id (a day may hold several, the latest wins)."""
    for factor in ("overall", "lifetime", "response_rate", "contacts"):
        if reading.factor(factor) not in (1, 2, 3):
            raise InvalidWrite(f"reading {factor} must be 1, 2 or 3, got {reading.factor(factor)!r}")
    with _write(engine) as conn:
        reading_id: int = conn.execute(
            sa.insert(READINGS)
            .values(
                number_id=number_id,
                local_date=local_date,
                overall=reading.overall,
                lifetime=reading.lifetime,
                response_rate=reading.response_rate,
                contacts=reading.contacts,
                source=reading.source[:16],
                taken_at=_aware(reading.taken_at, "taken_at"),
            )
            .returning(READINGS.c.id)
        ).scalar_one()
    return reading_id


def latest_reading(engine: Engine, number_id: int) -> Reading | None:
    """The number's most recent reading (by `taken_at`), or None."""
    with _read(engine) as conn:
        row = conn.execute(
            sa.select(READINGS)
            .where(READINGS.c.number_id == number_id)
            .order_by(READINGS.c.taken_at.desc(), READINGS.c.id.desc())
            .limit(1)
        ).one_or_none()
    if row is None:
        return None
    return Reading(
        overall=row.overall,
        lifetime=row.lifetime,
        response_rate=row.response_rate,
        contacts=row.contacts,
        taken_at=row.taken_at,
        source=row.source,
    )


def add_inbound(
    engine: Engine,
    number_id: int,
    *,
    kind: str,
    provider_message_id: str,
    received_at: datetime,
    chat_phone: str | None = None,
    from_me: bool = False,
    text: str | None = None,
    status: str | None = None,
    ref_message_id: str | None = None,
) -> bool:
    """Store one inbound event once; False if it was already stored (re-ingesting is a no-op).

    For kind `status`, `provider_message_id` is the id of the outbound message the status is about and
    `status` is required. An incoming message (not `from_me`) marks its chat's recipient as `replied`.
    """
    _choice(kind, InboundKind, "kind")
    if kind == InboundKind.STATUS and not status:
        raise InvalidWrite("a status event needs its status")
    if not provider_message_id:
        raise InvalidWrite("an inbound event needs its provider id")
    received_at = _aware(received_at, "received_at")
    with _write(engine) as conn:
        inserted: bool = (
            conn.execute(
                _insert_ignore(conn, INBOUND)
                .values(
                    number_id=number_id,
                    kind=kind,
                    provider_message_id=provider_message_id,
                    chat_phone=chat_phone,
                    from_me=from_me,
                    text=text,
                    status=status or "",
                    ref_message_id=ref_message_id,
                    received_at=received_at,
                )
                .returning(INBOUND.c.id)
            ).scalar_one_or_none()
            is not None
        )
        if inserted and kind == InboundKind.MESSAGE and not from_me and chat_phone:
            conn.execute(
                sa.update(RECIPIENTS)
                .where(RECIPIENTS.c.number_id == number_id, RECIPIENTS.c.phone == chat_phone)
                .values(replied=True, updated_at=received_at)
            )
        return inserted


# ---------------------------------------------------------------------------------------- recipients


def upsert_recipient(
    engine: Engine,
    number_id: int,
    phone: str,
    kind: str,
    *,
    name: str | None = None,
    contacted_on: date | None = None,
    last_text: str | None = None,
    invalid_reason: str | None = None,
    now: datetime | None = None,
) -> int:
    """Create or update a recipient of a number; returns its id.

    `first_contacted_on` is set once (the earliest `contacted_on` wins); `last_text` and `name` are
    replaced when given; an `invalid_reason` marks the recipient invalid (never written to again).
    """
    _check_phone(phone, "recipient")
    _choice(kind, RecipientKind, "kind")
    stamp = _stamp(now)
    with _write(engine) as conn:
        conn.execute(
            _insert_ignore(conn, RECIPIENTS).values(
                number_id=number_id,
                phone=phone,
                kind=kind,
                name=name,
                replied=False,
                invalid=False,
                created_at=stamp,
                updated_at=stamp,
            )
        )
        values: dict[str, Any] = {"updated_at": stamp}
        if name is not None:
            values["name"] = name
        if contacted_on is not None:
            first = RECIPIENTS.c.first_contacted_on
            values["first_contacted_on"] = sa.case(
                (sa.or_(first.is_(None), first > contacted_on), contacted_on), else_=first
            )
        if last_text is not None:
            values["last_text"] = last_text
        if invalid_reason is not None:
            values.update(invalid=True, invalid_reason=invalid_reason[:500])
        recipient_id: int = conn.execute(
            sa.update(RECIPIENTS)
            .where(RECIPIENTS.c.number_id == number_id, RECIPIENTS.c.phone == phone)
            .values(**values)
            .returning(RECIPIENTS.c.id)
        ).scalar_one()
    return recipient_id


def list_recipients(
    engine: Engine, number_id: int, *, kind: str | None = None, include_invalid: bool = False
) -> list[Recipient]:
    """A number's recipients by phone; invalid ones only when asked."""
    statement = select(Recipient).where(Recipient.number_id == number_id).order_by(col(Recipient.phone))
    if kind is not None:
        statement = statement.where(Recipient.kind == _choice(kind, RecipientKind, "kind"))
    if not include_invalid:
        statement = statement.where(col(Recipient.invalid).is_(False))
    with session_scope(engine, read_only=True) as session:
        return list(session.exec(statement).all())


def new_contacts_on(engine: Engine, number_id: int, local_date: date) -> int:
    """How many recipients were first contacted on that day (for `max_new_contacts`)."""
    with _read(engine) as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    RECIPIENTS.c.number_id == number_id, RECIPIENTS.c.first_contacted_on == local_date
                )
            ).scalar_one()
        )


# --------------------------------------------------------------------------------------------- audit


def _audit(
    conn: Connection,
    actor: str,
    action: str,
    number_id: int | None,
    detail: dict[str, Any] | None,
    at: datetime,
) -> int:
    audit_id: int = conn.execute(
        sa.insert(AUDIT)
        .values(at=at, actor=actor[:128], action=action[:64], number_id=number_id, detail=detail)
        .returning(AUDIT.c.id)
    ).scalar_one()
    return audit_id


def audit(
    engine: Engine,
    actor: str,
    action: str,
    number_id: int | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """Append one audit row (who, what, which number, details as JSON); returns its id.
    Never put a secret in `detail`."""
    with _write(engine) as conn:
        return _audit(conn, actor, action, number_id, detail, _stamp(now))


def list_audit(engine: Engine, number_id: int | None = None, limit: int = 100) -> list[AuditLog]:
    """The newest audit rows first, optionally for one number."""
    statement = select(AuditLog).order_by(col(AuditLog.at).desc(), col(AuditLog.id).desc()).limit(limit)
    if number_id is not None:
        statement = statement.where(AuditLog.number_id == number_id)
    with session_scope(engine, read_only=True) as session:
        return list(session.exec(statement).all())
