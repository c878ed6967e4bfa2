"""Shared builders and readers of the store tests: a number, a decision, sends, a planned day, and
what a day or a message looks like afterwards (`tests/store/test_*.py`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.core.domain import Action, Decision, Reading, Reason
from warmup.store import days, history, numbers, tables
from warmup.store.models import metadata
from warmup.store.sends import PlannedSend

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = date(2026, 11, 23)
PHONE = "+5511999990001"
PEER = "+5511999990002"


def add(engine: Engine, phone: str = PHONE, timezone: str = "UTC", plan_name: str = "standard") -> int:
    return numbers.add_number(
        engine,
        phone=phone,
        provider="whapi",
        token_ref="WHAPI_TOKEN_1",
        plan_name=plan_name,
        plan_path="plans/standard.yaml",
        timezone=timezone,
        registered=date(2026, 11, 1),
        now=NOW,
    )


def decision(
    quota: int = 5, local_date: date = DAY, action: Action = Action.ADVANCE, plan_day: int = 3
) -> Decision:
    return Decision(
        local_date=local_date,
        plan_day=plan_day,
        next_plan_day=plan_day + 1 if action is Action.ADVANCE else plan_day,
        action=action,
        quota=quota,
        plan_volume=quota,
        max_new_contacts=10,
        reasons=(Reason("ramp", action, f"plan day {plan_day}: volume {quota}"),),
    )


def sends(count: int, start: datetime = NOW - timedelta(hours=1), recipient: str = PEER) -> list[PlannedSend]:
    return [
        PlannedSend(recipient=recipient, text=f"hello {i}", scheduled_at=start + timedelta(minutes=i))
        for i in range(count)
    ]


def planned(engine: Engine, count: int = 3, quota: int = 5, number_id: int | None = None) -> list[int]:
    """A number (unless given) with a planned day of `count` due messages; their ids."""
    number_id = number_id if number_id is not None else add(engine)
    assert days.plan_day(engine, number_id, decision(quota), sends(count))
    return [m.id for m in history.list_messages(engine, number_id, DAY) if m.id is not None]


def used(engine: Engine, number_id: int = 1) -> int:
    day_plan = days.get_day_plan(engine, number_id, DAY)
    assert day_plan is not None
    return day_plan.used


def state(engine: Engine, message_id: int) -> str:
    message = history.get_message(engine, message_id)
    assert message is not None
    return message.state


def reason(engine: Engine, message_id: int) -> str | None:
    message = history.get_message(engine, message_id)
    assert message is not None
    return message.reason


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in metadata.tables.items()
        }


OTHER = "+5511988880000"  # a contact, not a number of the fleet


def phone(index: int) -> str:
    return f"+55119777{index:05d}"


def day_plan(engine: Engine, number_id: int, local_date: date = DAY) -> tuple[int, int]:
    """(used, quota) of the number's day."""
    plan = days.get_day_plan(engine, number_id, local_date)
    assert plan is not None
    return plan.used, plan.quota


def message(engine: Engine, message_id: int) -> Any:
    row = history.get_message(engine, message_id)
    assert row is not None
    return row


def one_day(
    engine: Engine, phone_: str, count: int = 1, *, quota: int = 5, recipient: str = PEER, **kwargs: Any
) -> tuple[int, list[int]]:
    """A number with a planned day of ``count`` due messages: (number id, message ids)."""
    number_id = add(engine, phone=phone_, **kwargs)
    assert days.plan_day(engine, number_id, decision(quota), sends(count, recipient=recipient))
    return number_id, [m.id for m in history.list_messages(engine, number_id, DAY) if m.id is not None]


# batches of numbers in several zones (`zoned_numbers`), a day later
BATCH_NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TODAY = date(2026, 11, 24)
YESTERDAY = TODAY - timedelta(days=1)
ZONES = ("UTC", "America/Sao_Paulo", "Asia/Tokyo", "Europe/Berlin", "UTC")


def zoned_numbers(engine: Engine) -> list[int]:
    return [
        numbers.add_number(
            engine,
            phone=f"+55119999900{i:02d}",
            provider="simulator",
            token_ref=f"TOKEN_{i}",
            plan_name="p",
            plan_path="/nowhere/plan.yaml",
            timezone=zone,
            now=BATCH_NOW - timedelta(days=10),
        )
        for i, zone in enumerate(ZONES)
    ]


def batch_decision(local_date: date, quota: int = 6, action: Action = Action.ADVANCE) -> Decision:
    return Decision(
        local_date=local_date,
        plan_day=3,
        next_plan_day=4,
        action=action,
        quota=quota,
        plan_volume=quota,
        max_new_contacts=2,
        reasons=(Reason("ramp", action, "day 3 of the ramp"), Reason("risk", Action.HOLD, "ok: ünïcode")),
    )


def batch_send(i: int, at: datetime, kind: str | None = "contact") -> PlannedSend:
    return PlannedSend(
        recipient=f"+55119777700{i:02d}",
        text=f"hello number {i}" if i % 3 else f"tab\there, new\nline, back\\slash \\N, 'quote' ünï 😀 {i}",
        scheduled_at=at,
        typing_seconds=1.25 * i,
        window_end=at + timedelta(hours=1) if i % 4 else None,
        recipient_kind=kind,
    )


def reading_of(overall: int, at: datetime) -> Reading:
    return Reading(overall=overall, lifetime=2, response_rate=3, contacts=1, taken_at=at, source="simulator")


def table_rows(engine: Engine, table: sa.Table, skip: tuple[str, ...] = ("id", "day_plan_id")) -> list[str]:
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(table.c.id))]
    return sorted(repr(sorted((k, v) for k, v in row.items() if k not in skip)) for row in rows)


def store_snapshot(engine: Engine) -> dict[str, list[str]]:
    return {
        t.name: table_rows(engine, t)
        for t in (tables.DAY_PLANS, tables.MESSAGES, tables.RECIPIENTS, tables.AUDIT, tables.NUMBERS)
    }


def free_pace(engine: Engine, number_id: int | None = None) -> None:
    """Free the pace of a number (every number: None) behind the store's back, as if its send in flight
    had ended long ago: for tests of the quota, the outcomes or the books, which claim several messages
    of one number at one instant. Pacing itself is tested in tests/store/test_pacing_claims.py."""
    paces = tables.PACES
    condition = paces.c.number_id == number_id if number_id is not None else sa.true()
    with engine.begin() as conn:
        conn.execute(sa.update(paces).where(condition).values(busy_id=None, free_at=None, recent=[]))
