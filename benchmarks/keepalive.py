"""Keep-alive reads: the CPU one risk-meter GET costs the client, ours (`warmup.providers.keepalive`) against
the libraries that could replace it, in ONE run.

The simulator (``warmup simulator``, its own process, loopback only) serves the risk meter of one channel;
this process GETs it sequentially on one thread through each client in turn: our keep-alive client, the
bare `http.client` connection it wraps (the floor), urllib3's `PoolManager` (if installed: it is not a
dependency), httpcore's `ConnectionPool` and an `httpx.Client` (both come with httpx). Every client keeps
its one connection alive, uses the same headers and reads the whole answer. Each round runs every client
(order rotated between rounds) for ``--requests`` GETs after a warm-up; measured per GET: this thread's CPU
(`time.thread_time`, so the simulator's CPU is never counted) and wall time. Reported: the medians over
rounds, and each client's CPU ratio to ours: of the medians, and the median of the ratios paired within
a round (it cancels the machine's drift between rounds). A ratio >= 1.3 is clearly more than ours.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import importlib.metadata
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from common import emit, parser

from warmup.providers import keepalive
from warmup.providers.http import USER_AGENT
from warmup.simulator.whapi_api import METER_PATH
from warmup.testing.services import free_port

try:  # optional: urllib3 is no dependency of warmup (pip install urllib3 to include it)
    import urllib3  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    urllib3 = None  # type: ignore[assignment, unused-ignore]

TOKEN = "KeepAliveBenchTok3nAbcdefGhijklm"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json", "User-Agent": USER_AGENT}
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 30.0
WARMUP_GETS = 50

Get = Callable[[], int]
"""One GET of the meter; returns the answer's status (the body is read whole)."""


@contextlib.contextmanager
def simulator() -> Iterator[str]:
    """``warmup simulator`` with one metered channel, in its own process; yields the meter's URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="warmup-keepalive-bench-") as tmp:
        channels = Path(tmp) / "channels.json"
        channels.write_text(
            json.dumps([{"token": TOKEN, "phone": "+15550000001", "registered": "2026-01-05"}])
        )
        argv = [sys.executable, "-m", "warmup", "simulator", "--port", str(port), "--channels", str(channels)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}{METER_PATH}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:  # the meter's first POST computes today's reading; GETs return it
                    httpx.post(url, headers=HEADERS, timeout=1.0, trust_env=False).raise_for_status()
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the simulator did not start") from None
                    time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def ours(url: str) -> Iterator[Get]:
    def get() -> int:
        answer = keepalive.request(
            "GET", url, HEADERS, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT
        )
        return answer.status_code

    try:
        yield get
    finally:
        keepalive.close_all()


@contextlib.contextmanager
def bare_http_client(url: str) -> Iterator[Get]:
    """The floor: one `http.client` connection, no pool, no checks."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=READ_TIMEOUT)

    def get() -> int:
        conn.request("GET", parts.path, headers=HEADERS)
        response = conn.getresponse()
        response.read()
        return response.status

    try:
        yield get
    finally:
        conn.close()


@contextlib.contextmanager
def urllib3_pool(url: str) -> Iterator[Get]:
    assert urllib3 is not None
    pool = urllib3.PoolManager(
        maxsize=1, retries=False, timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT)
    )

    def get() -> int:
        response = pool.request("GET", url, headers=HEADERS)  # preload_content: the body is read
        _ = response.data
        return int(response.status)

    try:
        yield get
    finally:
        pool.clear()


@contextlib.contextmanager
def urllib3_host_pool(url: str) -> Iterator[Get]:
    """urllib3 without the manager's per-URL pool lookup: one host's pool."""
    assert urllib3 is not None
    parts = urlsplit(url)
    pool = urllib3.HTTPConnectionPool(
        parts.hostname or "",
        parts.port,
        maxsize=1,
        retries=False,
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
    )

    def get() -> int:
        response = pool.request("GET", parts.path, headers=HEADERS)
        _ = response.data
        return int(response.status)

    try:
        yield get
    finally:
        pool.close()


