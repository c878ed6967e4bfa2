"""One scheduler leads at a time: a Redis lock with a fencing token, renewed while the leader lives.

The lock is ``SET key token NX PX ttl``; the holder renews it with a compare-and-set Lua script
(only if the key still holds ITS token), so a leader that stalled past the TTL cannot extend a lock
another copy has taken meanwhile. If the leader dies, the key expires and another copy takes over
within one TTL. Embedded mode has a single process and is always the leader.

While Redis is unreachable the scheduler asks every second: the first failure is logged with its reason
(the URL's password masked), then at most once per `warn_every` while it lasts, and one line when
Redis answers again, so an outage is visible without flooding the log.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta
from typing import Protocol
from urllib.parse import urlsplit

import redis

from warmup.core.plan.values import human_duration
from warmup.services import metrics

log = logging.getLogger(__name__)

LOCK_KEY = "warmup:scheduler:leader"

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class Leadership(Protocol):
    """Answers "may I run the scheduler's tick now?"; called before every tick."""

    def hold(self) -> bool:
        """Acquire or renew the leadership; True while this process is the leader."""
        ...

    def release(self) -> None:
        """Give the leadership up at once (clean shutdown), so another copy takes over without waiting."""
        ...


class AlwaysLeader:
    """Embedded mode: the only scheduler there is."""

    def hold(self) -> bool:
        return True

    def release(self) -> None:
        return None


def masked_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``, fit for a log line."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return "<unparsable redis URL>"
    return url.replace(f":{password}@", ":***@") if password else url


class RedisLeaderLock:
    """The fleet's leader lock. ``ttl`` bounds how long a dead leader blocks a takeover.

    Leadership is also dropped locally when the last successful renewal is older than the TTL
    (Redis unreachable): by then the key may have expired and another copy may lead.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl: float = 5.0,
        key: str = LOCK_KEY,
        where: str = "redis",
        warn_every: float = 60.0,
    ) -> None:
        self.client = client
        self.ttl_ms = max(int(ttl * 1000), 100)
        self.key = key
        self.token = secrets.token_hex(16)
        self.where = where  # how log lines name the server (a masked URL)
        self.warn_every = warn_every
        self._renewed_at: float | None = None  # monotonic time of the last successful acquire/renew
        self._down_since: float | None = None  # monotonic time of the first failure of an outage
        self._warned_at = 0.0
        self._failures = 0

    @classmethod
    def from_url(
        cls, url: str, *, ttl: float = 5.0, key: str = LOCK_KEY, warn_every: float = 60.0
    ) -> RedisLeaderLock:
        """Build the lock on its own client (bytes replies, short timeouts so a dead Redis fails fast)."""
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, ttl=ttl, key=key, where=masked_url(url), warn_every=warn_every)

    @property
    def is_leader(self) -> bool:
        """True while the last renewal is recent enough that the key cannot have expired yet."""
        if self._renewed_at is None:
            return False
        return (time.monotonic() - self._renewed_at) * 1000 < self.ttl_ms

    def hold(self) -> bool:
        started = time.monotonic()
        try:
            if self._renewed_at is not None:
                renewed = self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms)
                if renewed == 1:
                    self._renewed_at = started
                    return True
                log.warning("scheduler leadership lost (lock taken over or expired)")
                metrics.LEADERSHIP.labels(event="lost").inc()
                self._renewed_at = None
            acquired = self.client.set(self.key, self.token, nx=True, px=self.ttl_ms)
        except redis.RedisError as exc:
            self._unreachable(exc)
            if not self.is_leader and self._renewed_at is not None:
                self._renewed_at = None
                log.warning(
                    "scheduler leadership lost: %s unreachable for longer than the lock's TTL (%s); "
                    "another copy may lead now",
                    self.where,
                    human_duration(timedelta(milliseconds=self.ttl_ms)),
                )
                metrics.LEADERSHIP.labels(event="lost").inc()
            return self.is_leader
        self._reachable()
        if acquired:
            log.info("scheduler leadership acquired")
            metrics.LEADERSHIP.labels(event="acquired").inc()
            self._renewed_at = started
            return True
        return False

    def _unreachable(self, exc: redis.RedisError) -> None:
        """Log an outage's first failure with its reason, then at most once per `warn_every`."""
        now = time.monotonic()
        self._failures += 1
        if self._down_since is None:
            self._down_since = self._warned_at = now
            log.warning("scheduler lock: %s unreachable: %s", self.where, self._reason(exc))
        elif now - self._warned_at >= self.warn_every:
            self._warned_at = now
            log.warning(
                "scheduler lock: %s still unreachable after %s (%d failed attempts): %s",
                self.where,
                human_duration(timedelta(seconds=now - self._down_since)),
                self._failures,
                self._reason(exc),
            )

    def _reachable(self) -> None:
        if self._down_since is not None:
            log.warning(
                "scheduler lock: %s reachable again after %s",
                self.where,
                human_duration(timedelta(seconds=time.monotonic() - self._down_since)),
            )
        self._down_since = None
        self._failures = 0

    def _reason(self, exc: redis.RedisError) -> str:
        """The exception's first line with any password of the URL masked."""
        text = (str(exc).splitlines() or [""])[0] or "no detail"
        password = self.client.connection_pool.connection_kwargs.get("password")
        if isinstance(password, str) and password:
            text = text.replace(password, "***")
        return f"{type(exc).__name__}: {text}"[:300]

    def release(self) -> None:
        self._renewed_at = None
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except redis.RedisError:
            log.warning("scheduler lock: could not release (it will expire)")

    def close(self) -> None:
        self.client.close()
