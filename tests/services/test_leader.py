"""The scheduler's leader lock against a real Redis: one leader, renewal, takeover, fencing."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
import redis

from warmup.services import metrics
from warmup.services.leader import AlwaysLeader, RedisLeaderLock, masked_url

pytestmark = pytest.mark.redis


@pytest.fixture
def key() -> str:
    return f"warmup:test:leader:{uuid.uuid4().hex}"


def test_only_one_of_two_schedulers_leads(redis_url: str, key: str) -> None:
    first = RedisLeaderLock.from_url(redis_url, ttl=2.0, key=key)
    second = RedisLeaderLock.from_url(redis_url, ttl=2.0, key=key)
    try:
        assert first.hold() is True
        assert second.hold() is False
        # renewals keep the leader leading and the other one waiting
        for _ in range(3):
            assert first.hold() is True
            assert second.hold() is False
    finally:
        first.release()
        second.release()
        first.close()
        second.close()


def test_takeover_after_the_leader_dies(redis_url: str, key: str) -> None:
    leader = RedisLeaderLock.from_url(redis_url, ttl=0.5, key=key)
    standby = RedisLeaderLock.from_url(redis_url, ttl=0.5, key=key)
    try:
        assert leader.hold() is True
        assert standby.hold() is False
        # the leader stops renewing (dies); within one TTL the standby takes over
        deadline = time.monotonic() + 3.0
        while not standby.hold():
            assert time.monotonic() < deadline, "standby never took over"
            time.sleep(0.05)
        # the old leader, coming back, must notice it lost the lock and not renew someone else's
        assert leader.hold() is False
        assert standby.hold() is True
    finally:
        leader.close()
        standby.release()
        standby.close()


def test_release_hands_over_at_once(redis_url: str, key: str) -> None:
    first = RedisLeaderLock.from_url(redis_url, ttl=30.0, key=key)
    second = RedisLeaderLock.from_url(redis_url, ttl=30.0, key=key)
    try:
        assert first.hold() is True
        first.release()
        assert first.is_leader is False
        assert second.hold() is True
        # releasing a lock one does not hold leaves the holder's key alone
        first.release()
        assert second.hold() is True
    finally:
        second.release()
        first.close()
        second.close()


def test_unreachable_redis_means_not_leader() -> None:
    lock = RedisLeaderLock.from_url("redis://127.0.0.1:1/0", ttl=1.0)
    try:
        assert lock.hold() is False
        assert lock.is_leader is False
    finally:
        lock.close()


def test_embedded_is_always_leader() -> None:
    leader = AlwaysLeader()
    assert leader.hold() is True
    leader.release()
    assert leader.hold() is True


def test_an_outage_is_logged_once_with_its_reason_then_rarely_then_its_end(
    redis_url: str, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    lock = RedisLeaderLock.from_url("redis://:s3cret-pw@127.0.0.1:1/0", ttl=1.0, key=key, warn_every=60.0)
    caplog.set_level(logging.INFO, logger="warmup.services.leader")
    try:
        for _ in range(5):  # the scheduler asks every second
            assert lock.hold() is False
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1
        assert "redis://:***@127.0.0.1:1/0 unreachable: ConnectionError" in lines[0]
        assert "127.0.0.1" in lines[0].split("ConnectionError", 1)[1]  # the driver's reason, not just a name
        lock._warned_at -= 61  # a minute later, still down: one reminder
        assert lock._down_since is not None
        lock._down_since -= 61
        assert lock.hold() is False and lock.hold() is False
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert (
            len(lines) == 2
            and "still unreachable" in lines[1]
            and "after 1 min 01 s (6 failed attempts)" in lines[1]
        )
        lock.client.close()
        lock.client = redis.Redis.from_url(redis_url)  # Redis is back
        assert lock.hold() is True and lock.hold() is True
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 3 and "reachable again" in lines[2]
        assert "s3cret-pw" not in caplog.text
    finally:
        lock.release()
        lock.close()


def test_masked_url_hides_only_the_password() -> None:
    assert masked_url("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert masked_url("redis://host:6379/0") == "redis://host:6379/0"


def test_a_leader_cut_off_from_redis_says_it_lost_the_leadership_once_the_ttl_has_passed(
    redis_url: str, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Losing the leadership to an outage was silent: only "unreachable" was logged, while the scheduler
    stopped ticking. It is logged (once) and counted when the lock can no longer be held."""
    lock = RedisLeaderLock.from_url(redis_url, ttl=1.0, key=key)
    caplog.set_level(logging.INFO, logger="warmup.services.leader")
    lost_before = metrics.LEADERSHIP.labels(event="lost")._value.get()
    try:
        assert lock.hold() is True
        lock.client.close()
        lock.client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
        assert lock.hold() is True  # within the TTL the key cannot have expired: still the leader
        assert lock._renewed_at is not None
        lock._renewed_at -= 1.1  # the TTL has passed since the last renewal (no sleeping on a clock)
        assert lock.hold() is False and lock.hold() is False
        lost = [r.getMessage() for r in caplog.records if "leadership lost" in r.getMessage()]
        assert len(lost) == 1 and "longer than the lock's TTL (1 s)" in lost[0]
        assert metrics.LEADERSHIP.labels(event="lost")._value.get() == lost_before + 1
    finally:
        lock.close()
        redis.Redis.from_url(redis_url).delete(key)
