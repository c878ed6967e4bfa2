"""The Whapi risk meter end to end: a mock of the published Whapi spec on a NON-default base URL, its
meter at another address (the number's `meter_url`), the plan's `risk.meter`, and a failing meter
visible in `why`, `doctor` (red) and `warmup_meter_failures_total`. Real store, real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import PLAN_NAME, write_plan
from tests.http_fixture import Reply, ScriptedServer
from warmup.clock import ManualClock
from warmup.core.domain import Action, Reading
from warmup.core.localtime import local_date_of
from warmup.services import admin, doctor, metrics
from warmup.services.planning import plan_number_day, plan_number_days
from warmup.services.readings import METER_FAILED, meter_reading, meter_readings, read_whapi_meter
from warmup.services.runtime import ProviderPool, Runtime
from warmup.store import audit, numbers, readings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 09:00 in Sao Paulo
PHONE = "+5511999990001"
TOKEN_ENV = "WHAPI_TEST_TOKEN"
TOKEN = "WhapiTestTok3nAbcdefGhijklmnop"
GATEWAY = "/gateway"  # the messaging API is mounted here: not https://gate.whapi.cloud
METER = "/tools/services/riskOfBlocking"  # and the meter elsewhere


def meter_body(day: date, overall: int = 3) -> dict[str, Any]:
    return {
        "channel": "MOCK-1",
        "lastUpdateDate": f"{day.month}/{day.day}/{day.year}",
        "lifeTime": 3,
        "riskFactor": overall,
        "riskFactorChats": 3,
        "riskFactorContacts": 3,
    }


@dataclass
class World:
    engine: Engine
    server: ScriptedServer
    clock: ManualClock
    runtime: Runtime
    number_id: int
    plan: Path

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    def meter_calls(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.server.requests if r.path.endswith("riskOfBlocking")]

    def number(self) -> Any:
        return numbers.get_number(self.engine, self.number_id)


@pytest.fixture
def spec_mock() -> Iterator[ScriptedServer]:
    """The published Whapi spec's operations warmup uses, on a base URL of its own."""
    server = ScriptedServer()
    server.start()
    server.on("POST", GATEWAY + "/messages/text", Reply(201, {"sent": True, "message": {"id": "m-1"}}))
    server.on("GET", GATEWAY + "/health", Reply(200, {"status": {"code": 4, "text": "AUTH"}}))
    server.on("GET", GATEWAY + "/messages/list", Reply(200, {"messages": [], "count": 0, "total": 0}))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_world(
    engine: Engine, spec_mock: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    runtimes: list[Runtime] = []

    def build(
        meter: str = "provider_or_local", *, meter_url: str | None = "", timezone: str = "America/Sao_Paulo"
    ) -> World:
        plan = write_plan(tmp_path / "plans", volume=6)
        plan.write_text(plan.read_text() + f"risk:\n  meter: {meter}\n")
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        clock = ManualClock(NOW)
        number_id = numbers.add_number(
            engine,
            now=NOW - timedelta(days=40),
            phone=PHONE,
            provider="whapi",
            token_ref=TOKEN_ENV,
            plan_name=PLAN_NAME,
            plan_path=str(plan),
            timezone=timezone,
            registered=date(2026, 9, 1),
            base_url=spec_mock.base_url + GATEWAY,
            meter_url=spec_mock.base_url + METER if meter_url == "" else meter_url,
        )
        runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
        runtimes.append(runtime)
        return World(engine, spec_mock, clock, runtime, number_id, plan)

    yield build
    for runtime in runtimes:
        runtime.close()


def failures(status: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "warmup_meter_failures_total", {"provider": "whapi", "status": status}
        )
        or 0.0
    )


def meter_check(world: World) -> doctor.Check:
    checks = {c.item: c for c in doctor.run(world.url, None, world.clock.now())}
    return checks[f"{PHONE} (whapi) risk meter"]


# --- where the meter is ------------------------------------------------------------------------------


