"""Pause, resume, status, why and history against a real store and a real simulator over HTTP."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from warmup.cli.charts import history_chart
from warmup.clock import ManualClock
from warmup.core.domain import DayOutcome
from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of
from warmup.services import admin
from warmup.services.planning import plan_number_day
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.scheduler import Scheduler
from warmup.services.sending import send_one
from warmup.store import claims, days, history, numbers, queue, sends
from warmup.store.audit import list_audit

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 09:00 in Sao Paulo
GAP_LOW, GAP_HIGH = timedelta(minutes=2), timedelta(minutes=6)  # the fixture plan's pacing.gap


class Recorder:
    """A scheduler dispatch that only records (the test drives the sends itself)."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def plan_day(self, number_id: int, local_date: date) -> None:
        pass

    def send_message(self, message_id: int) -> None:
        self.sent.append(message_id)

    def ingest_replies(self, number_id: int) -> None:
        pass


@pytest.fixture
def world(engine: Engine, make_fleet: Any) -> Iterator[tuple[Fleet, Runtime, ManualClock]]:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, volume=10)
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    try:
        yield fleet, runtime, clock
    finally:
        runtime.close()


def planned_day(fleet: Fleet, runtime: Runtime, clock: ManualClock) -> tuple[int, date, list[Any]]:
    number_id = fleet.number_ids[0]
    day = local_date_of(clock.now(), "America/Sao_Paulo")
    assert plan_number_day(runtime, number_id, day).planned
    return number_id, day, history.list_messages(runtime.engine, number_id, day)


def send_next(runtime: Runtime, clock: ManualClock, message: Any) -> str:
    clock.set(max(message.scheduled_at, clock.now()))
    return send_one(runtime.engine, message.id, "worker-1", clock, runtime.provider_for).status


def gaps(times: list[datetime]) -> list[timedelta]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_pause_stops_sending_before_the_next_due_message(world: Any) -> None:
    fleet, runtime, clock = world
    engine = runtime.engine
    number_id, day, messages = planned_day(fleet, runtime, clock)
    assert send_next(runtime, clock, messages[0]) == "ok"
    queue.mark_queued(engine, [messages[1].id], clock.now())  # already handed to the broker

    outcome = admin.pause(
        engine,
        admin.Target(phone=fleet.phones[0]),
        reason="checking the content",
        actor="cli",
        now=clock.now(),
    )
    assert outcome.changed == [fleet.phones[0]] and outcome.unchanged == []

    # the next due message (queued before the pause) never goes out
    assert send_next(runtime, clock, messages[1]) == "not_claimable"
    states = {m.id: m.state for m in history.list_messages(engine, number_id, day)}
    assert states[messages[0].id] == "sent"
    assert all(state == "skipped" for mid, state in states.items() if mid != messages[0].id)
    # a message added after the pause (e.g. a peer's reply) is refused by the claim itself
    (late,) = sends.add_sends(
        engine, number_id, day, [sends.PlannedSend(fleet.phones[1], "hi", clock.now())], now=clock.now()
    )
    claim = claims.claim(engine, late, "worker-1", clock.now())
    assert claim.status is claims.ClaimStatus.PAUSED and "checking the content" in (claim.reason or "")
    assert len(fleet.sends(fleet.phones[0])) == 1  # the simulator's log: only the one before the pause

    again = admin.pause(engine, admin.Target(phone=fleet.phones[0]), reason="x", actor="cli", now=clock.now())
    assert again.changed == [] and again.unchanged == [(fleet.phones[0], "paused")]
    rows = [r for r in list_audit(engine, number_id) if r.action == "pause"]
    assert len(rows) == 1 and rows[0].actor == "cli" and rows[0].detail is not None
    assert rows[0].detail["reason"] == "checking the content"


def test_resume_respreads_the_rest_of_the_day_without_a_burst(world: Any) -> None:
    fleet, runtime, clock = world
    engine = runtime.engine
    number_id, day, messages = planned_day(fleet, runtime, clock)
    for message in messages[:2]:
        assert send_next(runtime, clock, message) == "ok"
    last_sent = clock.now()
    admin.pause(engine, admin.Target(phone=fleet.phones[0]), reason="lunch", actor="cli", now=clock.now())
    clock.advance(timedelta(minutes=45))
    resumed_at = clock.now()
    outcome = admin.resume(engine, admin.Target(phone=fleet.phones[0]), actor="cli", now=resumed_at)
    assert outcome.changed == [fleet.phones[0]]
    number = numbers.get_number(engine, number_id)
    assert number is not None and number.state == "active" and number.resumed_on == day

    report = Scheduler(runtime, dispatch=Recorder(), poll_replies=False).tick(resumed_at)
    assert report.errors == []
    stored = days.get_day_plan(engine, number_id, day)
    assert stored is not None
    fresh = [m for m in history.list_messages(engine, number_id, day) if m.state == "planned"]
    assert report.respread == len(fresh) == stored.quota - stored.used > 0
    times = sorted(m.scheduled_at for m in fresh)
    assert times[0] >= resumed_at and times[0] - last_sent >= GAP_LOW
    assert all(GAP_LOW <= gap <= GAP_HIGH for gap in gaps(times)), gaps(times)
    # a second tick does not re-spread the same resume again
    assert Scheduler(runtime, dispatch=Recorder(), poll_replies=False).tick(resumed_at).respread == 0
    # and the re-spread messages really go out, spaced as planned
    for message in sorted(fresh, key=lambda m: m.scheduled_at)[:3]:
        assert send_next(runtime, clock, message) == "ok"
    accepted = [s["accepted_at"] for s in fleet.sends(fleet.phones[0])]
    assert len(accepted) == 5


