"""The `SimModel`'s Whapi operations without HTTP: validation, auth states, listing, settings, Meta info."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from tests.simulator.model_fixture import HOSTILE, T0, A, B, contact, model, send
from warmup.simulator import ChannelStatus, SimError


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"body": "x"}, 400),
        ({"to": "", "body": "x"}, 400),
        ({"to": "hello", "body": "x"}, 400),
        ({"to": "123", "body": "x"}, 400),
        ({"to": "120363000000000000@g.us", "body": "x"}, 400),
        ({"to": "+5521900000001"}, 400),
        ({"to": "+5521900000001", "body": "   "}, 400),
        ({"to": "+5521900000001", "body": 5}, 400),
        ({"to": "+5521900000001", "body": "x", "typing_time": 61}, 400),
        ({"to": "+5521900000001", "body": "x", "typing_time": -1}, 400),
        ({"to": "+5521900000001", "body": "x", "typing_time": "3"}, 400),
        ({"to": "+5521900000001", "body": "x", "typing_time": True}, 400),
        ({"to": "+5521900000001", "body": "x" * 4097}, 413),
        (["not", "an", "object"], 400),
    ],
)
def test_send_validation(payload: object, status: int) -> None:
    m = model()
    with pytest.raises(SimError) as err:
        m.send_text("tok-a", payload, T0)
    assert err.value.status == status
    assert set(err.value.envelope()["error"]) == {"code", "message", "details"}
    assert m.sends() == []


@pytest.mark.parametrize(
    "to", ["+5521900000001", "5521900000001", "5521900000001@s.whatsapp.net", "5521900000001@c.us"]
)
def test_send_accepts_phone_and_chat_id_forms(to: str) -> None:
    m = model()
    result = m.send_text("tok-a", {"to": to, "body": "hi", "typing_time": 0}, T0)
    assert result["message"]["chat_id"] == "5521900000001@s.whatsapp.net"  # type: ignore[index]
    assert [(r.to, r.typing_time) for r in m.sends()] == [("+5521900000001", 0.0)]


def test_unknown_token_logged_out_forbidden_and_trial_limit() -> None:
    m = model(replace(A, trial_limit=1, forbidden=frozenset({"5521900000009"})), B)
    with pytest.raises(SimError) as err:
        send(m, "nope", B.phone, T0)
    assert err.value.status == 401
    with pytest.raises(SimError) as err:
        send(m, "tok-a", "+5521900000009", T0)
    assert err.value.status == 403
    send(m, "tok-a", B.phone, T0)
    with pytest.raises(SimError) as err:
        send(m, "tok-a", B.phone, T0)
    assert err.value.status == 402
    m.update_channel(B.phone, status=ChannelStatus.LOGGED_OUT, now=T0)
    with pytest.raises(SimError) as err:
        send(m, "tok-b", A.phone, T0)
    assert err.value.status == 401 and "logged out" in err.value.details
    assert m.health("tok-b", T0)["status"] == {
        "code": 3,
        "text": "QR",
        "details": "logged out: scan the QR code to log in again",
    }
    m.update_channel(B.phone, status=ChannelStatus.CONNECTED, now=T0)
    assert m.health("tok-b", T0)["status"]["text"] == "AUTH"


def test_list_paging_sorting_and_filters() -> None:
    m = model(behaviour=HOSTILE)
    for i in range(7):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=i), body=f"m{i}")
    now = T0 + timedelta(hours=1)
    desc = m.list_messages("tok-a", now, from_me=True, count=3)
    assert [x["text"]["body"] for x in desc["messages"]] == ["m6", "m5", "m4"]
    assert (desc["count"], desc["total"], desc["offset"]) == (3, 7, 0)
    asc = m.list_messages("tok-a", now, from_me=True, count=3, offset=3, sort="asc")
    assert [x["text"]["body"] for x in asc["messages"]] == ["m3", "m4", "m5"]
    since = m.list_messages("tok-a", now, time_from=(T0 + timedelta(minutes=5)).timestamp(), sort="asc")
    assert [x["text"]["body"] for x in since["messages"]] == ["m5", "m6"]
    assert m.list_messages("tok-a", now, from_me=False)["total"] == 0
    for bad in ({"count": 0}, {"count": 501}, {"offset": -1}, {"sort": "up"}):
        with pytest.raises(SimError):
            m.list_messages("tok-a", now, **bad)  # type: ignore[arg-type]


def test_settings_validate_webhooks() -> None:
    m = model()
    result = m.update_settings("tok-a", {"webhooks": [{"url": "https://example.test/h"}]})
    assert result["changes"] == ["webhooks"]
    assert (
        result["before_update"] == {}
        and m.get_settings("tok-a")["webhooks"][0]["url"] == "https://example.test/h"
    )
    for bad in ({"webhooks": "x"}, {"webhooks": [{"url": "ftp://x"}]}, {"webhooks": [{}]}, []):
        with pytest.raises(SimError) as err:
            m.update_settings("tok-a", bad)
        assert err.value.status == 400


def test_meta_phone_info_follows_status_and_quality() -> None:
    m = model(behaviour=replace(HOSTILE, block_rate=1.0))  # nobody answers, everybody blocks
    fields = ["status", "messaging_limit_tier", "whatsapp_business_manager_messaging_limit"]
    info = m.phone_info("tok-a", "5511999990001", fields, T0)
    assert info == {
        "id": "5511999990001",
        "display_phone_number": A.phone,
        "verified_name": "A",
        "quality_rating": "GREEN",
        "status": "CONNECTED",
        "messaging_limit_tier": "TIER_250",
        "whatsapp_business_manager_messaging_limit": "TIER_250",
    }
    for i in range(20):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=i))
    m.advance(T0 + timedelta(hours=1))  # the blocks come due
    info = m.phone_info("tok-a", "5511999990001", ["status"], T0 + timedelta(hours=1))
    assert (info["quality_rating"], info["status"]) == ("RED", "CONNECTED")  # RED, not yet for long
    later = T0 + timedelta(hours=2)
    assert m.phone_info("tok-a", "5511999990001", ["status"], later)["status"] == "FLAGGED"
    m.update_channel(A.phone, status=ChannelStatus.BANNED, now=later)
    assert m.phone_info("tok-a", "5511999990001", ["status"], later)["status"] == "BANNED"
    for bad_id, bad_fields in (("5511999990002", []), ("5511999990001", ["nope"])):
        with pytest.raises(SimError) as err:
            m.phone_info("tok-a", bad_id, bad_fields, later)
        assert err.value.status == 400