def test_meter_calls_reach_the_numbers_meter_url_not_the_base_url(make_world: Any) -> None:
    world: World = make_world()
    world.server.on("POST", METER, Reply(200, meter_body(NOW.date())))
    world.server.on("GET", METER, Reply(200, meter_body(NOW.date())))
    today = local_date_of(NOW, "America/Sao_Paulo")
    result = plan_number_day(world.runtime, world.number_id, today)
    assert result.planned
    assert world.meter_calls() == [f"POST {METER}"]  # never base + /services/riskOfBlocking
    reading = readings.reading_of_day(world.engine, world.number_id, today)
    assert reading is not None and reading.source == "whapi" and reading.meter_error is None
    assert reading.taken_at == NOW  # computed when asked, so it is today's reading in Sao Paulo
    assert meter_check(world).verdict is doctor.Verdict.OK  # the doctor GETs: today's POST happened
    assert world.meter_calls()[-1] == f"GET {METER}"


def test_a_whapi_number_without_meter_url_reads_the_published_meter(make_world: Any) -> None:
    """Default: tools.whapi.cloud whatever the base URL (the test suite refuses the real host)."""
    from warmup.providers.whapi import WHAPI_METER_URL, WhapiProvider
    from warmup.services.runtime import provider_from_row

    world: World = make_world(meter_url=None)
    provider = provider_from_row(world.number())
    assert isinstance(provider, WhapiProvider) and provider.meter_url == WHAPI_METER_URL
    assert provider.base_url == world.server.base_url + GATEWAY


# --- a failing meter, visible ------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind"), [(404, "4xx"), (500, "5xx")])
def test_a_failing_meter_falls_back_to_the_local_meter_and_says_so(
    make_world: Any, status: int, kind: str
) -> None:
    world: World = make_world("provider_or_local")
    body = {"error": {"code": status, "message": "Not found" if status == 404 else "Internal error"}}
    world.server.on("POST", METER, Reply(status, body))
    world.server.on("GET", METER, Reply(status, body))
    before = failures(kind)
    today = local_date_of(NOW, "America/Sao_Paulo")
    assert plan_number_day(world.runtime, world.number_id, today).planned
    assert world.meter_calls() == [f"POST {METER}", f"GET {METER}"]
    reading = readings.reading_of_day(world.engine, world.number_id, today)
    assert reading is not None and reading.source == "local"
    error = reading.meter_error
    assert error is not None and error.startswith(f"risk meter POST: HTTP {status}")
    assert ("check the number's meter_url" in error) == (status == 404)
    # the metric
    assert failures(kind) == before + 1
    assert f'warmup_meter_failures_total{{provider="whapi",status="{kind}"}}' in metrics.exposition().decode()
    # why
    text = "\n".join(admin.explain(world.engine, PHONE, NOW).lines())
    assert f"Meter: the provider's risk meter failed (risk meter POST: HTTP {status}" in text
    assert "the local meter's, used instead" in text
    assert "(local, " in text  # the Reading line shows the local meter's reading
    # doctor: red, with the status and what is used instead
    check = meter_check(world)
    assert check.verdict is doctor.Verdict.FAIL
    assert f"HTTP {status}" in check.detail and "the local meter is used instead" in check.detail
    assert world.server.base_url + METER in check.detail
    assert not doctor.healthy(doctor.run(world.url, None, NOW))


def test_meter_only_plan_decides_on_the_last_reading_and_holds_when_it_is_stale(make_world: Any) -> None:
    world: World = make_world("provider")
    before = failures("5xx")
    old = Reading(3, 3, 3, 3, datetime(2026, 11, 20, 12, tzinfo=UTC), source="whapi")
    readings.save_reading(world.engine, world.number_id, date(2026, 11, 20), old)
    world.server.on("POST", METER, Reply(503, "<html>down</html>"))
    world.server.on("GET", METER, Reply(503, "<html>down</html>"))
    today = local_date_of(NOW, "America/Sao_Paulo")
    result = plan_number_day(world.runtime, world.number_id, today)
    assert result.planned and result.decision is not None
    assert result.decision.action == Action.HOLD  # the last reading is 72 h old: stale_after (36 h) holds
    assert readings.reading_of_day(world.engine, world.number_id, today) is None  # no new reading
    assert readings.latest_reading(world.engine, world.number_id) == old
    assert failures("5xx") == before + 1
    events = [e for e in audit.list_audit(world.engine, world.number_id) if e.action == METER_FAILED]
    assert len(events) == 1 and "HTTP 503" in str(events[0].detail)
    text = "\n".join(admin.explain(world.engine, PHONE, NOW).lines())
    assert "Reading: none taken that day (the provider's risk meter failed)." in text
    assert "no reading was taken that day (plan risk.meter: provider)" in text
    assert "decided on the last stored reading, whapi of 2026-11-20 12:00 UTC" in text
    assert "stale" in text and "meter_failed by" not in text  # the rule fired; the event said once
    check = meter_check(world)
    assert check.verdict is doctor.Verdict.FAIL and "HTTP 503" in check.detail
    assert "decided on the last stored one until stale_after holds them" in check.detail


