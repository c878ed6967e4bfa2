"""Webhook parsing (Whapi, Cloud API), the Cloud API signature, and garbage that must never crash."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.providers.base import Inbound
from warmup.providers.webhooks import (
    MAX_WEBHOOK_BYTES,
    WebhookError,
    parse_cloud_webhook,
    parse_whapi_webhook,
    phone_from_chat_id,
    verify_cloud_signature,
)
from warmup.secrets import Secret

# Spec-shaped samples (tests/providers/test_conformance.py validates them against the published schemas).
WHAPI_MESSAGES: dict[str, Any] = {
    "messages": [
        {
            "id": "PsqXn5SAD5v7HRA-wD3nxCl5Q",
            "type": "text",
            "chat_id": "5511988887777@s.whatsapp.net",
            "from": "5511988887777",
            "from_me": False,
            "from_name": "Ana",
            "timestamp": 1795000000,
            "source": "mobile",
            "status": "delivered",
            "text": {"body": "Oi! Tudo bem por aqui"},
            "context": {"quoted_id": "Sim000000000001-1999990001"},
        },
        {
            "id": "GroupMsg-AbCdEfGh",
            "type": "text",
            "chat_id": "120363025343298765@g.us",
            "from_me": False,
            "timestamp": 1795000001,
            "text": {"body": "group chatter"},
        },
        {
            "id": "OwnMsg-AbCdEfGhIj",
            "type": "image",
            "chat_id": "5511988887777@s.whatsapp.net",
            "from_me": True,
            "timestamp": 1795000002,
        },
    ],
    "event": {"type": "messages", "method": "post"},
    "channel_id": "MANTIS-M72HC",
}
WHAPI_STATUSES: dict[str, Any] = {
    "statuses": [
        {
            "id": "Sim000000000001-1999990001",
            "code": 3,
            "status": "delivered",
            "recipient_id": "5511988887777@s.whatsapp.net",
            "timestamp": "1795000100",
        },
        {
            "id": "Sim000000000002-1999990001",
            "code": 0,
            "status": "failed",
            "recipient_id": "5511988887776@s.whatsapp.net",
            "timestamp": "1795000101",
            "errors": [{"code": 403, "message": "forbidden recipient"}],
        },
    ],
    "event": {"type": "statuses", "method": "post"},
    "channel_id": "MANTIS-M72HC",
}
CLOUD_MESSAGES: dict[str, Any] = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": "106540352242922",
                        },
                        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                        "messages": [
                            {
                                "from": "16505551234",
                                "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                                "timestamp": "1749416383",
                                "type": "text",
                                "text": {"body": "Does it come in another color?"},
                                "context": {"from": "15550783881", "id": "wamid.OURS123"},
                            }
                        ],
                    },
                }
            ],
        }
    ],
}
CLOUD_STATUSES: dict[str, Any] = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": "106540352242922",
                        },
                        "statuses": [
                            {
                                "id": "wamid.OURS123",
                                "status": "failed",
                                "timestamp": "1750263773",
                                "recipient_id": "16505551234",
                                "errors": [
                                    {
                                        "code": 131026,
                                        "title": "Message undeliverable",
                                        "message": "Message undeliverable",
                                        "error_data": {"details": "Message Undeliverable."},
                                    }
                                ],
                            },
                            {
                                "id": "wamid.OURS124",
                                "status": "read",
                                "timestamp": "1750263774",
                                "recipient_id": "16505551234",
                            },
                        ],
                    },
                },
                {"field": "group_lifecycle_update", "value": {"groups": []}},
            ],
        }
    ],
}


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def test_whapi_messages() -> None:
    events = parse_whapi_webhook(json.dumps(WHAPI_MESSAGES).encode())
    assert events == [
        Inbound(
            kind="message",
            provider_message_id="PsqXn5SAD5v7HRA-wD3nxCl5Q",
            chat_phone="+5511988887777",
            from_me=False,
            text="Oi! Tudo bem por aqui",
            timestamp=at(1795000000),
            status="delivered",
            ref_message_id="Sim000000000001-1999990001",
        ),
        Inbound(
            kind="message",
            provider_message_id="OwnMsg-AbCdEfGhIj",
            chat_phone="+5511988887777",
            from_me=True,
            text=None,
            timestamp=at(1795000002),
        ),
    ]  # the group message is skipped


def test_whapi_statuses() -> None:
    delivered, failed = parse_whapi_webhook(WHAPI_STATUSES)
    assert (delivered.kind, delivered.provider_message_id, delivered.status) == (
        "status",
        "Sim000000000001-1999990001",
        "delivered",
    )
    assert delivered.chat_phone == "+5511988887777" and delivered.timestamp == at(1795000100)
    assert failed.status == "failed" and failed.error == "403: forbidden recipient"


def test_cloud_messages_and_statuses() -> None:
    (message,) = parse_cloud_webhook(json.dumps(CLOUD_MESSAGES))
    assert message.kind == "message" and not message.from_me
    assert message.chat_phone == "+16505551234" and message.text == "Does it come in another color?"
    assert message.ref_message_id == "wamid.OURS123" and message.timestamp == at(1749416383)
    failed, read = parse_cloud_webhook(CLOUD_STATUSES)
    assert (failed.provider_message_id, failed.status, failed.error) == (
        "wamid.OURS123",
        "failed",
        "131026: Message undeliverable",
    )
    assert read.status == "read" and read.chat_phone == "+16505551234"


def test_cloud_system_messages_are_skipped() -> None:
    payload = copy.deepcopy(CLOUD_MESSAGES)
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"] = [
        {"from": "16505551234", "id": "wamid.SYS", "timestamp": "1749416383", "type": "system",
         "system": {"body": "User changed number", "type": "user_changed_number"}}
    ]  # fmt: skip
    assert parse_cloud_webhook(payload) == []


def test_non_text_cloud_message_has_no_text() -> None:
    payload = copy.deepcopy(CLOUD_MESSAGES)
    msg = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    msg["type"] = "image"
    msg["image"] = {"id": "123", "mime_type": "image/jpeg"}
    (event,) = parse_cloud_webhook(payload)
    assert event.text is None


def mutate(payload: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    clone = copy.deepcopy(payload)
    node: Any = clone
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return clone


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (mutate(WHAPI_MESSAGES, ("messages", 0, "id"), KeyError), "'id' must be a non-empty string"),
        (mutate(WHAPI_MESSAGES, ("messages", 0, "timestamp"), "yesterday"), "timestamp must be unix seconds"),
        (mutate(WHAPI_MESSAGES, ("messages", 0, "timestamp"), 1795000000000), "timestamp out of range"),
        (mutate(WHAPI_MESSAGES, ("messages", 0, "timestamp"), -5), "timestamp out of range"),
        (mutate(WHAPI_MESSAGES, ("messages", 0, "timestamp"), 10**400), "timestamp out of range"),
        (mutate(WHAPI_STATUSES, ("statuses", 0, "timestamp"), "9" * 5000), "timestamp must be unix seconds"),
        (mutate(WHAPI_MESSAGES, ("messages", 0, "from_me"), "no"), "'from_me' must be a boolean"),
        (mutate(WHAPI_MESSAGES, ("messages",), {"a": 1}), "'messages' must be a list"),
        (mutate(WHAPI_MESSAGES, ("messages", 1), "text"), "messages[1]: must be an object"),
        (mutate(WHAPI_STATUSES, ("statuses", 0, "status"), None), "'status' must be a non-empty string"),
    ],
)
def test_whapi_malformed_is_rejected_whole(payload: dict[str, Any], words: str) -> None:
    with pytest.raises(WebhookError) as info:
        parse_whapi_webhook(json.dumps(payload).encode())
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (mutate(CLOUD_MESSAGES, ("object",), "page"), "not a WhatsApp Business webhook"),
        (mutate(CLOUD_MESSAGES, ("entry",), "x"), "'entry' must be a list"),
        (mutate(CLOUD_MESSAGES, ("entry", 0, "changes", 0, "value"), []), "value: must be an object"),
        (mutate(CLOUD_MESSAGES, ("entry", 0, "changes", 0, "value", "messages", 0, "from"), 1), "'from'"),
        (mutate(CLOUD_STATUSES, ("entry", 0, "changes", 0, "value", "statuses", 0, "id"), ""), "'id'"),
    ],
)
def test_cloud_malformed_is_rejected_whole(payload: dict[str, Any], words: str) -> None:
    with pytest.raises(WebhookError) as info:
        parse_cloud_webhook(payload)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"not json", b"[1,2]", b"null", b'"text"', b"\xff\xfe", b"[" * 50_000, b'{"messages": '],
)
def test_garbage_bodies_raise_webhook_error(raw: bytes) -> None:
    for parse in (parse_whapi_webhook, parse_cloud_webhook):
        with pytest.raises(WebhookError):
            parse(raw)


def test_oversized_body_is_rejected_before_parsing() -> None:
    raw = b'{"messages": []' + b" " * MAX_WEBHOOK_BYTES + b"}"
    with pytest.raises(WebhookError, match="too large"):
        parse_whapi_webhook(raw)
    assert parse_whapi_webhook(b'{"messages": []}', max_bytes=20) == []
    with pytest.raises(WebhookError, match="too large"):
        parse_whapi_webhook(b'{"messages": [], "x": 1}', max_bytes=20)


def test_phone_from_chat_id() -> None:
    assert phone_from_chat_id("5511988887777@s.whatsapp.net") == "+5511988887777"
    assert phone_from_chat_id("5511988887777@c.us") == "+5511988887777"
    assert phone_from_chat_id("+16505551234") == "+16505551234"
    for value in ("120363025343298765@g.us", "123@s.whatsapp.net", "abc", None, 16505551234, "٣٣٣٣٣٣٣٣"):
        assert phone_from_chat_id(value) is None


# --- signature -------------------------------------------------------------------------------------

APP_SECRET = "meta-app-secret-0123456789abcdef"


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_accepts_the_right_one() -> None:
    body = json.dumps(CLOUD_MESSAGES).encode()
    verify_cloud_signature(body, sign(body), APP_SECRET)
    verify_cloud_signature(body, sign(body).upper().replace("SHA256=", "sha256="), Secret(APP_SECRET))


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "md5=abcdef", "sha256=deadbeef", "nonsense", "sha256=" + "0" * 64, "sha256=ü" * 3],
)
def test_signature_rejects_wrong_or_malformed(header: str | None) -> None:
    with pytest.raises(WebhookError):
        verify_cloud_signature(b"{}", header, APP_SECRET)


def test_signature_rejects_a_changed_body_or_other_secret() -> None:
    body = json.dumps(CLOUD_MESSAGES).encode()
    header = sign(body)
    with pytest.raises(WebhookError, match="does not match"):
        verify_cloud_signature(body + b" ", header, APP_SECRET)
    with pytest.raises(WebhookError, match="does not match"):
        verify_cloud_signature(body, header, "another-secret")


# --- fuzz ------------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
keys = st.sampled_from(
    ["messages", "statuses", "object", "entry", "changes", "value", "field", "id", "chat_id", "from_me",
     "timestamp", "text", "body", "status", "recipient_id", "from", "type", "context", "errors"]
)  # fmt: skip
shaped = st.recursive(
    scalars | st.just("whatsapp_business_account") | st.just("messages") | st.just("1795000000"),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


def check_never_crashes(value: Any) -> None:
    for parse in (parse_whapi_webhook, parse_cloud_webhook):
        try:
            events = parse(json.dumps(value).encode() if not isinstance(value, bytes) else value)
        except WebhookError:
            continue
        assert all(isinstance(e, Inbound) and e.timestamp.tzinfo is not None for e in events)


@given(json_like)
@settings(max_examples=150, deadline=None)
def test_fuzz_random_json(value: Any) -> None:
    check_never_crashes(value)


@given(shaped)
@settings(max_examples=200, deadline=None)
def test_fuzz_payload_shaped_json(value: Any) -> None:
    check_never_crashes(value)
    check_never_crashes({"object": "whatsapp_business_account", "entry": [{"changes": [value]}]})
    check_never_crashes({"messages": [value], "statuses": [value]})


@given(st.binary(max_size=200))
@settings(max_examples=100, deadline=None)
def test_fuzz_random_bytes(raw: bytes) -> None:
    check_never_crashes(raw)
