"""`warmup run` (embedded: everything in one process) and `warmup scheduler` (fleet: the leader loop).

Both stop cleanly on Ctrl-C or SIGTERM: the scheduler stops ticking, workers finish the sends in
flight, and the database keeps everything a restart needs.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from warmup.cli.common import database_url, database_url_option, settings
from warmup.config import Settings
from warmup.core.errors import UserError
from warmup.store.db import database_problem, mask_url


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM (the first one stops cleanly; the process then exits normally)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _logging(settings: Settings) -> None:
    """One redacting handler in the format the settings ask for (WARMUP_LOG_FORMAT, WARMUP_LOG_LEVEL)."""
    from warmup.logs import setup_logging
    from warmup.secrets import install_log_redaction

    setup_logging(settings.log_format, settings.log_level)
    install_log_redaction()


def run(
    url: str | None = database_url_option(),
    threads: int = typer.Option(4, "--threads", min=1, max=64, help="Send threads."),
) -> None:
    """Run scheduler and workers in this one process (embedded mode, SQLite by default).

    Creates or upgrades the database schema first. Simulated time comes from WARMUP_CLOCK when set.
    Ctrl-C (or SIGTERM) stops cleanly; run it again to go on where it stopped.
    """
    from warmup.clock import clock_from_settings
    from workers.embedded import EmbeddedRunner

    loaded = settings()
    target = database_url(url)
    clock = clock_from_settings()  # a bad WARMUP_CLOCK is one clear error, before anything starts
    _logging(loaded)
    stop = _stop_on_signals()
    runner = EmbeddedRunner(target, worker_threads=threads)
    try:
        runner.start()
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"cannot start on {mask_url(target)}: {database_problem(exc, target)}") from None
    print(
        f"warmup running (embedded, {threads} send threads, database {mask_url(target)}, "
        f"now {clock.now():%Y-%m-%d %H:%M} UTC); Ctrl-C to stop",
        flush=True,
    )
    runner.wait(stop)
    print("warmup stopped")


REDIS_WAIT_SECONDS = 10.0
"""How long the scheduler waits for Redis at start before giving up (a Redis restart is shorter)."""


def scheduler(url: str | None = database_url_option()) -> None:
    """Run the fleet scheduler; start any number of copies, one leads at a time (Redis lock).

    Needs WARMUP_REDIS_URL and a migrated database (`warmup db upgrade`); workers are
    `dramatiq workers.actors` processes with the same settings.
    """
    loaded = settings()
    if not loaded.redis_url:
        raise UserError(
            "warmup scheduler needs WARMUP_REDIS_URL (fleet mode); use `warmup run` for embedded mode"
        )
    from warmup.services.admin import open_store

    target = database_url(url)
    open_store(target).dispose()  # reachable and migrated, or one clear error
    _wait_for_redis(loaded.redis_url, REDIS_WAIT_SECONDS)
    _logging(loaded)
    run_fleet_scheduler(target, loaded.redis_url, _stop_on_signals())


def _wait_for_redis(redis_url: str, seconds: float) -> None:
    """Return once Redis answers PING; a UserError after `seconds` without an answer."""
    import time

    import redis

    deadline = time.monotonic() + seconds
    while True:
        try:
            client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
            try:
                client.ping()
                return
            finally:
                client.close()
        except ValueError as exc:
            raise UserError(
                f"WARMUP_REDIS_URL is not a Redis URL ({exc}): e.g. redis://127.0.0.1:6379/0"
            ) from None
        except redis.RedisError:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"Redis at {mask_url(redis_url)} does not answer after {seconds:g} s: "
                    "start it (docker compose up -d redis) or fix WARMUP_REDIS_URL"
                ) from None
            time.sleep(0.5)


def run_fleet_scheduler(database_url: str, redis_url: str, stop: threading.Event) -> None:
    """The fleet scheduler loop until ``stop`` is set; usable from a subprocess entry point."""
    from warmup.services.leader import RedisLeaderLock
    from warmup.services.runtime import build_runtime, configure
    from warmup.services.scheduler import Scheduler
    from warmup.store.db import make_engine
    from workers.broker import setup_broker

    setup_broker(redis_url)
    # Imported after setup_broker on purpose: dramatiq binds actors to a broker when it declares them.
    from workers.dispatcher import ActorDispatch

    runtime = configure(build_runtime(make_engine(database_url)))
    lock = RedisLeaderLock.from_url(redis_url, ttl=runtime.bounds.lock_ttl_wall)
    try:
        Scheduler(runtime, dispatch=ActorDispatch(), leadership=lock).run(stop)
    finally:
        lock.close()
        runtime.close()


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    """Add `run` and `scheduler` to the top-level app."""
    app.command("run")(run)
    app.command("scheduler")(scheduler)
