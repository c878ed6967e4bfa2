"""A number's risk meter URL in the fleet file: checked where it is written, stored, updated by apply,
and used by every client built for the number (real store)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.services.test_fleet import ENV, fleet_dir, fleet_text, problems_of, write
from warmup.providers.whapi import WHAPI_METER_URL, WhapiProvider
from warmup.services import doctor
from warmup.services.fleet import apply_changes, load_fleet, plan_changes
from warmup.services.runtime import ProviderPool, provider_from_row
from warmup.store.numbers import get_number

__all__ = ["fleet_dir"]

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PHONE = "+5511999990001"
METER = "https://meter.example.com/services/riskOfBlocking"


def whapi(extra: str) -> str:
    return fleet_text({"phone": PHONE, "provider": "whapi", "extra": extra})


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("tools.whapi.cloud/services/riskOfBlocking", "expected an http(s) URL"),
        ("ftp://meter.example.com/r", "expected an http(s) URL"),
        ("https:///services/riskOfBlocking", "expected an http(s) URL"),
        ('"https://meter.example.com/a b"', "expected an http(s) URL"),
        ("https://meter.example.com:99999/r", "expected an http(s) URL"),
        ("http://[::1/r", "expected an http(s) URL"),
        ("https://meter.example.com/r#x", "expected an http(s) URL"),
        ('"https://meter.example.com/\\0r"', "expected an http(s) URL"),  # PostgreSQL refuses NUL in text
        ('"https://meter.example.com/\\x01r"', "expected an http(s) URL"),
        ("https://meter.example.com/" + "r" * 300, "at most 255 characters"),
        ("42", "expected text, got 42"),
    ],
)
def test_a_bad_meter_url_is_located(fleet_dir: Path, value: str, words: str) -> None:
    path = write(fleet_dir, whapi(f"    meter_url: {value}\n"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:8:") and "numbers[0].meter_url" in problem and words in problem


def test_a_cloud_api_number_has_no_meter_url(fleet_dir: Path) -> None:
    text = fleet_text(
        {
            "phone": PHONE,
            "provider": "cloud_api",
            "extra": f'    phone_number_id: "1065"\n    meter_url: {METER}\n',
        }
    )
    path = write(fleet_dir, text)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:9:") and "numbers[0].meter_url" in problem
    assert "the Cloud API has no risk meter" in problem


def test_meter_url_is_stored_updated_by_apply_and_used_by_every_client(
    engine: Engine, fleet_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOK_A", ENV["TOK_A"])
    path = write(fleet_dir, whapi(""))
    apply_changes(engine, plan_changes(engine, load_fleet(path, ENV)), now=NOW)
    number = get_number(engine, phone=PHONE)
    assert number is not None and number.id is not None and number.meter_url is None
    default = provider_from_row(number)
    assert isinstance(default, WhapiProvider) and default.meter_url == WHAPI_METER_URL

    write(fleet_dir, whapi(f"    meter_url: {METER}\n"))
    (change,) = plan_changes(engine, load_fleet(path, ENV))
    assert change.kind == "update" and change.fields == {"meter_url": (None, METER)}
    assert f"meter_url none -> {METER}" in change.describe()
    apply_changes(engine, [change], now=NOW)
    assert plan_changes(engine, load_fleet(path, ENV)) == []
    number = get_number(engine, phone=PHONE)
    assert number is not None and number.id is not None and number.meter_url == METER
    for client in (
        provider_from_row(number),
        doctor.default_provider(number),
        ProviderPool(engine)(number.id),
    ):
        assert isinstance(client, WhapiProvider) and client.meter_url == METER
        client.close()

    write(fleet_dir, whapi(""))  # taken out of the file: back to the published meter
    (change,) = plan_changes(engine, load_fleet(path, ENV))
    assert change.fields == {"meter_url": (METER, None)}
    apply_changes(engine, [change], now=NOW)
    number = get_number(engine, phone=PHONE)
    assert number is not None and number.meter_url is None
