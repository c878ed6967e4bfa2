"""What one process of a run shares: the engine, the clock, provider clients and timing bounds.

Actors take row ids, so a worker needs a process-wide place to find the database, the clock and a
provider client per number. The embedded runner configures it explicitly (`configure`); a fleet
worker (``dramatiq workers.actors``) builds it lazily from the environment on the first message.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from warmup.clock import Clock, clock_from_env
from warmup.config import Settings
from warmup.core.plan.model import Plan
from warmup.files.plans import load_plan
from warmup.providers.base import Provider
from warmup.providers.factory import make_provider
from warmup.secrets import resolve_token
from warmup.store.db import Engine, make_engine
from warmup.store.numbers import get_number

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Timings:
    """Bounds of the runtime, in simulated time unless named ``wall``; see `for_scale`."""

    tick_wall: float  # wall seconds between two scheduler ticks
    stale_after: timedelta  # a `sending` claim older than this is recovered as `unknown`
    lost_after: timedelta  # a `queued` message older than this was lost by the broker: enqueue again
    ingest_every: timedelta  # how often each number's replies are polled
    replan_wall: float  # wall seconds before an unanswered plan_day request is sent again
    lock_ttl_wall: float  # the leader lock's TTL: a dead leader is replaced within about this long
    poll_wall: float = 0.1  # embedded workers' poll interval: how late a delayed message may be released

    @classmethod
    def for_scale(cls, scale: float) -> Timings:
        """Bounds that make sense both in real time and in an accelerated run.

        A bound that protects against something slow in WALL time (an HTTP call in flight, a busy
        worker) must span at least that much wall time, whatever the scale: a `sending` claim is
        only given up after a minute of wall time (far above the provider's HTTP timeouts) and ten
        simulated minutes.

        ``poll_wall`` is how often the embedded broker's consumers look at their delayed messages (the
        dispatcher's look-ahead and retries): at most ten simulated seconds late, but never polling
        more often than every 2 ms of wall time, nor less often than every 0.1 s.
        """
        scale = max(scale, 1e-9)
        return cls(
            tick_wall=min(1.0, max(0.1, 30.0 / scale)),
            stale_after=timedelta(seconds=max(600.0, 60.0 * scale)),
            lost_after=timedelta(seconds=max(300.0, 20.0 * scale)),
            ingest_every=timedelta(seconds=max(300.0, 2.0 * scale)),
            replan_wall=10.0,
            lock_ttl_wall=5.0,
            poll_wall=min(0.1, max(0.002, 10.0 / scale)),
        )


class ProviderRow(Protocol):
    """What a provider client is built from: a number row, or a claimed message (which carries it)."""

    @property
    def provider(self) -> str: ...
    @property
    def token_ref(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def phone_number_id(self) -> str | None: ...


def provider_from_row(row: ProviderRow) -> Provider:
    """A provider client for the row; the token is resolved from the environment variable it names.

    A number row carries its risk meter's URL (`meter_url`); a claimed message does not (a send
    never reads the meter), and risk-meter reads build their client from the number row
    (`warmup.services.readings`), never from the shared pool."""

    options: dict[str, str] = {}
    if row.phone_number_id:
        options["phone_number_id"] = row.phone_number_id
    meter_url = getattr(row, "meter_url", None)
    if isinstance(meter_url, str) and meter_url:
        options["meter_url"] = meter_url
    return make_provider(row.provider, resolve_token(row.token_ref), base_url=row.base_url, **options)


class ProviderPool:
    """One provider client per number, built on first use and reused by every thread of the process.

    The token is resolved from the environment variable the number row names (`warmup.secrets`),
    never read from the database.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._clients: dict[int, Provider] = {}
        self._lock = threading.Lock()

    def __call__(self, number_id: int) -> Provider:
        """The number's client; its row is read to build it the first time."""
        return self._get(number_id, None)

    def for_row(self, number_id: int, row: ProviderRow) -> Provider:
        """The number's client, built from the row in hand the first time (a claim read it already):
        a fleet whose numbers each send once in a while would otherwise pay a query per first send."""
        return self._get(number_id, row)

    def _get(self, number_id: int, row: ProviderRow | None) -> Provider:
        with self._lock:
            client = self._clients.get(number_id)
        if client is not None:
            return client
        # built outside the lock: threads building other numbers' clients do not queue behind this one
        built = self._build(number_id) if row is None else provider_from_row(row)
        with self._lock:  # a racing twin is dropped
            client = self._clients.setdefault(number_id, built)
        if client is not built:
            built.close()
        return client

    def _build(self, number_id: int) -> Provider:
        number = get_number(self.engine, number_id)
        if number is None:
            raise LookupError(f"number {number_id} does not exist")
        return provider_from_row(number)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                client.close()
            except Exception:  # closing is best effort; a broken client must not stop a shutdown
                log.warning("provider client did not close cleanly", exc_info=True)


class FileCache(Generic[T]):
    """Files loaded by path, read again only when the file changes (an edit applies from the next use)."""

    def __init__(self, load: Callable[[str], T]) -> None:
        self._load = load
        self._loaded: dict[str, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str) -> T:
        mtime = Path(path).stat().st_mtime
        with self._lock:
            cached = self._loaded.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
        value = self._load(path)
        with self._lock:
            self._loaded[path] = (mtime, value)
        return value


def _load_plan(path: str) -> Plan:

    return load_plan(path)


class PlanCache(FileCache["Plan"]):
    """Plans by file path, re-read when the file changes (an edited plan applies from the next day)."""

    def __init__(self) -> None:
        super().__init__(_load_plan)


@dataclass
class Runtime:
    """The process-wide context the actors and the scheduler work with."""

    engine: Engine
    clock: Clock
    provider_for: ProviderPool
    plans: PlanCache = field(default_factory=PlanCache)
    timings: Timings | None = None
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def __post_init__(self) -> None:
        if self.timings is None:
            self.timings = Timings.for_scale(self.clock.scale)

    @property
    def bounds(self) -> Timings:
        assert self.timings is not None
        return self.timings

    def close(self) -> None:
        self.provider_for.close()


_lock = threading.Lock()
_runtime: Runtime | None = None


def configure(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the one this process's actors use (embedded runner, tests)."""
    global _runtime
    with _lock:
        _runtime = runtime
    return runtime


def build_runtime(engine: Engine | None = None, clock: Clock | None = None) -> Runtime:
    """A runtime from the environment: ``WARMUP_DATABASE_URL`` and ``WARMUP_CLOCK``."""

    engine = engine if engine is not None else make_engine(Settings().database_url)
    return Runtime(engine=engine, clock=clock or clock_from_env(), provider_for=ProviderPool(engine))


def get_runtime() -> Runtime:
    """This process's runtime; a fleet worker builds it from the environment on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime()
        return _runtime


def reset() -> None:
    """Forget (and close) the process's runtime; the next `get_runtime` builds a fresh one."""
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close()
