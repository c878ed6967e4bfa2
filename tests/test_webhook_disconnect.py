"""Issue 14 item 6: a client that leaves mid-body is one quiet line, and a stalled body is dropped.

Raw sockets against the real app on uvicorn (`served`): one that sends the headers and half the body,
then closes (before: an ERROR traceback each time, and a 503 counted); one that sends half and stalls,
and one that drips a byte at a time (the deadline is for the whole body, not per chunk).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.test_webhook import APP_SECRET, NOW, SECRET, VERIFY, served, wait_for
from warmup.clock import ManualClock
from warmup.secrets import Secret
from warmup.services import metrics
from warmup.webhook import DISCONNECTED, WebhookConfig, create_app

PATHS = {
    "cloud_api": ("/webhooks/cloud", ""),
    "whapi": ("/webhooks/whapi/+5511999990001", f"X-Warmup-Secret: {SECRET}\r\n"),
}


def count(provider: str, status: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "warmup_webhook_requests_total", {"provider": provider, "status": status}
    )
    return value or 0.0


def head(provider: str, length: int) -> bytes:
    path, extra = PATHS[provider]
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
        f"X-Hub-Signature-256: sha256=00\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.fixture
def port(engine: Engine, request: pytest.FixtureRequest) -> Iterator[int]:
    timeout = getattr(request, "param", 10.0)
    config = WebhookConfig(Secret(SECRET), Secret(APP_SECRET), Secret(VERIFY), body_timeout=timeout)
    with served(create_app(engine, config, clock=ManualClock(NOW))) as http:
        assert http.base_url.port is not None
        yield http.base_url.port


@pytest.mark.parametrize("provider", ["cloud_api", "whapi"])
def test_clients_that_disconnect_mid_body_log_no_error(
    port: int, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = count(provider, DISCONNECTED)
    failed_before = count(provider, "503")
    times = 20
    for _ in range(times):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head(provider, 1000) + b'{"object": "whatsapp_business_account", "en')
    assert wait_for(lambda: count(provider, DISCONNECTED) >= before + times), "disconnects not counted"
    assert count(provider, "503") == failed_before  # not "the database is away"
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]
    quiet = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(quiet) <= times  # one line at most per disconnect


TIMEOUT = 0.5


@pytest.mark.parametrize("port", [TIMEOUT], indirect=True)
@pytest.mark.parametrize("provider", ["cloud_api", "whapi"])
def test_a_stalled_body_is_answered_408_and_closed_after_the_timeout(
    port: int, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT * 40) as sock:
        started = time.monotonic()
        sock.sendall(head(provider, 1000) + b'{"object": ')
        answer = read_until_closed(sock)  # the server closes it: recv returns b""
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b"connection: close" in answer.lower()
    assert elapsed >= TIMEOUT  # never before the configured timeout...
    assert elapsed < TIMEOUT + 10  # ...and not held open (generous: only a very busy machine is slower)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


@pytest.mark.parametrize("port", [TIMEOUT], indirect=True)
def test_a_body_dripped_a_byte_at_a_time_is_dropped_at_the_same_deadline(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT * 40) as sock:
        started = time.monotonic()
        sock.sendall(head("cloud_api", 1000))
        sock.settimeout(TIMEOUT / 5)
        answer = b""
        for _ in range(200):  # each byte well within the timeout of the one before
            try:
                sock.sendall(b" ")
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        sock.settimeout(TIMEOUT * 40)
        with contextlib.suppress(OSError):  # the server may reset it: the answer is in already
            answer += read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert TIMEOUT <= elapsed < TIMEOUT + 10
