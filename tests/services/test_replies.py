"""Polling replies: new inbound events are stored and counted once, and an admin's chat command runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.clock import ManualClock
from warmup.core.domain import Action, Decision
from warmup.providers.base import Inbound
from warmup.services import metrics
from warmup.services.fleet import ADMINS_ACTION
from warmup.services.replies import ingest_replies, store_events
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.sending import send_one
from warmup.store import audit as store_audit
from warmup.store import days, history, inbound, numbers, sends, tables
from warmup.store.tables import InvalidWrite

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


def _add_number(engine: Engine, phone: str = "+5511999990001") -> int:
    return numbers.add_number(
        engine,
        phone=phone,
        provider="whapi",
        token_ref="WHAPI_TOKEN_1",
        plan_name="p",
        plan_path="/p.yaml",
        timezone="UTC",
    )


AT = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _status(i: int, state: str) -> Inbound:
    return Inbound(
        kind="status", provider_message_id=f"OUT-{i}", chat_phone="+5511977770001", from_me=True,
        text=None, timestamp=AT, status=state,
    )  # fmt: skip


def _message(i: int, text: str | None = None, sender: str = "+5511977770001") -> Inbound:
    return Inbound(
        kind="message", provider_message_id=f"IN-{i}", chat_phone=sender, from_me=False,
        text=f"hi {i}" if text is None else text, timestamp=AT,
    )  # fmt: skip


@contextmanager
def transactions(engine: Engine) -> Iterator[dict[str, int]]:
    """How many transactions (`begin`) and INSERT statements run on ``engine`` meanwhile."""
    counts = {"begin": 0, "insert": 0}

    def began(conn: Any) -> None:
        counts["begin"] += 1

    def executed(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            counts["insert"] += 1

    sa.event.listen(engine, "begin", began)
    sa.event.listen(engine, "before_cursor_execute", executed)
    try:
        yield counts
    finally:
        sa.event.remove(engine, "begin", began)
        sa.event.remove(engine, "before_cursor_execute", executed)


def inbound_rows(engine: Engine) -> list[tuple[str, str, str]]:
    columns = (tables.INBOUND.c.kind, tables.INBOUND.c.provider_message_id, tables.INBOUND.c.status)
    with engine.connect() as conn:
        return sorted((r.kind, r.provider_message_id, r.status) for r in conn.execute(sa.select(*columns)))


def test_events_stored_already_cost_no_write_and_new_ones_are_stored(engine: Engine) -> None:
    """A poll hands over the last hour's statuses again and again: those already stored are recognised
    in one read, only the new ones are written, in one transaction."""
    number_id = _add_number(engine)
    first = [_status(1, "delivered"), _status(2, "delivered"), _message(1)]
    assert store_events(engine, number_id, first)[0] == 3
    again = [*first, _status(1, "read"), _message(2)]  # a newer status of OUT-1 is a new event
    with transactions(engine) as counts:
        stored, new_messages = store_events(engine, number_id, again)
    assert (stored, [m.provider_message_id for m in new_messages]) == (2, ["IN-2"])
    assert counts == {"begin": 2, "insert": 1}  # the read of what is known, one write
    with transactions(engine) as counts:
        assert store_events(engine, number_id, again) == (0, [])
    assert counts == {"begin": 1, "insert": 0}


def test_a_big_batch_is_one_transaction(engine: Engine) -> None:
    """Issue 14 item 8: 7,000 events were 7,000 write transactions (14.5 s on PostgreSQL)."""
    number_id = _add_number(engine)
    inbound.upsert_recipient(engine, number_id, "+5511977770001", "contact", now=AT)
    events = [_status(i, "delivered") for i in range(1250)] + [_message(i) for i in range(1250)]
    with transactions(engine) as counts:
        stored, new_messages = store_events(engine, number_id, events)
    assert (stored, len(new_messages)) == (2500, 1250)
    assert counts["begin"] == 2  # the read of what is known, one write (a few multi-row INSERTs)
    assert 1 <= counts["insert"] <= 10
    (recipient,) = inbound.list_recipients(engine, number_id)
    assert recipient.replied
    assert store_events(engine, number_id, events) == (0, [])


@pytest.mark.parametrize("poison", ["\ud800", "x" * 129, "\x00"])
def test_a_batch_with_an_event_the_store_cannot_carry_stores_nothing(engine: Engine, poison: str) -> None:
    """Issue 14 item 2: each event had its own transaction, so the events before a bad one stayed stored
    (and the command of a stored message was never run: a redelivery skipped it as stored). Now the
    store refuses the batch whole, before writing, with `InvalidWrite`; the fixed batch is all new."""
    number_id = _add_number(engine)
    good = [_message(1, "/pause"), _status(1, "delivered")]
    with pytest.raises(InvalidWrite):
        store_events(engine, number_id, [*good, replace(_status(2, "read"), status=poison)])
    assert inbound_rows(engine) == []
    stored, new_messages = store_events(engine, number_id, [*good, _status(2, "read")])
    assert stored == 3 and [m.text for m in new_messages] == ["/pause"]


def test_a_database_failure_mid_batch_rolls_the_batch_back(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure on the second INSERT of a batch (the database going away mid-way) leaves nothing of
    the first one: a redelivery finds every event new."""
    number_id = _add_number(engine)
    monkeypatch.setattr(inbound, "INSERT_CHUNK", 2)
    statements = 0

    def fail_second(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal statements
        if statement.lstrip().upper().startswith("INSERT"):
            statements += 1
            if statements == 2:
                raise ConnectionError("the database went away")

    events = [_message(1, "/pause"), _status(1, "delivered"), _status(2, "read")]
    sa.event.listen(engine, "before_cursor_execute", fail_second)
    try:
        with pytest.raises(ConnectionError):
            store_events(engine, number_id, events)
    finally:
        sa.event.remove(engine, "before_cursor_execute", fail_second)
    assert inbound_rows(engine) == []
    assert store_events(engine, number_id, events)[0] == 3


def test_two_stores_of_one_batch_at_once_make_each_event_new_once(engine: Engine) -> None:
    """A provider redelivering while the first delivery is being stored: each message is NEW (its
    command runs) in exactly one of them, as the INSERT's RETURNING says."""
    number_id = _add_number(engine)
    events = [_message(i) for i in range(300)]
    barrier = threading.Barrier(4)
    results: list[list[str]] = []

    def store() -> None:
        barrier.wait()
        results.append([m.provider_message_id for m in store_events(engine, number_id, events)[1]])

    threads = [threading.Thread(target=store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 4
    assert sorted(i for r in results for i in r) == sorted(e.provider_message_id for e in events)
