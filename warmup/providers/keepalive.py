"""A small keep-alive HTTP/1.1 client on the standard library's `http.client`, for the risk meter.

Why not the httpx client the sends use: planning reads every number's meter at the start of its day, one
request per number, so a fleet's reads come in one burst, and an httpx request costs about three times
the CPU of one on `http.client` (client, httpcore and h11 are pure Python; figures below). At 10,000
numbers that difference was the largest single cost of planning a day. Sends keep httpx: how a failed
send is classified (not sent / unknown) rests on httpx's precise transport errors, while a meter read is
safe to repeat and any failure just means the local meter is used.

Connections are kept per thread (an `http.client` connection is not thread-safe) and per scheme, host and
port; a connection idle for longer than `KEEPALIVE_SECONDS`, or one the server has closed while it sat
idle, is replaced before use, and a request that fails on a reused connection is tried once more on a
fresh one. TLS uses the process's one verifying context (`tls.shared_ssl_context`). With proxy
variables in the environment, `http.HttpProvider._read` uses httpx instead, which honours them.
"""

# Why hand-written (issue 11: keep it only if the libraries clearly cost more): `benchmarks/keepalive.py`
# GETs the simulator's risk meter over one kept-alive loopback connection through each client, 9
# interleaved rounds of 2,000, and measures the client thread's CPU per GET: median, ratio to ours, and
# in brackets the median of the ratios paired within a round. 2 cores, load average 3-7 from other jobs,
# urllib3 2.8.0 installed for the run (`PYTHONPATH=<dir with urllib3> .venv/bin/python
# benchmarks/keepalive.py`), httpx 0.29.0, httpcore 1.0.9:
#   ours 166 us; bare http.client 148 us (0.89x, 0.88x); urllib3 PoolManager 312 us (1.89x, 1.91x),
#   HTTPConnectionPool 279 us (1.69x, 1.51x); httpcore ConnectionPool 289 us (1.74x, 1.69x);
#   httpx.Client 532 us (3.21x, 3.07x). Over three runs: urllib3 1.51-1.94x, httpcore 1.69-1.86x,
#   httpx 3.07-3.44x, the bare connection 0.84-0.97x.
# Every library costs clearly more (>= 1.3x), so ours stays.

from __future__ import annotations

import http.client
import select
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from warmup.providers.tls import shared_ssl_context

KEEPALIVE_SECONDS = 4.0
"""Idle connections are dropped before typical server keep-alive timeouts (uvicorn: 5 s)."""

_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer: status, headers (names lower-cased) and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


@dataclass(frozen=True)
class _Target:
    https: bool
    host: str
    port: int
    path: str


@lru_cache(maxsize=256)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
    https = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(https, parts.hostname, parts.port or (443 if https else 80), path)


class _Held:
    """One thread's connection to one server, and when it was last used."""

    __slots__ = ("conn", "last_used")

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.last_used = time.monotonic()


_local = threading.local()


def _held() -> dict[tuple[bool, str, int], _Held]:
    held: dict[tuple[bool, str, int], _Held] | None = getattr(_local, "held", None)
    if held is None:
        held = _local.held = {}
    return held


def _closed_while_idle(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has been closed (or written to) by the server."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _connect(target: _Target, connect_timeout: float) -> http.client.HTTPConnection:
    conn: http.client.HTTPConnection
    if target.https:
        conn = http.client.HTTPSConnection(
            target.host, target.port, timeout=connect_timeout, context=shared_ssl_context()
        )
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=connect_timeout)
    conn.connect()
    return conn


def request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
) -> Answer:
    """One request on this thread's kept-alive connection to the URL's server (opened if needed).

    Raises what `http.client`, `socket` and `ssl` raise (`OSError`, `http.client.HTTPException`) or
    ValueError for a URL that is not http(s); a connection that failed is closed, never reused.
    """
    target = _target(url)
    key = (target.https, target.host, target.port)
    pool = _held()
    held = pool.pop(key, None)
    if held is not None and (
        time.monotonic() - held.last_used > KEEPALIVE_SECONDS or _closed_while_idle(held.conn)
    ):
        held.conn.close()
        held = None
    for attempt in (0, 1):
        reused = held is not None
        if held is None:
            held = _Held(_connect(target, connect_timeout))
        conn = held.conn
        try:
            if conn.sock is not None:
                conn.sock.settimeout(read_timeout)
            conn.request(method, target.path, headers=dict(headers))
            response = conn.getresponse()
            body = response.read()
        except _RETRYABLE:
            conn.close()
            held = None
            if reused and attempt == 0:  # the server closed it as we wrote: a fresh connection may answer
                continue
            raise
        except BaseException:
            conn.close()
            raise
        answer = Answer(response.status, {name.lower(): value for name, value in response.getheaders()}, body)
        if response.will_close:
            conn.close()
        else:
            held.last_used = time.monotonic()
            pool[key] = held
        return answer
    raise AssertionError("unreachable")  # pragma: no cover


def close_all() -> None:
    """Close this thread's kept-alive connections (tests; a thread about to end)."""
    pool = _held()
    for held in pool.values():
        held.conn.close()
    pool.clear()
