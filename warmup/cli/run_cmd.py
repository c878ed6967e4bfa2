"""`warmup run` (embedded: everything in one process) and `warmup scheduler` (fleet: the leader loop).

Both stop cleanly on Ctrl-C or SIGTERM: the scheduler stops ticking, workers finish the sends in
flight, and the database keeps everything a restart needs.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import typer

from warmup.config import Settings
from warmup.errors import UserError


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM (the first one stops cleanly; the process then exits normally)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _logging(settings: Settings) -> None:
    from warmup.secrets import install_log_redaction

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_log_redaction()


def run(
    database_url: str = typer.Option(
        None, "--database-url", help="SQLAlchemy URL (default: WARMUP_DATABASE_URL)"
    ),
    threads: int = typer.Option(4, "--threads", min=1, max=64, help="send threads"),
) -> None:
    """Run scheduler and workers in this one process (embedded mode, SQLite by default)."""
    from warmup.embedded import EmbeddedRunner

    settings = Settings()
    _logging(settings)
    url = database_url or settings.database_url
    stop = _stop_on_signals()
    runner = EmbeddedRunner(url, worker_threads=threads)
    runner.start()
    print(f"warmup running (embedded, {threads} send threads); Ctrl-C to stop")
    runner.wait(stop)
    print("warmup stopped")


def scheduler(
    database_url: str = typer.Option(
        None, "--database-url", help="SQLAlchemy URL (default: WARMUP_DATABASE_URL)"
    ),
) -> None:
    """Run the fleet scheduler; start any number of copies, one leads at a time (Redis lock)."""
    settings = Settings()
    _logging(settings)
    if not settings.redis_url:
        raise UserError(
            "warmup scheduler needs WARMUP_REDIS_URL (fleet mode); use `warmup run` for embedded mode"
        )
    run_fleet_scheduler(database_url or settings.database_url, settings.redis_url, _stop_on_signals())


def run_fleet_scheduler(database_url: str, redis_url: str, stop: threading.Event) -> None:
    """The fleet scheduler loop until ``stop`` is set; usable from a subprocess entry point."""
    from warmup.leader import RedisLeaderLock
    from warmup.runtime import build_runtime, configure
    from warmup.scheduler import Scheduler
    from warmup.store.db import make_engine
    from workers.broker import setup_broker

    setup_broker(redis_url)
    import workers.actors  # noqa: F401  (declares the actors on the Redis broker)

    runtime = configure(build_runtime(make_engine(database_url)))
    lock = RedisLeaderLock.from_url(redis_url, ttl=runtime.bounds.lock_ttl_wall)
    try:
        Scheduler(runtime, leadership=lock).run(stop)
    finally:
        lock.close()
        runtime.close()


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    """Add `run` and `scheduler` to the top-level app."""
    app.command("run")(run)
    app.command("scheduler")(scheduler)
