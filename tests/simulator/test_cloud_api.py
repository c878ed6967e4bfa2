"""Meta's Cloud API routes (`warmup/simulator/cloud_api.py`) over real HTTP: sends, Meta codes, fields,
all checked against the published v23 spec (tests/specs)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.providers.test_conformance import Spec, errors_of
from tests.simulator.cloud_fixture import meta_error, template
from tests.simulator.model_fixture import A, B
from tests.simulator.server_fixture import Sim, sim

__all__ = ["meta_spec", "sim"]

PHONE_B = "/v23.0/5511999990002"


def spec_errors(meta_spec: Spec, pointer: str, body: Any) -> list[str]:
    return errors_of(meta_spec.validator(pointer), body)


def check_error(meta_spec: Spec, response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    error = meta_error(response, status, code)
    assert spec_errors(meta_spec, "/components/schemas/GraphAPIError", response.json()) == []
    return error


@pytest.fixture(scope="module")
def meta_spec() -> Spec:
    from tests.providers.test_conformance import _meta

    return _meta()


def test_text_needs_the_window_and_a_template_opens_it(sim: Sim, meta_spec: Spec) -> None:
    client = sim.client("tok-b")
    body = {"messaging_product": "whatsapp", "to": "+5521900000001", "type": "text", "text": {"body": "oi"}}
    error = check_error(meta_spec, client.post(f"{PHONE_B}/messages", json=body), 400, 131047)
    assert error["message"] == "(#131047) Re-engagement message"
    response = client.post(f"{PHONE_B}/messages", json=template("+5521900000001"))
    assert response.status_code == 200
    data = response.json()
    assert spec_errors(meta_spec, "/components/schemas/MessageResponsePayload", data) == []
    assert data["contacts"] == [{"input": "+5521900000001", "wa_id": "5521900000001"}]
    assert data["messages"][0]["message_status"] == "accepted"
    sim.clock.advance(timedelta(hours=1))  # the (friendly) contact answers: the window opens
    assert client.post(f"{PHONE_B}/messages", json=body).status_code == 200
    log = sim.sends()
    assert [(s["channel"], s["body"]) for s in log] == [
        (B.phone, "[template hello_world/en_US]"),
        (B.phone, "oi"),
    ]
    assert log[0]["message_id"] == data["messages"][0]["id"]
    limit_log = sim.admin.get("/_sim/cloud/limit-log").json()["sends"]
    assert [r["message_id"] for r in limit_log] == [log[0]["message_id"]]  # the text was in the window
    sim.clock.advance(timedelta(hours=25))  # (the answer to the text came within 30 min)
    check_error(meta_spec, client.post(f"{PHONE_B}/messages", json=body), 400, 131047)


def test_cloud_api_errors_use_meta_codes(sim: Sim, meta_spec: Spec) -> None:
    good = template("+5521900000001")
    client = sim.client("tok-b")
    check_error(
        meta_spec, client.post(f"{PHONE_B}/messages", json={**good, "messaging_product": "sms"}), 400, 100
    )
    check_error(meta_spec, client.post(f"{PHONE_B}/messages", json={**good, "type": "image"}), 400, 100)
    check_error(meta_spec, client.post("/v23.0/5511999990001/messages", json=good), 400, 100)  # not B's
    check_error(meta_spec, sim.client("nope").post(f"{PHONE_B}/messages", json=good), 401, 190)
    unknown = check_error(
        meta_spec, client.post(f"{PHONE_B}/messages", json=template("+5521900000001", "promo")), 404, 132001
    )
    assert "hello_world/en_US" in unknown["error_data"]["details"]
    wrong_language = template("+5521900000001", "hello_world", "pt_BR")
    check_error(meta_spec, client.post(f"{PHONE_B}/messages", json=wrong_language), 404, 132001)
    sim.faults(channel=B.phone, rate_limit=1.0)
    check_error(meta_spec, client.post(f"{PHONE_B}/messages", json=good), 429, 130429)
    sim.admin.delete("/_sim/faults")
    sim.admin.patch("/_sim/channels/+5511999990002", json={"status": "banned"})
    check_error(meta_spec, client.post(f"{PHONE_B}/messages", json=good), 400, 368)
    assert sim.admin.get("/vX/5511999990002", headers={"Authorization": "Bearer tok-b"}).status_code == 404
    check_error(meta_spec, client.get(PHONE_B, params={"fields": "status,nope"}), 400, 100)
    assert sim.sends() == []


def test_cloud_api_phone_number_fields(sim: Sim, meta_spec: Spec) -> None:
    client = sim.client("tok-a")
    info = client.get("/v23.0/5511999990001", params={"fields": "status"}).json()
    assert info == {
        "id": "5511999990001",
        "display_phone_number": A.phone,
        "verified_name": "A",
        "quality_rating": "GREEN",
        "status": "CONNECTED",
    }
    assert client.get("/v23.0/5511999990001").json() == {k: v for k, v in info.items() if k != "status"}
    tiers = client.get(
        "/v23.0/5511999990001",
        params={"fields": "messaging_limit_tier,whatsapp_business_manager_messaging_limit"},
    ).json()
    assert spec_errors(meta_spec, "/components/schemas/PhoneNumberInfo", tiers) == []
    assert tiers["messaging_limit_tier"] == tiers["whatsapp_business_manager_messaging_limit"] == "TIER_250"
    sim.admin.put("/_sim/portfolios/+5511999990001", json={"tier": "TIER_2K"})  # configured: TIER_2K shows
    assert (
        client.get("/v23.0/5511999990001", params={"fields": "messaging_limit_tier"}).json()[
            "messaging_limit_tier"
        ]
        == "TIER_2K"
    )


def test_a_user_writing_first_opens_the_window(sim: Sim) -> None:
    client = sim.client("tok-b")
    body = {"messaging_product": "whatsapp", "to": "+5521900000009", "type": "text", "text": {"body": "yes?"}}
    meta_error(client.post(f"{PHONE_B}/messages", json=body), 400, 131047)
    wrote = sim.admin.post(
        "/_sim/channels/+5511999990002/inbound", json={"user": "+5521900000009", "body": "hello?"}
    )
    assert wrote.status_code == 200 and wrote.json()["user"] == "+5521900000009"
    assert client.post(f"{PHONE_B}/messages", json=body).status_code == 200
    assert sim.admin.get("/_sim/cloud/limit-log").json()["total"] == 0  # an answer, not business-initiated
    inbox = client.get("/messages/list", params={"from_me": "false"}).json()["messages"]
    assert [m["text"]["body"] for m in inbox] == ["hello?"]
    for phone, payload, status in (
        ("+5511999990002", {"user": "nope", "body": "x"}, 400),
        ("+5511999990002", {"user": "+5521900000009", "body": "  "}, 400),
        ("+5511999990002", {"user": "+5521900000009"}, 400),
        ("+5511000000000", {"user": "+5521900000009", "body": "x"}, 404),
    ):
        response = sim.admin.post(f"/_sim/channels/{phone}/inbound", json=payload)
        assert response.status_code == status, response.text
