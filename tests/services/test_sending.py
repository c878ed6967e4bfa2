"""send_one against a real store and the simulator over HTTP: each provider outcome, the right state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from warmup.clock import ManualClock
from warmup.core.domain import Reading
from warmup.core.localtime import local_date_of
from warmup.providers.base import Health, Inbound, OutcomeAction, Provider, SendResult
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.sending import retry_delay, send_one
from warmup.store import days, history, inbound, numbers, outcomes, sends
from warmup.store.audit import list_audit
from warmup.store.models import OutboundMessage
from warmup.store.pauses import pause_numbers

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 09:00 in Sao Paulo, 13:00 in Berlin


class Setup:
    def __init__(self, engine: Engine, fleet: Fleet, clock: ManualClock) -> None:
        self.engine = engine
        self.fleet = fleet
        self.clock = clock
        self.runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
        self.requeued: list[tuple[int, float]] = []
        self.number = fleet.number_ids[0]
        self.phone = fleet.phones[0]
        self.day: date = local_date_of(clock.now(), "America/Sao_Paulo")

    def plan(self, number_id: int | None = None) -> list[OutboundMessage]:
        number_id = number_id or self.number
        day = local_date_of(self.clock.now(), numbers.get_number(self.engine, number_id).timezone)  # type: ignore[union-attr]
        assert plan_number_day(self.runtime, number_id, day).planned
        return history.list_messages(self.engine, number_id, day)

    def send(self, message_id: int, provider_for: Any = None) -> Any:
        return send_one(
            self.engine,
            message_id,
            "test-worker",
            self.clock,
            provider_for or self.runtime.provider_for,
            plans=self.runtime.plans,
            requeue=lambda mid, delay: self.requeued.append((mid, delay)),
        )

    def next_due(self) -> OutboundMessage:
        pending = [
            m
            for m in history.list_messages(self.engine, self.number, self.day)
            if m.state in ("planned", "queued")
        ]
        message = min(pending, key=lambda m: max(m.scheduled_at, m.not_before or m.scheduled_at))
        due = max(message.scheduled_at, message.not_before or message.scheduled_at)
        if due > self.clock.now():
            self.clock.set(due)
        return message

    def state(self, message_id: int) -> OutboundMessage:
        message = history.get_message(self.engine, message_id)
        assert message is not None
        return message


@pytest.fixture
def setup(engine: Engine, make_fleet: Any) -> Iterator[Setup]:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, volume=6, forbidden=("+5511977770001",))
    s = Setup(engine, fleet, clock)
    yield s
    s.runtime.close()


def test_ok_is_sent_once_even_when_delivered_twice(setup: Setup) -> None:
    setup.plan()
    message = setup.next_due()
    outcome = setup.send(message.id)
    assert outcome.status == "ok" and outcome.state == "sent"
    again = setup.send(message.id)  # at-least-once delivery: the duplicate is a no-op
    assert again.status == "not_claimable"
    sent = [
        s
        for s in setup.fleet.sends(setup.phone)
        if s["to"] == message.recipient and s["body"] == message.text
    ]
    assert len(sent) == 1
    row = setup.state(message.id)
    assert row.state == "sent" and row.provider_message_id == sent[0]["message_id"]


def test_not_due_is_left_alone_and_requeued_for_later(setup: Setup) -> None:
    messages = setup.plan()
    later = max(messages, key=lambda m: m.scheduled_at)
    outcome = setup.send(later.id)
    assert outcome.status == "not_due"
    assert setup.state(later.id).state == "planned"
    assert setup.requeued and setup.requeued[0][0] == later.id and setup.requeued[0][1] > 0
    assert setup.fleet.sends(setup.phone) == []


def test_rate_limit_goes_back_to_the_queue_with_retry_after(setup: Setup) -> None:
    setup.plan()
    message = setup.next_due()
    setup.fleet.set_faults(setup.phone, rate_limit=1.0)
    now = setup.clock.now()
    outcome = setup.send(message.id)
    assert outcome.status == "retry" and outcome.state == "queued"
    row = setup.state(message.id)
    assert row.state == "queued" and row.not_before is not None and row.not_before > now
    assert setup.requeued == [(message.id, pytest.approx((row.not_before - now).total_seconds()))]
    day = days.get_day_plan(setup.engine, setup.number, setup.day)
    assert day is not None and day.used == 0  # the slot was given back
    # once the API recovers, the same message goes out exactly once: at its Retry-After, and not before
    # the plan's gap after the refused attempt (any request to the provider counts for the pace)
    setup.fleet.admin("DELETE", "/_sim/faults")
    gap = timedelta(seconds=day.gap_seconds)
    assert gap > timedelta(0)
    setup.clock.set(max(row.not_before, now + gap) - timedelta(milliseconds=1))
    assert setup.send(message.id).status == "not_due"
    setup.clock.set(max(row.not_before, now + gap))
    assert setup.send(message.id).state == "sent"
    assert len(setup.fleet.sends(setup.phone)) == 1


def test_retry_outside_todays_windows_is_skipped(setup: Setup) -> None:
    setup.plan()
    message = setup.next_due()
    setup.clock.set(datetime(2026, 11, 23, 22, 59, tzinfo=UTC))  # 19:59 local: one minute of window left
    setup.fleet.set_faults(setup.phone, rate_limit=1.0, retry_after=600)
    outcome = setup.send(message.id)
    assert outcome.state == "skipped"
    row = setup.state(message.id)
    assert row.state == "skipped" and row.reason is not None and row.cause == "retries"
    assert "would fall after today's last send window" in row.reason


def test_forbidden_recipient_fails_and_is_marked_invalid(setup: Setup) -> None:
    messages = setup.plan()
    target = next((m for m in messages if m.recipient == "+5511977770001"), None)
    # the seed is fixed, so the forbidden contact is always picked; a change that drops it must fail here,
    # not silently skip the test
    assert target is not None, "the seeded audience did not pick the forbidden contact"
    setup.clock.set(target.scheduled_at)
    outcome = setup.send(target.id)
    assert outcome.status == "skip_recipient" and outcome.state == "failed"
    recipient = next(
        r
        for r in inbound.list_recipients(setup.engine, setup.number, include_invalid=True)
        if r.phone == target.recipient
    )
    assert recipient.invalid


def test_unknown_outcome_is_counted_and_never_resent(setup: Setup) -> None:
    setup.plan()
    message = setup.next_due()
    setup.fleet.set_faults(setup.phone, malformed=1.0)  # the API performs the send, the answer is garbage
    outcome = setup.send(message.id)
    assert outcome.status == "unknown" and outcome.state == "unknown"
    assert setup.send(message.id).status == "not_claimable"
    assert history.day_count(setup.engine, setup.number, setup.day) == 1
    assert len(setup.fleet.sends(setup.phone)) == 1  # it did go out, once


def test_stop_number_auto_pauses_with_the_reason(setup: Setup) -> None:
    setup.plan()
    message = setup.next_due()
    setup.fleet.admin("PATCH", f"/_sim/channels/{setup.phone}", json={"status": "banned", "reason": "spam"})
    outcome = setup.send(message.id)
    assert outcome.status == "stop_number" and outcome.state == "skipped"
    number = numbers.get_number(setup.engine, setup.number)
    assert number is not None and number.state == "paused"
    assert number.paused_reason is not None and number.paused_reason.startswith("auto-paused")
    audit = list_audit(setup.engine, setup.number)
    assert any(a.action == "pause" and a.actor == "worker" and "auto-paused" in str(a.detail) for a in audit)
    # the rest of the day was skipped by the pause; nothing else can be claimed
    assert all(m.state == "skipped" for m in history.list_messages(setup.engine, setup.number, setup.day))


def test_pause_takes_effect_before_the_next_send(setup: Setup) -> None:
    setup.plan()
    first = setup.next_due()
    assert setup.send(first.id).state == "sent"
    second = setup.next_due()
    pause_numbers(
        setup.engine,
        reason="admin says stop",
        actor="admin",
        now=setup.clock.now(),
        number_ids=[setup.number],
    )
    outcome = setup.send(second.id)
    assert outcome.state is None
    assert setup.state(second.id).state == "skipped"
    assert len(setup.fleet.sends(setup.phone)) == 1


class ThrottlingProvider:
    """The Cloud API's 131048 answer, which the Whapi-speaking simulator cannot produce."""

    last_reading_error: str | None = None

    def send_text(self, to: str, body: str, typing_seconds: float = 0.0) -> SendResult:
        return SendResult(OutcomeAction.THROTTLE, None, "spam rate limit hit", http_status=400, code="131048")

    def health(self) -> Health:
        return Health(OutcomeAction.OK, "ok", "")

    def fetch_reading(self, today: date) -> Reading | None:
        return None

    def list_inbound(self, since: datetime) -> list[Inbound]:
        return []

    def close(self) -> None:
        return None


