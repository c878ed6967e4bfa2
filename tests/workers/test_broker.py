"""Broker setup: in-process and Redis brokers, actors bound before use, the `dramatiq workers.actors` path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from warmup.store.db import upgrade
from workers.broker import (
    BOOT_FAILED,
    DEAD_THREAD_EXIT,
    ThreadWatchdog,
    current_broker,
    dead_threads,
    is_in_process,
    setup_broker,
)


@pytest.fixture
def broker_url(redis_url: str) -> Iterator[str]:
    """The test Redis; later tests get an in-process broker back."""
    yield redis_url
    setup_broker(None)


def test_in_process_broker_binds_the_actors() -> None:
    broker = setup_broker(None)
    import workers.actors as actors

    assert isinstance(broker, StubBroker) and is_in_process(broker)
    assert dramatiq.get_broker() is broker is current_broker()
    for actor in actors.ACTORS:
        assert actor.broker is broker
        assert broker.get_actor(actor.actor_name) is actor
    assert {a.actor_name for a in actors.ACTORS} == {
        "plan_day",
        "plan_days",
        "send_message",
        "send_messages",
        "ingest_replies",
    }
    # a second embedded run in the same process gets a fresh broker, and the actors follow it
    second = setup_broker(None)
    assert second is not broker
    assert all(actor.broker is second for actor in actors.ACTORS)


@pytest.mark.redis
def test_redis_broker_carries_actor_messages(broker_url: str) -> None:
    broker = setup_broker(broker_url)
    import workers.actors as actors

    assert isinstance(broker, RedisBroker)
    assert not is_in_process(broker)
    assert actors.send_message.broker is broker
    broker.flush_all()
    message = actors.send_message.send(12345)
    assert message.args == (12345,)  # ids only: JSON-serialisable, no objects
    batch = actors.send_messages.send([12345, 12346])
    assert batch.args == ([12345, 12346],)
    assert broker.client.llen(f"warmup:{actors.QUEUE}") >= 2  # namespace "warmup", bytes client
    broker.flush_all()


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database at the newest schema: a fleet worker refuses to start on anything else."""
    url = f"sqlite:///{tmp_path_factory.mktemp('worker') / 'warmup.db'}"
    upgrade(url)
    return url


def _import_actors(
    env: dict[str, str], code: str = "import workers.actors"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_a_fleet_worker_without_redis_says_so_in_one_line_and_exits(migrated_db: str) -> None:
    """Before: a traceback, then "ready for action" on an in-memory broker that never receives work."""
    env = {**os.environ, "WARMUP_DATABASE_URL": migrated_db}
    env.pop("WARMUP_REDIS_URL", None)
    result = _import_actors(env)
    assert result.returncode == BOOT_FAILED
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "WARMUP_REDIS_URL is not set" in lines[0]


@pytest.mark.redis
def test_a_fleet_worker_on_a_missing_sqlite_file_does_not_create_one(broker_url: str, tmp_path: Path) -> None:
    """Before: a wrong SQLite path created an empty database and the worker ran on it."""
    path = tmp_path / "typo" / "warmup.db"
    env = {**os.environ, "WARMUP_REDIS_URL": broker_url, "WARMUP_DATABASE_URL": f"sqlite:///{path}"}
    result = _import_actors(env)
    assert result.returncode == BOOT_FAILED
    assert "Traceback" not in result.stderr and f"no database at {path}" in result.stderr
    assert not path.exists() and not path.parent.exists()


@pytest.mark.redis
def test_dramatiq_cli_imports_workers_actors_with_the_env_broker(broker_url: str, migrated_db: str) -> None:
    """What `dramatiq workers.actors` does first: import the module in a fresh process, broker from env."""
    code = (
        "import dramatiq, workers.actors as a; "
        "b = dramatiq.get_broker(); "
        "print(type(b).__name__, a.plan_day.broker is b, sorted(b.get_declared_actors()))"
    )
    env = {**os.environ, "WARMUP_REDIS_URL": broker_url, "WARMUP_DATABASE_URL": migrated_db}
    result = _import_actors(env, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "RedisBroker True ['ingest_replies', 'plan_day', 'plan_days', 'send_message', 'send_messages']"
    )


@pytest.mark.redis
def test_a_worker_process_logs_json_with_tokens_masked(broker_url: str, migrated_db: str) -> None:
    """`dramatiq workers.actors` imports the actors with no broker set up: that path sets up logging."""
    token = "tok-" + uuid.uuid4().hex
    code = (
        "import logging, os; from warmup.secrets import register_secret; "
        "register_secret(os.environ['SIM_TOKEN_X']); "
        "import workers.actors; "
        "logging.getLogger('workers.test').warning('sending with token %s', os.environ['SIM_TOKEN_X'])"
    )
    env = {
        **os.environ,
        "SIM_TOKEN_X": token,
        "WARMUP_LOG_FORMAT": "json",
        "WARMUP_DATABASE_URL": migrated_db,
        "WARMUP_REDIS_URL": broker_url,
    }
    result = _import_actors(env, code)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if "sending with token" in line)
    record = json.loads(line)
    assert record["logger"] == "workers.test" and record["event"] == "sending with token ***"
    assert token not in result.stderr


def test_worker_boot_quiets_the_garbage_collector() -> None:
    import gc

    from workers.broker import GC_THRESHOLDS, quiet_garbage_collector

    before = gc.get_threshold()
    try:
        quiet_garbage_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # what was loaded is out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _DyingConsumer:
    """A broker consumer as a Redis restart left one: every read fails, and so does closing it (the
    close in dramatiq's error handler then escapes, and the consumer thread dies)."""

    def __iter__(self) -> _DyingConsumer:
        return self

    def __next__(self) -> None:
        raise RuntimeError("Redis went away mid-read")

    closed = False

    def close(self) -> None:
        if not self.closed:  # the first close fails (inside dramatiq's error handler), later ones work
            self.closed = True
            raise ConnectionResetError("Redis went away")

    def requeue(self, messages: object) -> None:
        """Nothing was taken, nothing to give back (the worker asks on its way out)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death itself
def test_a_worker_whose_consumer_thread_died_exits_to_be_restarted() -> None:
    broker = StubBroker()
    broker.emit_after("process_boot")
    exits: list[int] = []
    watchdog = ThreadWatchdog(every=3600, exit_process=exits.append)  # looks only when asked here
    broker.add_middleware(watchdog)
    broker.declare_queue("doomed")
    healthy = broker.consume
    dying = _DyingConsumer()
    broker.consume = lambda queue_name, prefetch=1, timeout=100: (  # type: ignore[method-assign]
        dying if queue_name == "doomed" else healthy(queue_name, prefetch, timeout)
    )
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=10)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not dead_threads(worker) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ("consumer", "doomed") in dead_threads(worker)
        assert watchdog.check(worker) is True
        assert exits == [DEAD_THREAD_EXIT]
    finally:
        watchdog.stopping.set()
        worker.stop()


def test_the_fleet_broker_watches_its_worker_threads(broker_url: str) -> None:
    broker = setup_broker(broker_url)
    try:
        assert any(isinstance(m, ThreadWatchdog) for m in broker.middleware)
    finally:
        setup_broker(None)
