"""`warmup doctor` checks against a real database, a real Redis and the simulator over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.fleet_fixture import Fleet
from warmup.clock import ManualClock
from warmup.services import doctor
from warmup.services.doctor import Verdict
from warmup.store import numbers

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def by_item(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {check.item: check for check in checks}


def test_a_healthy_fleet_is_all_green(engine: Engine, make_fleet: Any) -> None:
    fleet: Fleet = make_fleet(engine, ManualClock(NOW), count=2)
    checks = doctor.run(url_of(engine), None, NOW)
    assert doctor.healthy(checks), checks
    items = by_item(checks)
    assert items["broker"].detail.startswith("embedded")
    for phone in fleet.phones:
        assert items[f"{phone} (simulator) channel"].verdict is Verdict.OK
        meter = items[f"{phone} (simulator) risk meter"]
        assert meter.verdict is Verdict.OK and "overall" in meter.detail
    assert next(c.item for c in checks).startswith("database ")


def test_red_items_make_the_doctor_unhealthy(
    engine: Engine, make_fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet: Fleet = make_fleet(engine, ManualClock(NOW), count=2)
    monkeypatch.delenv("SIM_TOKEN_1")
    fleet.admin("PATCH", f"/_sim/channels/{fleet.phones[0].lstrip('+')}", json={"status": "banned"})
    checks = doctor.run(url_of(engine), "redis://127.0.0.1:1/0", NOW)
    assert not doctor.healthy(checks)
    items = by_item(checks)
    assert items["broker redis://127.0.0.1:1/0"].verdict is Verdict.FAIL
    missing = items[f"{fleet.phones[1]} (simulator) channel"]
    assert missing.verdict is Verdict.FAIL and "SIM_TOKEN_1 is not set" in missing.detail
    banned = items[f"{fleet.phones[0]} (simulator) channel"]
    assert banned.verdict is Verdict.FAIL, banned


def test_retired_numbers_are_not_checked(
    engine: Engine, make_fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warmup.services.fleet import Change, apply_changes

    fleet: Fleet = make_fleet(engine, ManualClock(NOW), count=2)
    monkeypatch.delenv("SIM_TOKEN_1")
    apply_changes(engine, [Change("retire", fleet.phones[1], {"state": ("active", "retired")})], now=NOW)
    checks = doctor.run(url_of(engine), None, NOW)
    assert doctor.healthy(checks)
    assert not any(fleet.phones[1] in c.item for c in checks)


def test_an_unmigrated_database_is_red(tmp_path: Path) -> None:
    checks = doctor.run(f"sqlite:///{tmp_path}/new.db", None, NOW)
    assert checks[0].verdict is Verdict.FAIL and "warmup db upgrade" in checks[0].detail
    assert not doctor.healthy(checks)


def test_a_reachable_redis_is_green(redis_url: str) -> None:
    check = doctor.check_broker(redis_url)
    assert check.verdict is Verdict.OK and "PING" in check.detail


def test_number_listing_never_holds_a_token(engine: Engine, make_fleet: Any) -> None:
    make_fleet(engine, ManualClock(NOW), count=1)
    checks = doctor.run(url_of(engine), None, NOW)
    assert all("tok-0-abcdef" not in c.detail for c in checks)
    assert numbers.list_numbers(engine)[0].token_ref == "SIM_TOKEN_0"


def test_a_missing_sqlite_file_is_red_and_not_created(tmp_path: Path) -> None:
    checks = doctor.run(f"sqlite:///{tmp_path}/typo.db", None, NOW)
    assert checks[0].verdict is Verdict.FAIL and "no database file at" in checks[0].detail
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize(
    ("url", "detail"),
    [("nonsense", "is not a database URL"), ("mysql://u:secret-pw@h/db", "SQLite or PostgreSQL")],
)
def test_an_unsupported_database_url_is_red_with_a_hint(url: str, detail: str) -> None:
    checks = doctor.run(url, None, NOW)
    assert checks[0].verdict is Verdict.FAIL and detail in checks[0].detail
    assert all("secret-pw" not in c.item + c.detail for c in checks)


def test_an_unreachable_database_says_why() -> None:
    check, engine = doctor.check_database("postgresql://warm:pg-secret@127.0.0.1:1/x")
    assert engine is None and check.verdict is Verdict.FAIL
    assert "unreachable:" in check.detail and "OperationalError" not in check.detail
    assert "pg-secret" not in check.item + check.detail


def test_redis_down_is_red_with_the_reason_and_a_hint() -> None:
    check = doctor.check_broker("redis://:redis-secret@127.0.0.1:1/0")
    assert check.verdict is Verdict.FAIL and "is it running?" in check.detail
    assert "127.0.0.1" in check.detail and "redis-secret" not in check.item + check.detail


def test_a_day_that_could_not_be_planned_is_red_until_it_is(
    engine: Engine, make_fleet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a number whose day fails to plan (the rest of its batch is planned) is an alert."""
    from warmup.core.localtime import local_date_of
    from warmup.services import planning
    from warmup.services.runtime import ProviderPool, Runtime

    clock = ManualClock(NOW)
    fleet: Fleet = make_fleet(engine, clock, count=2, timezones=("UTC",))
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))
    bad = fleet.number_ids[1]
    real = planning.opener_texts

    def poisoned(engine: Engine, number: Any, *args: Any, **kwargs: Any) -> list[str]:
        texts = real(engine, number, *args, **kwargs)
        return ["half \ud800 a pair", *texts[1:]] if number.id == bad and texts else texts

    monkeypatch.setattr(planning, "opener_texts", poisoned)
    day = local_date_of(NOW, "UTC")
    try:
        assert [r.planned for r in planning.plan_number_days(runtime, fleet.number_ids, day)] == [True, False]
        items = by_item(doctor.run(url_of(engine), None, NOW))
        check = items[f"{fleet.phones[1]} (simulator) planning"]
        assert check.verdict is Verdict.FAIL
        assert check.detail.startswith(f"today ({day}) could not be planned: UnicodeEncodeError")
        assert f"{fleet.phones[0]} (simulator) planning" not in items

        monkeypatch.setattr(planning, "opener_texts", real)
        assert [r.planned for r in planning.plan_number_days(runtime, fleet.number_ids, day)] == [False, True]
        assert f"{fleet.phones[1]} (simulator) planning" not in by_item(doctor.run(url_of(engine), None, NOW))
    finally:
        runtime.close()
