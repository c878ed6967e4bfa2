"""The outcome tables: every Whapi status and Meta code named in the specs README, plus garbage."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.providers.base import OutcomeAction as A
from warmup.providers.base import SendResult, worst
from warmup.providers.errors import (
    MAX_REASON,
    MAX_RETRY_AFTER,
    META_CODES,
    classify_error_response,
    classify_transport_error,
    parse_retry_after,
)

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def whapi_body(code: int, message: str = "msg", details: str = "") -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()


def meta_body(code: int | str, message: str = "msg", details: str = "") -> bytes:
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": {"details": details},
                "fbtrace_id": "Axyz",
            }
        }
    ).encode()


WHAPI_CASES = [
    (400, A.FAIL),
    (401, A.STOP_NUMBER),
    (402, A.STOP_NUMBER),
    (403, A.SKIP_RECIPIENT),
    (404, A.FAIL),
    (408, A.RETRY),
    (409, A.RETRY),
    (413, A.FAIL),
    (418, A.FAIL),  # any other 4xx: the request itself is wrong
    (429, A.RETRY),
    (500, A.RETRY),
    (502, A.UNKNOWN),  # a proxy lost the upstream's answer: it may have been sent
    (503, A.RETRY),
    (504, A.UNKNOWN),
    (507, A.RETRY),
    (302, A.FAIL),
]


@pytest.mark.parametrize(("status", "action"), WHAPI_CASES)
def test_whapi_status_table(status: int, action: A) -> None:
    result = classify_error_response("whapi", status, {}, whapi_body(status, "Something", "detail here"))
    assert result.action is action
    assert result.http_status == status
    assert result.provider_message_id is None
    assert result.code == str(status)
    assert (
        f"HTTP {status}" in result.reason and "Something" in result.reason and "detail here" in result.reason
    )


META_CASES = [
    (429, 130429, A.RETRY),
    (400, 131056, A.RETRY),
    (400, 4, A.RETRY),
    (400, 80007, A.RETRY),
    (400, 131048, A.THROTTLE),
    (400, 368, A.STOP_NUMBER),
    (403, 131031, A.STOP_NUMBER),
    (400, 131026, A.SKIP_RECIPIENT),
    (401, 190, A.STOP_NUMBER),
    (400, 100, A.FAIL),
    (500, 131000, A.RETRY),
    # unknown codes fall back to the HTTP status
    (400, 987654, A.FAIL),
    (429, 987654, A.RETRY),
    (500, 987654, A.RETRY),
    (503, 987654, A.RETRY),
    (504, 987654, A.UNKNOWN),
    (401, 987654, A.STOP_NUMBER),
    (403, 987654, A.STOP_NUMBER),
]


@pytest.mark.parametrize(("status", "code", "action"), META_CASES)
def test_meta_code_table(status: int, code: int, action: A) -> None:
    result = classify_error_response("cloud_api", status, {}, meta_body(code, "Meta says no", "why"))
    assert result.action is action
    assert result.code == str(code)
    assert "Meta says no" in result.reason and "why" in result.reason


def test_meta_code_given_as_string_is_recognised() -> None:
    assert classify_error_response("cloud_api", 400, {}, meta_body("131026")).action is A.SKIP_RECIPIENT


def test_absurd_code_values_fall_back_to_the_status() -> None:
    for code in ("9" * 5000, 1.5, True, None, [131026]):
        result = classify_error_response("cloud_api", 400, {}, meta_body(code))  # type: ignore[arg-type]
        assert result.action is A.FAIL and result.code is None


def test_meta_code_wins_over_http_status() -> None:
    # 131048 arrives as HTTP 400 (which alone would be FAIL): the code decides
    assert classify_error_response("cloud_api", 400, {}, meta_body(131048)).action is A.THROTTLE


def test_pacing_codes_carry_a_retry_hint_when_no_header() -> None:
    for code in (4, 80007, 130429, 131056):
        result = classify_error_response("cloud_api", 400, {}, meta_body(code))
        assert result.retry_after == META_CODES[code].retry_after_hint
        assert result.retry_after is not None and result.retry_after > 0


def test_retry_after_header_seconds_is_honoured() -> None:
    result = classify_error_response("whapi", 429, {"retry-after": "17"}, whapi_body(429))
    assert result.action is A.RETRY and result.retry_after == 17.0


def test_retry_after_http_date_is_honoured() -> None:
    headers = {"retry-after": "Mon, 23 Nov 2026 12:02:00 GMT"}
    result = classify_error_response("whapi", 503, headers, b"", now=NOW)
    assert result.action is A.RETRY and result.retry_after == 120.0


def test_retry_after_is_ignored_for_non_retry_actions() -> None:
    result = classify_error_response("whapi", 401, {"retry-after": "30"}, whapi_body(401))
    assert result.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  5 ", 5.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("999999999", MAX_RETRY_AFTER),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Mon, 23 Nov 2026 11:00:00 GMT", 0.0),  # in the past: retry now
        ("Mon, 23 Nov 2026 12:00:30 GMT", 30.0),
        ("Mon, 99 Foo 2026 12:00:30 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("body", "ctype", "words"),
    [
        (b"", None, "empty body"),
        (b"<html><body>502 Bad Gateway</body></html>", "text/html", "unparseable text/html body"),
        (b'{"error": {"code": 500, "mess', "application/json", "unparseable application/json"),
        (b"\xff\xfe\x00garbage", None, "unparseable"),
        (b"[" * 100_000, "application/json", "unparseable"),  # nesting bomb
        (b"[1, 2, 3]", "application/json", "unparseable"),  # JSON, but not an error envelope
        (b'{"error": "flat string"}', "application/json", "unparseable"),
    ],
)
def test_garbage_error_bodies_map_by_status_and_say_so(body: bytes, ctype: str | None, words: str) -> None:
    headers = {"content-type": ctype} if ctype else {}
    for kind in ("whapi", "cloud_api"):
        result = classify_error_response(kind, 500, headers, body)  # type: ignore[arg-type]
        assert result.action is A.RETRY
        assert words in result.reason
        assert len(result.reason) <= MAX_REASON


def test_token_echoed_by_the_provider_is_redacted_from_the_reason() -> None:
    token = "SuperSecretToken9876543210abcdef"
    body = whapi_body(401, f"bad token {token}", f"Authorization: Bearer {token}")
    result = classify_error_response("whapi", 401, {}, body, secrets=[token])
    assert token not in result.reason
    assert "***" in result.reason


@given(status=st.integers(min_value=100, max_value=599), body=st.binary(max_size=300))
@settings(max_examples=150, deadline=None)
def test_any_status_and_body_maps_without_raising(status: int, body: bytes) -> None:
    for kind in ("whapi", "cloud_api"):
        result = classify_error_response(kind, status, {"retry-after": "x"}, body)  # type: ignore[arg-type]
        assert isinstance(result, SendResult)
        assert result.action in set(A)
        assert len(result.reason) <= MAX_REASON


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(status=st.sampled_from([400, 401, 403, 429, 500, 502]), error=json_values)
@settings(max_examples=150, deadline=None)
def test_any_json_error_envelope_maps_without_raising(status: int, error: object) -> None:
    body = json.dumps({"error": error}).encode()
    for kind in ("whapi", "cloud_api"):
        result = classify_error_response(kind, status, {}, body)  # type: ignore[arg-type]
        assert result.action in set(A)


REQUEST = httpx.Request("POST", "http://example.invalid/messages/text")

TRANSPORT_CASES = [
    (httpx.ConnectError("refused", request=REQUEST), A.RETRY),
    (httpx.ConnectTimeout("slow connect", request=REQUEST), A.RETRY),
    (httpx.PoolTimeout("pool", request=REQUEST), A.RETRY),
    (httpx.WriteTimeout("slow write", request=REQUEST), A.RETRY),
    (httpx.WriteError("broken pipe", request=REQUEST), A.RETRY),
    (httpx.ProxyError("proxy", request=REQUEST), A.RETRY),
    (httpx.ReadTimeout("slow answer", request=REQUEST), A.UNKNOWN),
    (httpx.ReadError("reset", request=REQUEST), A.UNKNOWN),
    (httpx.RemoteProtocolError("server disconnected", request=REQUEST), A.UNKNOWN),
    (httpx.DecodingError("bad gzip", request=REQUEST), A.UNKNOWN),
    (httpx.TooManyRedirects("loop", request=REQUEST), A.UNKNOWN),
    (httpx.UnsupportedProtocol("ftp://", request=REQUEST), A.STOP_NUMBER),
    (httpx.InvalidURL("bad url"), A.STOP_NUMBER),
    (httpx.LocalProtocolError("bad header", request=REQUEST), A.FAIL),
    (RuntimeError("something else"), A.UNKNOWN),
]


@pytest.mark.parametrize(("exc", "action"), TRANSPORT_CASES, ids=lambda v: type(v).__name__)
def test_transport_errors_split_on_whether_the_message_may_have_gone_out(exc: Exception, action: A) -> None:
    result = classify_transport_error(exc)
    assert result.action is action
    assert result.http_status is None and result.provider_message_id is None
    assert type(exc).__name__ in result.reason


def test_worst_picks_the_most_restrictive() -> None:
    assert worst() is A.OK
    assert worst(A.OK, A.THROTTLE, A.RETRY) is A.THROTTLE
    assert worst(A.THROTTLE, A.STOP_NUMBER) is A.STOP_NUMBER
