"""warmup.store.numbers: enrolling, configuring and reading numbers, and time zone changes.
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, PEER, PHONE, add, decision, planned, sends
from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of
from warmup.store import audit as store_audit
from warmup.store import days, numbers
from warmup.store.models import metadata
from warmup.store.tables import InvalidWrite


def test_add_get_list_numbers(engine: Engine) -> None:
    first = add(engine)
    second = add(engine, PEER, plan_name="other")
    number = numbers.get_number(engine, first)
    assert number is not None and number.phone == PHONE and number.state == "active" and number.plan_day == 1
    assert number.created_at == NOW and number.created_at.tzinfo is not None
    by_phone = numbers.get_number(engine, phone=PEER)
    assert by_phone is not None and by_phone.id == second
    assert numbers.get_number(engine, 999) is None
    assert [n.phone for n in numbers.list_numbers(engine)] == [PHONE, PEER]
    assert [n.id for n in numbers.list_numbers(engine, plan_name="other")] == [second]
    with pytest.raises(UserError, match="already enrolled"):
        add(engine)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("phone", "5511999990001", "E.164"),
        ("provider", "telegram", "provider"),
        ("timezone", "Mars/Olympus", "time zone"),
        ("token_ref", "wh_live_9f8e7d6c5b4a39281706", "never the token"),
    ],
)
def test_add_number_refuses_bad_input_and_stores_nothing(
    engine: Engine, field: str, value: str, message: str
) -> None:
    values = {
        "phone": PHONE,
        "provider": "whapi",
        "token_ref": "WHAPI_TOKEN_1",
        "plan_name": "p",
        "plan_path": "p.yaml",
        "timezone": "UTC",
    }
    values[field] = value
    with pytest.raises(InvalidWrite, match=message):
        numbers.add_number(engine, **values)  # type: ignore[arg-type]
    assert numbers.list_numbers(engine) == []


def test_token_is_never_stored_only_its_variable_name(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "tok-5ecret-value-123456"
    monkeypatch.setenv("WHAPI_TOKEN_1", secret)
    number_id = add(engine)
    planned(engine, number_id=number_id)
    store_audit.audit(engine, "cli", "apply", number_id, {"token_ref": "WHAPI_TOKEN_1"}, NOW)
    with engine.connect() as conn:
        dump = [
            str(value)
            for table in metadata.sorted_tables
            for row in conn.execute(sa.select(table))
            for value in row
        ]
    assert "WHAPI_TOKEN_1" in dump
    assert not any(secret in value for value in dump)
    with pytest.raises(InvalidWrite):  # a pasted token is refused, never echoed back
        numbers.upsert_number(
            engine,
            phone=PHONE,
            provider="whapi",
            token_ref=secret,
            plan_name="p",
            plan_path="p.yaml",
            timezone="UTC",
        )


def test_upsert_number_updates_config_but_not_the_ramp(engine: Engine) -> None:
    number_id, created = numbers.upsert_number(
        engine,
        phone=PHONE,
        provider="whapi",
        token_ref="T1",
        plan_name="a",
        plan_path="a.yaml",
        timezone="UTC",
    )
    assert created
    planned(engine, number_id=number_id)
    again, created = numbers.upsert_number(
        engine,
        phone=PHONE,
        provider="cloud_api",
        token_ref="T2",
        plan_name="b",
        plan_path="b.yaml",
        timezone="Europe/Berlin",
        phone_number_id="1234",
    )
    number = numbers.get_number(engine, number_id)
    assert (again, created) == (number_id, False)
    assert number is not None
    assert (number.provider, number.token_ref, number.plan_name, number.timezone) == (
        "cloud_api",
        "T2",
        "b",
        "Europe/Berlin",
    )
    assert (number.plan_day, number.last_volume) == (3, 5)  # from the planned day, untouched by the upsert


def _upsert(engine: Engine, timezone: str, now: datetime) -> tuple[int, bool]:
    return numbers.upsert_number(
        engine,
        phone=PHONE,
        provider="whapi",
        token_ref="WHAPI_TOKEN_1",
        plan_name="standard",
        plan_path="plans/standard.yaml",
        timezone=timezone,
        now=now,
    )


def test_a_time_zone_change_mid_day_waits_for_the_end_of_the_planned_day(engine: Engine) -> None:
    number_id, _ = _upsert(engine, "Asia/Tokyo", NOW)  # 21:00 in Tokyo on the 23rd
    assert days.plan_day(engine, number_id, decision(5), sends(2))
    _upsert(engine, "America/Sao_Paulo", NOW)  # 09:00 on the 23rd there: a second "23rd" would overlap
    number = numbers.get_number(engine, number_id)
    assert number is not None and number.timezone == "Asia/Tokyo"
    assert number.pending_timezone == "America/Sao_Paulo"
    tokyo_midnight = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert number.timezone_from == tokyo_midnight
    assert numbers.apply_timezone_changes(engine, tokyo_midnight - timedelta(seconds=1)) == []
    assert numbers.apply_timezone_changes(engine, tokyo_midnight) == [number_id]
    number = numbers.get_number(engine, number_id)
    assert number is not None and number.timezone == "America/Sao_Paulo" and number.pending_timezone is None
    # the new zone's "today" (the 23rd, already planned) gets no second plan: no fresh quota today
    assert local_date_of(tokyo_midnight, number.timezone) == DAY
    assert not days.plan_day(engine, number_id, decision(5), sends(1))
    # without a plan for today, a change applies at once
    _upsert(engine, "Europe/Berlin", NOW + timedelta(days=2))
    number = numbers.get_number(engine, number_id)
    assert number is not None and number.timezone == "Europe/Berlin" and number.pending_timezone is None
