"""Which dramatiq broker this process talks to: Redis in a fleet, an in-process broker when embedded.

dramatiq binds every actor to the global broker at decoration time, so the broker must be chosen
before ``workers.actors`` is imported. ``setup_broker`` does that and, when the actors are already
loaded (a second embedded run in one process, tests), re-binds them to the new broker.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from collections.abc import Callable

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from warmup.config import Settings
from warmup.core.errors import UserError
from warmup.logs import setup_logging
from warmup.secrets import install_log_redaction
from warmup.services import metrics
from warmup.services.admin import open_store
from warmup.services.runtime import get_runtime
from warmup.store.db import connect_once

log = logging.getLogger(__name__)

NAMESPACE = "warmup"
"""Redis key prefix of the broker's queues, so warmup shares a Redis with other apps safely."""

CONSUMER_POLL_MS = 100
"""A worker's consumer sleeps up to this long (ms) when its queue is empty or its prefetch is full, and a
delayed message (a send handed over for its due time) waits up to this long past its due time to move
to the work queue. dramatiq's default is 1,000 ms: up to a second late on every delayed send."""


class ResponsiveConsumers(dramatiq.Middleware):
    """Sets a worker's consumer poll to `CONSUMER_POLL_MS` unless ``dramatiq_worker_timeout`` is set.

    `dramatiq workers.actors` builds its Worker with dramatiq's default (the env var, read when dramatiq
    is imported); the hook runs before the worker creates its consumers and threads, so they poll at
    the shorter interval. The cost is a few more idle Redis polls per second per worker.
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if "dramatiq_worker_timeout" not in os.environ:
            worker.worker_timeout = CONSUMER_POLL_MS


class WarmWorker(dramatiq.Middleware):
    """Builds the runtime (database engine, provider pool) when a worker process boots, not on its first
    message: a fresh worker paid the first connections inside the first requests it took, contended by
    every thread at once. Failing here is harmless: the first message builds the runtime again and
    reports the problem where it belongs.
    """

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        try:
            connect_once(get_runtime().engine)
        except Exception as exc:  # the database may come up later; the first message will say
            log.warning("worker boot: runtime not ready yet: %s", type(exc).__name__)
        quiet_garbage_collector()


WATCH_EVERY = 5.0
"""Seconds between two looks of `ThreadWatchdog` at a worker's threads."""

DEAD_THREAD_EXIT = 3
"""Exit status of a worker process that found one of its own threads dead."""


def dead_threads(worker: dramatiq.Worker) -> list[tuple[str, str]]:
    """(kind, name) of the worker's consumer and worker threads that are no longer alive."""
    dead = [("consumer", name) for name, thread in worker.consumers.items() if not thread.is_alive()]
    dead += [("worker", thread.name) for thread in worker.workers if not thread.is_alive()]
    return dead