@contextlib.contextmanager
def httpcore_pool(url: str) -> Iterator[Get]:
    timeouts = {"connect": CONNECT_TIMEOUT, "read": READ_TIMEOUT, "write": 10.0, "pool": 5.0}
    headers = [(name.encode(), value.encode()) for name, value in HEADERS.items()]

    with httpcore.ConnectionPool(max_connections=1, keepalive_expiry=4.0) as pool:

        def get() -> int:
            response = pool.request("GET", url, headers=headers, extensions={"timeout": timeouts})
            _ = response.content
            return response.status

        yield get


@contextlib.contextmanager
def httpx_client(url: str) -> Iterator[Get]:
    with httpx.Client(
        trust_env=False, timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    ) as client:

        def get() -> int:
            return client.get(url, headers=HEADERS).status_code

        yield get


CLIENTS: dict[str, Callable[[str], contextlib.AbstractContextManager[Get]]] = {
    "ours (keepalive)": ours,
    "http.client (bare, the floor)": bare_http_client,
    "urllib3 PoolManager": urllib3_pool,
    "urllib3 HTTPConnectionPool": urllib3_host_pool,
    "httpcore ConnectionPool": httpcore_pool,
    "httpx.Client": httpx_client,
}


def block(get: Get, count: int) -> tuple[float, float]:
    """(CPU us, wall us) per GET over ``count`` GETs after a warm-up on the same connection."""
    for _ in range(WARMUP_GETS):
        assert get() == 200
    gc.collect()
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(count):
        status = get()
        if status != 200:
            raise RuntimeError(f"the meter answered {status}")
    return (time.thread_time() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9; --quick 3)")
    p.add_argument(
        "--requests", type=int, default=None, help="GETs per client and round (2,000; --quick 300)"
    )
    args = p.parse_args()
    rounds = args.rounds or (3 if args.quick else 9)
    count = args.requests or (300 if args.quick else 2000)
    names = [name for name in CLIENTS if urllib3 is not None or not name.startswith("urllib3")]
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    with simulator() as url:
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                with CLIENTS[name](url) as get:
                    c, w = block(get, count)
                cpu[name].append(c)
                wall[name].append(w)
    base = statistics.median(cpu["ours (keepalive)"])
    clients: dict[str, Any] = {}
    for name in names:
        clients[name] = {
            "cpu_us_per_get_median": round(statistics.median(cpu[name]), 1),
            "cpu_us_per_get_rounds": [round(v, 1) for v in cpu[name]],
            "wall_us_per_get_median": round(statistics.median(wall[name]), 1),
            "cpu_ratio_to_ours": round(statistics.median(cpu[name]) / base, 2),
            # paired within each round: cancels the machine's drift between rounds
            "cpu_ratio_to_ours_per_round_median": round(
                statistics.median(v / o for v, o in zip(cpu[name], cpu["ours (keepalive)"], strict=True)), 2
            ),
        }
    versions = {
        "httpx": httpx.__version__,
        "httpcore": httpcore.__version__,
        "urllib3": importlib.metadata.version("urllib3") if urllib3 is not None else "not installed",
    }
    result = {
        "rounds": rounds,
        "requests_per_round": count,
        "versions": versions,
        "baseline": "ours (keepalive)",
        "clients": clients,
    }
    summary = [f"keep-alive GETs of the simulator's meter, {rounds} rounds x {count}, medians:"]
    summary += [
        f"  {name:30s} {c['cpu_us_per_get_median']:6.1f} us CPU ({c['cpu_ratio_to_ours']:.2f}x ours, paired "
        f"{c['cpu_ratio_to_ours_per_round_median']:.2f}x), "
        f"{c['wall_us_per_get_median']:7.1f} us wall"
        for name, c in clients.items()
    ]
    emit("keepalive", result, summary)


if __name__ == "__main__":
    main()
