"""Polling replies: new inbound events are stored and counted once, and an admin's chat command runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.clock import ManualClock
from warmup.core.domain import Action, Decision
from warmup.services import metrics
from warmup.services.fleet import ADMINS_ACTION
from warmup.services.replies import ingest_replies
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.sending import send_one
from warmup.store import audit as store_audit
from warmup.store import days, history, numbers, sends, tables
from warmup.store import inbound as store_inbound

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(engine: Engine, make_fleet: Any) -> Iterator[Any]:
    """Three simulator channels: two enrolled numbers and an admin (the third channel)."""
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=3)
    admin = fleet.phones[2]
    store_audit.audit(engine, "cli", ADMINS_ACTION, None, {"admins": [admin]}, clock.now())
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    yield fleet, runtime, clock
    runtime.close()


def _write(world: Any, sender: int, text: str) -> None:
    fleet, runtime, clock = world
    result = runtime.provider_for(fleet.number_ids[sender]).send_text(fleet.phones[0], text)
    assert result.sent
    clock.advance(timedelta(minutes=2))
    fleet.admin("POST", "/_sim/tick")


def test_an_admin_status_command_is_answered_and_counted(world: Any) -> None:
    fleet, runtime, _clock = world
    inbound = float(metrics.INBOUND.labels(kind="message")._value.get())
    _write(world, 2, "/status")
    assert ingest_replies(runtime, fleet.number_ids[0]) >= 1
    answers = [s for s in fleet.sends(fleet.phones[0]) if s["to"] == fleet.phones[2]]
    assert len(answers) == 1 and fleet.phones[0] in answers[0]["body"]
    assert float(metrics.INBOUND.labels(kind="message")._value.get()) >= inbound + 1
    # polling the same period again stores nothing new and never runs the command twice
    ingest_replies(runtime, fleet.number_ids[0])
    assert len([s for s in fleet.sends(fleet.phones[0]) if s["to"] == fleet.phones[2]]) == 1


def test_a_pause_command_from_a_non_admin_changes_nothing(world: Any) -> None:
    fleet, runtime, _clock = world
    _write(world, 1, "/pause now")
    ingest_replies(runtime, fleet.number_ids[0])
    number = numbers.get_number(runtime.engine, fleet.number_ids[0])
    assert number is not None and number.state == "active"
    assert [s for s in fleet.sends(fleet.phones[0]) if s["to"] == fleet.phones[1]] == []
    audit = store_audit.list_audit(runtime.engine, fleet.number_ids[0])
    assert any(a.action == "chat_command_refused" for a in audit)


def test_delivery_statuses_are_polled_without_a_webhook_and_counted_once(world: Any) -> None:
    """The simulator over HTTP, no webhook: our sends' statuses come from GET /messages/list?from_me=true."""
    fleet, runtime, clock = world
    number = fleet.number_ids[0]
    day = clock.now().date()
    assert days.plan_day(
        runtime.engine,
        number,
        Decision(day, 1, 2, Action.ADVANCE, 2, 2, 10),
        [sends.PlannedSend(fleet.phones[1], f"hello {i}", clock.now()) for i in range(2)],
        now=clock.now(),
    )
    for message in history.list_messages(runtime.engine, number, day):
        assert message.id is not None
        outcome = send_one(runtime.engine, message.id, "w", clock, runtime.provider_for)
        assert outcome.state == "sent"
    assert history.day_outcome(runtime.engine, number, day).delivered == 0
    clock.advance(timedelta(minutes=5))  # the simulator delivers within seconds
    fleet.admin("POST", "/_sim/tick")
    ingest_replies(runtime, number)
    sent_ids = {m.provider_message_id for m in history.list_messages(runtime.engine, number, day)}
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.INBOUND.c.provider_message_id, tables.INBOUND.c.status).where(
                tables.INBOUND.c.number_id == number, tables.INBOUND.c.kind == "status"
            )
        ).all()
    assert {row.provider_message_id for row in rows} == sent_ids and None not in sent_ids
    assert {row.status for row in rows} <= {"delivered", "read"}
    assert history.day_outcome(runtime.engine, number, day).delivered == 2
    assert ingest_replies(runtime, number) == 0  # polling again stores nothing twice
    assert history.day_outcome(runtime.engine, number, day).delivered == 2


def test_events_stored_already_cost_no_write_and_new_ones_are_stored(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll hands over the last hour's statuses again and again: those already stored are recognised
    in one read, only the new ones go through `inbound.add_inbound`."""
    from warmup.providers.base import Inbound
    from warmup.services.replies import store_events

    number_id = numbers.add_number(
        engine,
        phone="+5511999990001",
        provider="whapi",
        token_ref="WHAPI_TOKEN_1",
        plan_name="p",
        plan_path="/p.yaml",
        timezone="UTC",
    )
    at = datetime(2026, 11, 23, 12, tzinfo=UTC)

    def status(i: int, state: str) -> Inbound:
        return Inbound(
            kind="status", provider_message_id=f"OUT-{i}", chat_phone="+5511977770001", from_me=True,
            text=None, timestamp=at, status=state,
        )  # fmt: skip

    def message(i: int) -> Inbound:
        return Inbound(
            kind="message", provider_message_id=f"IN-{i}", chat_phone="+5511977770001", from_me=False,
            text=f"hi {i}", timestamp=at,
        )  # fmt: skip

    first = [status(1, "delivered"), status(2, "delivered"), message(1)]
    assert store_events(engine, number_id, first)[0] == 3
    calls: list[str] = []
    original = store_inbound.add_inbound

    def counting(*args: Any, **kwargs: Any) -> bool:
        calls.append(kwargs["provider_message_id"])
        return original(*args, **kwargs)

    monkeypatch.setattr(store_inbound, "add_inbound", counting)
    again = [*first, status(1, "read"), message(2)]  # a newer status of OUT-1 is a new event
    stored, new_messages = store_events(engine, number_id, again)
    assert (stored, [m.provider_message_id for m in new_messages]) == (2, ["IN-2"])
    assert sorted(calls) == ["IN-2", "OUT-1"]
    assert store_events(engine, number_id, again)[0] == 0 and len(calls) == 2
