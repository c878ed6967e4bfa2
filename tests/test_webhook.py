"""The webhook app: authentication, size caps, bad payloads store nothing, never a 500, idempotent storing.

Every test talks HTTP to the app served by a real uvicorn server on a loopback port (starlette's
httpx.Client warns about httpx, and a real server also exercises the body-size cap on a real stream); the
last one lets the simulator deliver its own webhooks to it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from starlette.applications import Starlette

from tests.fleet_fixture import Fleet
from warmup.clock import ManualClock
from warmup.core.localtime import local_date_of
from warmup.secrets import Secret
from warmup.services.fleet import Change, apply_changes
from warmup.store import audit, claims, days, history, inbound, numbers, outcomes, sends, tables
from warmup.store.db import make_engine
from warmup.webhook import WebhookConfig, create_app

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "whsec-0123456789"
APP_SECRET = "meta-app-secret-xyz"
VERIFY = "verify-me-please"
ADMIN = "+5511988880000"
PHONE_NUMBER_ID = "106540352242922"


@pytest.fixture
def fleet(engine: Engine, make_fleet: Any) -> Fleet:
    built: Fleet = make_fleet(engine, ManualClock(NOW), count=2)
    return built


def config(max_bytes: int = 64 * 1024) -> WebhookConfig:
    return WebhookConfig(Secret(SECRET), Secret(APP_SECRET), Secret(VERIFY), max_bytes=max_bytes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(app: Starlette) -> Iterator[httpx.Client]:
    """The app on a real uvicorn server in a thread; an HTTP client pointed at it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def client(engine: Engine, fleet: Fleet) -> Iterator[httpx.Client]:
    with served(create_app(engine, config(), clock=ManualClock(NOW))) as http:
        yield http


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    """Background work (admin commands run after the response) finishes shortly after the request."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def inbound_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(tables.INBOUND)).scalar_one())


def whapi_payload(
    sender: str = "5511977770001", message_id: str = "msg-1", text: str = "hello"
) -> dict[str, Any]:
    return {
        "messages": [
            {
                "id": message_id,
                "from_me": False,
                "type": "text",
                "chat_id": f"{sender}@s.whatsapp.net",
                "timestamp": int(NOW.timestamp()),
                "text": {"body": text},
            }
        ],
        "statuses": [
            {
                "id": "out-1",
                "status": "read",
                "recipient_id": "5511977770002",
                "timestamp": str(int(NOW.timestamp())),
            }
        ],
        "event": {"type": "messages", "method": "post"},
    }


def whapi_url(fleet: Fleet, index: int = 0) -> str:
    return f"/webhooks/whapi/{fleet.phones[index].lstrip('+')}"


def post_whapi(client: httpx.Client, fleet: Fleet, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Warmup-Secret": SECRET, "Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.post(whapi_url(fleet), content=content, headers=headers, **kwargs)


def test_whapi_events_are_stored_once(client: httpx.Client, engine: Engine, fleet: Fleet) -> None:
    number_id = fleet.number_ids[0]
    inbound.upsert_recipient(engine, number_id, "+5511977770001", "contact", now=NOW)
    response = post_whapi(client, fleet, whapi_payload())
    assert response.status_code == 200 and response.json() == {"stored": 2, "ignored": 0}
    assert post_whapi(client, fleet, whapi_payload()).json() == {"stored": 0, "ignored": 2}  # redelivery
    assert inbound_count(engine) == 2
    (recipient,) = inbound.list_recipients(engine, number_id)
    assert recipient.replied  # feeds the local meter's response rate and contacts figures
    assert history.day_outcome(engine, number_id, NOW.date()).replies == 1
    # the secret may also come as a query parameter (for webhook settings without custom headers)
    response = client.post(
        whapi_url(fleet) + f"?secret={SECRET}", content=json.dumps(whapi_payload(message_id="msg-2")).encode()
    )
    assert response.status_code == 200 and response.json()["stored"] == 1


def test_statuses_make_sent_messages_delivered(client: httpx.Client, engine: Engine, fleet: Fleet) -> None:
    from warmup.core.domain import Action, Decision

    number_id = fleet.number_ids[0]
    day = local_date_of(NOW, "America/Sao_Paulo")
    decision = Decision(day, 1, 2, Action.ADVANCE, 1, 1, 1)
    send = sends.PlannedSend("+5511977770002", "hi", NOW)
    assert days.plan_day(engine, number_id, decision, [send], now=NOW)
    (message,) = history.list_messages(engine, number_id, day)
    assert claims.claim(engine, message.id or 0, "w", NOW).claimed
    outcomes.record_sent(engine, message.id or 0, "out-1", NOW)
    assert history.day_outcome(engine, number_id, day).delivered == 0
    payload = {"statuses": whapi_payload()["statuses"]}
    assert post_whapi(client, fleet, payload).json()["stored"] == 1
    assert history.day_outcome(engine, number_id, day).delivered == 1


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "", 401),
        ({"X-Warmup-Secret": "nope"}, "", 403),
        ({}, "?secret=nope", 403),
        ({"X-Warmup-Secret": ""}, "", 401),
    ],
)
def test_whapi_without_the_right_secret_is_refused(
    client: httpx.Client, engine: Engine, fleet: Fleet, headers: dict[str, str], query: str, status: int
) -> None:
    response = client.post(
        whapi_url(fleet) + query, content=json.dumps(whapi_payload()).encode(), headers=headers
    )
    assert response.status_code == status
    assert SECRET not in response.text
    assert inbound_count(engine) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b"",
        b"\xff\xfe\x00garbage",
        json.dumps({"messages": "nope"}).encode(),
        # the first item is fine, the second is broken: the whole payload is refused, nothing stored
        json.dumps(
            {"messages": [whapi_payload()["messages"][0], {"id": "m2", "chat_id": 5, "timestamp": "x"}]}
        ).encode(),
        json.dumps({"statuses": [{"id": "s", "timestamp": 1}]}).encode(),
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_malformed_payloads_are_400_and_store_nothing(engine: Engine, fleet: Fleet, body: bytes) -> None:
    app = create_app(engine, config(max_bytes=1024 * 1024), clock=ManualClock(NOW))
    with served(app) as client:
        response = post_whapi(client, fleet, body)
    assert response.status_code == 400 and response.json() == {"error": "malformed payload"}
    assert inbound_count(engine) == 0


def test_oversized_bodies_are_413_declared_or_streamed(
    client: httpx.Client, engine: Engine, fleet: Fleet
) -> None:
    huge = json.dumps({"messages": [], "pad": "x" * 200_000}).encode()
    assert post_whapi(client, fleet, huge).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds while reading
        yield b'{"pad": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'"}'

    response = client.post(whapi_url(fleet), content=chunks(), headers={"X-Warmup-Secret": SECRET})
    assert response.status_code == 413
    assert inbound_count(engine) == 0


def test_unknown_number_is_404(client: httpx.Client, engine: Engine) -> None:
    for phone in ("5511000000000", "not-a-phone"):
        response = client.post(
            f"/webhooks/whapi/{phone}",
            content=json.dumps(whapi_payload()).encode(),
            headers={"X-Warmup-Secret": SECRET},
        )
        assert response.status_code == 404
    assert inbound_count(engine) == 0


def test_unconfigured_secrets_refuse_with_503(engine: Engine, fleet: Fleet) -> None:
    with served(create_app(engine, WebhookConfig(), clock=ManualClock(NOW))) as client:
        assert post_whapi(client, fleet, whapi_payload()).status_code == 503
        assert client.post("/webhooks/cloud", content=b"{}").status_code == 503
        assert client.get("/webhooks/cloud", params={"hub.mode": "subscribe"}).status_code == 503
    assert inbound_count(engine) == 0


def test_a_broken_database_is_503_never_500(tmp_path: Path, fleet: Fleet) -> None:
    unmigrated = make_engine(f"sqlite:///{tmp_path}/empty.db")
    try:
        with served(create_app(unmigrated, config(), clock=ManualClock(NOW))) as client:
            response = post_whapi(client, fleet, whapi_payload())
            assert response.status_code == 503 and response.json() == {"error": "unavailable"}
            assert client.get("/metrics").status_code == 200  # the scrape says warmup_store_up 0
            assert "warmup_store_up 0.0" in client.get("/metrics").text
    finally:
        unmigrated.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=8),
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        ["messages", "statuses", "id", "chat_id", "timestamp", "from_me", "status"]
                    ),
                    c,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_fuzzed_bodies_never_get_a_5xx(client: httpx.Client, fleet: Fleet, body: bytes) -> None:
    response = post_whapi(client, fleet, body)
    assert response.status_code in (200, 400), response.text


# --------------------------------------------------------------------------------------- Cloud API


def cloud_payload(phone_number_id: str = PHONE_NUMBER_ID, message_id: str = "wamid.1") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "5511999990001",
                                "phone_number_id": phone_number_id,
                            },
                            "messages": [
                                {
                                    "from": "5511977770001",
                                    "id": message_id,
                                    "timestamp": str(int(NOW.timestamp())),
                                    "type": "text",
                                    "text": {"body": "oi"},
                                }
                            ],
                            "statuses": [
                                {
                                    "id": "wamid.out",
                                    "status": "delivered",
                                    "timestamp": str(int(NOW.timestamp())),
                                    "recipient_id": "5511977770001",
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


@pytest.fixture
def cloud_number(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("META_TOKEN", "meta-token-value")
    return numbers.add_number(
        engine,
        phone="+5511999990009",
        provider="cloud_api",
        token_ref="META_TOKEN",
        phone_number_id=PHONE_NUMBER_ID,
        plan_name="p",
        plan_path="/nonexistent/plan.yaml",
        timezone="America/Sao_Paulo",
        now=NOW,
    )


def test_cloud_handshake(client: httpx.Client) -> None:
    ok = client.get(
        "/webhooks/cloud",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"},
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    wrong = client.get(
        "/webhooks/cloud", params={"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "1"}
    )
    assert wrong.status_code == 403 and "1" not in wrong.text.replace("403", "")


def test_cloud_events_need_a_valid_signature(client: httpx.Client, engine: Engine, cloud_number: int) -> None:
    body = json.dumps(cloud_payload()).encode()
    assert client.post("/webhooks/cloud", content=body).status_code == 401
    assert (
        client.post("/webhooks/cloud", content=body, headers=signed(body, "other-secret")).status_code == 403
    )
    tampered = body.replace(b'"oi"', b'"ai"')
    assert client.post("/webhooks/cloud", content=tampered, headers=signed(body)).status_code == 403
    assert inbound_count(engine) == 0
    response = client.post("/webhooks/cloud", content=body, headers=signed(body))
    assert response.status_code == 200 and response.json() == {"stored": 2, "ignored": 0}
    assert client.post("/webhooks/cloud", content=body, headers=signed(body)).json() == {
        "stored": 0,
        "ignored": 2,
    }
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tables.INBOUND.c.number_id, tables.INBOUND.c.kind)).all()
    assert sorted(rows) == [(cloud_number, "message"), (cloud_number, "status")]


def test_cloud_events_of_other_numbers_and_bad_payloads(
    client: httpx.Client, engine: Engine, cloud_number: int
) -> None:
    other = json.dumps(cloud_payload(phone_number_id="999")).encode()
    assert client.post("/webhooks/cloud", content=other, headers=signed(other)).json() == {
        "stored": 0,
        "ignored": 2,
    }
    for bad in (
        b"{",
        json.dumps({"object": "page", "entry": []}).encode(),
        json.dumps({**cloud_payload(), "entry": 3}).encode(),
    ):
        assert client.post("/webhooks/cloud", content=bad, headers=signed(bad)).status_code == 400
    assert inbound_count(engine) == 0


def test_metrics_endpoint(client: httpx.Client, fleet: Fleet) -> None:
    post_whapi(client, fleet, whapi_payload())
    text = client.get("/metrics").text
    assert "warmup_store_up 1.0" in text
    assert f'warmup_number_state{{phone="{fleet.phones[0]}",state="active"}} 1.0' in text
    assert 'warmup_inbound_total{kind="message"}' in text
    assert 'warmup_webhook_requests_total{provider="whapi",status="200"}' in text


def test_an_admin_command_by_webhook_pauses_and_is_answered(
    client: httpx.Client, engine: Engine, fleet: Fleet
) -> None:
    apply_changes(engine, [Change("admins", fields={"admins": ((), (ADMIN,))}, admins=(ADMIN,))], now=NOW)
    payload = {"messages": whapi_payload(sender=ADMIN.lstrip("+"), text="/pause webhook test")["messages"]}
    assert post_whapi(client, fleet, payload).json() == {"stored": 1, "ignored": 0}
    assert wait_for(lambda: len(fleet.sends(fleet.phones[0])) == 1)  # the answer, after the response
    number = numbers.get_number(engine, fleet.number_ids[0])
    assert number is not None and number.state == "paused" and number.paused_reason == "webhook test"
    assert [s["to"] for s in fleet.sends(fleet.phones[0])] == [ADMIN]
    post_whapi(client, fleet, payload)  # redelivered: the command does not run (nor answer) twice
    time.sleep(0.3)
    assert len(fleet.sends(fleet.phones[0])) == 1
    assert [r.action for r in audit.list_audit(engine, fleet.number_ids[0])].count("chat_command") == 1


# ---------------------------------------------------------------------- real server, real simulator


def test_the_simulator_delivers_its_webhooks_to_a_real_server(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(NOW)
    fleet: Fleet = make_fleet(engine, clock, count=2)
    with served(create_app(engine, config(), clock=clock)) as http:
        for index in (0, 1):
            hook = {
                "url": f"{http.base_url}/webhooks/whapi/{fleet.phones[index].lstrip('+')}",
                "headers": {"X-Warmup-Secret": SECRET},
                "events": [{"type": "messages", "method": "post"}, {"type": "statuses", "method": "post"}],
            }
            response = httpx.patch(
                fleet.base_url + "/settings",
                json={"webhooks": [hook]},
                headers={"Authorization": f"Bearer tok-{index}-abcdef"},
                timeout=5,
            )
            assert response.status_code == 200, response.text
        sent = httpx.post(
            fleet.base_url + "/messages/text",
            json={"to": fleet.phones[1].lstrip("+"), "body": "hello peer"},
            headers={"Authorization": "Bearer tok-0-abcdef"},
            timeout=5,
        )
        assert sent.status_code in (200, 201), sent.text
        clock.advance(timedelta(hours=1))
        fleet.admin("POST", "/_sim/tick")

        def rows() -> list[Any]:
            columns = (tables.INBOUND.c.number_id, tables.INBOUND.c.kind, tables.INBOUND.c.text)
            with engine.connect() as conn:
                return list(conn.execute(sa.select(*columns)).all())

        assert wait_for(lambda: {r.kind for r in rows()} == {"message", "status"})
        stored = rows()
        assert (fleet.number_ids[1], "message", "hello peer") in stored  # the peer received it
        assert any(r.number_id == fleet.number_ids[0] and r.kind == "status" for r in stored)  # delivered


# ------------------------------------------------------------------ poison bodies (issue 14 items 2, 3)

LONE = "\ud800"  # a lone surrogate: valid JSON (`"\ud800"`), not storable text on either database
NUL = "\x00"  # storable on SQLite, refused by PostgreSQL


def admins(engine: Engine) -> None:
    apply_changes(engine, [Change("admins", fields={"admins": ((), (ADMIN,))}, admins=(ADMIN,))], now=NOW)


def pause_batch(status: str = "read", text: str = "/pause poison test") -> dict[str, Any]:
    """An admin's `/pause` first, then a status of one of our messages."""
    payload = whapi_payload(sender=ADMIN.lstrip("+"), text=text)
    payload["statuses"][0]["status"] = status
    return payload