def test_an_expiring_pause_ends_by_itself(world: Any) -> None:
    fleet, runtime, clock = world
    engine = runtime.engine
    number_id, _day, _messages = planned_day(fleet, runtime, clock)
    admin.pause(
        engine,
        admin.Target(phone=fleet.phones[0]),
        reason="two hours off",
        actor="cli",
        now=clock.now(),
        duration=timedelta(hours=2),
    )
    number = numbers.get_number(engine, number_id)
    assert number is not None and number.paused_until == clock.now() + timedelta(hours=2)
    scheduler = Scheduler(runtime, dispatch=Recorder(), poll_replies=False)
    clock.advance(timedelta(hours=1, minutes=59))
    assert scheduler.tick(clock.now()).resumed == 0
    assert admin.end_expired_pauses(engine, clock.now()) == []
    clock.advance(timedelta(minutes=2))
    report = scheduler.tick(clock.now())
    assert report.resumed == 1 and report.respread > 0
    number = numbers.get_number(engine, number_id)
    assert number is not None and number.state == "active" and number.paused_until is None
    (row,) = [r for r in list_audit(engine, number_id) if r.action == "resume"]
    assert row.actor == "scheduler" and row.detail is not None and row.detail["reason"] == "pause expired"


def test_targets_by_plan_and_all_and_bad_targets(world: Any) -> None:
    fleet, runtime, clock = world
    engine = runtime.engine
    outcome = admin.pause(engine, admin.Target(plan="test-plan"), reason="r", actor="cli", now=clock.now())
    assert sorted(outcome.changed) == sorted(fleet.phones)
    outcome = admin.resume(engine, admin.Target(all=True), actor="cli", now=clock.now())
    assert sorted(outcome.changed) == sorted(fleet.phones)
    with pytest.raises(UserError, match="exactly one target"):
        admin.Target(phone="+5511999990001", all=True)
    with pytest.raises(UserError, match="unknown number"):
        admin.pause(engine, admin.Target(phone="+5511000000000"), reason="r", actor="cli", now=clock.now())
    with pytest.raises(UserError, match="no number uses plan"):
        admin.resume(engine, admin.Target(plan="nope"), actor="cli", now=clock.now())
    with pytest.raises(UserError, match="positive"):
        admin.pause(
            engine, admin.Target(all=True), reason="r", actor="cli", now=clock.now(), duration=timedelta(0)
        )


def test_status_why_and_history_tell_the_day(world: Any, tmp_path: Path) -> None:
    fleet, runtime, clock = world
    engine = runtime.engine
    _number_id, day, messages = planned_day(fleet, runtime, clock)
    assert send_next(runtime, clock, messages[0]) == "ok"
    rows = {row.phone: row for row in admin.status(engine, clock.now())}
    mine = rows[fleet.phones[0]]
    assert (mine.quota, mine.sent, mine.used, mine.state, mine.local_date) == (10, 1, 1, "active", day)
    assert mine.reading is not None and mine.reading.source == "simulator"
    other = rows[fleet.phones[1]]
    assert other.quota is None and other.sent == 0  # not planned yet

    admin.pause(engine, admin.Target(phone=fleet.phones[0]), reason="looks odd", actor="cli", now=clock.now())
    lines = admin.explain(engine, fleet.phones[0], clock.now()).lines()
    text = "\n".join(lines)
    assert lines[0].startswith(f"{fleet.phones[0]} on {day}: advance at plan day 1 -> quota 10")
    assert "Rules that fired:" in text and "ramp" in text
    assert "Reading: overall" in text and "simulator" in text
    assert "1 sent" in text and "pause by cli" in text and "looks odd" in text
    # what became of the quota: the pause skipped the rest, with its cause; how the one send went
    assert "Delivered: 1 of 10 (10%)." in text
    assert "Not sent: 9: skipped: paused 9." in text
    assert "Pace: 1 sends took" in text and "the plan's minimum gap after a send is" in text
    before = admin.explain(engine, fleet.phones[0], clock.now(), day - timedelta(days=3)).lines()
    assert before == [  # a past day: being paused NOW does not explain it
        f"{fleet.phones[0]} on {day - timedelta(days=3)}: no decision was made (nothing is stored for that "
        "day: before the number was enrolled, or nothing ran then)."
    ]
    for line in lines:  # a rule is named once, counts agree with their noun
        assert not any(f"{r}: {r}" in line for r in ("risk.rules[0]", "risk.rules[1]", "ramp"))
        assert " 1 replies" not in line

    (entry,) = admin.history(engine, fleet.phones[0])
    assert entry.account is not None and entry.account.skipped == {"paused": 9}
    overall = mine.reading.overall
    assert (entry.local_date, entry.quota, entry.sent, entry.paused, entry.overall) == (
        day,
        10,
        1,
        True,
        overall,
    )
    chart = tmp_path / "history.png"
    history_chart([entry], fleet.phones[0], str(chart))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="nothing to chart"):
        history_chart([], fleet.phones[1], str(tmp_path / "empty.png"))

    audit = admin.audit_log(engine, fleet.phones[0])
    assert next(row.action for row, _ in audit) == "pause" and {p for _, p in audit} == {fleet.phones[0]}


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("+5511999990001", "+5511999990001"),
        ("5511999990001", "+5511999990001"),
        ("+55 (11) 99999-0001", "+5511999990001"),
        ("005511999990001", "+5511999990001"),
        (" +49 151 1234 0003 ", "+4915112340003"),
        ("not-a-phone", "notaphone"),  # left for the lookup to report as unknown
    ],
)
def test_normalize_phone(written: str, stored: str) -> None:
    assert admin.normalize_phone(written) == stored


