"""The risk meter's keep-alive client against a real local HTTP server that closes, stalls and drops."""

from __future__ import annotations

import ast
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.http_fixture import Reply, ScriptedServer, closed_port_url, server
from warmup.providers import http as provider_http
from warmup.providers import keepalive
from warmup.providers.tls import shared_ssl_context
from warmup.providers.whapi import WhapiProvider

__all__ = ["server"]

TOKEN = "KeepAliveTok3nAbcdefGhijklmnopQRS"
METER = "/services/riskOfBlocking"
TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 15, tzinfo=UTC)
METER_BODY = {
    "lastUpdateDate": "11/23/2026",
    "lifeTime": 1,
    "riskFactor": 2,
    "riskFactorChats": 3,
    "riskFactorContacts": 2,
}


class Echo:
    """A server that answers every request with the Authorization header it got, and counts TCP
    connections; ``close_idle`` closes a connection right after answering on it (without saying so),
    ``drop_next`` closes the next request's connection without an answer, ``delay`` stalls answers."""

    def __init__(self) -> None:
        self.connections: set[tuple[str, int]] = set()
        self.requests = 0
        self.close_idle = False
        self.drop_next = 0
        self.delay = 0.0
        self.lock = threading.Lock()
        echo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with echo.lock:
                    echo.connections.add(self.client_address)
                    echo.requests += 1
                    drop = echo.drop_next > 0
                    echo.drop_next -= 1 if drop else 0
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                time.sleep(echo.delay)
                body = (self.headers.get("Authorization") or "").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if echo.close_idle:  # like a server whose keep-alive timer fired: no Connection: close
                    self.close_connection = True

            do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        host, port = self.httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}/meter"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def echo() -> Iterator[Echo]:
    keepalive.close_all()
    srv = Echo()
    try:
        yield srv
    finally:
        keepalive.close_all()
        srv.stop()


def ask(url: str, token: str = "t", read_timeout: float = 5.0) -> keepalive.Answer:
    return keepalive.request(
        "POST", url, {"Authorization": token}, connect_timeout=2.0, read_timeout=read_timeout
    )


def test_sequential_requests_share_one_connection(echo: Echo) -> None:
    answers = [ask(echo.url, f"t{i}").content for i in range(5)]
    assert answers == [f"t{i}".encode() for i in range(5)]
    assert echo.requests == 5 and len(echo.connections) == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(echo: Echo) -> None:
    echo.close_idle = True
    assert [ask(echo.url, f"t{i}").content for i in range(3)] == [b"t0", b"t1", b"t2"]
    assert echo.requests == 3 and len(echo.connections) == 3  # each answered, none lost


def test_an_idle_connection_past_keepalive_is_not_reused(echo: Echo, monkeypatch: pytest.MonkeyPatch) -> None:
    ask(echo.url)
    monkeypatch.setattr(keepalive, "KEEPALIVE_SECONDS", 0.0)
    time.sleep(0.01)
    ask(echo.url)
    assert len(echo.connections) == 2


def test_a_reused_connection_dropped_mid_request_is_tried_once_more(echo: Echo) -> None:
    ask(echo.url)
    echo.drop_next = 1
    assert ask(echo.url, "again").content == b"again"
    assert echo.requests == 3 and len(echo.connections) == 2


def test_a_fresh_connection_dropped_raises_and_is_not_kept(echo: Echo) -> None:
    echo.drop_next = 1  # the first connection is fresh: a drop there is not retried
    with pytest.raises((http.client.HTTPException, OSError)):
        ask(echo.url)
    assert echo.requests == 1
    assert ask(echo.url, "later").content == b"later"
    assert echo.requests == 2 and len(echo.connections) == 2  # the failed connection was not kept


def test_a_stalled_answer_times_out(echo: Echo) -> None:
    echo.delay = 0.5
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        ask(echo.url, read_timeout=0.1)
    assert time.monotonic() - started < 0.45
    echo.delay = 0.0
    assert ask(echo.url, "next").content == b"next"  # the timed-out connection was not reused