def test_meter_only_plan_without_any_reading_holds(make_world: Any) -> None:
    world: World = make_world("provider")
    world.server.on("POST", METER, Reply(404, {"error": {"code": 404, "message": "Not found"}}))
    world.server.on("GET", METER, Reply(404, {"error": {"code": 404, "message": "Not found"}}))
    today = local_date_of(NOW, "America/Sao_Paulo")
    result = plan_number_days(world.runtime, [world.number_id], today)[0]
    assert result.planned and result.decision is not None and result.decision.action == Action.HOLD
    assert readings.latest_reading(world.engine, world.number_id) is None
    text = "\n".join(admin.explain(world.engine, PHONE, NOW).lines())
    assert "decided on no reading at all (none stored yet)" in text


def test_a_local_plan_never_asks_the_provider(make_world: Any) -> None:
    world: World = make_world("local")
    world.server.on("POST", METER, Reply(500, {}))
    today = local_date_of(NOW, "America/Sao_Paulo")
    assert plan_number_days(world.runtime, [world.number_id], today)[0].planned
    reading = readings.reading_of_day(world.engine, world.number_id, today)
    assert reading is not None and reading.source == "local" and reading.meter_error is None
    check = meter_check(world)
    assert check.verdict is doctor.Verdict.OK and "risk.meter: local" in check.detail
    assert world.meter_calls() == []
    assert "Meter:" not in "\n".join(admin.explain(world.engine, PHONE, NOW).lines())


def test_no_meter_on_the_channel_is_red_with_a_hint(make_world: Any) -> None:
    world: World = make_world()
    world.server.on("POST", METER, Reply(402, {"error": {"code": 402, "message": "Payment required"}}))
    check = meter_check(world)
    assert check.verdict is doctor.Verdict.FAIL and "set risk.meter: local" in check.detail
    assert world.meter_calls() == [f"POST {METER}"]  # same credentials: no GET after a refusal


def test_the_doctor_warns_when_today_fell_back_but_the_meter_answers_now(make_world: Any) -> None:
    world: World = make_world()
    world.server.on("POST", METER, Reply(500, {}))
    today = local_date_of(NOW, "America/Sao_Paulo")
    assert plan_number_day(world.runtime, world.number_id, today).planned
    world.server.on("POST", METER, Reply(200, meter_body(NOW.date())))  # fixed since
    check = meter_check(world)
    assert (
        check.verdict is doctor.Verdict.WARN
        and "taken while it failed: risk meter POST: HTTP 500" in check.detail
    )


# --- POST once per local day, across processes -------------------------------------------------------


