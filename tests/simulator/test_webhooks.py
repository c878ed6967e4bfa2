"""Webhooks over real HTTP (`warmup/simulator/webhooks.py`): delivery, subscriptions, dead receivers."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.simulator.server_fixture import Sim, assert_error, sim, text

__all__ = ["sim"]


class _Receiver:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                received.append(
                    {"body": json.loads(self.rfile.read(length)), "auth": self.headers.get("x-auth")}
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.posts):
            assert time.monotonic() < deadline, f"webhooks not delivered: {self.posts}"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhooks_deliver_messages_and_statuses(sim: Sim) -> None:
    receiver = _Receiver()
    try:
        client = sim.client()
        hook = {"url": receiver.url, "events": [{"type": "messages", "method": "post"}, {"type": "statuses"}]}
        response = client.patch(
            "/settings", json={"webhooks": [{**hook, "headers": {"X-Auth": "secret-hook"}}]}
        )
        assert response.status_code == 200
        assert response.json()["changes"] == ["webhooks"]
        assert client.get("/settings").json()["webhooks"][0]["url"] == receiver.url
        sent_id = client.post("/messages/text", json=text()).json()["message"]["id"]
        sim.clock.advance(timedelta(hours=1))

        def complete(posts: list[dict[str, Any]]) -> bool:
            kinds = {k for p in posts for k in ("messages", "statuses") if k in p["body"]}
            return (
                kinds == {"messages", "statuses"}
                and sum(len(p["body"].get("statuses", [])) for p in posts) == 2
            )

        receiver.wait_for(complete)
        bodies = [p["body"] for p in receiver.posts]
        statuses = [s for b in bodies for s in b.get("statuses", [])]
        assert [(s["id"], s["status"]) for s in statuses] == [(sent_id, "delivered"), (sent_id, "read")]
        messages = [m for b in bodies for m in b.get("messages", [])]
        assert [(m["from"], m["from_me"]) for m in messages] == [("5521900000001", False)]
        assert {b["event"]["type"] for b in bodies} == {"messages", "statuses"}
        assert all(p["auth"] == "secret-hook" for p in receiver.posts)
        assert_error(client.patch("/settings", json={"webhooks": [{"url": "nope"}]}), 400)
    finally:
        receiver.close()


def test_unreachable_webhook_does_not_block_the_api(sim: Sim) -> None:
    client = sim.client()
    client.patch("/settings", json={"webhooks": [{"url": "http://127.0.0.1:9/closed"}]})
    client.post("/messages/text", json=text())
    sim.clock.advance(timedelta(hours=1))
    started = time.monotonic()
    assert client.get("/health").status_code == 200
    deadline = time.monotonic() + 5
    while sim.admin.get("/_sim/stats").json()["webhooks_failed"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert time.monotonic() - started < 5
