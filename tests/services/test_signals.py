"""Meta's signals reach the ramp: the daily reading of a Cloud API number carries its quality, status and
messaging limit, and a signed quality webhook posted to the real webhook app pauses or throttles the right
number within one scheduler tick. Against a real store, the simulator's Cloud API and a real server."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from tests.services.test_scheduler import TIMINGS, Recorder
from tests.test_webhook import served, wait_for
from warmup.clock import ManualClock
from warmup.core.domain import SkipCause
from warmup.core.localtime import local_date_of
from warmup.secrets import Secret
from warmup.services.admin import explain
from warmup.services.planning import plan_number_day, plan_number_days
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.scheduler import Scheduler
from warmup.services.signals import SignalWatch, act_on_signals
from warmup.store import audit, days, history, numbers, readings
from warmup.store.models import OutboundMessage
from warmup.store.pauses import pause_numbers, resume_numbers
from warmup.store.tables import DAY_PLANS, MESSAGES, NUMBERS, READINGS
from warmup.webhook import WebhookConfig, create_app

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
APP_SECRET = "meta-app-secret-signals"
WABA = "102290129340398"
META_RULES = """\
risk:
  rules:
    - {when: {quality: [yellow]}, do: {throttle: 0.5}}
    - {when: {quality: [red]}, do: pause}
    - {when: {status: [flagged]}, do: pause}
    - {when: {status: [restricted]}, do: hold}
