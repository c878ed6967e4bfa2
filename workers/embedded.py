"""Embedded mode: scheduler, in-process broker and worker threads in ONE process (SQLite by default).

`EmbeddedRunner` is what `warmup run` and the demo start, and what tests drive. The database is the
only state: a restart recovers what the previous process left (claims in flight become `unknown`,
queued messages are enqueued again), so nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import timedelta
from types import TracebackType

import dramatiq

from warmup.clock import Clock, clock_from_env
from warmup.services.runtime import ProviderPool, Runtime, Timings, configure, reset
from warmup.services.scheduler import Scheduler
from warmup.store import outcomes, queue
from warmup.store.db import make_engine, upgrade
from workers.broker import setup_broker

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while others wait (CPython's default is 0.005)."""


class EmbeddedRunner:
    """Start/stop a whole warm-up run inside this process.

    ``engine_url`` is any SQLAlchemy URL (SQLite file or PostgreSQL); ``clock`` defaults to
    ``WARMUP_CLOCK`` from the environment; ``worker_threads`` is the number of send threads.
    """

    def __init__(
        self,
        engine_url: str,
        clock: Clock | None = None,
        *,
        worker_threads: int = 4,
        timings: Timings | None = None,
        migrate: bool = True,
        poll_replies: bool = True,
    ) -> None:
        self.engine_url = engine_url
        self.clock = clock or clock_from_env()
        self.worker_threads = worker_threads
        self.timings = timings
        self.migrate = migrate
        self.poll_replies = poll_replies
        self.runtime: Runtime | None = None
        self.scheduler: Scheduler | None = None
        self._worker: dramatiq.Worker | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> EmbeddedRunner:
        """Migrate, recover what a previous process left, start the workers and the scheduler."""
        # One process runs the scheduler, the workers (and, in the demo, the simulator): a send is a
        # hand-off between threads at every step, and CPython lets a thread hold the GIL 5 ms before
        # another runnable one gets it. On an accelerated clock those waits are simulated minutes.
        sys.setswitchinterval(SWITCH_INTERVAL)
        engine = make_engine(self.engine_url)
        if self.migrate:
            upgrade(engine)
        runtime = Runtime(
            engine=engine, clock=self.clock, provider_for=ProviderPool(engine), timings=self.timings
        )
        configure(runtime)
        self.runtime = runtime
        broker = setup_broker(None)
        # Imported after setup_broker on purpose: dramatiq binds actors to a broker when it declares them.
        from workers.dispatcher import ActorDispatch

        now = self.clock.now()
        # One process owns an in-process broker: nothing it had queued survived, nobody else is sending.
        recovered = outcomes.recover_stale(engine, now, now)
        lost = queue.requeue_lost(engine, now + timedelta(days=2), now)
        self.scheduler = Scheduler(runtime, dispatch=ActorDispatch(), poll_replies=self.poll_replies)
        for message_id in lost:
            self.scheduler.dispatch.send_message(message_id)
        if recovered or lost:
            log.info(
                "embedded start: %d stale claims marked unknown, %d queued messages re-enqueued",
                recovered,
                len(lost),
            )
        # The worker timeout is also how often delayed messages are released: keep it a small
        # fraction of the pacing gaps in simulated time (`Timings.poll_wall`).
        poll_ms = max(1, round(runtime.bounds.poll_wall * 1000))
        self._worker = dramatiq.Worker(broker, worker_threads=self.worker_threads, worker_timeout=poll_ms)
        self._worker.start()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.scheduler.run, args=(self._stop,), name="warmup-scheduler"
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the scheduler, let the workers finish the sends in flight, close everything."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._worker is not None:
            self._worker.stop(timeout=int(timeout * 1000))
            self._worker = None
        if self.runtime is not None:
            reset()
            self.runtime.close()
            self.runtime.engine.dispose()
            self.runtime = None

    def wait(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set (signal handlers set it), then stop."""
        try:
            while not stop.wait(0.5):
                if not self.running:
                    break
        finally:
            self.stop()

    def __enter__(self) -> EmbeddedRunner:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