def test_explain_names_each_rule_once() -> None:
    from warmup.store.models import DayPlan

    day = DayPlan(
        number_id=1,
        local_date=date(2026, 11, 24),
        plan_day=3,
        next_plan_day=3,
        action="hold",
        quota=8,
        plan_volume=8,
        max_new_contacts=3,
        reasons=[
            {"rule": "risk.rules[3]", "action": "hold", "text": "risk.rules[3] response_rate=2 -> hold"}
        ],
    )
    outcome = DayOutcome(planned=1, sent=1, delivered=0, failed=0, skipped=0, unknown=0, replies=1)
    explanation = admin.Explanation(
        phone="+5511999990001",
        local_date=date(2026, 11, 24),
        day=day,
        reading=None,
        yesterday=outcome,
        outcome=outcome,
        events=[],
        state="active",
    )
    text = "\n".join(explanation.lines())
    assert "  - risk.rules[3] (hold): response_rate=2 -> hold" in text
    assert "1 reply." in text and "1 reply;" in text


def test_describe_detail_flattens_and_shows_changes() -> None:
    assert admin.describe_detail(None) == ""
    assert admin.describe_detail({"config": {"provider": "whapi", "base_url": None}}) == "provider: whapi"
    assert admin.describe_detail({"timezone": ["UTC", "Asia/Tokyo"]}) == "timezone: UTC -> Asia/Tokyo"
    assert admin.describe_detail({"admins": ["+1", "+2"], "before": []}) == "admins: +1, +2"
    assert (
        admin.describe_detail({"until": "2026-11-21T06:50:07.394621+00:00"}) == "until: 2026-11-21 06:50 UTC"
    )
    assert admin.describe_detail({"at": "2026-11-21T09:50:00+03:00"}) == "at: 2026-11-21 06:50 UTC"
    assert admin.describe_detail({"windows": [[1, 2], [3, 4], [5, 6]]}) == "windows: [1, 2], [3, 4], [5, 6]"


def test_why_shows_event_details_as_words_not_a_python_dict() -> None:
    from warmup.store.models import AuditLog, DayPlan

    day = DayPlan(
        number_id=1,
        local_date=date(2026, 11, 24),
        plan_day=3,
        next_plan_day=3,
        action="advance",
        quota=8,
        plan_volume=8,
        max_new_contacts=3,
        reasons=[{"rule": "ramp", "action": "advance", "text": "plan day 3: plan volume 8"}],
    )
    at = datetime(2026, 11, 24, 13, 5, tzinfo=UTC)
    events = [
        AuditLog(
            at=at,
            actor="cli",
            action="fleet_add",
            number_id=1,
            detail={"config": {"provider": "whapi", "timezone": "Asia/Tokyo", "base_url": None}},
        ),
        AuditLog(
            at=at, actor="cli", action="fleet_update", number_id=1, detail={"timezone": ["UTC", "Asia/Tokyo"]}
        ),
        AuditLog(
            at=at,
            actor="cli",
            action="pause",
            number_id=1,
            detail={"reason": "too fast", "until": "2026-11-24T15:05:00+00:00", "skipped": 3},
        ),
    ]
    outcome = DayOutcome(planned=1, sent=1, delivered=0, failed=0, skipped=0, unknown=0, replies=0)
    explanation = admin.Explanation(
        phone="+5511999990001",
        local_date=date(2026, 11, 24),
        day=day,
        reading=None,
        yesterday=None,
        outcome=outcome,
        events=events,
        state="paused",
    )
    lines = explanation.lines()
    text = "\n".join(lines)
    assert "{" not in text and "[" not in text.replace("risk.rules[", "")
    assert "Event 13:05 UTC: fleet_add by cli (provider: whapi; timezone: Asia/Tokyo)" in lines
    assert "Event 13:05 UTC: fleet_update by cli (timezone: UTC -> Asia/Tokyo)" in lines
    assert (
        "Event 13:05 UTC: pause by cli (reason: too fast; until: 2026-11-24 15:05 UTC; skipped: 3)" in lines
    )
