"""The numbers of the fleet: enrolling and configuring them, reading them, and their ramp state.

A number's configuration comes from the fleet file (`warmup apply`); its ramp position and pause state
are only ever changed by planning (`warmup.store.days`) and by pauses (`warmup.store.pauses`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, NotRequired, TypedDict, Unpack

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from warmup.core.domain import NumberState
from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of, local_day_bounds
from warmup.store import audit
from warmup.store.db import session_scope
from warmup.store.models import Number, NumberStatus, Provider
from warmup.store.tables import (
    DAY_PLANS,
    NUMBERS,
    InvalidWrite,
    aware,
    check_phone,
    check_timezone,
    choice,
    day_row,
    ensure_paces,
    insert_ignore,
    read,
    stamp,
    write,
)

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")

COLUMN_LIMITS: dict[str, int] = {
    column.name: length
    for column in NUMBERS.columns
    if isinstance(length := getattr(column.type, "length", None), int)
}
"""The most characters each text column of a number holds (PostgreSQL refuses more, SQLite would not):
the fleet file is checked against these, and `_number_config` refuses what passed anyway."""


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
    meter_url: NotRequired[str | None]  # the Whapi risk meter; None: the provider's default
    portfolio: NotRequired[str | None]  # the Meta business portfolio of a Cloud API number


def add_number(engine: Engine, *, now: datetime | None = None, **config: Unpack[NumberConfig]) -> int:
    """Enroll a number (state active, plan day 1) and return its id; a known phone is a `UserError`.

    `token_ref` is the name of the environment variable holding the token; anything that does not look
    like one is refused (so a pasted token can never land in the database).
    """
    values = _number_config(config)
    at = stamp(now)
    try:
        with write(engine) as conn:
            number_id: int = conn.execute(
                sa.insert(NUMBERS).values(**values, created_at=at, updated_at=at).returning(NUMBERS.c.id)
            ).scalar_one()
            ensure_paces(conn, [number_id])
    except IntegrityError as exc:
        raise UserError(f"number {config['phone']} is already enrolled") from exc
    return number_id


def add_numbers(engine: Engine, configs: Sequence[NumberConfig], *, now: datetime | None = None) -> list[int]:
    """Enroll many numbers in ONE transaction and one statement (a 10,000-number test fleet or
    benchmark), each checked like `add_number`; their ids in the order given. All or nothing: a known
    phone is a `UserError` and nothing is written."""
    if not configs:
        return []
    try:
        with write(engine) as conn:
            return add_numbers_on(conn, configs, now)
    except IntegrityError as exc:
        raise UserError("a number of the batch is already enrolled") from exc


def add_numbers_on(
    conn: Connection, configs: Sequence[NumberConfig], now: datetime | None = None
) -> list[int]:
    """`add_numbers` in the caller's transaction (`warmup apply` enrolls a new fleet in one statement);
    a known phone raises the database's IntegrityError."""
    at = stamp(now)
    rows = [{**_number_config(config), "created_at": at, "updated_at": at} for config in configs]
    if not rows:
        return []
    inserted = conn.execute(sa.insert(NUMBERS).returning(NUMBERS.c.id, sort_by_parameter_order=True), rows)
    ids = [int(i) for i in inserted.scalars().all()]
    ensure_paces(conn, ids)
    return ids


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
    with write(engine) as conn:
        return _upsert(conn, values, stamp(now))


def upsert_number_on(conn: Connection, now: datetime, **config: Unpack[NumberConfig]) -> tuple[int, bool]:
    """`upsert_number` in the caller's transaction (`warmup apply` writes the whole fleet in one)."""
    return _upsert(conn, _number_config(config), stamp(now))


def _upsert(conn: Connection, values: dict[str, Any], at: datetime) -> tuple[int, bool]:
    inserted = conn.execute(
        insert_ignore(conn, NUMBERS).values(**values, created_at=at, updated_at=at).returning(NUMBERS.c.id)
    ).scalar_one_or_none()
    if inserted is not None:
        ensure_paces(conn, [int(inserted)])
        return int(inserted), True
    current = conn.execute(
        sa.select(NUMBERS.c.id, NUMBERS.c.timezone)
        .where(NUMBERS.c.phone == values["phone"])
        .with_for_update()
    ).one()
    values.update(pending_timezone=None, timezone_from=None)
    if values["timezone"] != current.timezone:
        today = local_date_of(at, current.timezone)
        if day_row(conn, current.id, today, DAY_PLANS.c.id) is not None:
            values.update(
                pending_timezone=values["timezone"],
                timezone_from=local_day_bounds(today + timedelta(days=1), current.timezone)[0],
                timezone=current.timezone,
            )
    number_id: int = conn.execute(
        sa.update(NUMBERS)
        .where(NUMBERS.c.id == current.id)
        .values(**values, updated_at=at)
        .returning(NUMBERS.c.id)
    ).scalar_one()
    return number_id, False


def apply_timezone_changes(engine: Engine, now: datetime) -> list[int]:
    """Switch numbers whose pending time zone is due (`timezone_from <= now`); their ids, in id order.

    The scheduler calls this before planning, so the first day planned in the new zone starts after
    the last day of the old one ended: the two never overlap.
    """
    now = aware(now)
    with write(engine) as conn:
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
            detail = {"from": row.timezone, "to": row.pending_timezone}
            audit.record(conn, "scheduler", "timezone_change", row.id, detail, now)
    return [int(row.id) for row in rows]