def test_throttle_fails_the_message_and_cuts_the_rest_of_the_day(setup: Setup) -> None:
    setup.plan()
    before = days.get_day_plan(setup.engine, setup.number, setup.day)
    assert before is not None and before.quota == 6
    message = setup.next_due()
    provider: Provider = ThrottlingProvider()
    outcome = setup.send(message.id, provider_for=lambda _number: provider)
    assert outcome.status == "throttle" and outcome.state == "failed"
    after = days.get_day_plan(setup.engine, setup.number, setup.day)
    assert after is not None and after.used == 1
    assert after.quota == 1 + (6 - 1) // 2
    actions = [a.action for a in list_audit(setup.engine, setup.number)]
    assert "risk_event" in actions and "cut_quota" in actions


def test_a_message_to_a_peer_schedules_the_peers_reply(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, volume=4, reply_probability=1.0)
    s = Setup(engine, fleet, clock)
    try:
        messages = s.plan()
        s.plan(fleet.number_ids[1])  # the peer's day (Berlin) must be planned for it to reply
        to_peer = next(m for m in messages if m.recipient == fleet.phones[1])
        clock.set(to_peer.scheduled_at)
        outcome = s.send(to_peer.id)
        assert outcome.state == "sent" and outcome.reply_id is not None
        reply = s.state(outcome.reply_id)
        assert reply.number_id == fleet.number_ids[1] and reply.recipient == fleet.phones[0]
        assert reply.kind == "peer_reply" and reply.in_reply_to == to_peer.id
        assert clock.now() + timedelta(minutes=1) <= reply.scheduled_at <= clock.now() + timedelta(minutes=5)
        clock.set(reply.scheduled_at)
        reply_outcome = s.send(reply.id)
        assert reply_outcome.state == "sent" and reply_outcome.reply_id is None  # replies are not answered
        assert [x["to"] for x in fleet.sends(fleet.phones[1])] == [fleet.phones[0]]
    finally:
        s.runtime.close()


