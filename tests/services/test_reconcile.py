"""Late confirmation of `unknown` sends from the provider's list of our own messages
(warmup.services.reconcile), against the simulator over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.store.helpers import free_pace
from warmup.clock import ManualClock
from warmup.core.domain import Action, Decision
from warmup.providers.base import Inbound
from warmup.services import reconcile
from warmup.services.replies import ingest_replies, store_events
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.sending import send_one
from warmup.store import claims, days, history, outcomes
from warmup.store.sends import PlannedSend

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(engine: Engine, make_fleet: Any) -> Iterator[Any]:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2)
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    yield fleet, runtime, clock
    runtime.close()


def _plan(world: Any, texts: list[str]) -> list[int]:
    """A day of number 0 with one message per text to number 1's phone, all due now; their ids."""
    fleet, runtime, clock = world
    number = fleet.number_ids[0]
    day = clock.now().date()
    sends = [PlannedSend(fleet.phones[1], text, clock.now()) for text in texts]
    decision = Decision(day, 1, 2, Action.ADVANCE, len(texts), len(texts), 10)
    assert days.plan_day(runtime.engine, number, decision, sends, now=clock.now())
    return [m.id for m in history.list_messages(runtime.engine, number, day) if m.id is not None]


def _claim(world: Any, message_id: int) -> claims.ClaimedMessage:
    _fleet, runtime, clock = world
    claim = claims.claim(runtime.engine, message_id, "doomed-worker", clock.now())
    assert claim.claimed and claim.message is not None
    return claim.message


def _worker_dies(world: Any) -> None:
    """Every `sending` claim is recovered as unknown (its worker is gone)."""
    _fleet, runtime, clock = world
    clock.advance(timedelta(seconds=30))
    assert outcomes.recover_stale(runtime.engine, clock.now(), clock.now()) >= 1


def _state(world: Any, message_id: int) -> tuple[str, str | None]:
    _fleet, runtime, _clock = world
    row = history.get_message(runtime.engine, message_id)
    assert row is not None
    return row.state, row.provider_message_id


def test_a_send_that_went_out_before_the_crash_is_confirmed_and_one_that_did_not_stays_unknown(
    world: Any,
) -> None:
    fleet, runtime, clock = world
    went_out, never_sent, normal = _plan(world, ["went out", "never sent", "normal"])
    message = _claim(world, went_out)
    result = runtime.provider_for(message.number_id).send_text(message.recipient, message.text)
    assert result.sent and result.provider_message_id
    # several claims of one number at one instant: the pace is not what this test is about
    free_pace(runtime.engine, message.number_id)
    _claim(world, never_sent)  # claimed, then the worker died before calling the provider
    _worker_dies(world)
    assert _state(world, went_out) == ("unknown", None)
    assert send_one(runtime.engine, normal, "w", clock, runtime.provider_for).state == "sent"
    assert reconcile.pending(runtime.engine, fleet.number_ids[0], clock.now()) is not None

    ingest_replies(runtime, fleet.number_ids[0])

    assert _state(world, went_out) == ("sent", result.provider_message_id)
    assert _state(world, never_sent) == ("unknown", None)  # no evidence: never re-sent, never guessed
    assert _state(world, normal)[0] == "sent"
    log_ids = [s["message_id"] for s in fleet.sends(fleet.phones[0])]
    stored = [_state(world, i)[1] for i in (went_out, normal)]
    assert sorted(stored) == sorted(log_ids)  # every sent row holds one logged id, none twice
    ingest_replies(runtime, fleet.number_ids[0])  # again: nothing changes
    assert _state(world, never_sent) == ("unknown", None)
    assert _state(world, went_out) == ("sent", result.provider_message_id)


def test_one_provider_message_confirms_one_row_of_the_same_text_earliest_claim_first(world: Any) -> None:
    fleet, runtime, clock = world
    first, second = _plan(world, ["same words", "same words"])
    message = _claim(world, first)
    clock.advance(timedelta(seconds=5))
    # several claims of one number at one instant: the pace is not what this test is about
    free_pace(runtime.engine, message.number_id)
    _claim(world, second)
    result = runtime.provider_for(message.number_id).send_text(message.recipient, message.text)
    assert result.sent
    _worker_dies(world)
    ingest_replies(runtime, fleet.number_ids[0])
    assert _state(world, first) == ("sent", result.provider_message_id)
    assert _state(world, second) == ("unknown", None)


