"""send_batch against a real store (SQLite and PostgreSQL) and the simulator over HTTP: every claimed
message goes out once, each provider answer is handled as `send_one` handles it, a batch that runs
out of time gives its claims back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from tests.invariant_checks import assert_accounting
from warmup.clock import ManualClock
from warmup.core.domain import Reading
from warmup.core.localtime import local_date_of
from warmup.providers.base import Health, Inbound, Provider, SendResult
from warmup.services import sending
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.sending import BATCH_BUDGET_WALL, ProviderFor, SendOutcome, send_batch, send_one
from warmup.store import days, history, inbound, numbers
from warmup.store.models import OutboundMessage

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FORBIDDEN = "+5511977770001"
TIMEZONES = ("America/Sao_Paulo", "Europe/Berlin", "UTC")  # every window open in the early evening (UTC)


class World:
    """Three numbers on the simulator, their days planned, and helpers to send in batches."""

    def __init__(self, engine: Engine, fleet: Fleet, clock: ManualClock) -> None:
        self.engine = engine
        self.fleet = fleet
        self.clock = clock
        self.runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
        self.requeued: list[tuple[int, float]] = []
        self.messages: dict[int, list[OutboundMessage]] = {}

    def day(self, number_id: int) -> date:
        number = numbers.get_number(self.engine, number_id)
        assert number is not None
        return local_date_of(self.clock.now(), number.timezone)

    def plan(self, *number_ids: int) -> None:
        for number_id in number_ids or self.fleet.number_ids:
            assert plan_number_day(self.runtime, number_id, self.day(number_id)).planned
            self.messages[number_id] = history.list_messages(self.engine, number_id, self.day(number_id))

    def first(self) -> list[OutboundMessage]:
        """The first message of every number."""
        return [self.messages[n][0] for n in self.fleet.number_ids]

    def due(self, messages: list[OutboundMessage]) -> None:
        """Move the clock to when all of ``messages`` are due, with their windows still open."""
        self.clock.set(max(self.clock.now(), *(m.scheduled_at for m in messages)))
        for m in messages:
            assert m.window_end is None or m.window_end > self.clock.now(), "the plan left no common moment"

    def batch(
        self, ids: list[int], provider_for: ProviderFor | None = None, budget_wall: float = BATCH_BUDGET_WALL
    ) -> list[SendOutcome]:
        return send_batch(
            self.engine,
            ids,
            "batch-worker",
            self.clock,
            provider_for or self.runtime.provider_for,
            plans=self.runtime.plans,
            requeue=lambda mid, delay: self.requeued.append((mid, delay)),
            budget_wall=budget_wall,
        )

    def row(self, message_id: int) -> OutboundMessage:
        row = history.get_message(self.engine, message_id)
        assert row is not None
        return row

    def used(self, number_id: int) -> int:
        plan = days.get_day_plan(self.engine, number_id, self.day(number_id))
        assert plan is not None
        return plan.used

    def gap(self, number_id: int) -> timedelta:
        """The number's pace: its next claim starts this long after its last send ended."""
        plan = days.get_day_plan(self.engine, number_id, self.day(number_id))
        assert plan is not None
        return timedelta(seconds=plan.gap_seconds)

    def logged(self, message: OutboundMessage) -> list[dict[str, Any]]:
        """The simulator's record of ``message`` going out (the ground truth)."""
        number = numbers.get_number(self.engine, message.number_id)
        assert number is not None
        return [
            s
            for s in self.fleet.sends(number.phone)
            if s["to"] == message.recipient and s["body"] == message.text
        ]


@pytest.fixture
def world(engine: Engine, make_fleet: Any) -> Iterator[World]:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=3, volume=6, forbidden=(FORBIDDEN,), timezones=TIMEZONES)
    w = World(engine, fleet, clock)
    w.plan()
    yield w
    w.runtime.close()


def test_every_claimed_message_goes_out_exactly_once(world: World) -> None:
    firsts = world.first()
    world.due(firsts)
    ids = [m.id or 0 for m in firsts]
    outcomes = world.batch(ids)
    assert [o.message_id for o in outcomes] == ids  # one outcome per id, in order
    assert [(o.status, o.state, o.reason) for o in outcomes] == [("ok", "sent", None)] * 3
    for m in firsts:
        [logged] = world.logged(m)
        row = world.row(m.id or 0)
        assert (row.state, row.provider_message_id) == ("sent", logged["message_id"])
        assert (row.attempts, row.claimed_by) == (1, "batch-worker")
    assert len(world.fleet.sends()) == 3
    assert [world.used(n) for n in world.fleet.number_ids] == [1, 1, 1]
    # delivered again (at least once): nothing more goes out
    again = world.batch(list(reversed(ids)))
    assert [(o.message_id, o.status, o.state) for o in again] == [
        (m, "not_claimable", None) for m in reversed(ids)
    ]
    assert len(world.fleet.sends()) == 3
    assert world.requeued == []
    assert_accounting(world.engine)


