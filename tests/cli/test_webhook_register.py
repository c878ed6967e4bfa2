"""`warmup webhook register` through the real entry point, against the real simulator server: each Whapi
number's webhook is set with PATCH /settings as the spec defines it, other webhooks are kept, errors are
one clear line and exit 1, never a traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.cli.test_common import assert_clean_error, warmup
from tests.fleet_fixture import Fleet
from warmup.clock import ManualClock
from warmup.store import numbers

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "a-webhook-secret-value"
BASE = "https://warmup.example.com"
EVENTS = [{"type": "messages", "method": "post"}, {"type": "statuses", "method": "post"}]


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def settings_of(fleet: Fleet, index: int) -> dict[str, Any]:
    """GET /settings as the channel itself sees it."""
    response = httpx.get(
        fleet.base_url + "/settings", headers={"Authorization": f"Bearer tok-{index}-abcdef"}, timeout=5
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def register(engine: Engine, *args: str, secret: str | None = SECRET, **env: str) -> Any:
    if secret:
        env["WARMUP_WEBHOOK_SECRET"] = secret
    return warmup("webhook", "register", *args, "--database-url", url_of(engine), env=env)


def test_every_whapi_number_gets_its_webhook(engine: Engine, make_fleet: Any) -> None:
    fleet: Fleet = make_fleet(engine, ManualClock(NOW), count=2)
    other = {"url": "https://crm.example.com/hook", "events": [{"type": "chats", "method": "post"}]}
    first = httpx.patch(
        fleet.base_url + "/settings",
        json={"webhooks": [other, {"url": "https://old.example.com/webhooks/whapi/5511999990001"}]},
        headers={"Authorization": "Bearer tok-0-abcdef"},
        timeout=5,
    )
    first.raise_for_status()
    result = register(engine, BASE + "/")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    for index, phone in enumerate(fleet.phones):
        digits = phone.lstrip("+")
        url = f"{BASE}/webhooks/whapi/{digits}"
        assert f"{phone}: webhook set to {url} (messages, statuses)" in result.stdout
        hooks = settings_of(fleet, index)["webhooks"]
        ours = {"url": url, "events": EVENTS, "mode": "body", "headers": {"X-Warmup-Secret": SECRET}}
        assert hooks == ([other, ours] if index == 0 else [ours])  # the old address of ours is replaced
    assert "1 other webhook(s) kept" in result.stdout
    # the simulator posts to the registered webhook with the secret header
    channel = fleet.admin("GET", f"/_sim/channels/{fleet.phones[0].lstrip('+')}")
    assert f"{BASE}/webhooks/whapi/5511999990001" in channel["webhooks"]


def test_one_number_by_phone_and_again_is_the_same(engine: Engine, make_fleet: Any) -> None:
    fleet: Fleet = make_fleet(engine, ManualClock(NOW), count=2)
    for _ in range(2):
        result = register(engine, BASE, "55 11 99999-0002")
        assert result.returncode == 0, result.stderr
        assert fleet.phones[0] not in result.stdout
    assert len(settings_of(fleet, 1)["webhooks"]) == 1
    assert settings_of(fleet, 0).get("webhooks", []) == []


def test_a_refused_patch_is_reported_and_exits_1(engine: Engine, make_fleet: Any) -> None:
    fleet: Fleet = make_fleet(engine, ManualClock(NOW), count=2)
    fleet.set_faults(fleet.phones[1], server_error=1.0)
    result = register(engine, BASE)
    assert_clean_error(result, "1 of 2 webhook(s) not set")
    assert f"{fleet.phones[0]}: webhook set to" in result.stdout
    assert f"{fleet.phones[1]}: NOT set ({BASE}/webhooks/whapi/5511999990002): GET /settings: HTTP 5" in (
        result.stdout
    )
    fleet.sim_admin.clear_faults()
    wrong = register(engine, BASE, fleet.phones[1], SIM_TOKEN_1="WrongTok3nAbcdefGhijklmnop")
    assert_clean_error(wrong, "1 of 1 webhook(s) not set")
    assert "NOT set" in wrong.stdout and "HTTP 401" in wrong.stdout
    assert "WrongTok3n" not in wrong.stdout + wrong.stderr


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("not-a-url",), ("'not-a-url' is not a base URL", "https://warmup.example.com")),
        (("https://x.example/?a=1",), ("is not a base URL",)),
        (("https://x.example/#top",), ("is not a base URL",)),  # else BASE#top/webhooks/whapi/... is set
        (("https://x.example/a b",), ("is not a base URL",)),
        ((BASE, "+5511000000000"), ("unknown number +5511000000000",)),
    ],
)
def test_bad_input_is_one_clear_line(
    engine: Engine, make_fleet: Any, args: tuple[str, ...], fragments: Any
) -> None:
    make_fleet(engine, ManualClock(NOW), count=1)
    assert_clean_error(register(engine, *args), *fragments)


def test_without_the_secret_nothing_is_sent(engine: Engine, make_fleet: Any) -> None:
    fleet: Fleet = make_fleet(engine, ManualClock(NOW), count=1)
    assert_clean_error(register(engine, BASE, secret=None), "set WARMUP_WEBHOOK_SECRET")
    assert settings_of(fleet, 0).get("webhooks", []) == []


def test_cloud_api_numbers_are_not_whapi(engine: Engine, make_fleet: Any) -> None:
    make_fleet(engine, ManualClock(NOW), count=1)
    numbers.add_number(
        engine,
        now=NOW,
        phone="+5511999990009",
        provider="cloud_api",
        token_ref="SIM_TOKEN_0",
        plan_name="test-plan",
        plan_path="plan.yaml",
        timezone="UTC",
        phone_number_id="1065",
    )
    assert_clean_error(register(engine, BASE, "+5511999990009"), "Meta app dashboard")
    result = register(engine, BASE)  # every Whapi number: the Cloud API one is left alone
    assert result.returncode == 0 and "+5511999990009" not in result.stdout


def test_no_whapi_numbers_is_a_clear_error(engine: Engine) -> None:
    assert_clean_error(register(engine, BASE), "no Whapi numbers enrolled")