def test_a_message_sent_before_the_claim_proves_nothing(world: Any) -> None:
    fleet, runtime, clock = world
    earlier = runtime.provider_for(fleet.number_ids[0]).send_text(fleet.phones[1], "hello again")
    assert earlier.sent
    clock.advance(reconcile.CLOCK_SLACK + timedelta(minutes=10))
    (message_id,) = _plan(world, ["hello again"])
    _claim(world, message_id)
    _worker_dies(world)
    ingest_replies(runtime, fleet.number_ids[0])
    assert _state(world, message_id) == ("unknown", None)
    # nor does its echo, handed over late by a webhook
    assert earlier.provider_message_id is not None
    echo = _echo(earlier.provider_message_id, fleet.phones[1], "hello again", MONDAY_NOON)
    store_events(runtime.engine, fleet.number_ids[0], [echo])
    assert _state(world, message_id) == ("unknown", None)


def _echo(provider_id: str, to: str, text: str, at: datetime) -> Inbound:
    return Inbound(
        kind="message", provider_message_id=provider_id, chat_phone=to, from_me=True, text=text, timestamp=at
    )


def test_a_webhook_echo_confirms_an_unknown_send_once_and_never_reuses_an_id(world: Any) -> None:
    fleet, runtime, clock = world
    lost, normal = _plan(world, ["lost answer", "normal"])
    _claim(world, lost)
    _worker_dies(world)
    assert send_one(runtime.engine, normal, "w", clock, runtime.provider_for).state == "sent"
    normal_id = _state(world, normal)[1]
    assert normal_id is not None
    at = clock.now()
    # an echo of the already recorded send, even with the lost message's text, confirms nothing
    stored, _new = store_events(
        runtime.engine, fleet.number_ids[0], [_echo(normal_id, fleet.phones[1], "lost answer", at)]
    )
    assert stored == 0 and _state(world, lost) == ("unknown", None)
    store_events(
        runtime.engine, fleet.number_ids[0], [_echo("sim-echo-1", fleet.phones[1], "lost answer", at)]
    )
    assert _state(world, lost) == ("sent", "sim-echo-1")
    # a second echo of the same text finds no unknown row left
    store_events(
        runtime.engine, fleet.number_ids[0], [_echo("sim-echo-2", fleet.phones[1], "lost answer", at)]
    )
    assert _state(world, lost) == ("sent", "sim-echo-1")


def test_nothing_pending_means_nothing_to_ask(world: Any) -> None:
    fleet, runtime, clock = world
    (message_id,) = _plan(world, ["plain"])
    assert send_one(runtime.engine, message_id, "w", clock, runtime.provider_for).state == "sent"
    assert reconcile.pending(runtime.engine, fleet.number_ids[0], clock.now()) is None
    assert reconcile.confirm_unknown(runtime.engine, fleet.number_ids[0], [], clock.now()) == []


def test_a_send_of_the_same_words_still_in_flight_makes_the_match_wait(world: Any) -> None:
    """Its worker may be about to record the very id the list shows: confirming now could put one
    provider id on two rows."""
    fleet, runtime, clock = world
    lost, in_flight = _plan(world, ["twin words", "twin words"])
    _claim(world, lost)
    _worker_dies(world)
    message = _claim(world, in_flight)
    result = runtime.provider_for(message.number_id).send_text(message.recipient, message.text)
    assert result.sent
    ingest_replies(runtime, fleet.number_ids[0])
    assert _state(world, lost) == ("unknown", None)
    assert outcomes.record_sent(runtime.engine, in_flight, result.provider_message_id, clock.now())
    ingest_replies(runtime, fleet.number_ids[0])
    assert _state(world, lost) == ("unknown", None)  # the only message found is the in-flight one's
    assert _state(world, in_flight) == ("sent", result.provider_message_id)


def test_confirmations_racing_for_one_number_never_share_a_provider_id(world: Any) -> None:
    fleet, runtime, clock = world
    ids = _plan(world, ["race words"] * 4)
    for message_id in ids:
        # several claims of one number at one instant: the pace is not what this test is about
        free_pace(runtime.engine, fleet.number_ids[0])
        _claim(world, message_id)
    _worker_dies(world)
    at = clock.now()
    echoes = [_echo(f"sim-race-{i}", fleet.phones[1], "race words", at) for i in range(2)]
    barrier = threading.Barrier(4)

    def confirm(order: int) -> list[int]:
        barrier.wait()
        mine = [echoes, echoes[1:], echoes[:1], echoes[1:]][order]  # a poll and webhooks see different sets
        return reconcile.confirm_unknown(runtime.engine, fleet.number_ids[0], mine, at)

    with ThreadPoolExecutor(4) as pool:
        confirmed = [i for found in pool.map(confirm, range(4)) for i in found]
    states = [_state(world, i) for i in ids]
    provider_ids = [pid for state, pid in states if state == "sent"]
    assert sorted(provider_ids) == ["sim-race-0", "sim-race-1"]  # each id once, two rows confirmed
    assert sorted(confirmed) == sorted(
        i for i, (state, _pid) in zip(ids, states, strict=True) if state == "sent"
    )