def test_threads_use_their_own_connections_and_never_mix_answers(echo: Echo) -> None:
    errors: list[str] = []

    def work(n: int) -> None:
        for i in range(30):
            token = f"thread{n}-{i}"
            got = ask(echo.url, token).content
            if got != token.encode():
                errors.append(f"{token} got {got!r}")
        keepalive.close_all()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert echo.requests == 240 and len(echo.connections) == 8


def test_refused_connection_and_bad_urls_raise() -> None:
    with pytest.raises(OSError):
        ask(closed_port_url() + "/meter")
    with pytest.raises(ValueError):
        ask("ftp://example.invalid/meter")


# --- the meter through it ----------------------------------------------------------------------------


def test_meter_reads_go_through_the_keepalive_client(server: ScriptedServer) -> None:
    keepalive.close_all()
    server.on("POST", METER, Reply(200, METER_BODY))
    with WhapiProvider(TOKEN, server.base_url, server.base_url + METER, timeout=2.0) as provider:
        reading = provider.fetch_reading(TODAY, NOW)
        assert reading is not None and reading.overall == 2 and reading.response_rate == 3
        assert keepalive._held()  # the connection is kept for the next read
    call = server.calls("POST", METER)[0]
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.headers["Accept"] == "application/json"
    keepalive.close_all()


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(200, METER_BODY, delay=1.0), "TimeoutError"),
        (Reply(200, METER_BODY, mode="drop"), "RemoteDisconnected"),
        (Reply(200, METER_BODY, mode="truncate"), "IncompleteRead"),
        (Reply(503, "<html>busy</html>"), "HTTP 503"),
    ],
)
def test_meter_failures_give_no_reading_and_a_reason_without_the_token(
    server: ScriptedServer, reply: Reply, reason: str
) -> None:
    keepalive.close_all()
    server.on("POST", METER, reply)
    server.on("GET", METER, reply)
    with WhapiProvider(TOKEN, server.base_url, server.base_url + METER, timeout=0.3) as provider:
        assert provider.fetch_reading(TODAY, NOW) is None
        error = provider.last_reading_error or ""
    assert reason in error and TOKEN not in error
    keepalive.close_all()


def test_meter_refused_gives_no_reading() -> None:
    closed = closed_port_url()
    with WhapiProvider(TOKEN, closed, closed + METER, timeout=1.0) as provider:
        assert provider.fetch_reading(TODAY, NOW) is None
        assert "ConnectionRefusedError" in (provider.last_reading_error or "")


def test_with_a_proxy_in_the_environment_the_meter_uses_httpx(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    keepalive.close_all()
    monkeypatch.setattr(provider_http, "_env_proxies", True)  # as if HTTPS_PROXY were set
    server.on("POST", METER, Reply(200, METER_BODY))
    with WhapiProvider(TOKEN, server.base_url, server.base_url + METER, timeout=2.0) as provider:
        assert provider.fetch_reading(TODAY, NOW) is not None
    assert keepalive._held() == {}  # httpx (which honours the proxy variables) took it


def test_keepalive_does_not_import_the_http_module_and_imports_at_the_top() -> None:
    """The one-way dependency (issue 11): `http` uses `keepalive`, both take TLS from `tls`."""
    tree = ast.parse(Path(keepalive.__file__).read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            assert id(node) in top, f"a late import at line {node.lineno}"
            if isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                imported.update(alias.name for alias in node.names)
    assert "warmup.providers.http" not in imported
    assert "warmup.providers.tls.shared_ssl_context" in imported


def test_https_connections_use_the_process_ssl_context(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class Fake:
        def __init__(self, host: str, port: int, **options: Any) -> None:
            made.append({"host": host, "port": port, **options})

        def connect(self) -> None:
            pass

    monkeypatch.setattr(http.client, "HTTPSConnection", Fake)
    keepalive._connect(keepalive._target("https://meter.example:8443/risk"), 2.0)
    assert made == [{"host": "meter.example", "port": 8443, "timeout": 2.0, "context": shared_ssl_context()}]
