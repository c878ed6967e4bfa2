"""Admin chat commands against a real store, answered through a real simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from warmup.clock import ManualClock
from warmup.providers.base import Inbound
from warmup.services.chat_commands import HELP, handle_inbound, parse_command, process_inbound
from warmup.services.fleet import Change, apply_changes
from warmup.services.runtime import ProviderPool
from warmup.store import audit, numbers

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ADMIN = "+5511988880000"
STRANGER = "+5511977776666"


@pytest.fixture
def fleet(engine: Engine, make_fleet: Any) -> Iterator[Fleet]:
    built: Fleet = make_fleet(engine, ManualClock(NOW), count=2)
    apply_changes(engine, [Change("admins", fields={"admins": ((), (ADMIN,))}, admins=(ADMIN,))], now=NOW)
    yield built


@pytest.fixture
def providers(engine: Engine) -> Iterator[ProviderPool]:
    pool = ProviderPool(engine)
    yield pool
    pool.close()


def message(sender: str | None, text: str | None, message_id: str = "in-1", from_me: bool = False) -> Inbound:
    return Inbound("message", message_id, sender, from_me, text, NOW)


def answers_to(fleet: Fleet, phone: str) -> list[str]:
    return [s["body"] for s in fleet.sends(fleet.phones[0]) if s["to"] == phone]


def test_an_admin_pauses_and_resumes_by_chat_and_gets_answers(
    engine: Engine, fleet: Fleet, providers: ProviderPool
) -> None:
    number_id = fleet.number_ids[0]
    answer = process_inbound(engine, number_id, message(ADMIN, "/pause  checking spam "), NOW, providers)
    assert answer is not None and "paused" in answer
    number = numbers.get_number(engine, number_id)
    assert number is not None and number.state == "paused" and number.paused_reason == "checking spam"
    other = numbers.get_number(engine, fleet.number_ids[1])
    assert other is not None and other.state == "active"  # only the number written to
    assert answers_to(fleet, ADMIN) == [answer]  # the answer went out through the provider

    answer = process_inbound(engine, number_id, message(ADMIN, "/RESUME", "in-2"), NOW, providers)
    assert answer is not None and "resumed" in answer
    number = numbers.get_number(engine, number_id)
    assert number is not None and number.state == "active"
    actions = [(r.actor, r.action) for r in reversed(audit.list_audit(engine, number_id))]
    assert actions == [
        (f"chat:{ADMIN}", "chat_command"),
        (f"chat:{ADMIN}", "pause"),
        ("chat", "chat_answer"),
        (f"chat:{ADMIN}", "chat_command"),
        (f"chat:{ADMIN}", "resume"),
        ("chat", "chat_answer"),
    ]


def test_status_why_and_help(engine: Engine, fleet: Fleet) -> None:
    number_id = fleet.number_ids[0]
    status = handle_inbound(engine, number_id, message(ADMIN, "/status"), NOW)
    assert status is not None and status.startswith(fleet.phones[0]) and "not planned yet" in status
    why = handle_inbound(engine, number_id, message(ADMIN, "/why"), NOW)
    assert why is not None and "no decision was made" in why
    assert handle_inbound(engine, number_id, message(ADMIN, "/dance"), NOW) == HELP


def test_a_command_from_a_non_admin_changes_nothing(
    engine: Engine, fleet: Fleet, providers: ProviderPool
) -> None:
    number_id = fleet.number_ids[0]
    assert process_inbound(engine, number_id, message(STRANGER, "/pause now"), NOW, providers) is None
    assert process_inbound(engine, number_id, message(None, "/pause"), NOW, providers) is None
    # another fleet number is not an admin either
    assert process_inbound(engine, number_id, message(fleet.phones[1], "/pause"), NOW, providers) is None
    number = numbers.get_number(engine, number_id)
    assert number is not None and number.state == "active"
    assert fleet.sends(fleet.phones[0]) == []  # nobody got an answer
    refused = [r for r in audit.list_audit(engine, number_id) if r.action == "chat_command_refused"]
    assert [r.actor for r in refused] == [f"chat:{fleet.phones[1]}", "chat:unknown", f"chat:{STRANGER}"]
    assert all(r.detail is not None and r.detail["command"] == "pause" for r in refused)


def test_ordinary_messages_and_echoes_are_not_commands(engine: Engine, fleet: Fleet) -> None:
    number_id = fleet.number_ids[0]
    assert handle_inbound(engine, number_id, message(ADMIN, "pause please"), NOW) is None
    assert handle_inbound(engine, number_id, message(ADMIN, None), NOW) is None
    assert handle_inbound(engine, number_id, message(ADMIN, "/pause", from_me=True), NOW) is None
    status = Inbound("status", "out-1", ADMIN, True, None, NOW, status="read")
    assert handle_inbound(engine, number_id, status, NOW) is None
    assert audit.list_audit(engine, number_id) == []


def test_admins_removed_from_the_fleet_file_lose_the_right(engine: Engine, fleet: Fleet) -> None:
    apply_changes(engine, [Change("admins", fields={"admins": ((ADMIN,), ())}, admins=())], now=NOW)
    assert handle_inbound(engine, fleet.number_ids[0], message(ADMIN, "/pause"), NOW) is None
    number = numbers.get_number(engine, fleet.number_ids[0])
    assert number is not None and number.state == "active"


@settings(max_examples=150)
@given(st.text(max_size=40))
def test_only_slash_words_are_commands(text: str) -> None:
    parsed = parse_command(text)
    if not text.strip().startswith("/") or len(text.strip()) < 2:
        assert parsed is None
    else:
        assert parsed is not None
        word, rest = parsed
        assert word == word.lower() and rest == rest.strip()
        assert text.strip()[1:].lower().startswith(word)
