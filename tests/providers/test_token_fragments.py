"""Issue 14 item 5: a token a provider echoes in a body is masked BEFORE any cut, wherever it sits.

Cutting first (the old `describe_body` cut the body to 80 bytes, then `clean_reason` masked) left the
part of a token before the cut in the reason (`warmup doctor` showed 20 of 25 characters). Every test
here puts the token at every offset and asserts that no 6-character fragment of it survives.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.http_fixture import Reply, ScriptedServer, server
from warmup.providers.base import OutcomeAction as A
from warmup.providers.cloud_api import CloudApiProvider
from warmup.providers.errors import classify_error_response, clean_reason, describe_body
from warmup.providers.whapi import WhapiProvider
from warmup.secrets import clip

__all__ = ["server"]

FRAGMENT = 6
# tokens are upper case and digits; bodies never use those characters, so any fragment found in a
# result came from the token and not from the body or the fixed words around it
TOKEN_CHARS = string.ascii_uppercase + string.digits
BODY_CHARS = string.ascii_lowercase + " \n\t<>/=\"'.,;:!?-_()[]{}éü€漢😀"
WHAPI_TOKEN = "TK7Q2ZP9XW4R8M3N6B5V1C0L2H7J9D4F"  # 32 characters, shaped like a Whapi token


def fragments(token: str) -> set[str]:
    return {token[i : i + FRAGMENT] for i in range(len(token) - FRAGMENT + 1)}


def assert_no_fragment(token: str, text: str) -> None:
    leaked = sorted(f for f in fragments(token) if f in text)
    assert not leaked, f"fragments {leaked} of the token in {text!r}"


def with_token(body: str, token: str, offset: int) -> bytes:
    offset = min(offset, len(body))
    return (body[:offset] + token + body[offset:]).encode()


tokens = st.text(alphabet=TOKEN_CHARS, min_size=FRAGMENT, max_size=60)
bodies = st.text(alphabet=BODY_CHARS, max_size=400)


@settings(max_examples=300, deadline=None)
@given(
    token=tokens,
    body=bodies,
    offset=st.integers(min_value=0, max_value=400),
    status=st.sampled_from([400, 500, 502]),
)
def test_no_token_fragment_in_any_reason(token: str, body: str, offset: int, status: int) -> None:
    raw = with_token(body, token, offset)
    assert_no_fragment(token, describe_body(raw, "text/html; charset=utf-8", [token]))
    for kind in ("whapi", "cloud_api"):
        result = classify_error_response(kind, status, {"content-type": "text/html"}, raw, [token])
        assert_no_fragment(token, result.reason)
    text = raw.decode()
    for limit in (1, 40, 80, 300):
        assert_no_fragment(token, clip(text, limit, [token]))
    assert_no_fragment(token, clean_reason(text * 3, [token]))


def test_the_red_team_body_at_every_offset() -> None:
    """The reproducer: an HTML error page that echoes the token, the token moved one byte at a time
    across the old 80-byte cut (and across the 300-character cap of a reason)."""
    page = "<html><head><title>401 unauthorized</title></head><body>bad token: </body></html>" * 5
    for offset in range(len(page) + 1):
        raw = with_token(page, WHAPI_TOKEN, offset)
        result = classify_error_response("whapi", 401, {"content-type": "text/html"}, raw, [WHAPI_TOKEN])
        assert_no_fragment(WHAPI_TOKEN, result.reason)
        assert_no_fragment(WHAPI_TOKEN, describe_body(raw, "text/html", [WHAPI_TOKEN]))


def test_the_snippet_still_quotes_the_body_around_the_mask() -> None:
    raw = b"<html>denied for " + WHAPI_TOKEN.encode() + b" sorry</html>"
    assert describe_body(raw, "text/html", [WHAPI_TOKEN]) == (
        f"unparseable text/html body ({len(raw)} bytes): '<html>denied for *** sorry</html>'"
    )


@pytest.mark.parametrize("offset", range(0, 120, 7))
def test_whapi_client_over_http_masks_an_echoed_token(server: ScriptedServer, offset: int) -> None:
    page = "<html>" + "x" * 200 + "</html>"
    body = page[:offset] + WHAPI_TOKEN + page[offset:]
    server.on("POST", "/messages/text", Reply(500, body.encode(), headers={"content-type": "text/html"}))
    with WhapiProvider(WHAPI_TOKEN, server.base_url, timeout=2.0) as provider:
        result = provider.send_text("+5511999990001", "hi")
    assert result.action is A.RETRY
    assert_no_fragment(WHAPI_TOKEN, result.reason)


@pytest.mark.parametrize("offset", range(0, 120, 7))
def test_cloud_client_2xx_without_an_id_masks_an_echoed_token(server: ScriptedServer, offset: int) -> None:
    page = "<html>" + "x" * 200 + "</html>"
    body = page[:offset] + WHAPI_TOKEN + page[offset:]
    server.on(
        "POST", "/v23.0/1234/messages", Reply(200, body.encode(), headers={"content-type": "text/html"})
    )
    with CloudApiProvider(WHAPI_TOKEN, "1234", base_url=server.base_url, timeout=2.0) as provider:
        result = provider.send_text("+5511999990001", "hi")
    assert result.action is A.UNKNOWN
    assert_no_fragment(WHAPI_TOKEN, result.reason)