def test_duplicate_ids_in_a_batch_are_sent_once(world: World) -> None:
    firsts = world.first()[:2]
    world.due(firsts)
    a, b = (m.id or 0 for m in firsts)
    outcomes = world.batch([a, b, a, a])
    assert [(o.message_id, o.state) for o in outcomes] == [(a, "sent"), (b, "sent")]
    assert [len(world.logged(m)) for m in firsts] == [1, 1]


def test_each_provider_answer_in_one_batch_is_handled_like_send_one(world: World) -> None:
    sao_paulo, berlin, utc = world.fleet.number_ids
    forbidden = next(m for m in world.messages[sao_paulo] if m.recipient == FORBIDDEN)
    limited = world.messages[berlin][0]
    ok = world.messages[utc][0]
    later = world.messages[berlin][-1]  # two of one number: the batch statement leaves both out
    world.due([forbidden, limited, ok])
    assert later.scheduled_at > world.clock.now()
    world.fleet.set_faults(world.fleet.phones[1], rate_limit=1.0)  # Berlin's channel answers 429
    now = world.clock.now()
    ids = [later.id or 0, forbidden.id or 0, limited.id or 0, ok.id or 0]
    outcomes = {o.message_id: o for o in world.batch(ids)}
    # an invalid recipient: failed, the recipient marked invalid, the slot kept (as send_one)
    assert (outcomes[ids[1]].status, outcomes[ids[1]].state) == ("skip_recipient", "failed")
    assert world.row(ids[1]).state == "failed"
    [recipient] = [
        r
        for r in inbound.list_recipients(world.engine, sao_paulo, include_invalid=True)
        if r.phone == FORBIDDEN
    ]
    assert recipient.invalid
    # a 429: back to the queue after Retry-After, the slot given back, enqueued again for then
    assert (outcomes[ids[2]].status, outcomes[ids[2]].state) == ("retry", "queued")
    retried = world.row(ids[2])
    assert retried.state == "queued" and retried.not_before == now + timedelta(seconds=2)
    # accepted: sent with the simulator's id
    assert (outcomes[ids[3]].status, outcomes[ids[3]].state) == ("ok", "sent")
    [logged] = world.logged(ok)
    assert world.row(ids[3]).provider_message_id == logged["message_id"]
    # not due yet: left alone, enqueued again for its time
    assert (outcomes[ids[0]].status, outcomes[ids[0]].state) == ("not_due", None)
    assert world.row(ids[0]).state == "planned"
    wait = (later.scheduled_at - now).total_seconds()
    delays = dict(world.requeued)
    assert len(world.requeued) == len(delays) == 2
    assert delays[ids[2]] == pytest.approx(2.0) and delays[ids[0]] == pytest.approx(wait)
    assert [world.used(n) for n in (sao_paulo, berlin, utc)] == [1, 0, 1]
    assert world.fleet.sends(world.fleet.phones[1]) == []  # a 429 performs nothing
    assert len(world.fleet.sends()) == 1
    assert_accounting(world.engine)
    # once the API recovers the retried message goes out exactly once, through the single path, when
    # both its Retry-After and its number's pace (a gap from the 429'd attempt) have passed
    world.fleet.admin("DELETE", "/_sim/faults")
    world.clock.set(now + max(timedelta(seconds=2), world.gap(berlin)))
    single = send_one(
        world.engine, ids[2], "w", world.clock, world.runtime.provider_for, plans=world.runtime.plans
    )
    assert single.state == "sent" and len(world.logged(limited)) == 1


class _Raising:
    """A provider whose send crashes after the request may have left."""

    last_reading_error: str | None = None

    def send_text(self, to: str, body: str, typing_seconds: float = 0.0) -> SendResult:
        raise RuntimeError("connection reset in the middle of the answer")

    def health(self) -> Health:
        raise NotImplementedError

    def fetch_reading(self, today: date) -> Reading | None:
        return None

    def list_inbound(self, since: datetime) -> list[Inbound]:
        return []

    def close(self) -> None:
        return None


