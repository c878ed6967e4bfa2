"""The services a fleet run needs, private to the run: its own Redis server and PostgreSQL database.

The machine's Redis (127.0.0.1:6379) is shared with everything else, so a run that restarts Redis or
flushes it must not use it: `RedisServer` starts a private ``redis-server`` on a free port without
persistence (a restart loses every queue, like a crashed Redis without AOF). `throwaway_database`
creates a PostgreSQL database with a random name and drops it afterwards (the SQL is the store's:
`warmup.store.db.create_database`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import redis

from warmup.store.db import DatabaseUnreachable, create_database, database_reachable, drop_database

PG_ADMIN_URL = os.environ.get("WARMUP_TEST_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
"""An existing database used only to CREATE and DROP the throwaway ones."""


def free_port() -> int:
    """A TCP port that was free on the loopback interface a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceUnavailable(RuntimeError):
    """A service the harness needs (redis-server binary, PostgreSQL) is missing."""


class RedisServer:
    """A private ``redis-server`` on a free loopback port; `restart` kills it and starts it again.

    ``--save "" --appendonly no``: nothing survives a restart, which is the point of the restart test
    (the database, not the broker, must hold every plan and message).
    """

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise ServiceUnavailable("redis-server is not on PATH")
        self.binary = found
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="warmup-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 10.0) -> RedisServer:
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--loglevel",
            "warning",
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.RedisError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise ServiceUnavailable(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (it loses everything) and wait for it to be gone."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)
        self._process = None

    def restart(self, down_for: float = 0.5) -> None:
        """Kill the server, stay down ``down_for`` wall seconds, start it again on the same port."""
        self.kill()
        time.sleep(down_for)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def throwaway_database(admin_url: str = PG_ADMIN_URL, prefix: str = "warmup_fleet") -> Iterator[str]:
    """The URL of a new empty PostgreSQL database, dropped (with its connections) on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        url = create_database(admin_url, name)
    except DatabaseUnreachable as exc:
        raise ServiceUnavailable(str(exc)) from None
    try:
        yield url
    finally:
        try:
            drop_database(admin_url, name)
        except DatabaseUnreachable as exc:
            raise ServiceUnavailable(str(exc)) from None


def pg_available(admin_url: str = PG_ADMIN_URL) -> bool:
    return database_reachable(admin_url)


def workdir(prefix: str = "warmup-fleet-") -> Path:
    """A fresh temporary directory for plans, logs and the channels file of one run."""
    return Path(tempfile.mkdtemp(prefix=prefix))