class ThreadWatchdog(dramatiq.Middleware):
    """Exits the worker process when one of its consumer or worker threads has died.

    A consumer thread can die (seen: the delayed-message consumer on a Redis restart) while the process
    keeps running: its messages then wait forever, the process looks healthy and no supervisor restarts
    it. Exiting (status `DEAD_THREAD_EXIT`, after a critical log line and `warmup_dead_threads_total`)
    hands the process back to whoever restarts it (dramatiq's main process, Docker, systemd); the
    database keeps every message, so a restart loses nothing.
    """

    def __init__(self, every: float = WATCH_EVERY, exit_process: Callable[[int], None] = os._exit) -> None:
        self.every = every
        self.exit_process = exit_process
        self.stopping = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        threading.Thread(target=self.watch, args=(worker,), name="warmup-watchdog", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopping.set()

    def watch(self, worker: dramatiq.Worker) -> None:
        while not self.stopping.wait(self.every):
            if self.check(worker):
                return

    def check(self, worker: dramatiq.Worker) -> bool:
        """One look; True (and the process told to exit) when a thread died."""
        dead = dead_threads(worker)
        if not dead or self.stopping.is_set():
            return False
        for kind, _ in dead:
            metrics.DEAD_THREADS.labels(kind=kind).inc()
        names = ", ".join(f"{kind} {name}" for kind, name in dead)
        log.critical("worker thread(s) died: %s; exiting so the process is restarted", names)
        self.exit_process(DEAD_THREAD_EXIT)
        return True


GC_THRESHOLDS = (10_000, 20, 20)
"""Young collections every 10,000 net allocations instead of Python's 700: planning a batch allocates
hundreds of thousands of short-lived objects (times, sends, rows) and the collector ran ~60 times a
batch, 5% of planning's CPU. Reference counting frees those objects anyway; cycles wait a little longer."""


def quiet_garbage_collector() -> None:
    """After boot: move everything loaded so far (modules, SQLAlchemy metadata, the plan models) out of
    the collector's sight for good (`gc.freeze`: it is never garbage, and a full collection scanned it
    every time) and collect young objects less often (`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


_lock = threading.Lock()
_current: dramatiq.Broker | None = None


def setup_broker(redis_url: str | None) -> dramatiq.Broker:
    """Create the broker (Redis for a URL, in-process for None), make it global and bind the actors to it.

    The Redis client is built from the URL by dramatiq itself: never with ``decode_responses=True``,
    which breaks the broker's Lua scripts.
    """
    global _current
    broker: dramatiq.Broker
    if redis_url:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=redis_url, namespace=NAMESPACE, heartbeat_timeout=60_000
        )
        broker.add_middleware(ResponsiveConsumers())
        broker.add_middleware(WarmWorker())
        broker.add_middleware(ThreadWatchdog())
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    with _lock:
        dramatiq.set_broker(broker)
        _current = broker
        actors = sys.modules.get("workers.actors")
        if actors is not None:
            actors.bind(broker)
    return broker


def current_broker() -> dramatiq.Broker:
    """The broker set up in this process; configured from the environment on first use.

    This is what lets ``dramatiq workers.actors`` work: importing the actor module in a worker
    process configures the Redis broker from ``WARMUP_REDIS_URL`` before any actor is declared.
    """
    with _lock:
        broker = _current
    if broker is not None:
        return broker
    setup_worker_logging()
    settings = Settings()
    try:
        check_fleet_worker(settings)
    except UserError as exc:
        # one clear line and a non-zero exit, not a traceback followed by "ready for action"
        log.critical("warmup worker cannot start: %s", exc)
        raise SystemExit(BOOT_FAILED) from None
    return setup_broker(settings.redis_url)


BOOT_FAILED = 2
"""Exit status of a fleet worker process that cannot start (no broker, no database, old schema)."""


def check_fleet_worker(settings: Settings) -> None:
    """What a fleet worker (``dramatiq workers.actors``) needs before it says it is ready: a Redis broker
    (an in-memory one would never receive work: only embedded runs use it, and they set their broker
    up themselves) and a database that exists and is at the newest schema (a wrong SQLite path must
    not create an empty database to run on). `UserError` says what is missing."""
    if not settings.redis_url:
        raise UserError(
            "WARMUP_REDIS_URL is not set: a fleet worker takes its work from Redis (the in-memory broker is "
            "for `warmup run` only)"
        )
    open_store(settings.database_url).dispose()


def setup_worker_logging() -> None:
    """Logging of a fleet worker process: `warmup.logs` format (JSON with WARMUP_LOG_FORMAT=json) and
    tokens masked on every handler.

    Called when the actors are imported without a broker set up first, i.e. by ``dramatiq
    workers.actors``, whose CLI has already pointed ``sys.stderr`` at its log pipe. Embedded runs and
    `warmup scheduler` set the broker up themselves and keep their own logging.
    """
    setup_logging()
    install_log_redaction()


def is_in_process(broker: dramatiq.Broker) -> bool:
    """True for the embedded broker, whose messages live only as long as this process."""
    return isinstance(broker, StubBroker)
