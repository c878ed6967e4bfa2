"""A scriptable REAL HTTP server on a loopback port, for provider-client tests.

Each route answers with a scripted `Reply` (or a function of the request), including the nasty cases a
real network produces: a slow answer (read timeout), a connection dropped before the answer, a body
cut short, HTML instead of JSON. Every request is recorded (method, path, query, headers, body).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Reply:
    status: int = 200
    body: Any = b""  # bytes/str sent as is; anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    mode: Literal["normal", "drop", "truncate"] = "normal"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


Route = Reply | Callable[[Recorded], Reply]


class ScriptedServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def on(self, method: str, path: str, reply: Route) -> None:
        self.routes[(method.upper(), path)] = reply

    def calls(self, method: str, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                rec = Recorded(self.command, split.path, parse_qs(split.query), dict(self.headers), raw)
                with server._lock:
                    server.requests.append(rec)
                route = server.routes.get((self.command, split.path))
                if route is None:
                    reply = Reply(404, {"error": {"code": 404, "message": "no such route"}})
                else:
                    reply = route(rec) if callable(route) else route
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                body = reply.body
                ctype = "application/json"
                if isinstance(body, str):
                    body, ctype = body.encode(), "text/html; charset=utf-8"
                elif not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                self.send_response(reply.status)
                headers = {"Content-Type": ctype, **reply.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                declared = len(body) + (50 if reply.mode == "truncate" else 0)
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if reply.mode == "truncate":
                    self.close_connection = True
                    self.connection.close()

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"
        return self.base_url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