def traceback_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info is not None]


def test_a_poison_status_refuses_the_whole_batch_and_a_fixed_redelivery_runs_the_command(
    client: httpx.Client, engine: Engine, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: 503, the `/pause` stored, never run, and skipped by every redelivery as stored already."""
    admins(engine)
    response = post_whapi(client, fleet, pause_batch(status=LONE))
    assert response.status_code == 400 and response.json() == {"error": "malformed payload"}
    assert inbound_count(engine) == 0 and traceback_logged(caplog) == []
    number = numbers.get_number(engine, fleet.number_ids[0])
    assert number is not None and number.state == "active"
    # the provider delivers the batch again, fixed: the command is new, so it runs
    assert post_whapi(client, fleet, pause_batch()).json() == {"stored": 2, "ignored": 0}
    assert wait_for(lambda: len(fleet.sends(fleet.phones[0])) == 1)
    number = numbers.get_number(engine, fleet.number_ids[0])
    assert number is not None and number.state == "paused" and number.paused_reason == "poison test"
    post_whapi(client, fleet, pause_batch())  # and once only
    time.sleep(0.3)
    assert len(fleet.sends(fleet.phones[0])) == 1
    assert [r.action for r in audit.list_audit(engine, fleet.number_ids[0])].count("chat_command") == 1


@pytest.mark.parametrize("poison", [NUL, LONE, "\x07"])
def test_a_poison_text_is_stored_sanitized_and_the_command_runs_once(
    client: httpx.Client, engine: Engine, fleet: Fleet, poison: str, caplog: pytest.LogCaptureFixture
) -> None:
    """People write texts, and a text is stored with what it cannot carry replaced by U+FFFD: one odd
    reply must not lose the batch it came in (nor the admin command before it)."""
    admins(engine)
    payload = pause_batch()
    reply = whapi_payload(sender="5511977770001", message_id="msg-2", text=f"ok {poison} then")
    payload["messages"].append(reply["messages"][0])
    assert post_whapi(client, fleet, payload).json() == {"stored": 3, "ignored": 0}
    assert wait_for(lambda: len(fleet.sends(fleet.phones[0])) == 1)
    number = numbers.get_number(engine, fleet.number_ids[0])
    assert number is not None and number.state == "paused"
    with engine.connect() as conn:
        texts = set(conn.execute(sa.select(tables.INBOUND.c.text)).scalars())
    assert "ok \ufffd then" in texts
    assert post_whapi(client, fleet, payload).json() == {"stored": 0, "ignored": 3}
    time.sleep(0.3)
    assert len(fleet.sends(fleet.phones[0])) == 1 and traceback_logged(caplog) == []


def _message(**changes: Any) -> dict[str, Any]:
    return {**whapi_payload()["messages"][0], **changes}


def _status(**changes: Any) -> dict[str, Any]:
    return {**whapi_payload()["statuses"][0], **changes}


NESTED: dict[str, Any] = {"body": "x"}
for _ in range(200):
    NESTED = {"body": NESTED}


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [_message(id=f"m{NUL}1")]},
        {"messages": [_message(id=f"m{LONE}1")]},
        {"messages": [_message(id="m" * 129)]},  # the column holds 128
        {"messages": [_message(chat_id=f"5511977770001{LONE}@s.whatsapp.net", id="x\n")]},
        {"messages": [_message(context={"quoted_id": f"q{NUL}"})]},
        {"messages": [_message(context={"quoted_id": "q" * 129})]},
        {"messages": [_message(status=LONE)]},
        {"statuses": [_status(status=f"read{NUL}")]},
        {"statuses": [_status(status="r" * 33)]},  # the column holds 32
        {"statuses": [_status(id=LONE)]},
        {"statuses": [_status(id=["a"])]},
        {"messages": [_message(from_me="false")]},
        {"messages": [_message(timestamp=[1])]},
        {"messages": {"0": _message()}},
        {"messages": [_message(text=NESTED)]},
    ],
)
def test_poison_whapi_items_are_400_and_store_nothing(
    client: httpx.Client, engine: Engine, fleet: Fleet, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    payload = {"messages": [_message(id="good-1")], "statuses": [_status(id="good-2")]}
    for key, items in body.items():  # the poison item comes after good ones
        payload[key] = [*payload[key], *items] if isinstance(items, list) else items
    response = post_whapi(client, fleet, payload)
    assert response.status_code == 400 and response.json() == {"error": "malformed payload"}
    assert inbound_count(engine) == 0 and traceback_logged(caplog) == []


def test_a_deeply_nested_text_is_not_a_text(client: httpx.Client, engine: Engine, fleet: Fleet) -> None:
    """Deep enough for `json.loads` (under the recursion limit), too deep for what may `repr` it later."""
    for depth in (40, 900, 980, 995, 5000):
        head = (
            b'{"messages": [{"id": "m", "chat_id": "5511977770001@s.whatsapp.net", "timestamp": 1, "text": '
        )
        body = head + b"[" * depth + b'"deep"' + b"]" * depth + b"}]}"
        response = post_whapi(client, fleet, body)
        assert response.status_code == 400 and response.json() == {"error": "malformed payload"}
        body = head.replace(b'"id": "m"', b'"id": ' + b"[" * depth + b"1" + b"]" * depth) + b"null}]}"
        assert post_whapi(client, fleet, body).status_code == 400
    assert inbound_count(engine) == 0


POISON = st.sampled_from([NUL, LONE, "\udfff", "\x1b", "\ufffe", "é", "/pause", "x" * 200, "", " "])
LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), POISON, st.text(max_size=6), st.just(1763899200)
)


def _poisoned(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid payload with some of its leaves (at any depth) replaced by poison or wrong types."""

    def replace(value: Any, draw: Any) -> Any:
        if isinstance(value, dict):
            return {k: replace(v, draw) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v, draw) for v in value]
        return draw(LEAF) if draw(st.integers(0, 3)) == 0 else value

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        return dict(replace(valid, draw))

    return build()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_poisoned(whapi_payload()))