def _number_config(config: NumberConfig) -> dict[str, Any]:
    """The checked column values of a number's configuration (`InvalidWrite` for a bad one)."""
    phone = config["phone"]
    phone_number_id = config.get("phone_number_id")
    if config["provider"] == Provider.CLOUD_API and not phone_number_id:
        raise InvalidWrite(f"{phone}: provider cloud_api needs a phone_number_id")
    portfolio = config.get("portfolio")
    if portfolio is not None and config["provider"] != Provider.CLOUD_API:
        raise InvalidWrite(f"{phone}: only a cloud_api number belongs to a Meta business portfolio")
    values = {
        "phone": check_phone(phone),
        "provider": choice(config["provider"], Provider, "provider"),
        "token_ref": _check_token_ref(config["token_ref"]),
        "plan_name": config["plan_name"],
        "plan_path": config["plan_path"],
        "timezone": check_timezone(config["timezone"]),
        "registered": config.get("registered"),
        "base_url": config.get("base_url"),
        "phone_number_id": phone_number_id,
        "meter_url": config.get("meter_url"),
        "portfolio": portfolio,
    }
    for name, value in values.items():
        limit = COLUMN_LIMITS.get(name)
        if isinstance(value, str) and limit is not None and len(value) > limit:
            raise InvalidWrite(f"{phone}: {name} is {len(value)} characters, at most {limit} are stored")
    return values


def _check_token_ref(token_ref: str) -> str:
    """Only the NAME of an environment variable may be stored; a token itself is refused unseen."""
    if not ENV_NAME.match(token_ref):
        raise InvalidWrite(
            "token_ref must be the name of an environment variable (e.g. WHAPI_TOKEN_1), "
            "never the token itself"
        )
    return token_ref


def get_number(engine: Engine, number_id: int | None = None, *, phone: str | None = None) -> Number | None:
    """One number by id or by phone, or None."""
    if (number_id is None) == (phone is None):
        raise InvalidWrite("get_number needs exactly one of number_id or phone")
    with session_scope(engine, read_only=True) as session:
        if number_id is not None:
            return session.get(Number, number_id)
        return session.exec(select(Number).where(Number.phone == phone)).first()


def get_numbers(engine: Engine, number_ids: Sequence[int]) -> list[Number]:
    """The numbers with these ids that exist, in one query (batch planning reads them together)."""
    if not number_ids:
        return []
    with session_scope(engine, read_only=True) as session:
        return list(session.exec(select(Number).where(col(Number.id).in_(sorted(set(number_ids))))).all())


def list_numbers(engine: Engine, *, state: str | None = None, plan_name: str | None = None) -> list[Number]:
    """Numbers ordered by phone, optionally only those in `state` or on plan `plan_name`."""
    statement = select(Number).order_by(col(Number.phone))
    if state is not None:
        statement = statement.where(Number.state == choice(state, NumberStatus, "state"))
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


STATE_COLUMNS: tuple[sa.Column[Any], ...] = (
    NUMBERS.c.id,
    NUMBERS.c.state,
    NUMBERS.c.plan_day,
    NUMBERS.c.last_volume,
    NUMBERS.c.paused_volume,
    NUMBERS.c.resumed_on,
    NUMBERS.c.registered,
    NUMBERS.c.advance_pending,
)
"""What `state_of` reads of a number row (a select of these gives a row it takes)."""


def state_of(number: Number | sa.Row[Any]) -> NumberState:
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


ActiveKey = tuple[int, int, int]
"""What tells whether the set of active numbers changed: (count, sum, sum of squares) of their ids."""


def active_phones(
    engine: Engine, unless: ActiveKey | None = None
) -> tuple[ActiveKey, tuple[tuple[int, str], ...] | None]:
    """The `ActiveKey` of the active numbers and their (id, phone) ordered by phone, read together; the
    phones are not read (None) when the key is still ``unless``.

    Enrolling, pausing, resuming or retiring a number changes the key, planning does not. (Two sets
    with equal count, sum and sum of squares are possible but need a deliberate swap of several
    numbers at once.)
    """
    active = NUMBERS.c.state == NumberStatus.ACTIVE.value
    ids = NUMBERS.c.id
    with read(engine) as conn:
        count, total, squares = conn.execute(
            sa.select(
                sa.func.count(ids),
                sa.func.coalesce(sa.func.sum(ids), 0),
                sa.func.coalesce(sa.func.sum(ids * ids), 0),
            ).where(active)
        ).one()
        key = (int(count), int(total), int(squares))
        if key == unless:
            return key, None
        rows = conn.execute(sa.select(NUMBERS.c.id, NUMBERS.c.phone).where(active).order_by(NUMBERS.c.phone))
        return key, tuple((int(row.id), str(row.phone)) for row in rows)


def not_retired(engine: Engine) -> list[int]:
    """The ids of every number that is not retired, ordered by phone (ids only, not every row)."""
    with read(engine) as conn:
        return [
            int(n)
            for n in conn.execute(
                sa.select(NUMBERS.c.id)
                .where(NUMBERS.c.state != NumberStatus.RETIRED.value)
                .order_by(NUMBERS.c.phone)
            ).scalars()
        ]
