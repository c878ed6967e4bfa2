"""The harness's private services: a restartable Redis that loses everything, throwaway databases."""

from __future__ import annotations

import re

import psycopg
import pytest
import redis

from tests.conftest import require_service
from warmup.testing.harness import contact_of, flush_dedicated_db, phone_of
from warmup.testing.services import RedisServer, ServiceUnavailable, pg_available, throwaway_database

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def test_fleet_phones_are_e164_and_never_a_contact() -> None:
    phones = {phone_of(i) for i in range(10_000)}
    contacts = {contact_of(i) for i in range(10_000)}
    assert len(phones) == 10_000 and not phones & contacts
    assert all(E164.match(p) for p in phones | contacts)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/0", "redis://h:1/x"])
def test_a_shared_redis_is_never_flushed_without_a_dedicated_database(url: str) -> None:
    with pytest.raises(ValueError, match="dedicated database number"):
        flush_dedicated_db(url)


@pytest.mark.redis
def test_private_redis_restarts_empty_on_the_same_port() -> None:
    try:
        server = RedisServer()
    except ServiceUnavailable as exc:
        require_service("redis-server", str(exc))
        return
    with server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        port = server.port
        server.restart(down_for=0.1)
        assert server.port == port and server.restarts == 1
        assert client.get("k") is None  # nothing persisted: a crashed Redis without AOF
        client.close()
        pid = server.pid
    assert pid is not None and server.pid is None


@pytest.mark.postgres
def test_throwaway_database_is_dropped_afterwards() -> None:
    if not pg_available():
        require_service("PostgreSQL", "cannot connect")
    with throwaway_database(prefix="warmup_selftest") as url:
        with psycopg.connect(url) as conn:
            name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None and str(name[0]).startswith("warmup_selftest_")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3).close()
