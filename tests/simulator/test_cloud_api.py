"""Meta's Cloud API routes (`warmup/simulator/cloud_api.py`) over real HTTP: sends, Meta codes, fields."""

from __future__ import annotations

from typing import Any

import httpx

from tests.simulator.model_fixture import A, B
from tests.simulator.server_fixture import Sim, sim

__all__ = ["sim"]


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