"""


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def quality_update(phone: str, event: str = "FLAGGED", limit: str = "TIER_250") -> bytes:
    value = {"display_phone_number": phone.lstrip("+"), "event": event, "current_limit": limit}
    entry = {
        "id": WABA,
        "time": int(MONDAY_NOON.timestamp()),
        "changes": [{"value": value, "field": "phone_number_quality_update"}],
    }
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


@dataclass
class World:
    engine: Engine
    fleet: Fleet
    clock: ManualClock
    runtime: Runtime
    scheduler: Scheduler
    http: httpx.Client

    def today(self, index: int) -> date:
        number = numbers.get_number(self.engine, self.fleet.number_ids[index])
        assert number is not None
        return local_date_of(self.clock.now(), number.timezone)

    def plan(self, index: int) -> None:
        assert plan_number_day(self.runtime, self.fleet.number_ids[index], self.today(index)).planned

    def sim_says(self, index: int, **fields: Any) -> None:
        """What the simulator's Cloud API answers for the number from now on (quality, cloud_status)."""
        self.fleet.sim_admin.request("PATCH", f"/_sim/channels/{self.fleet.phones[index]}", json=fields)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(
            "/webhooks/cloud", content=body, headers=signed(body) if headers is None else headers
        )

    def state(self, index: int) -> tuple[str, str | None]:
        number = numbers.get_number(self.engine, self.fleet.number_ids[index])
        assert number is not None
        return number.state, number.paused_reason

    def day(self, index: int) -> Any:
        return days.get_day_plan(self.engine, self.fleet.number_ids[index], self.today(index))

    def messages(self, index: int) -> list[OutboundMessage]:
        return history.list_messages(self.engine, self.fleet.number_ids[index], self.today(index))

    def reading_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(READINGS)).scalar_one())

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a repeated or refused event must leave as it was."""
        audit_rows = len(audit.list_audit(self.engine, limit=1000))
        plans = [(d.quota, d.action, len(d.reasons), d.cut) for d in (self.day(0), self.day(1))]
        states = [(m.id, m.state, m.cause) for i in (0, 1) for m in self.messages(i)]
        return self.reading_count(), audit_rows, plans, states, self.state(0), self.state(1)


@pytest.fixture
def world(engine: Engine, make_fleet: Any) -> Iterator[World]:
    clock = ManualClock(MONDAY_NOON)
    fleet: Fleet = make_fleet(engine, clock, count=2, volume=40, max_per_hour=60, gap="30s..1m")
    fleet.plan_path.write_text(fleet.plan_path.read_text() + META_RULES)
    fleet.as_cloud_api()  # both numbers are Cloud API numbers (the simulator's phone-number-id: digits)
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=TIMINGS)
    config = WebhookConfig(meta_app_secret=Secret(APP_SECRET))
    with served(create_app(engine, config, clock=clock)) as http:
        yield World(engine, fleet, clock, runtime, Scheduler(runtime, dispatch=Recorder()), http)
    runtime.close()


# ------------------------------------------------------------------------------------------- daily


def test_a_cloud_numbers_daily_reading_carries_metas_signals(world: World) -> None:
    world.sim_says(0, quality="YELLOW")
    world.plan(0)
    world.plan(1)
    first = readings.latest_reading(world.engine, world.fleet.number_ids[0])
    second = readings.latest_reading(world.engine, world.fleet.number_ids[1])
    assert first is not None and second is not None
    assert (first.source, first.quality, first.status, first.meter_error) == (
        "cloud_api",
        "yellow",
        "connected",
        None,
    )
    assert first.tier is not None and first.tier.startswith("TIER_")
    assert (second.quality, second.status) == ("green", "connected")
    assert (world.day(0).action, world.day(0).quota) == ("throttle", 20)  # YELLOW throttles from the start
    assert (world.day(1).action, world.day(1).quota) == ("advance", 40)
    lines = explain(world.engine, world.fleet.phones[0], world.clock.now()).lines()
    assert any(
        line.startswith("Reading: ") and "quality yellow, status connected, tier TIER_" in line
        for line in lines
    )


def test_when_meta_cannot_be_asked_the_day_is_planned_on_the_local_factors(world: World) -> None:
    with world.engine.begin() as conn:  # number 0's Graph API is away
        conn.execute(
            sa.update(NUMBERS)
            .where(NUMBERS.c.id == world.fleet.number_ids[0])
            .values(base_url="http://127.0.0.1:9")
        )
    batch = plan_number_days(world.runtime, world.fleet.number_ids, world.today(0))
    assert [r.planned for r in batch] == [True, True]
    failed = readings.latest_reading(world.engine, world.fleet.number_ids[0])
    assert failed is not None and (failed.source, failed.quality, failed.status, failed.tier) == (
        "local",
        None,
        None,
        None,
    )
    assert failed.meter_error is not None and "phone number info" in failed.meter_error
    lines = explain(world.engine, world.fleet.phones[0], world.clock.now()).lines()
    said = [line for line in lines if line.startswith("Meta:")]
    assert len(said) == 1 and "could not be read" in said[0] and "without Meta's signals" in said[0]
    assert not any("risk meter" in line for line in lines)  # a Cloud API number has none
    ok = readings.latest_reading(world.engine, world.fleet.number_ids[1])
    assert ok is not None and ok.source == "cloud_api" and ok.quality == "green"


# --------------------------------------------------------------------------------------- webhooks


def test_a_flagged_webhook_pauses_that_number_within_one_tick(world: World) -> None:
    world.plan(0)
    world.plan(1)
    world.clock.advance(timedelta(minutes=5))
    world.sim_says(0, cloud_status="FLAGGED")  # what Meta answers once it flagged the number
    body = quality_update(world.fleet.phones[0], "FLAGGED")
    assert world.post(body).json() == {"stored": 1, "ignored": 0}
    assert world.state(0) == ("active", None)  # stored as a risk event; the scheduler acts on it
    report = world.scheduler.tick(world.clock.now())
    assert report.errors == [] and report.rejudged == 1
    state, reason = world.state(0)
    assert state == "paused" and reason is not None
    assert reason.startswith("status flagged at 12:05 UTC by webhook: paused")
    assert world.state(1) == ("active", None)
    assert {m.state for m in world.messages(0)} == {"skipped"}
    assert {m.cause for m in world.messages(0)} == {SkipCause.PAUSED.value}
    assert {m.state for m in world.messages(1)} == {"planned"}
    newest = readings.latest_reading(world.engine, world.fleet.number_ids[0])
    assert newest is not None and (newest.source, newest.status, newest.tier) == (
        "webhook",
        "flagged",
        "TIER_250",
    )
    lines = explain(world.engine, world.fleet.phones[0], world.clock.now()).lines()
    assert any("signal (pause): status flagged at 12:05 UTC by webhook: paused" in line for line in lines)
    assert any(
        "provider_signal by webhook:cloud_api" in line and "status: connected -> flagged" in line
        for line in lines
    )
    assert any("auto_pause by scheduler" in line for line in lines)

    before = world.snapshot()  # a redelivery, a second tick and a second scheduler change nothing more
    assert world.post(body).json() == {"stored": 0, "ignored": 1}
    world.scheduler.tick(world.clock.now())
    Scheduler(world.runtime, dispatch=Recorder()).tick(world.clock.now())
    assert world.snapshot() == before

    resume_numbers(world.engine, actor="admin", now=world.clock.now(), number_ids=[world.fleet.number_ids[0]])
    world.scheduler.tick(world.clock.now())
    assert world.state(0)[0] == "active"  # the same reading never acts twice, even after a resume


def test_a_pause_rule_on_a_number_paused_already_does_not_claim_it_paused_it(world: World) -> None:
    world.plan(0)
    world.plan(1)
    number_id = world.fleet.number_ids[0]
    pause_numbers(
        world.engine, reason="admin: holiday", actor="admin", now=world.clock.now(), number_ids=[number_id]
    )
    world.clock.advance(timedelta(minutes=5))
    world.sim_says(0, cloud_status="FLAGGED")
    assert world.post(quality_update(world.fleet.phones[0], "FLAGGED")).json() == {"stored": 1, "ignored": 0}
    world.scheduler.tick(world.clock.now())
    assert world.state(0) == ("paused", "admin: holiday")  # the admin's pause and its reason stand
    judged = [r["text"] for r in world.day(0).reasons if r.get("rule") == "signal"]
    assert len(judged) == 1 and "pause, the number is paused already" in judged[0]
    assert "paused, nothing more is sent" not in judged[0]


def test_a_yellow_rating_throttles_the_rest_of_the_day(world: World) -> None:
    world.plan(0)
    world.plan(1)
    assert len(world.messages(1)) == 40
    world.clock.advance(timedelta(minutes=5))
    world.sim_says(1, quality="YELLOW")
    # the event word is FLAGGED (the quality moved); Meta's answer says where to: YELLOW, still CONNECTED
    assert world.post(quality_update(world.fleet.phones[1], "FLAGGED")).json() == {"stored": 1, "ignored": 0}
    report = world.scheduler.tick(world.clock.now())
    assert report.errors == [] and report.rejudged == 1
    day = world.day(1)
    assert (day.action, day.quota) == ("throttle", 20)
    messages = world.messages(1)
    cut = [m for m in messages if m.state == "skipped"]
    assert len(cut) == 20 and {m.cause for m in cut} == {SkipCause.QUOTA.value}
    assert all(
        "quality yellow at 12:05 UTC by webhook: throttled, quota 40 -> 20" in (m.reason or "") for m in cut
    )
    kept = [m for m in messages if m.state != "skipped"]
    assert len(kept) == 20 and max(m.scheduled_at for m in kept) < min(m.scheduled_at for m in cut)
    assert world.state(1) == ("active", None) and world.day(0).quota == 40  # the other number untouched
    number = numbers.get_number(world.engine, world.fleet.number_ids[1])
    assert number is not None and not number.advance_pending and number.last_volume == 20
    lines = explain(world.engine, world.fleet.phones[1], world.clock.now()).lines()
    assert any(
        "signal (throttle): quality yellow at 12:05 UTC by webhook: throttled, quota 40 -> 20" in line
        for line in lines
    )
    before = world.snapshot()
    world.post(quality_update(world.fleet.phones[1], "FLAGGED"))  # redelivered
    world.scheduler.tick(world.clock.now())
    assert world.snapshot() == before


def test_a_throttle_below_what_was_sent_says_the_quota_it_left(world: World) -> None:
    """The cut never goes below the slots used: what the day records and `why` shows is that quota."""
    world.plan(1)
    first = sorted(world.messages(1), key=lambda m: (m.scheduled_at, m.id))[:25]
    with world.engine.begin() as conn:  # 25 went out before Meta rated the number yellow
        conn.execute(
            sa.update(MESSAGES)
            .where(MESSAGES.c.id.in_([m.id for m in first]))
            .values(state="sent", finished_at=world.clock.now())
        )
        conn.execute(sa.update(DAY_PLANS).where(DAY_PLANS.c.id == world.day(1).id).values(used=25))
    world.clock.advance(timedelta(minutes=5))
    world.sim_says(1, quality="YELLOW")
    assert world.post(quality_update(world.fleet.phones[1], "FLAGGED")).json()["stored"] == 1
    assert world.scheduler.tick(world.clock.now()).rejudged == 1
    day = world.day(1)
    assert (day.action, day.quota) == ("throttle", 25)
    text = day.reasons[-1]["text"]
    assert "quota 40 -> 20" not in text and "quota 40 -> 25" in text, text
    assert "(25 already taken by sends; the rules allow 20)" in text


def test_a_webhook_before_the_day_is_planned_is_the_days_reading(world: World) -> None:
    """The morning decision acts on it, and the scheduler does not act on it again."""
    world.sim_says(0, quality="YELLOW")
    assert world.post(quality_update(world.fleet.phones[0], "FLAGGED")).json()["stored"] == 1
    world.clock.advance(timedelta(minutes=1))
    assert world.scheduler.tick(world.clock.now()).rejudged == 0  # no day decided yet: nothing to act on
    world.sim_says(0, quality="GREEN")  # not asked again: the day's reading is the one stored
    world.plan(0)
    assert (world.day(0).action, world.day(0).quota) == ("throttle", 20)
    reasons = len(world.day(0).reasons)
    assert world.scheduler.tick(world.clock.now()).rejudged == 0
    assert (world.day(0).quota, len(world.day(0).reasons)) == (20, reasons)


def test_a_bad_signature_or_payload_changes_nothing(world: World) -> None:
    world.plan(0)
    world.plan(1)
    world.sim_says(0, cloud_status="FLAGGED")
    before = world.snapshot()
    body = quality_update(world.fleet.phones[0], "FLAGGED")
    assert world.post(body, headers={"Content-Type": "application/json"}).status_code == 401
    assert world.post(body, headers=signed(body, "not-the-app-secret")).status_code == 403
    assert world.post(body.replace(b"FLAGGED", b"UNFLAGGED"), headers=signed(body)).status_code == 403
    malformed = body.replace(b'"current_limit": "TIER_250"', b'"current_limit": ["TIER_250"]')
    assert world.post(malformed).status_code == 400
    world.scheduler.tick(world.clock.now())
    assert world.snapshot() == before


def test_events_about_other_numbers_are_acknowledged_and_not_stored(world: World) -> None:
    world.plan(0)
    world.plan(1)
    before = world.snapshot()
    assert world.post(quality_update("+15550783881", "FLAGGED")).json() == {"stored": 0, "ignored": 1}
    alert = {
        "entity_type": "PHONE_NUMBER",
        "entity_id": "999999",
        "alert_info": {"alert_type": "OBA_REJECTED", "alert_severity": "WARNING", "alert_status": "ACTIVE"},
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"field": "account_alerts", "value": alert}]}],
    }
    assert world.post(json.dumps(payload).encode()).json() == {"stored": 0, "ignored": 1}
    world.scheduler.tick(world.clock.now())
    assert world.snapshot() == before


def test_alerts_and_capability_updates_reach_the_numbers_they_name(world: World) -> None:
    world.plan(0)
    world.plan(1)
    world.clock.advance(timedelta(minutes=1))
    with world.engine.begin() as conn:  # number 1 is in the portfolio named by its account id
        conn.execute(
            sa.update(NUMBERS).where(NUMBERS.c.id == world.fleet.number_ids[1]).values(portfolio=WABA)
        )
    alert = {
        "entity_type": "PHONE_NUMBER",
        "entity_id": world.fleet.phones[0].lstrip("+"),
        "alert_info": {
            "alert_type": "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED",
            "alert_severity": "WARNING",
            "alert_status": "ACTIVE",
            "alert_description": "Limits cannot be increased for your business.",
        },
    }
    capability = {"max_daily_conversations_per_business": "TIER_10K", "max_phone_numbers_per_waba": 25}
    entry = {
        "id": WABA,
        "changes": [
            {"field": "account_alerts", "value": alert},
            {"field": "business_capability_update", "value": capability},
        ],
    }
    body = json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()
    assert world.post(body).json() == {"stored": 2, "ignored": 0}
    assert world.post(body).json() == {"stored": 0, "ignored": 2}  # redelivered
    (alert_row,) = [
        r for r in audit.list_audit(world.engine, world.fleet.number_ids[0]) if r.action == "provider_alert"
    ]
    assert (
        alert_row.detail is not None
        and alert_row.detail["alert"] == "INCREASED_CAPABILITIES_ELIGIBILITY_DEFERRED"
    )
    tiered = readings.latest_reading(world.engine, world.fleet.number_ids[1])
    assert tiered is not None and (tiered.source, tiered.tier, tiered.quality) == (
        "webhook",
        "TIER_10K",
        "green",
    )
    report = world.scheduler.tick(world.clock.now())
    assert report.rejudged == 0 and world.day(1).quota == 40  # no rule names the tier: judged, unchanged
    assert "no rule matches" in world.day(1).reasons[-1]["text"]


def test_when_meta_cannot_be_asked_the_event_says_what_it_can(world: World) -> None:
    world.plan(0)
    world.plan(1)
    world.clock.advance(timedelta(minutes=5))
    with world.engine.begin() as conn:  # number 0's Graph API is away when the webhook comes
        conn.execute(
            sa.update(NUMBERS)
            .where(NUMBERS.c.id == world.fleet.number_ids[0])
            .values(base_url="http://127.0.0.1:9")
        )
    app = create_app(world.engine, WebhookConfig(meta_app_secret=Secret(APP_SECRET)), clock=world.clock)
    with served(app) as http:  # a fresh app: its clients are built from the rows as they are now
        body = quality_update(world.fleet.phones[0], "FLAGGED", limit="TIER_1K")
        assert http.post("/webhooks/cloud", content=body, headers=signed(body)).json()["stored"] == 1
    newest = readings.latest_reading(world.engine, world.fleet.number_ids[0])
    assert newest is not None and (newest.quality, newest.status, newest.tier) == (
        "green",
        "flagged",
        "TIER_1K",
    )
    (row,) = [
        r for r in audit.list_audit(world.engine, world.fleet.number_ids[0]) if r.action == "provider_signal"
    ]
    assert row.detail is not None and str(row.detail["meta"]).startswith("unread: ")
    world.scheduler.tick(world.clock.now())
    assert world.state(0)[0] == "paused"


def test_two_schedulers_at_once_act_once(world: World) -> None:
    world.plan(0)
    world.plan(1)
    world.clock.advance(timedelta(minutes=5))
    world.sim_says(0, quality="YELLOW")
    world.sim_says(1, cloud_status="FLAGGED")
    for index in (0, 1):
        assert world.post(quality_update(world.fleet.phones[index], "FLAGGED")).json()["stored"] == 1
    results: list[int] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        results.append(act_on_signals(world.runtime, world.clock.now()))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(results) == 2  # each day changed once, whichever thread got there first
    actions = [r.action for r in audit.list_audit(world.engine, limit=1000)]
    assert actions.count("cut_quota") == 1 and actions.count("auto_pause") == 1
    assert [r["rule"] for r in world.day(0).reasons].count("signal") == 1
    assert [r["rule"] for r in world.day(1).reasons].count("signal") == 1
    assert world.day(0).quota == 20 and world.state(1)[0] == "paused"


def test_the_watch_reads_only_readings_above_its_settled_floor(world: World) -> None:
    world.plan(0)
    world.plan(1)
    patient = SignalWatch()  # ten seconds before an id counts as settled: no floor yet
    watch = SignalWatch(settle_wall=0.0)  # settled at once (a test's transactions are all committed)
    assert watch.tick(world.runtime, world.clock.now()) == 0
    assert patient.tick(world.runtime, world.clock.now()) == 0 and patient.floor is None
    first = watch.floor
    assert first is not None and first == max(r for r in reading_ids(world.engine))
    world.clock.advance(timedelta(minutes=5))
    world.sim_says(0, cloud_status="FLAGGED")
    assert world.post(quality_update(world.fleet.phones[0], "FLAGGED")).json()["stored"] == 1
    assert watch.tick(world.runtime, world.clock.now()) == 1
    assert world.state(0)[0] == "paused" and watch.floor is not None and watch.floor > first
    assert patient.tick(world.runtime, world.clock.now()) == 0  # judged already: nothing more


def reading_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(sa.select(READINGS.c.id)).scalars()]


def test_the_simulators_own_webhooks_throttle_and_pause_within_a_tick(world: World) -> None:
    """End to end: the simulator posts Meta-format signed quality webhooks to the real server when a
    number's quality or status moves; one scheduler tick later the right numbers are throttled and paused."""
    world.plan(0)
    world.plan(1)
    url = f"{world.http.base_url}/webhooks/cloud"
    world.fleet.sim_admin.request("PUT", "/_sim/cloud/webhook", json={"url": url, "app_secret": APP_SECRET})
    world.clock.advance(timedelta(minutes=5))
    world.sim_says(0, cloud_status="FLAGGED")
    world.sim_says(1, quality="YELLOW")
    world.fleet.admin("POST", "/_sim/tick")

    def heard() -> bool:
        news = [readings.latest_reading(world.engine, n) for n in world.fleet.number_ids]
        return all(r is not None and r.source == "webhook" for r in news)

    assert wait_for(heard), [readings.latest_reading(world.engine, n) for n in world.fleet.number_ids]
    report = world.scheduler.tick(world.clock.now())
    assert report.errors == [] and report.rejudged == 2
    assert world.state(0)[0] == "paused" and world.state(1) == ("active", None)
    assert (world.day(1).action, world.day(1).quota) == ("throttle", 20)