def test_retry_delay_prefers_retry_after() -> None:
    with_header = SendResult(OutcomeAction.RETRY, None, "429", retry_after=7.0)
    assert retry_delay(with_header, 3) == timedelta(seconds=7)
    without = SendResult(OutcomeAction.RETRY, None, "500")
    assert retry_delay(without, 1) == timedelta(seconds=30)
    assert retry_delay(without, 3) == timedelta(seconds=120)
    assert retry_delay(without, 20) == timedelta(minutes=30)


def test_a_peer_reply_that_cannot_fit_the_peers_windows_is_not_scheduled(
    engine: Engine, make_fleet: Any
) -> None:
    # 18:58 in Sao Paulo; the peer is in Berlin, where it is 22:58, after its 08:00-20:00 window
    clock = ManualClock(datetime(2026, 11, 23, 21, 58, tzinfo=UTC))
    fleet = make_fleet(engine, clock, count=2, volume=4, reply_probability=1.0)
    s = Setup(engine, fleet, clock)
    try:
        s.plan(fleet.number_ids[1])
        day = local_date_of(clock.now(), "America/Sao_Paulo")
        decision = days.get_day_plan(engine, fleet.number_ids[0], day)
        assert decision is None
        late = sends.PlannedSend(
            fleet.phones[1], "Hello!", clock.now(), window_end=clock.now() + timedelta(minutes=2)
        )
        from warmup.core.domain import Action, Decision

        days.plan_day(
            engine,
            fleet.number_ids[0],
            Decision(day, 1, 2, Action.ADVANCE, 1, 1, 5, ()),
            [late],
            now=clock.now(),
        )
        mid = history.list_messages(engine, fleet.number_ids[0], day)[0].id
        outcome = s.send(mid)
        assert outcome.state == "sent" and outcome.reply_id is None
        audit = list_audit(engine, fleet.number_ids[1])
        assert any(a.action == "peer_reply_skipped" for a in audit)
    finally:
        s.runtime.close()


