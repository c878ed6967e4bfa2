"""The simulator over real HTTP: Whapi operations, error envelopes, auth, faults, admin, webhooks, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from warmup.clock import ManualClock
from warmup.simulator import Behaviour, ChannelSpec, FaultSpec, SimConfig, SimulatorServer

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
A = ChannelSpec("tok-a", "+5511999990001", date(2026, 10, 1), name="A")
B = ChannelSpec("tok-b", "+5511999990002", date(2026, 10, 1), name="B")
NO_METER = ChannelSpec("tok-c", "+5511999990003", date(2026, 10, 1), meter=False)
FRIENDLY = Behaviour(friendliness=(1000.0, 0.001))


class Sim:
    def __init__(self, server: SimulatorServer, clock: ManualClock) -> None:
        self.server = server
        self.clock = clock
        self.url = server.base_url
        self.admin = httpx.Client(base_url=self.url, timeout=5)

    def client(self, token: str | None = "tok-a", timeout: float = 5.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def sends(self, **params: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin.get("/_sim/sends", params=params).json()["sends"]
        return result

    def faults(self, channel: str | None = None, **faults: Any) -> None:
        response = self.admin.put("/_sim/faults", json={"channel": channel, "faults": faults})
        assert response.status_code == 200, response.text


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    clock = ManualClock(T0)
    config = SimConfig(seed=5, channels=(A, B, NO_METER), behaviour=FRIENDLY)
    with SimulatorServer(config, clock=clock, log_file=tmp_path / "sends.jsonl", tick_seconds=0.02) as server:
        yield Sim(server, clock)


def text(to: str = "+5521900000001", body: str = "hello", typing_time: float | None = 2) -> dict[str, Any]:
    payload: dict[str, Any] = {"to": to, "body": body}
    if typing_time is not None:
        payload["typing_time"] = typing_time
    return payload


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], str)
    return error


# --- Whapi operations ---------------------------------------------------------------------------


def test_send_text_answers_201_and_is_logged(sim: Sim, tmp_path: Path) -> None:
    response = sim.client().post("/messages/text", json=text(typing_time=3.5))
    assert response.status_code == 201
    data = response.json()
    assert data["sent"] is True
    message = data["message"]
    assert message["from_me"] is True and message["type"] == "text"
    assert message["chat_id"] == "5521900000001@s.whatsapp.net"
    assert message["text"] == {"body": "hello"}
    assert message["timestamp"] == int(T0.timestamp())
    assert message["status"] == "sent"
    log = sim.sends()
    assert log == [
        {
            "seq": log[0]["seq"],
            "channel": "+5511999990001",
            "to": "+5521900000001",
            "body": "hello",
            "typing_time": 3.5,
            "accepted_at": T0.isoformat(),
            "message_id": message["id"],
            "peer": False,
        }
    ]
    sim.server.stop()  # flushes the JSONL log
    lines = (tmp_path / "sends.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == log


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"body": "x"}, 400),
        (text(to="not a phone"), 400),
        (text(body=""), 400),
        (text(typing_time=60.5), 400),
        (text(body="x" * 5000), 413),
    ],
)
def test_send_errors_use_the_whapi_envelope(sim: Sim, payload: dict[str, Any], status: int) -> None:
    assert_error(sim.client().post("/messages/text", json=payload), status)
    assert sim.sends() == []


def test_invalid_json_and_oversized_requests(sim: Sim) -> None:
    client = sim.client()
    assert_error(
        client.post("/messages/text", content=b"{nope", headers={"content-type": "application/json"}), 400
    )
    assert_error(client.post("/messages/text", content=b"{" + b" " * 70_000 + b"}"), 413)


def test_auth_unknown_missing_and_query_token(sim: Sim) -> None:
    assert_error(sim.client("wrong").post("/messages/text", json=text()), 401)
    assert_error(sim.client(None).get("/health"), 401)
    ok = httpx.get(sim.url + "/health", params={"token": "tok-b"})
    assert ok.status_code == 200 and ok.json()["user"]["id"] == "5511999990002"


def test_health_connected_logged_out_banned(sim: Sim) -> None:
    client = sim.client()
    health = client.get("/health").json()
    assert health["status"] == {"code": 4, "text": "AUTH"}
    assert {"start_at", "uptime", "status"} <= set(health)
    sim.admin.patch("/_sim/channels/+5511999990001", json={"status": "logged_out"})
    assert client.get("/health").json()["status"]["text"] == "QR"
    assert "logged out" in assert_error(client.post("/messages/text", json=text()), 401)["details"]
    sim.admin.patch("/_sim/channels/+5511999990001", json={"status": "banned", "reason": "test"})
    assert client.get("/health").json()["status"] == {"code": 5, "text": "ERROR", "details": "banned: test"}
    assert "banned" in assert_error(client.post("/messages/text", json=text()), 401)["message"].lower()


def test_402_403_from_channel_configuration(sim: Sim) -> None:
    response = sim.admin.post(
        "/_sim/channels",
        json={
            "token": "tok-d",
            "phone": "+5511999990004",
            "registered": "2026-01-01",
            "trial_limit": 1,
            "forbidden": ["+5521900000666"],
        },
    )
    assert response.status_code == 201
    client = sim.client("tok-d")
    assert_error(client.post("/messages/text", json=text(to="+5521900000666")), 403)
    assert client.post("/messages/text", json=text()).status_code == 201
    assert_error(client.post("/messages/text", json=text()), 402)


def test_ban_over_http_after_abuse(sim: Sim) -> None:
    sim.admin.post(
        "/_sim/channels", json={"token": "tok-new", "phone": "+5511999990005", "registered": "2026-11-23"}
    )
    client = sim.client("tok-new")
    codes = [client.post("/messages/text", json=text(to=B.phone)).status_code for _ in range(61)]
    assert codes == [201] * 60 + [401]
    state = sim.admin.get("/_sim/channels/+5511999990005").json()
    assert state["banned"] is True and state["sent_today"] == 60
    assert client.get("/health").json()["status"]["text"] == "ERROR"


def test_messages_list_shows_replies_once_due(sim: Sim) -> None:
    client = sim.client()
    for i in range(3):
        assert (
            client.post("/messages/text", json=text(to=f"+552190000000{i}", body=f"m{i}")).status_code == 201
        )
    assert client.get("/messages/list", params={"from_me": "false"}).json()["total"] == 0
    sim.clock.advance(timedelta(hours=1))
    listed = client.get("/messages/list", params={"from_me": "false", "sort": "asc", "count": 2}).json()
    assert listed["total"] == 3 and listed["count"] == 2 and listed["offset"] == 0
    assert all(m["from_me"] is False for m in listed["messages"])
    timestamps = [m["timestamp"] for m in listed["messages"]]
    assert timestamps == sorted(timestamps)
    page2 = client.get(
        "/messages/list", params={"from_me": "false", "sort": "asc", "count": 2, "offset": 2}
    ).json()
    assert page2["count"] == 1
    later = client.get("/messages/list", params={"from_me": "false", "time_from": timestamps[-1] + 1}).json()
    assert later["total"] == 1
    mine = client.get("/messages/list", params={"from_me": "true"}).json()
    assert [m["text"]["body"] for m in mine["messages"]] == ["m2", "m1", "m0"]
    assert_error(client.get("/messages/list", params={"count": "0"}), 400)
    assert_error(client.get("/messages/list", params={"from_me": "maybe"}), 400)


def test_peer_messages_reach_the_peer_inbox(sim: Sim) -> None:
    sim.client().post("/messages/text", json=text(to=B.phone, body="hi B"))
    sim.clock.advance(60)
    inbox = sim.client("tok-b").get("/messages/list", params={"from_me": "false"}).json()["messages"]
    assert [(m["from"], m["text"]["body"]) for m in inbox] == [("5511999990001", "hi B")]
    assert sim.sends()[0]["peer"] is True


def test_meter_once_per_day_and_paid_only(sim: Sim) -> None:
    client = sim.client()
    assert_error(client.get("/services/riskOfBlocking"), 404)
    first = client.post("/services/riskOfBlocking")
    assert first.status_code == 200
    reading = first.json()
    assert set(reading) == {
        "channel",
        "lastUpdateDate",
        "lifeTime",
        "riskFactor",
        "riskFactorChats",
        "riskFactorContacts",
    }
    assert reading["lastUpdateDate"] == "11/23/2026"
    for i in range(10):
        client.post("/messages/text", json=text(to=f"+55219000001{i:02d}"))
    sim.clock.advance(3600)
    assert client.post("/services/riskOfBlocking").json() == reading
    assert client.get("/services/riskOfBlocking").json() == reading
    sim.clock.advance(timedelta(days=1))
    tomorrow = client.post("/services/riskOfBlocking").json()
    assert tomorrow["lastUpdateDate"] == "11/24/2026"
    assert tomorrow["riskFactorChats"] == 3 and reading["riskFactorChats"] == 2
    assert_error(sim.client("tok-c").post("/services/riskOfBlocking"), 402)


# --- webhooks -----------------------------------------------------------------------------------


class _Receiver:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                received.append(
                    {"body": json.loads(self.rfile.read(length)), "auth": self.headers.get("x-auth")}
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.posts):
            assert time.monotonic() < deadline, f"webhooks not delivered: {self.posts}"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_deliver_messages_and_statuses(sim: Sim) -> None:
    receiver = _Receiver()
    try:
        client = sim.client()
        hook = {"url": receiver.url, "events": [{"type": "messages", "method": "post"}, {"type": "statuses"}]}
        response = client.patch(
            "/settings", json={"webhooks": [{**hook, "headers": {"X-Auth": "secret-hook"}}]}
        )
        assert response.status_code == 200
        assert response.json()["changes"] == ["webhooks"]
        assert client.get("/settings").json()["webhooks"][0]["url"] == receiver.url
        sent_id = client.post("/messages/text", json=text()).json()["message"]["id"]
        sim.clock.advance(timedelta(hours=1))

        def complete(posts: list[dict[str, Any]]) -> bool:
            kinds = {k for p in posts for k in ("messages", "statuses") if k in p["body"]}
            return (
                kinds == {"messages", "statuses"}
                and sum(len(p["body"].get("statuses", [])) for p in posts) == 2
            )

        receiver.wait_for(complete)
        bodies = [p["body"] for p in receiver.posts]
        statuses = [s for b in bodies for s in b.get("statuses", [])]
        assert [(s["id"], s["status"]) for s in statuses] == [(sent_id, "delivered"), (sent_id, "read")]
        messages = [m for b in bodies for m in b.get("messages", [])]
        assert [(m["from"], m["from_me"]) for m in messages] == [("5521900000001", False)]
        assert {b["event"]["type"] for b in bodies} == {"messages", "statuses"}
        assert all(p["auth"] == "secret-hook" for p in receiver.posts)
        assert_error(client.patch("/settings", json={"webhooks": [{"url": "nope"}]}), 400)
    finally:
        receiver.close()


def test_unreachable_webhook_does_not_block_the_api(sim: Sim) -> None:
    client = sim.client()
    client.patch("/settings", json={"webhooks": [{"url": "http://127.0.0.1:9/closed"}]})
    client.post("/messages/text", json=text())
    sim.clock.advance(timedelta(hours=1))
    started = time.monotonic()
    assert client.get("/health").status_code == 200
    deadline = time.monotonic() + 5
    while sim.admin.get("/_sim/stats").json()["webhooks_failed"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert time.monotonic() - started < 5


# --- faults -------------------------------------------------------------------------------------


def test_fault_rate_limit_has_retry_after_and_sends_nothing(sim: Sim) -> None:
    sim.faults(rate_limit=1.0, retry_after=7)
    response = sim.client().post("/messages/text", json=text())
    assert_error(response, 429)
    assert response.headers["retry-after"] == "7"
    assert sim.sends() == []


def test_fault_server_error_and_html(sim: Sim) -> None:
    sim.faults(server_error=1.0)
    response = sim.client().post("/messages/text", json=text())
    assert (
        response.status_code in (500, 502, 503) and response.json()["error"]["code"] == response.status_code
    )
    sim.faults(html=1.0)
    response = sim.client().get("/health")
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert b"<html>" in response.content
    assert sim.sends() == []


def test_fault_timeouts_before_and_after_the_send(sim: Sim) -> None:
    sim.faults(timeout=1.0, hold_seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        sim.client(timeout=0.2).post("/messages/text", json=text(body="lost"))
    assert sim.sends() == []
    sim.faults(timeout_after_send=1.0, hold_seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        sim.client(timeout=0.2).post("/messages/text", json=text(body="sent anyway"))
    assert [s["body"] for s in sim.sends()] == ["sent anyway"]


@pytest.mark.parametrize("kind", ["malformed", "truncated", "empty"])
def test_fault_garbled_bodies_still_perform_the_send(sim: Sim, kind: str) -> None:
    sim.faults(**{kind: 1.0})
    response = sim.client().post("/messages/text", json=text())
    assert response.status_code == 201
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    if kind == "empty":
        assert response.content == b""
    assert len(sim.sends()) == 1


def test_fault_latency(sim: Sim) -> None:
    sim.faults(latency=1.0, latency_ms="300-300")
    started = time.monotonic()
    assert sim.client().get("/health").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_faults_per_channel_and_per_operation(sim: Sim) -> None:
    sim.faults(channel=A.phone, rate_limit=1.0, operations=["send"])
    assert sim.client("tok-a").post("/messages/text", json=text()).status_code == 429
    assert sim.client("tok-a").get("/health").status_code == 200
    assert sim.client("tok-b").post("/messages/text", json=text()).status_code == 201
    listed = sim.admin.get("/_sim/faults").json()
    assert listed["channels"]["+5511999990001"]["rate_limit"] == 1.0
    assert listed["global"]["rate_limit"] == 0.0
    sim.admin.delete("/_sim/faults", params={"channel": A.phone})
    assert sim.client("tok-a").post("/messages/text", json=text()).status_code == 201
    bad = sim.admin.put("/_sim/faults", json={"faults": {"rate_limit": 0.7, "timeout": 0.7}})
    assert bad.status_code == 400


def test_fault_probability_is_a_probability() -> None:
    clock = ManualClock(T0)
    config = SimConfig(seed=1, channels=(A,), faults=FaultSpec(server_error=0.3))
    with SimulatorServer(config, clock=clock) as server, httpx.Client(base_url=server.base_url) as client:
        codes = [
            client.get("/health", headers={"Authorization": "Bearer tok-a"}).status_code for _ in range(200)
        ]
    failures = sum(code >= 500 for code in codes)
    assert 30 < failures < 90


# --- admin --------------------------------------------------------------------------------------


def test_admin_channels_sends_reset_and_clock(sim: Sim) -> None:
    duplicate = sim.admin.post(
        "/_sim/channels", json={"token": "tok-a", "phone": "+5511999990099", "registered": "2026-01-01"}
    )
    assert duplicate.status_code == 409
    assert (
        sim.admin.post(
            "/_sim/channels", json={"token": "x", "phone": "oops", "registered": "2026-01-01"}
        ).status_code
        == 400
    )
    assert sim.admin.get("/_sim/channels/+5500000000000").status_code == 404
    assert len(sim.admin.get("/_sim/channels").json()["channels"]) == 3
    assert "tok-" not in sim.admin.get("/_sim/channels").text
    sim.client("tok-a").post("/messages/text", json=text())
    sim.client("tok-b").post("/messages/text", json=text())
    assert [s["channel"] for s in sim.sends(channel=B.phone)] == [B.phone]
    first_seq = sim.sends()[0]["seq"]
    assert [s["channel"] for s in sim.sends(after=first_seq)] == [B.phone]
    assert sim.admin.get("/_sim/clock").json()["now"] == T0.isoformat()
    patched = sim.admin.patch(
        "/_sim/channels/+5511999990001", json={"registered": "2026-11-20", "meter": False}
    )
    assert patched.json()["age_days"] == 3 and patched.json()["meter"] is False
    assert sim.admin.post("/_sim/reset", json={"seed": 9}).json() == {"reset": True, "seed": 9}
    assert sim.admin.get("/_sim/channels").json()["channels"] == []
    assert sim.sends() == []
    assert_error(sim.client("tok-a").get("/health"), 401)


def test_many_sends_on_one_connection_are_all_logged(sim: Sim) -> None:
    # Throughput is measured by benchmarks/send_path.py against a plain httpx loop, not here.
    sim.admin.patch("/_sim/channels/+5511999990001", json={"registered": "2020-01-01"})
    client = sim.client()
    for i in range(300):
        assert client.post("/messages/text", json=text(to=B.phone, body=f"n{i}")).status_code == 201
    sends = sim.sends()
    assert len(sends) == 300
    assert [send["body"] for send in sends] == [f"n{i}" for i in range(300)]


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_serves_a_channels_file(tmp_path: Path) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        'channels:\n  - {token: "${SIM_TEST_TOKEN}", phone: "+5511999990001", registered: 2026-11-01}\n'
    )
    env = {**os.environ, "SIM_TEST_TOKEN": "cli-token-123", "WARMUP_CLOCK": ""}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "warmup",
            "simulator",
            "--port",
            "0",
            "--channels",
            str(channels),
            "--seed",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("simulator listening on http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        url = line.split()[3]
        health = httpx.get(url + "/health", headers={"Authorization": "Bearer cli-token-123"})
        assert health.json()["status"]["text"] == "AUTH"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "simulator stopped" in out


def test_cli_rejects_bad_faults() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "warmup", "simulator", "--fault", "rate_limit=2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "probability" in proc.stderr and "Traceback" not in proc.stderr


# --- Meta Cloud API -----------------------------------------------------------------------------


def meta_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert {"message", "type", "code", "error_data", "fbtrace_id"} <= set(error)
    assert isinstance(error["error_data"]["details"], str)
    return error


def test_cloud_api_text_and_template_sends(sim: Sim) -> None:
    client = sim.client("tok-b")
    body = {"messaging_product": "whatsapp", "to": "+5521900000001", "type": "text", "text": {"body": "oi"}}
    response = client.post("/v23.0/5511999990002/messages", json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["messaging_product"] == "whatsapp"
    assert data["contacts"] == [{"input": "+5521900000001", "wa_id": "5521900000001"}]
    assert data["messages"][0]["message_status"] == "accepted"
    template = {
        "messaging_product": "whatsapp",
        "to": "5521900000002",
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    }
    assert client.post("/v23.0/5511999990002/messages", json=template).status_code == 200
    log = sim.sends()
    assert [(s["channel"], s["body"]) for s in log] == [
        (B.phone, "oi"),
        (B.phone, "[template hello_world/en_US]"),
    ]
    assert log[0]["message_id"] == data["messages"][0]["id"]


def test_cloud_api_errors_use_meta_codes(sim: Sim) -> None:
    good = {"messaging_product": "whatsapp", "to": "+5521900000001", "type": "text", "text": {"body": "oi"}}
    client = sim.client("tok-b")
    meta_error(
        client.post("/v23.0/5511999990002/messages", json={**good, "messaging_product": "sms"}), 400, 100
    )
    meta_error(client.post("/v23.0/5511999990002/messages", json={**good, "type": "image"}), 400, 100)
    meta_error(client.post("/v23.0/5511999990001/messages", json=good), 400, 100)  # not this token's number
    meta_error(sim.client("nope").post("/v23.0/5511999990002/messages", json=good), 401, 190)
    sim.faults(channel=B.phone, rate_limit=1.0)
    meta_error(client.post("/v23.0/5511999990002/messages", json=good), 429, 130429)
    sim.admin.delete("/_sim/faults")
    sim.admin.patch("/_sim/channels/+5511999990002", json={"status": "banned"})
    meta_error(client.post("/v23.0/5511999990002/messages", json=good), 400, 368)
    assert sim.admin.get("/vX/5511999990002", headers={"Authorization": "Bearer tok-b"}).status_code == 404
    assert sim.sends() == []


def test_cloud_api_phone_number_fields(sim: Sim) -> None:
    client = sim.client("tok-a")
    info = client.get("/v23.0/5511999990001", params={"fields": "quality_rating,status"}).json()
    assert info == {"id": "5511999990001", "quality_rating": "GREEN", "status": "CONNECTED"}
    full = client.get("/v23.0/5511999990001").json()
    assert full["whatsapp_business_manager_messaging_limit"] == "TIER_2K"
    assert full["display_phone_number"] == A.phone
