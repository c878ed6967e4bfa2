"""The shared httpx client setup: one pooled, authenticated client per provider instance.

Actors run in threads; `httpx.Client` is thread-safe and reuses connections, so a provider object is
built once per number and shared by the worker's threads.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from warmup import __version__
from warmup.secrets import Secret

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0, write=10.0, pool=5.0)
"""Read 30 s: a send with typing_time up to 60 s may hold the answer, callers pass more when needed."""

# Idle connections are dropped before typical server keep-alive timeouts (uvicorn: 5 s), so a send is
# rarely written onto a socket the server is closing — which would make its outcome UNKNOWN.
DEFAULT_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=4.0)


def as_secret(token: str | Secret) -> Secret:
    """Wrap a plain token (tests, factory) so it is masked from here on."""
    return token if isinstance(token, Secret) else Secret(token)


def as_timeout(timeout: httpx.Timeout | float | None) -> httpx.Timeout:
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(float(timeout))


def make_client(base_url: str, token: Secret, timeout: httpx.Timeout | float | None = None) -> httpx.Client:
    """An httpx client with the bearer token; redirects are not followed (a POST must not be replayed)."""
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        headers={
            "Authorization": f"Bearer {token.reveal()}",
            "Accept": "application/json",
            "User-Agent": f"warmup/{__version__}",
        },
        timeout=as_timeout(timeout),
        limits=DEFAULT_LIMITS,
        follow_redirects=False,
    )


JSON_HEADERS = {"Content-Type": "application/json"}


def encode_json(payload: Any) -> bytes:
    """Serialise a request body BEFORE the call, so a bad body is a FAIL (never sent), not a transport
    error whose outcome would be unknown. Raises TypeError/ValueError for non-JSON values."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
