"""CloudApiProvider against a real local HTTP server answering with Meta-shaped bodies."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

import pytest

from tests.http_fixture import Reply, ScriptedServer, closed_port_url, server
from warmup.core.errors import UserError
from warmup.providers.base import OutcomeAction as A
from warmup.providers.base import Provider, ProviderError
from warmup.providers.cloud_api import NO_METER, CloudApiProvider, PhoneQuality, limit_field
from warmup.providers.factory import make_provider

__all__ = ["server"]

TOKEN = "EAAGm0PX4ZCpsBAKfakeMetaToken1234567890abcdefABCDEF"
PHONE_ID = "106540352242922"
MESSAGES = f"/v23.0/{PHONE_ID}/messages"
NUMBER = f"/v23.0/{PHONE_ID}"


def accepted(
    wamid: str = "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA", status: str = "accepted"
) -> Reply:
    return Reply(
        200,
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": wamid, "message_status": status}],
        },
    )


def meta_error(status: int, code: int, message: str = "error", details: str = "") -> Reply:
    return Reply(
        status,
        {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": details},
                "fbtrace_id": "AbCdEf",
            }
        },
    )


@pytest.fixture
def provider(server: ScriptedServer) -> Any:
    with CloudApiProvider(TOKEN, PHONE_ID, base_url=server.base_url, timeout=2.0) as p:
        yield p


def test_send_text_posts_the_cloud_api_body(server: ScriptedServer, provider: CloudApiProvider) -> None:
    server.on("POST", MESSAGES, accepted("wamid.ABC"))
    result = provider.send_text("+1 650-555-1234", "Hello there", typing_seconds=5)
    assert (result.action, result.provider_message_id, result.http_status) == (A.OK, "wamid.ABC", 200)
    (request,) = server.calls("POST", MESSAGES)
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "text",
        "text": {"body": "Hello there", "preview_url": False},
    }
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"


def test_send_template(server: ScriptedServer, provider: CloudApiProvider) -> None:
    server.on("POST", MESSAGES, accepted("wamid.T1"))
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]
    result = provider.send_template("+16505551234", "warmup_hello", "pt_BR", components)
    assert result.action is A.OK and result.provider_message_id == "wamid.T1"
    body = server.calls("POST", MESSAGES)[0].json
    assert body["type"] == "template"
    assert body["template"] == {
        "name": "warmup_hello",
        "language": {"policy": "deterministic", "code": "pt_BR"},
        "components": components,
    }


def test_template_input_errors_do_not_call(server: ScriptedServer, provider: CloudApiProvider) -> None:
    assert provider.send_template("+16505551234", "", "en_US").action is A.FAIL
    assert provider.send_template("+16505551234", "x", "English").action is A.FAIL
    assert provider.send_template("nope", "x", "en_US").action is A.SKIP_RECIPIENT
    assert provider.send_template("+16505551234", "x", "en_US", [{"bad": float("nan")}]).action is A.FAIL
    assert server.calls("POST", MESSAGES) == []


def test_overlong_text_fails_without_a_call(server: ScriptedServer, provider: CloudApiProvider) -> None:
    result = provider.send_text("+16505551234", "x" * 4097)
    assert result.action is A.FAIL and "4096" in result.reason
    assert server.calls("POST", MESSAGES) == []


def test_held_message_is_accepted_with_a_reason(server: ScriptedServer, provider: CloudApiProvider) -> None:
    server.on("POST", MESSAGES, accepted("wamid.H", status="held_for_quality_assessment"))
    result = provider.send_text("+16505551234", "hi")
    assert result.action is A.OK and "held_for_quality_assessment" in result.reason


@pytest.mark.parametrize(
    ("status", "code", "action"),
    [(400, 130429, A.RETRY), (400, 131056, A.RETRY), (403, 4, A.RETRY), (400, 80007, A.RETRY),
     (400, 131048, A.THROTTLE), (400, 368, A.STOP_NUMBER), (400, 131031, A.STOP_NUMBER),
     (400, 131026, A.SKIP_RECIPIENT), (400, 555555, A.FAIL), (500, 555555, A.RETRY)],
)  # fmt: skip
def test_meta_codes_over_real_http(
    server: ScriptedServer, provider: CloudApiProvider, status: int, code: int, action: A
) -> None:
    server.on("POST", MESSAGES, meta_error(status, code, "Meta message", "Meta details"))
    result = provider.send_text("+16505551234", "hi")
    assert (result.action, result.code, result.http_status) == (action, str(code), status)
    assert "Meta message" in result.reason


@pytest.mark.parametrize(
    ("reply", "action"),
    [
        (Reply(200, "<html>ok</html>"), A.UNKNOWN),
        (Reply(200, {"messages": []}), A.UNKNOWN),
        (Reply(200, {"messages": [{"id": 5}]}), A.UNKNOWN),
        (
            Reply(200, {"messaging_product": "whatsapp", "messages": [{"id": "w"}]}, mode="truncate"),
            A.UNKNOWN,
        ),
        (Reply(200, {}, mode="drop"), A.UNKNOWN),
        (Reply(502, "<html>Bad Gateway</html>"), A.UNKNOWN),
        (Reply(503, b""), A.RETRY),
    ],
    ids=["html", "no-messages", "id-not-string", "truncated", "dropped", "html-502", "empty-503"],
)
def test_broken_answers(server: ScriptedServer, provider: CloudApiProvider, reply: Reply, action: A) -> None:
    server.on("POST", MESSAGES, reply)
    assert provider.send_text("+16505551234", "hi").action is action


def test_transport_failures() -> None:
    with CloudApiProvider(TOKEN, PHONE_ID, base_url=closed_port_url(), timeout=1.0) as provider:
        assert provider.send_text("+16505551234", "hi").action is A.RETRY
        assert provider.health().action is A.RETRY


def test_read_timeout_is_unknown(server: ScriptedServer) -> None:
    server.on("POST", MESSAGES, accepted())
    server.routes[("POST", MESSAGES)] = Reply(200, {"messages": [{"id": "w"}]}, delay=1.0)
    with CloudApiProvider(TOKEN, PHONE_ID, base_url=server.base_url, timeout=0.3) as provider:
        assert provider.send_text("+16505551234", "hi").action is A.UNKNOWN


@pytest.mark.parametrize(
    ("body", "action", "status"),
    [
        ({"quality_rating": "GREEN", "status": "CONNECTED"}, A.OK, "CONNECTED/GREEN"),
        ({"quality_rating": "NA", "status": "CONNECTED"}, A.OK, "CONNECTED/NA"),
        ({"quality_rating": "YELLOW", "status": "CONNECTED"}, A.THROTTLE, "CONNECTED/YELLOW"),
        ({"quality_rating": "RED", "status": "CONNECTED"}, A.STOP_NUMBER, "CONNECTED/RED"),
        ({"quality_rating": "GREEN", "status": "FLAGGED"}, A.STOP_NUMBER, "FLAGGED/GREEN"),
        ({"quality_rating": "YELLOW", "status": "RESTRICTED"}, A.STOP_NUMBER, "RESTRICTED/YELLOW"),
        ({"quality_rating": "GREEN", "status": "PENDING"}, A.RETRY, "PENDING/GREEN"),
        ({"quality_rating": "PURPLE"}, A.RETRY, "PURPLE"),
        ({"id": PHONE_ID}, A.RETRY, "unreadable"),
        (
            {"quality_rating": "GREEN", "status": "CONNECTED", "messaging_limit_tier": "TIER_1K"},
            A.OK,
            "CONNECTED/GREEN/TIER_1K",
        ),
    ],
)
def test_health_from_quality_and_status(
    server: ScriptedServer, provider: CloudApiProvider, body: dict[str, Any], action: A, status: str
) -> None:
    server.on("GET", NUMBER, Reply(200, body))
    health = provider.health()
    assert (health.action, health.status) == (action, status)
    (request,) = server.calls("GET", NUMBER)
    assert request.query["fields"] == ["quality_rating,status,messaging_limit_tier"]


@pytest.mark.parametrize(
    ("reply", "action"),
    [(meta_error(401, 190, "token expired"), A.STOP_NUMBER), (meta_error(500, 2), A.RETRY),
     (Reply(200, "<html/>"), A.RETRY), (meta_error(400, 100), A.RETRY)],
)  # fmt: skip
def test_health_errors(server: ScriptedServer, provider: CloudApiProvider, reply: Reply, action: A) -> None:
    server.on("GET", NUMBER, reply)
    assert provider.health().action is action


def test_quality_and_reading(server: ScriptedServer, provider: CloudApiProvider) -> None:
    server.on("GET", NUMBER, Reply(200, {"quality_rating": "yellow", "status": "CONNECTED"}))
    quality = provider.quality()
    assert quality.quality_rating == "YELLOW"
    assert quality.signals() == {"quality": "yellow", "status": "connected", "tier": None}
    assert provider.fetch_reading(date(2026, 11, 23)) is None
    assert provider.last_reading_error == NO_METER
    assert provider.list_inbound(datetime(2026, 11, 23, tzinfo=UTC)) == []


@pytest.mark.parametrize(
    ("version", "field"),
    [("v23.0", "messaging_limit_tier"), ("v24.1", "messaging_limit_tier"), ("v100.0", "messaging_limit_tier"),
     ("v22.0", "whatsapp_business_manager_messaging_limit"),
     ("v21.0", "whatsapp_business_manager_messaging_limit")],
)  # fmt: skip
def test_the_messaging_limit_field_is_the_versions_own(
    server: ScriptedServer, version: str, field: str
) -> None:
    """A Graph API version refuses a field it does not have: only that version's limit field is asked
    for, and read (TIER_2K too, which the v23 enum lacks)."""
    path = f"/{version}/{PHONE_ID}"
    server.on("GET", path, Reply(200, {"quality_rating": "GREEN", "status": "CONNECTED", field: "TIER_2K"}))
    with CloudApiProvider(TOKEN, PHONE_ID, base_url=server.base_url, version=version) as provider:
        assert limit_field(version) == field
        assert provider.quality().messaging_limit == "TIER_2K"
        assert provider.quality().signals()["tier"] == "TIER_2K"
    (request, _) = server.calls("GET", path)
    assert request.query["fields"] == [f"quality_rating,status,{field}"]


@pytest.mark.parametrize("version", ["23.0", "v23", "latest", "v23.0/../x", ""])
def test_a_version_that_is_not_one_is_refused(version: str) -> None:
    with pytest.raises(ValueError, match=r"looks like v23\.0"):
        CloudApiProvider(TOKEN, PHONE_ID, version=version)


@pytest.mark.parametrize(
    ("quality", "signals"),
    [(PhoneQuality("GREEN", "CONNECTED", "TIER_250"),
      {"quality": "green", "status": "connected", "tier": "TIER_250"}),
     (PhoneQuality("NA", "PENDING", "TIER_NOT_SET"), {"quality": None, "status": "pending", "tier": None}),
     (PhoneQuality("UNKNOWN", "MESSAGING_LIMIT_TIER_1", None),
      {"quality": None, "status": None, "tier": None}),
     (PhoneQuality("PURPLE", "rate_limited", "TIER_UNLIMITED"),
      {"quality": None, "status": "rate_limited", "tier": "TIER_UNLIMITED"}),
     (PhoneQuality(None, "FLAGGED; DROP", "1000"), {"quality": None, "status": None, "tier": None})],
)  # fmt: skip
def test_signals_are_what_readings_hold(quality: PhoneQuality, signals: dict[str, str | None]) -> None:
    """Lower-case quality and status, the tier as the spec writes it; nothing for what is not one."""
    assert quality.signals() == signals


def test_quality_raises_provider_error(server: ScriptedServer, provider: CloudApiProvider) -> None:
    server.on("GET", NUMBER, meta_error(401, 190))
    with pytest.raises(ProviderError) as info:
        provider.quality()
    assert info.value.action is A.STOP_NUMBER and info.value.http_status == 401


def test_version_and_phone_number_id_shape_the_paths(server: ScriptedServer) -> None:
    server.on("POST", f"/v21.0/{PHONE_ID}/messages", accepted("wamid.V"))
    with CloudApiProvider(TOKEN, PHONE_ID, base_url=server.base_url, version="v21.0") as provider:
        assert provider.send_text("+16505551234", "hi").provider_message_id == "wamid.V"
    with pytest.raises(ValueError, match="phone_number_id"):
        CloudApiProvider(TOKEN, "../../me")


def test_factory(server: ScriptedServer) -> None:
    provider = make_provider("cloud_api", TOKEN, server.base_url, phone_number_id=PHONE_ID)
    try:
        assert isinstance(provider, CloudApiProvider) and isinstance(provider, Provider)
    finally:
        provider.close()
    with pytest.raises(UserError, match="phone_number_id"):
        make_provider("cloud_api", TOKEN)
    with pytest.raises(UserError, match="unknown provider"):
        make_provider("telegram", TOKEN)
    with pytest.raises(UserError, match="base URL"):
        make_provider("simulator", TOKEN)


def test_token_never_leaks(server: ScriptedServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.on("POST", MESSAGES, meta_error(401, 190, f"Invalid OAuth access token {TOKEN}", f"token={TOKEN}"))
    server.on("GET", NUMBER, meta_error(401, 190, f"Invalid token {TOKEN}"))
    with CloudApiProvider(TOKEN, PHONE_ID, base_url=server.base_url) as provider:
        texts = [repr(provider), provider.send_text("+16505551234", "hi").reason, provider.health().reason]
        with pytest.raises(ProviderError) as info:
            provider.quality()
        texts.append(str(info.value))
    texts.append(caplog.text)
    assert all(TOKEN not in t for t in texts)
    assert "***" in texts[1]
