"""Shared fixtures. Service-backed fixtures skip locally when a server is missing but fail in CI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from tests.fleet_fixture import fleet_builder
from warmup.store.db import create_database, database_reachable, drop_database, make_engine, upgrade
from warmup.store.models import metadata
from warmup.testing.services import PG_ADMIN_URL

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(name: str, reason: str) -> None:
    """Skip (locally) or fail (CI=true) when a real service the test needs is missing."""
    message = f"{name} is not reachable: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: service-backed tests must run, not skip)", pytrace=False)
    pytest.skip(message)


# ------------------------------------------------------------------------------------------ databases
# Fixtures for code that talks to the store (warmup.store). Use them like this:
#
#   def test_something(engine):            # runs twice: on SQLite and on PostgreSQL, schema migrated,
#       numbers.add_number(engine, ...)    # every table empty at the start of each test
#
#   def test_migrations(sqlite_url, pg_url):   # URLs of EMPTY databases (no schema): a fresh SQLite file,
#       ...                                    # a fresh throwaway PostgreSQL database dropped afterwards
#
# PostgreSQL comes from WARMUP_TEST_DATABASE_URL (default postgresql://root@127.0.0.1:5432/test); that
# database is only used to CREATE/DROP throwaway ones named warmup_test_<hex>. When the server is not
# reachable, PostgreSQL tests skip locally and fail with CI=true (`require_service`).


@pytest.fixture(scope="session")
def pg_available() -> bool:
    """Whether the test PostgreSQL server answers (checked once per session)."""
    return database_reachable(PG_ADMIN_URL)


@pytest.fixture(scope="session")
def pg_database_factory(pg_available: bool) -> Iterator[Callable[[], str]]:
    """`create()` -> URL of a new empty throwaway database; every one is dropped at session end."""
    created: list[str] = []

    def create() -> str:
        if not pg_available:
            require_service("PostgreSQL", f"cannot connect to {make_url(PG_ADMIN_URL)!r}")
        name = f"warmup_test_{uuid.uuid4().hex[:12]}"
        url = create_database(PG_ADMIN_URL, name)
        created.append(name)
        return url

    yield create
    if created:
        drop_database(PG_ADMIN_URL, *created)


@pytest.fixture
def pg_url(pg_database_factory: Callable[[], str]) -> str:
    """URL of a fresh, EMPTY PostgreSQL database for this test (dropped at session end)."""
    return pg_database_factory()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh, EMPTY SQLite file for this test."""
    return f"sqlite:///{tmp_path}/warmup.db"


@pytest.fixture(scope="session")
def _pg_migrated(pg_database_factory: Callable[[], str]) -> Iterator[Engine]:
    """One migrated PostgreSQL database per session; `engine` empties its tables before each test."""
    url = pg_database_factory()
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated store engine with empty tables, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        sqlite_engine = make_engine(f"sqlite:///{tmp_path}/warmup.db")
        upgrade(sqlite_engine)
        yield sqlite_engine
        sqlite_engine.dispose()
        return
    pg_engine: Engine = request.getfixturevalue("_pg_migrated")
    tables = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with pg_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield pg_engine


# -------------------------------------------------------------------------------------------- redis
# Tests needing Redis take `redis_url`: a dedicated database number (15 unless WARMUP_TEST_REDIS_URL says
# otherwise), emptied before and after each test, so no test sees another's keys.

REDIS_URL = os.environ.get("WARMUP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """URL of the reachable test Redis database, flushed before and after the test."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
        client.flushdb()
    except redis.RedisError as exc:
        client.close()
        require_service("redis", str(exc))
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()


# -------------------------------------------------------------------------------------------- fleets


@pytest.fixture
def make_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`make_fleet(engine, clock, count=...)`: numbers enrolled against a simulator (tests.fleet_fixture)."""
    yield from fleet_builder(tmp_path, monkeypatch)


# ------------------------------------------------------------------------------------------ no network
# Nothing may call the real WhatsApp APIs: a Whapi client's default meter is the published
# tools.whapi.cloud one, so a test that forgets `meter_url` fails (name lookups of the real hosts are
# refused and reported) instead of reaching the internet.

REAL_API_HOSTS = frozenset({"gate.whapi.cloud", "tools.whapi.cloud", "graph.facebook.com"})
_real_api_lookups: list[str] = []


@pytest.fixture(autouse=True, scope="session")
def _no_real_provider_apis() -> Iterator[None]:
    import socket

    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.lower().rstrip(".") in REAL_API_HOSTS:
            _real_api_lookups.append(name)
            raise OSError(f"tests must not reach the real provider API ({name})")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = guarded
    try:
        yield
    finally:
        socket.getaddrinfo = real


@pytest.fixture(autouse=True)
def _no_real_api_call(_no_real_provider_apis: None) -> Iterator[None]:
    _real_api_lookups.clear()
    yield
    assert not _real_api_lookups, f"the test tried to reach a real provider API: {_real_api_lookups}"
