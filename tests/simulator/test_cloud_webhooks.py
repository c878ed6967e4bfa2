"""Cloud API webhooks over real HTTP: Meta's `whatsapp_business_account` payloads, signed with the app
secret, received by a real server, checked against the v23 spec and read by the product's own parser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from tests.providers.test_conformance import Spec, errors_of
from tests.simulator.cloud_fixture import (
    P1,
    P2,
    SECRET,
    SOLO,
    CloudReceiver,
    cloud_sim,
    meta_error,
    signed_by,
    template,
    text,
)
from tests.simulator.model_fixture import FRIENDLY, HOSTILE, contact
from warmup.providers.webhooks import WebhookError, parse_cloud_webhook, verify_cloud_signature
from warmup.simulator import CloudConfig, Template


@pytest.fixture(scope="module")
def meta_spec() -> Spec:
    from tests.providers.test_conformance import _meta

    return _meta()


@pytest.fixture
def receiver() -> Iterator[CloudReceiver]:
    hook = CloudReceiver()
    try:
        yield hook
    finally:
        hook.close()


def spec_errors(meta_spec: Spec, payload: dict[str, Any]) -> list[str]:
    """A `messages` webhook against the spec. Inbound message ITEMS against the spec's inbound base
    (`BaseMessageProperties_1`: from, id, timestamp) and text body, because its `IncomingMessage` maps
    `text` to the OUTBOUND `TextMessage` (see tests/providers/test_conformance.py)."""
    errors: list[str] = []
    entries = []
    for entry in payload["entry"]:
        changes = []
        for change in entry["changes"]:
            value = dict(change["value"])
            for item in value.get("messages", []):
                errors += errors_of(meta_spec.validator("/components/schemas/BaseMessageProperties_1"), item)
                assert item["type"] == "text" and isinstance(item["text"]["body"], str)
            if "messages" in value:
                value["messages"] = []
            changes.append({**change, "value": value})
        entries.append({**entry, "changes": changes})
    return errors + errors_of(
        meta_spec.validator("/components/schemas/WebhookPayload"), {**payload, "entry": entries}
    )


def cloud(receiver: CloudReceiver, **kw: Any) -> CloudConfig:
    return CloudConfig(
        portfolios={"acme": "TIER_250"}, webhook_url=receiver.url, app_secret=SECRET, auto_upgrade=False, **kw
    )


def test_statuses_and_replies_arrive_signed_in_cloud_format(receiver: CloudReceiver, meta_spec: Spec) -> None:
    with cloud_sim(FRIENDLY, cloud(receiver)) as sim:
        response = sim.send(P1, template(contact(1)))
        assert response.status_code == 200
        message_id = response.json()["messages"][0]["id"]
        sim.clock.advance(timedelta(hours=1))

        def complete(r: CloudReceiver) -> bool:
            statuses = [s["status"] for v in r.changes("messages") for s in v.get("statuses", [])]
            return statuses == ["sent", "delivered", "read"] and any(
                "messages" in v for v in r.changes("messages")
            )

        receiver.wait_for(complete)
        webhook = sim.admin.get("/_sim/cloud/webhook").json()
        assert webhook == {"url": receiver.url, "app_secret_set": True}  # the secret never comes back
        (acme,) = [p for p in sim.admin.get("/_sim/portfolios").json()["portfolios"] if p["name"] == "acme"]
        events = []
        for post in receiver.posts:
            assert signed_by(post, SECRET)
            verify_cloud_signature(post.raw, post.signature, SECRET)  # what the product's receiver runs
            with pytest.raises(WebhookError):
                verify_cloud_signature(post.raw, post.signature, "another-secret")
            assert post.body["object"] == "whatsapp_business_account"
            assert [entry["id"] for entry in post.body["entry"]] == [acme["waba_id"]]
            assert spec_errors(meta_spec, post.body) == []
            (change,) = post.changes
            assert change["field"] == "messages"
            assert change["value"]["metadata"] == {
                "display_phone_number": P1.digits,
                "phone_number_id": P1.digits,
            }
            events += parse_cloud_webhook(post.raw)
        statuses = [(e.provider_message_id, e.status, e.chat_phone) for e in events if e.kind == "status"]
        assert statuses == [(message_id, s, contact(1)) for s in ("sent", "delivered", "read")]
        (reply,) = [e for e in events if e.kind == "message"]
        assert reply.chat_phone == contact(1) and reply.text
        (value,) = [v for v in receiver.changes("messages") if "messages" in v]
        assert value["contacts"] == [{"profile": {"name": "Contact 0001"}, "wa_id": contact(1)[1:]}]
        # the reply opened the customer-service window: free-form text is allowed now
        assert sim.send(P1, text(contact(1))).status_code == 200


def test_marketing_template_over_the_per_user_limit_fails_with_131049(receiver: CloudReceiver) -> None:
    templates = (Template("hello_world", "en_US"), Template("promo", "pt_BR", "MARKETING"))
    with cloud_sim(HOSTILE, cloud(receiver, templates=templates)) as sim:
        assert sim.send(P1, template(contact(7), "promo", "pt_BR")).status_code == 200
        second = sim.send(P2, template(contact(7), "promo", "pt_BR"))  # Meta accepts it, then drops it
        assert second.status_code == 200
        dropped = second.json()["messages"][0]["id"]
        assert sim.send(P2, template(contact(8), "promo", "pt_BR")).status_code == 200  # another user: fine

        def failed(r: CloudReceiver) -> list[dict[str, Any]]:
            return [
                s for v in r.changes("messages") for s in v.get("statuses", []) if s["status"] == "failed"
            ]

        receiver.wait_for(lambda r: bool(failed(r)))
        (status,) = failed(receiver)
        assert status["id"] == dropped
        assert status["errors"][0]["code"] == 131049
        assert status["errors"][0]["error_data"]["details"]
        post = next(p for p in receiver.posts if b'"failed"' in p.raw)
        (event,) = parse_cloud_webhook(post.raw)
        assert event.status == "failed" and event.error is not None and event.error.startswith("131049")
        limit_log = sim.limit_log()
        assert dropped not in {r["message_id"] for r in limit_log}  # never delivered: not counted
        assert [r["to"] for r in limit_log] == [contact(7), contact(8)]


def test_quality_falls_with_blocks_and_the_quality_webhook_is_posted(receiver: CloudReceiver) -> None:
    with cloud_sim(replace(FRIENDLY, block_rate=0.0), cloud(receiver, spam_per_hour=3)) as sim:
        for i in range(25):
            assert sim.send(SOLO, template(contact(i))).status_code == 200
        sim.clock.advance(timedelta(hours=1))  # everybody answered
        info = sim.phone(SOLO, "status")
        assert (info["quality_rating"], info["status"]) == ("GREEN", "CONNECTED")

        def quality_events(r: CloudReceiver) -> list[str]:
            return [v["event"] for v in r.changes("phone_number_quality_update")]

        block = sim.admin.post(f"/_sim/channels/{SOLO.phone}/blocks", json={"user": contact(1)})
        assert block.json() == {"blocked": True, "user": contact(1)}
        assert sim.phone(SOLO)["quality_rating"] == "YELLOW"  # 1 block in 25 sends
        receiver.wait_for(lambda r: quality_events(r) == ["FLAGGED"])
        sim.admin.post(f"/_sim/channels/{SOLO.phone}/blocks", json={"user": contact(2)})
        assert sim.phone(SOLO)["quality_rating"] == "RED"  # 2 in 25
        assert sim.phone(SOLO)["status"] == "CONNECTED"  # RED, but not for long yet
        receiver.wait_for(lambda r: quality_events(r) == ["FLAGGED", "FLAGGED"])
        value = receiver.changes("phone_number_quality_update")[-1]
        assert value == {
            "display_phone_number": SOLO.digits,
            "event": "FLAGGED",
            "current_limit": "TIER_250",
            "max_daily_conversations_per_business": "TIER_250",
        }
        # RED: the spam rate limit allows few business-initiated messages; answers in the window still go
        for i in range(3):
            assert sim.send(SOLO, template(contact(100 + i))).status_code == 200
        error = meta_error(sim.send(SOLO, template(contact(200))), 400, 131048)
        assert "quality rating RED" in error["error_data"]["details"]
        assert sim.send(SOLO, text(contact(3), "still talking")).status_code == 200
        sim.clock.advance(timedelta(hours=1, minutes=1))
        sim.tick()
        assert sim.phone(SOLO)["status"] == "FLAGGED"  # RED for an hour
        receiver.wait_for(lambda r: quality_events(r) == ["FLAGGED"] * 3)
        override = sim.admin.patch(f"/_sim/channels/{SOLO.phone}", json={"quality": "GREEN"})
        assert override.json()["cloud"]["quality_rating"] == "GREEN"
        assert sim.phone(SOLO)["status"] == "CONNECTED"
        receiver.wait_for(lambda r: quality_events(r)[-1:] == ["UNFLAGGED"])
        assert all(signed_by(p, SECRET) for p in receiver.posts)


def test_tier_changes_and_alerts_post_their_webhooks(receiver: CloudReceiver) -> None:
    with cloud_sim(HOSTILE, cloud(receiver)) as sim:
        response = sim.admin.put("/_sim/portfolios/acme", json={"tier": "TIER_1K"})
        assert response.status_code == 200
        assert response.json()["tier"] == "TIER_1K" and response.json()["limit"] == 1000
        receiver.wait_for(lambda r: len(r.changes("phone_number_quality_update")) == 2)
        (capability,) = receiver.changes("business_capability_update")
        assert capability == {
            "max_daily_conversation_per_phone": 1000,
            "max_daily_conversations_per_business": "TIER_1K",
            "max_phone_numbers_per_waba": 25,
        }
        updates = receiver.changes("phone_number_quality_update")
        assert sorted(u["display_phone_number"] for u in updates) == [P1.digits, P2.digits]
        assert all(
            u["event"] == "UPGRADE" and u["old_limit"] == "TIER_250" and u["current_limit"] == "TIER_1K"
            for u in updates
        )
        assert sim.phone(P2)["messaging_limit_tier"] == "TIER_1K"
        sim.admin.put("/_sim/portfolios/acme", json={"tier": "TIER_50"})
        receiver.wait_for(lambda r: len(r.changes("phone_number_quality_update")) == 4)
        assert {u["event"] for u in receiver.changes("phone_number_quality_update")[2:]} == {"DOWNGRADE"}
        assert receiver.changes("business_capability_update")[-1]["max_daily_conversation_per_phone"] == 50
        alert = {
            "phone": P1.phone,
            "alert_type": "INCREASED_CAPABILITIES_ELIGIBILITY_NEED_MORE_INFO",
            "alert_description": "Additional verification is required for your business.",
            "alert_severity": "CRITICAL",
        }
        assert sim.admin.post("/_sim/cloud/alerts", json=alert).status_code == 200
        receiver.wait_for(lambda r: bool(r.changes("account_alerts")))
        assert receiver.changes("account_alerts") == [
            {
                "entity_type": "PHONE_NUMBER",
                "entity_id": P1.digits,
                "alert_info": {
                    "alert_severity": "CRITICAL",
                    "alert_status": "ACTIVE",
                    "alert_type": alert["alert_type"],
                    "alert_description": alert["alert_description"],
                },
            }
        ]
        account_posts = [p for p in receiver.posts if p.changes[0]["field"] != "messages"]
        assert all(
            isinstance(p.body["entry"][0]["time"], int) and signed_by(p, SECRET) for p in account_posts
        )
        notices = sim.admin.get("/_sim/cloud/notices").json()["notices"]
        assert [n["field"] for n in notices].count("business_capability_update") == 2
        bad = (
            ("/_sim/portfolios/acme", {"tier": "TIER_3K"}),
            ("/_sim/cloud/alerts", {**alert, "alert_severity": "LOUD"}),
            ("/_sim/cloud/alerts", {**alert, "portfolio": "acme"}),
            ("/_sim/cloud/webhook", {"url": "ftp://nope"}),
        )
        for path, body in bad:
            method = sim.admin.post if path.endswith("alerts") else sim.admin.put
            response = method(path, json=body)
            assert response.status_code == 400, (path, response.text)
            assert "Traceback" not in response.text
