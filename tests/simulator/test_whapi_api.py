"""The Whapi routes over real HTTP (`warmup/simulator/whapi_api.py`): sends, errors, auth, list, meter."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.simulator.model_fixture import T0, B
from tests.simulator.server_fixture import Sim, assert_error, sim, text

__all__ = ["sim"]


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