# --- truthful outcomes and metrics --------------------------------------------------------------------


class _SlowRetry:
    """A provider that takes so long that the scheduler recovers the claim, then says "retry"."""

    def __init__(self, engine: Engine, clock: ManualClock) -> None:
        self.engine, self.clock = engine, clock

    def send_text(self, to: str, text: str, typing_seconds: float = 0.0) -> SendResult:
        self.clock.advance(timedelta(minutes=20))
        outcomes.recover_stale(self.engine, self.clock.now(), self.clock.now())
        return SendResult(OutcomeAction.RETRY, None, "HTTP 503", retry_after=10.0)


def test_retry_after_the_claim_was_recovered_is_reported_and_not_requeued(setup: Setup) -> None:
    setup.plan()
    message = setup.next_due()
    slow = _SlowRetry(setup.engine, setup.clock)
    outcome = setup.send(message.id, provider_for=lambda _n: slow)
    assert outcome.status == "retry" and outcome.state is None
    assert outcome.reason is not None and "refused" in outcome.reason and "unknown" in outcome.reason
    assert setup.requeued == []
    assert setup.state(message.id).state == "unknown"


def _count(counter: Any, **labels: str) -> float:
    return float(counter.labels(**labels)._value.get())


def test_sends_readings_and_auto_pauses_are_counted(setup: Setup) -> None:
    from warmup.services import metrics

    ok, readings = _count(metrics.SENDS, outcome="ok"), _count(metrics.READINGS, source="simulator")
    lag_count = metrics.SEND_LAG._sum.get()
    pauses = _count(metrics.PAUSES, actor="worker")
    setup.plan()
    assert _count(metrics.READINGS, source="simulator") == readings + 1
    message = setup.next_due()
    setup.clock.advance(timedelta(seconds=30))
    assert setup.send(message.id).status == "ok"
    assert _count(metrics.SENDS, outcome="ok") == ok + 1
    assert metrics.SEND_LAG._sum.get() >= lag_count + 30
    setup.fleet.admin("PATCH", f"/_sim/channels/{setup.phone}", json={"status": "banned", "reason": "x"})
    assert setup.send(setup.next_due().id).status == "stop_number"
    assert _count(metrics.PAUSES, actor="worker") == pauses + 1
    paused = _count(metrics.SENDS, outcome="paused")
    pending = [
        m for m in history.list_messages(setup.engine, setup.number, setup.day) if m.state == "planned"
    ]
    assert pending == []  # the pause skipped the rest
    assert _count(metrics.SENDS, outcome="paused") == paused
