"""Logging setup: JSON lines when asked, and registered tokens never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from warmup.logs import setup_logging
from warmup.secrets import Secret


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_with_extras_and_masked_tokens() -> None:
    token = Secret("tok-SUPERSECRET-123456", name="WHAPI_TOKEN_1")
    stream = io.StringIO()
    setup_logging("json", "INFO", stream)
    log = logging.getLogger("warmup.test")
    log.info(
        "sending with %s", token.reveal(), extra={"number_id": 7, "url": f"https://x/?token={token.reveal()}"}
    )
    try:
        raise RuntimeError(f"provider said Bearer {token.reveal()}")
    except RuntimeError:
        log.exception("send failed")
    log.debug("not shown at INFO")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["sending with ***", "send failed"]
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "warmup.test" and lines[0]["number_id"] == 7
    assert lines[0]["url"] == "https://x/?token=***"
    assert "RuntimeError" in lines[1]["exc"]
    assert "SUPERSECRET" not in stream.getvalue()


def test_console_format_is_redacted_too() -> None:
    token = Secret("another-secret-value-99")
    stream = io.StringIO()
    setup_logging("console", "DEBUG", stream)
    logging.getLogger("warmup.x").debug("token is %s", token.reveal())
    assert "token is ***" in stream.getvalue() and "another-secret" not in stream.getvalue()


def test_http_client_request_lines_are_quiet_at_info() -> None:
    stream = io.StringIO()
    setup_logging("console", "INFO", stream=stream)
    logging.getLogger("httpx").info('HTTP Request: POST http://sim/messages/text "HTTP/1.1 201 Created"')
    logging.getLogger("httpx").warning("a real problem")
    logging.getLogger("warmup.services.planning").info("number 1 planned")
    text = stream.getvalue()
    assert "HTTP Request" not in text and "a real problem" in text and "number 1 planned" in text