def test_no_provider_and_a_crashing_provider_are_handled_like_send_one(world: World) -> None:
    _, berlin, utc = world.fleet.number_ids
    firsts = world.first()
    world.due(firsts)
    raising: Provider = _Raising()

    def provider_for(number_id: int) -> Provider:
        if number_id == berlin:
            raise LookupError("SIM_TOKEN_1 is not set")
        if number_id == utc:
            return raising
        return world.runtime.provider_for(number_id)

    outcomes = world.batch([m.id or 0 for m in firsts], provider_for=provider_for)
    assert [(o.status, o.state) for o in outcomes] == [
        ("ok", "sent"),
        ("stop_number", "skipped"),
        ("unknown", "unknown"),
    ]
    # no provider: the message skipped, the number auto-paused, the rest of its day skipped
    number = numbers.get_number(world.engine, berlin)
    assert number is not None and number.state == "paused"
    assert number.paused_reason is not None and number.paused_reason.startswith("auto-paused")
    assert {m.state for m in history.list_messages(world.engine, berlin, world.day(berlin))} == {"skipped"}
    # a crash after the request may have left: unknown, counted, never sent again
    assert world.used(utc) == 1 and history.day_count(world.engine, utc, world.day(utc)) == 1
    again = world.batch([m.id or 0 for m in firsts])
    assert {o.status for o in again} == {"not_claimable"}
    assert len(world.fleet.sends()) == 1
    assert_accounting(world.engine)


def test_a_batch_without_time_gives_every_claim_back(world: World) -> None:
    firsts = world.first()
    world.due(firsts)
    ids = [m.id or 0 for m in firsts]
    outcomes = world.batch(ids, budget_wall=0.0)
    assert [(o.message_id, o.status, o.state) for o in outcomes] == [(m, "given_back", "queued") for m in ids]
    for m in ids:
        row = world.row(m)
        assert (row.state, row.attempts, row.claimed_by, row.claimed_at, row.not_before) == (
            "queued",
            0,
            None,
            None,
            None,
        )
    assert [world.used(n) for n in world.fleet.number_ids] == [0, 0, 0]
    assert world.requeued == [(m, 0.0) for m in ids]
    assert world.fleet.sends() == []
    assert_accounting(world.engine)
    # the requeued claims go out once, as if the first batch never had them (each number's pace counts
    # the given-back claim: the next one waits its gap)
    world.clock.advance(max(world.gap(n) for n in world.fleet.number_ids).total_seconds())
    assert [o.state for o in world.batch(ids)] == ["sent"] * 3
    assert [len(world.logged(m)) for m in firsts] == [1, 1, 1]
    assert [world.row(m).attempts for m in ids] == [1, 1, 1]


class _FakeWall:
    """`time` for warmup.services.sending: wall time that passes only when a send is made."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_a_batch_that_runs_out_of_time_mid_way_gives_the_rest_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = _FakeWall()
    monkeypatch.setattr(sending, "time", wall)
    firsts = world.first()
    world.due(firsts)
    ids = [m.id or 0 for m in firsts]

    def slow(number_id: int) -> Provider:
        wall.now += 60.0  # every provider call takes a minute
        return world.runtime.provider_for(number_id)

    outcomes = world.batch(ids, provider_for=slow, budget_wall=30.0)
    assert [(o.status, o.state) for o in outcomes] == [
        ("ok", "sent"),
        ("given_back", "queued"),
        ("given_back", "queued"),
    ]
    assert [len(world.logged(m)) for m in firsts] == [1, 0, 0]
    assert world.requeued == [(ids[1], 0.0), (ids[2], 0.0)]
    assert [world.used(n) for n in world.fleet.number_ids] == [1, 0, 0]
    assert_accounting(world.engine)


def test_a_send_to_a_fleet_peer_schedules_the_peers_reply(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, volume=4, reply_probability=1.0, timezones=TIMEZONES)
    w = World(engine, fleet, clock)
    try:
        w.plan()
        sender, peer = fleet.number_ids
        to_peer = next(m for m in w.messages[sender] if m.recipient == fleet.phones[1])
        own = next(m for m in w.messages[peer] if m.recipient not in fleet.phones)
        w.due([to_peer, own])
        outcomes = {o.message_id: o for o in w.batch([own.id or 0, to_peer.id or 0])}
        assert (outcomes[own.id or 0].state, outcomes[own.id or 0].reply_id) == ("sent", None)  # to a contact
        outcome = outcomes[to_peer.id or 0]
        assert outcome.state == "sent" and outcome.reply_id is not None
        reply = w.row(outcome.reply_id)
        assert (reply.number_id, reply.recipient, reply.kind, reply.in_reply_to, reply.state) == (
            peer,
            fleet.phones[0],
            "peer_reply",
            to_peer.id,
            "planned",
        )
        assert clock.now() + timedelta(minutes=1) <= reply.scheduled_at <= clock.now() + timedelta(minutes=5)
        # a redelivery of the batch schedules no second reply
        w.batch([own.id or 0, to_peer.id or 0])
        replies = [m for m in history.list_messages(engine, peer, w.day(peer)) if m.kind == "peer_reply"]
        assert [m.id for m in replies] == [outcome.reply_id]
        # the reply goes out like any message, and is not answered
        clock.set(reply.scheduled_at)
        [reply_outcome] = w.batch([outcome.reply_id])
        assert reply_outcome.state == "sent" and reply_outcome.reply_id is None
        assert_accounting(engine)
    finally:
        w.runtime.close()