def test_fuzzed_poison_whapi_bodies_never_get_a_5xx_and_rejects_write_nothing(
    client: httpx.Client,
    engine: Engine,
    fleet: Fleet,
    payload: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = inbound_count(engine)
    response = post_whapi(client, fleet, payload)
    assert response.status_code in (200, 400), response.text
    if response.status_code != 200:
        assert inbound_count(engine) == before
    assert traceback_logged(caplog) == []


def _alert(description: str, waba: str = "102290129340398") -> bytes:
    alert = {
        "entity_type": "PHONE_NUMBER",
        "entity_id": PHONE_NUMBER_ID,
        "alert_info": {
            "alert_type": "OBA_REJECTED",
            "alert_status": "ACTIVE",
            "alert_description": description,
        },
    }
    entry = {"id": waba, "changes": [{"field": "account_alerts", "value": alert}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


@pytest.mark.parametrize("poison", [NUL, LONE])
def test_poison_cloud_texts_are_stored_sanitized(
    client: httpx.Client, engine: Engine, cloud_number: int, poison: str, caplog: pytest.LogCaptureFixture
) -> None:
    payload = cloud_payload()
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = f"oi{poison}"
    body = json.dumps(payload).encode()
    assert client.post("/webhooks/cloud", content=body, headers=signed(body)).json()["stored"] == 2
    body = _alert(f"your number {poison} was rejected")
    assert client.post("/webhooks/cloud", content=body, headers=signed(body)).json()["stored"] == 1
    (row,) = [r for r in audit.list_audit(engine, cloud_number) if r.action == "provider_alert"]
    assert row.detail is not None and row.detail["description"] == "your number \ufffd was rejected"
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(tables.INBOUND.c.text)).scalars()) == {"oi\ufffd", None}
    assert traceback_logged(caplog) == []


@pytest.mark.parametrize("where", ["message id", "status", "waba", "metadata"])
@pytest.mark.parametrize("poison", [NUL, LONE])
def test_poison_cloud_ids_are_400_and_store_nothing(
    client: httpx.Client,
    engine: Engine,
    cloud_number: int,
    where: str,
    poison: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = cloud_payload()
    value = payload["entry"][0]["changes"][0]["value"]
    if where == "message id":
        value["messages"][0]["id"] = f"wamid{poison}"
    elif where == "status":
        value["statuses"][0]["status"] = poison
    elif where == "metadata":
        value["metadata"]["phone_number_id"] = PHONE_NUMBER_ID + poison
    body = _alert("fine", waba=f"1022{poison}") if where == "waba" else json.dumps(payload).encode()
    response = client.post("/webhooks/cloud", content=body, headers=signed(body))
    assert response.status_code == 400 and response.json() == {"error": "malformed payload"}
    assert inbound_count(engine) == 0 and traceback_logged(caplog) == []
    assert [r for r in audit.list_audit(engine, cloud_number) if r.action == "provider_alert"] == []


def written(engine: Engine) -> tuple[int, ...]:
    """Rows a webhook may write: inbound events, audit rows (alerts), readings (account events)."""
    with engine.connect() as conn:
        return tuple(
            int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            for table in (tables.INBOUND, tables.AUDIT, tables.READINGS)
        )


@pytest.fixture
def offline_client(engine: Engine, fleet: Fleet) -> Iterator[httpx.Client]:
    """The app without Cloud API clients: a quality event is stored as it says, without reading Meta
    (graph.facebook.com) first."""

    def no_provider(number_id: int) -> Any:
        return object()  # not a Cloud API client: `signals.meta_now` does not ask

    with served(create_app(engine, config(), clock=ManualClock(NOW), provider_for=no_provider)) as http:
        yield http


def _cloud_everything() -> dict[str, Any]:
    """Messages, statuses and the three account events of one number in one body."""
    payload = cloud_payload()
    alert = json.loads(_alert("limits cannot be increased"))["entry"][0]
    alert["changes"] += [
        {
            "field": "phone_number_quality_update",
            "value": {
                "display_phone_number": "5511999990009",
                "event": "FLAGGED",
                "current_limit": "TIER_250",
            },
        },
        {"field": "business_capability_update", "value": {"max_daily_conversations_per_business": 1000}},
    ]
    payload["entry"].append(alert)
    return payload


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_poisoned(_cloud_everything()))
def test_fuzzed_poison_cloud_bodies_never_get_a_5xx_and_rejects_write_nothing(
    offline_client: httpx.Client,
    engine: Engine,
    cloud_number: int,
    payload: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = written(engine)
    body = json.dumps(payload).encode()
    response = offline_client.post("/webhooks/cloud", content=body, headers=signed(body))
    assert response.status_code in (200, 400), response.text
    if response.status_code != 200:
        assert written(engine) == before
    assert traceback_logged(caplog) == []


def test_the_whole_cloud_body_is_stored(
    offline_client: httpx.Client, engine: Engine, cloud_number: int
) -> None:
    """The body the fuzz poisons, unpoisoned: every part of it is stored (so the fuzz is not vacuous)."""
    body = json.dumps(_cloud_everything()).encode()
    response = offline_client.post("/webhooks/cloud", content=body, headers=signed(body))
    assert response.status_code == 200 and response.json()["stored"] >= 3, response.text
    assert written(engine)[0] == 2 and written(engine)[1] >= 1


def test_a_database_that_is_away_is_503(fleet: Fleet) -> None:
    """PostgreSQL not listening: the one case that is the server's fault, so the provider retries."""
    away = make_engine(f"postgresql+psycopg://warmup@127.0.0.1:{free_port()}/nowhere?connect_timeout=2")
    try:
        with served(create_app(away, config(), clock=ManualClock(NOW))) as client:
            response = post_whapi(client, fleet, whapi_payload())
            assert response.status_code == 503 and response.json() == {"error": "unavailable"}
            body = json.dumps(cloud_payload()).encode()
            assert client.post("/webhooks/cloud", content=body, headers=signed(body)).status_code == 503
    finally:
        away.dispose()
