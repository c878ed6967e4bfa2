"""Shared by the Cloud API simulator tests: a two-number portfolio, a real webhook receiver, body helpers."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.simulator.model_fixture import T0
from warmup.clock import ManualClock
from warmup.simulator import Behaviour, ChannelSpec, CloudConfig, SimConfig, SimulatorServer

SECRET = "cloud-app-secret-for-tests"
P1 = ChannelSpec("tok-p1", "+5511988880001", date(2026, 10, 1), name="P1", portfolio="acme")
P2 = ChannelSpec("tok-p2", "+5511988880002", date(2026, 10, 1), name="P2", portfolio="acme")
SOLO = ChannelSpec("tok-s", "+5511988880003", date(2026, 10, 1), name="Solo", cloud=True)


def digits(spec: ChannelSpec) -> str:
    return spec.digits


def template(to: str, name: str = "hello_world", language: str = "en_US") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": name, "language": {"code": language}},
    }


def text(to: str, body: str = "oi") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}


def meta_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """The error of a Meta envelope, after checking its status, code and shape."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(f"(#{code}) ")
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert isinstance(error["error_data"]["details"], str) and error["error_data"]["details"]
    assert isinstance(error["fbtrace_id"], str)
    return error


@dataclass(frozen=True)
class Post:
    raw: bytes
    signature: str | None
    body: dict[str, Any]

    @property
    def changes(self) -> list[dict[str, Any]]:
        return [change for entry in self.body["entry"] for change in entry["changes"]]


class CloudReceiver:
    """A real HTTP server standing in for the product's `/webhooks/cloud`: keeps raw bodies and signatures."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(Post(raw, self.headers.get("x-hub-signature-256"), json.loads(raw)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/cloud"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def changes(self, field: str) -> list[dict[str, Any]]:
        return [c["value"] for p in list(self.posts) for c in p.changes if c["field"] == field]

    def wait_for(self, predicate: Callable[[CloudReceiver], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"webhooks not delivered: {[p.body for p in self.posts]}"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def signed_by(post: Post, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), post.raw, hashlib.sha256).hexdigest()
    return post.signature is not None and hmac.compare_digest(post.signature, expected)


class CloudSim:
    def __init__(self, server: SimulatorServer, clock: ManualClock) -> None:
        self.server = server
        self.clock = clock
        self.admin = httpx.Client(base_url=server.base_url, timeout=5)
        self._clients: dict[str, httpx.Client] = {}

    def client(self, spec: ChannelSpec) -> httpx.Client:
        """One client per token (building an httpx client loads the CA store: slow)."""
        client = self._clients.get(spec.token)
        if client is None:
            headers = {"Authorization": f"Bearer {spec.token}"}
            client = self._clients[spec.token] = httpx.Client(
                base_url=self.server.base_url, headers=headers, timeout=5
            )
        return client

    def send(self, spec: ChannelSpec, body: dict[str, Any]) -> httpx.Response:
        return self.client(spec).post(f"/v23.0/{spec.digits}/messages", json=body)

    def phone(self, spec: ChannelSpec, fields: str = "status,messaging_limit_tier") -> dict[str, Any]:
        response = self.client(spec).get(f"/v23.0/{spec.digits}", params={"fields": fields})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def limit_log(self, **params: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin.get("/_sim/cloud/limit-log", params=params).json()["sends"]
        return result

    def tick(self) -> None:
        assert self.admin.post("/_sim/tick").status_code == 200

    def close(self) -> None:
        for client in (self.admin, *self._clients.values()):
            client.close()


@contextmanager
def cloud_sim(
    behaviour: Behaviour, cloud: CloudConfig, *specs: ChannelSpec, seed: int = 11
) -> Iterator[CloudSim]:
    clock = ManualClock(T0)
    config = SimConfig(seed=seed, channels=specs or (P1, P2, SOLO), behaviour=behaviour, cloud=cloud)
    with SimulatorServer(config, clock=clock, tick_seconds=0.02) as server:
        sim = CloudSim(server, clock)
        try:
            yield sim
        finally:
            sim.close()
