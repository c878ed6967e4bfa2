"""The simulator's webhooks: which posts a batch of events causes, and the thread that makes them.

A channel registers webhooks through `PATCH /settings` (`valid_hook` checks each); `webhook_posts` turns
the messages and statuses that came due into one post per subscribed hook (Whapi's format; Cloud API
numbers also get Meta's signed format, built by `cloud`), and `WebhookSender` delivers them from a
background thread, best effort, so a slow or dead receiver never holds up the API.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookPost:
    """One webhook delivery the server should attempt (best effort).

    `body` is the exact bytes to send when a signature covers them (Cloud API webhooks); without it the
    payload is sent as JSON.
    """

    url: str
    headers: Mapping[str, str]
    payload: dict[str, Any]
    body: bytes | None = field(default=None, repr=False)


def valid_hook(hook: object) -> bool:
    if not isinstance(hook, dict):
        return False
    url = hook.get("url")
    headers = hook.get("headers")
    return (
        isinstance(url, str)
        and url.startswith(("http://", "https://"))
        and (headers is None or isinstance(headers, dict))
        and isinstance(hook.get("events", []), list)
    )


def hook_wants(hook: Mapping[str, Any], kind: str) -> bool:
    """Whether a registered webhook subscribes to `messages` or `statuses` (no events listed = both)."""
    events: Iterable[Any] = hook.get("events") or []
    names = {str(e.get("type")) if isinstance(e, dict) else str(e) for e in events}
    if not names:
        return True
    legacy = {"messages": {"message"}, "statuses": {"ack", "status"}}[kind]
    return kind in names or bool(names & legacy)


def webhook_posts(
    settings: Mapping[str, Any], channel_id: str, kind: str, items: list[dict[str, Any]]
) -> list[WebhookPost]:
    """The posts of one channel's `messages` or `statuses` items, one per hook subscribed to `kind`."""
    posts: list[WebhookPost] = []
    for hook in settings.get("webhooks", []):
        if hook_wants(hook, kind):
            payload = {
                kind: items,
                "event": {"type": kind, "method": "post"},
                "channel_id": channel_id,
            }
            posts.append(WebhookPost(hook["url"], dict(hook.get("headers") or {}), payload))
    return posts


class WebhookSender:
    """Posts webhook payloads from one background thread, best effort with a short timeout."""

    def __init__(self, timeout: float) -> None:
        self._queue: queue.Queue[WebhookPost | None] = queue.Queue()
        self._timeout = timeout
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="warmup-sim-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, posts: list[WebhookPost]) -> None:
        for post in posts:
            self._queue.put(post)

    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=self._timeout + 1.0)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while (post := self._queue.get()) is not None:
                try:
                    if post.body is not None:
                        response = client.post(post.url, content=post.body, headers=dict(post.headers))
                    else:
                        response = client.post(post.url, json=post.payload, headers=dict(post.headers))
                    if response.status_code < 300:
                        self.delivered += 1
                    else:
                        self.failed += 1
                except httpx.HTTPError as exc:
                    self.failed += 1
                    log.debug("webhook to %s failed: %s", post.url, type(exc).__name__)