def test_a_fleet_posts_once_per_number_and_local_day(make_world: Any) -> None:
    """Each read builds its own client (as separate worker processes do); the database, not a client's
    memory, says whether the number's local day already had its POST. Tokyo: its local days start at
    15:00 UTC, so the second local day below is still the same UTC date."""
    world: World = make_world(timezone="Asia/Tokyo")
    world.server.on("POST", METER, Reply(200, meter_body(NOW.date())))
    world.server.on("GET", METER, Reply(200, meter_body(NOW.date())))
    number = world.number()
    day_one = local_date_of(NOW, "Asia/Tokyo")  # 21:00 in Tokyo
    first = meter_reading(world.runtime, number, day_one, NOW)
    assert first.new and first.reading is not None and first.reading.source == "whapi"
    readings.save_reading(world.engine, world.number_id, day_one, first.reading)
    for minutes in (5, 60, 120):  # other processes, later the same local day: GET
        again = read_whapi_meter(world.engine, number, day_one, NOW + timedelta(minutes=minutes))
        assert again.reading is not None and not again.posted
    batch = meter_readings(world.runtime, [number], day_one, NOW + timedelta(hours=2))  # a batch: GET
    assert batch[world.number_id].reading is not None
    assert world.meter_calls() == [f"POST {METER}"] + [f"GET {METER}"] * 4
    next_moment = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 00:30 in Tokyo, same UTC date
    day_two = local_date_of(next_moment, "Asia/Tokyo")
    assert day_two == day_one + timedelta(days=1)
    second = read_whapi_meter(world.engine, number, day_two, next_moment)
    assert second.posted and second.reading is not None
    assert local_date_of(second.reading.taken_at, "Asia/Tokyo") == day_two  # dated 11/23 by Whapi (UTC)
    assert world.meter_calls()[-1] == f"POST {METER}"


def test_a_failed_read_does_not_count_as_the_days_post(make_world: Any) -> None:
    world: World = make_world()
    world.server.on("POST", METER, Reply(500, {}))
    today = local_date_of(NOW, "America/Sao_Paulo")
    assert plan_number_day(world.runtime, world.number_id, today).planned  # stores a local reading
    world.server.on("POST", METER, Reply(200, meter_body(NOW.date())))
    read = read_whapi_meter(world.engine, world.number(), today, NOW + timedelta(hours=1))
    assert read.posted and read.reading is not None  # the day's computation was never had: POST


def test_a_plan_change_applies_to_the_next_read(make_world: Any) -> None:
    world: World = make_world("provider")
    world.server.on("POST", METER, Reply(500, {}))
    world.server.on("GET", METER, Reply(500, {}))
    today = local_date_of(NOW, "America/Sao_Paulo")
    assert meter_reading(world.runtime, world.number(), today, NOW).new is False
    world.plan.write_text(world.plan.read_text().replace("meter: provider", "meter: provider_or_local"))
    import os

    os.utime(world.plan, (NOW.timestamp() + 10, NOW.timestamp() + 10))  # a new mtime: the cache reloads
    metered = meter_reading(world.runtime, world.number(), today, NOW)
    assert metered.new and metered.reading is not None and metered.reading.meter_error is not None


def test_the_doctor_never_shows_a_meter_urls_credentials_or_query() -> None:
    assert (
        doctor._shown("https://user:pw@meter.example.com:8443/r?token=abc")
        == "https://meter.example.com:8443/r"
    )


def test_a_failed_post_with_an_answering_get_uses_the_last_computation_and_says_so(
    make_world: Any,
) -> None:
    world: World = make_world("provider")
    before = failures("5xx")
    world.server.on("POST", METER, Reply(500, {"error": {"code": 500, "message": "busy"}}))
    world.server.on("GET", METER, Reply(200, meter_body(date(2026, 11, 22), overall=2)))
    today = local_date_of(NOW, "America/Sao_Paulo")
    assert plan_number_day(world.runtime, world.number_id, today).planned
    reading = readings.reading_of_day(world.engine, world.number_id, today)
    assert reading is not None and reading.source == "whapi" and reading.overall == 2
    assert reading.taken_at == datetime(2026, 11, 23, 12, tzinfo=UTC)  # 11/22's bound, not "now"
    assert reading.meter_error is not None and reading.meter_error.startswith("risk meter POST: HTTP 500")
    assert reading.meter_error.endswith("the last computation (GET) was used")
    assert failures("5xx") == before + 1
    text = "\n".join(admin.explain(world.engine, PHONE, NOW).lines())
    assert "the reading above is the provider's last one, used instead" in text
    check = meter_check(world)  # the fleet read the meter today: the doctor GETs, and it answers
    assert check.verdict is doctor.Verdict.WARN and "taken while it failed" in check.detail
