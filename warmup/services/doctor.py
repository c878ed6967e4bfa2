"""`warmup doctor`: is everything a run needs in place? One verdict per item, red means it cannot work.

Items: the database (reachable and migrated to the newest schema), the broker (Redis answers PING when
`WARMUP_REDIS_URL` is set, else the embedded in-process broker), and every non-retired number: its token
variable, its channel's health through its provider, and access to its risk meter (a number without
one falls back to the local meter: a warning, not an error).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of
from warmup.providers.base import OutcomeAction, Provider
from warmup.providers.factory import make_provider
from warmup.secrets import resolve_token
from warmup.store.db import (
    Engine,
    check_database_url,
    current_revision,
    database_problem,
    head_revision,
    make_engine,
    mask_url,
    missing_sqlite_file,
)
from warmup.store.models import Number, NumberStatus
from warmup.store.numbers import list_numbers


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One item the doctor looked at."""

    item: str
    verdict: Verdict
    detail: str


ProviderFactory = Callable[[Number], Provider]


def check_database(url: str) -> tuple[Check, Engine | None]:
    """Reachable and migrated? Returns the engine when the numbers can be read from it."""

    item = f"database {mask_url(url)}"
    try:
        check_database_url(url)
    except UserError as exc:
        return Check("database", Verdict.FAIL, str(exc)), None
    missing = missing_sqlite_file(url)
    if missing is not None:  # connecting would create an empty file
        return Check(item, Verdict.FAIL, f"no database file at {missing}: run `warmup db upgrade`"), None
    try:
        engine = make_engine(url)
    except Exception as exc:
        return Check(item, Verdict.FAIL, f"unusable: {database_problem(exc, url)}"), None
    try:
        revision = current_revision(engine)
    except Exception as exc:
        engine.dispose()
        return Check(item, Verdict.FAIL, f"unreachable: {database_problem(exc, url)}"), None
    head = head_revision()
    if revision is None:
        engine.dispose()
        return Check(item, Verdict.FAIL, "not migrated: run `warmup db upgrade`"), None
    if revision != head:
        return Check(
            item, Verdict.FAIL, f"schema {revision}, newest is {head}: run `warmup db upgrade`"
        ), engine
    return Check(item, Verdict.OK, f"schema {revision} (newest)"), engine


def check_broker(redis_url: str | None) -> Check:
    """Redis PING when configured; the embedded broker needs nothing."""
    if not redis_url:
        return Check("broker", Verdict.OK, "embedded (in-process; set WARMUP_REDIS_URL for a fleet)")
    import redis  # late on purpose: only a fleet (WARMUP_REDIS_URL) needs it, ~40 ms to import

    item = f"broker {mask_url(redis_url)}"
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # redis-py messages name host and port, never the password
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        password = urlsplit(redis_url).password
        first = first.replace(password, "***") if password else first
        return Check(item, Verdict.FAIL, f"Redis does not answer ({first}): is it running?")
    return Check(item, Verdict.OK, "Redis answers PING")


def default_provider(number: Number) -> Provider:
    """The number's provider client, its token read from the environment variable it names."""

    options = {"phone_number_id": number.phone_number_id} if number.phone_number_id else {}
    return make_provider(
        number.provider, resolve_token(number.token_ref), base_url=number.base_url, **options
    )


_HEALTH = {
    OutcomeAction.OK: Verdict.OK,
    OutcomeAction.UNKNOWN: Verdict.WARN,
    OutcomeAction.THROTTLE: Verdict.WARN,
}
"""Channel health -> verdict; anything else is red: `retry` (unreachable, 5xx) means it cannot send NOW."""


def check_number(number: Number, now: datetime, factory: ProviderFactory = default_provider) -> list[Check]:
    """The number's channel health and risk-meter access (two items), through its provider.

    Reading the meter is a real meter query (Whapi computes one), so the doctor costs one per number.
    """

    item = f"{number.phone} ({number.provider})"
    try:
        provider = factory(number)
    except Exception as exc:  # SecretError / UserError text is safe: it names the variable, not the token
        return [Check(f"{item} channel", Verdict.FAIL, f"no client: {exc}")]
    try:
        health = provider.health()
        verdict = _HEALTH.get(health.action, Verdict.FAIL)
        checks = [Check(f"{item} channel", verdict, f"{health.status}: {health.reason}")]
        reading = provider.fetch_reading(local_date_of(now, number.timezone))
        if reading is None:
            detail = (
                f"unavailable ({provider.last_reading_error or 'no reason given'}); the local meter is used"
            )
            checks.append(Check(f"{item} risk meter", Verdict.WARN, detail))
        else:
            factors = (
                f"overall {reading.overall}, lifetime {reading.lifetime}, "
                f"response {reading.response_rate}, contacts {reading.contacts}"
            )
            checks.append(Check(f"{item} risk meter", Verdict.OK, factors))
        return checks
    finally:
        provider.close()


def run(
    database_url: str,
    redis_url: str | None,
    now: datetime,
    factory: ProviderFactory = default_provider,
) -> list[Check]:
    """Every check, in order: database, broker, then each non-retired number."""

    database, engine = check_database(database_url)
    checks = [database, check_broker(redis_url)]
    if engine is None:
        return checks
    try:
        numbers = [n for n in list_numbers(engine) if n.state != NumberStatus.RETIRED]
    except Exception as exc:
        checks.append(Check("numbers", Verdict.FAIL, f"cannot be read: {type(exc).__name__}"))
        numbers = []
    finally:
        engine.dispose()
    if not numbers:
        checks.append(Check("numbers", Verdict.WARN, "none enrolled: run `warmup apply FLEET.yaml`"))
    for number in numbers:
        checks += check_number(number, now, factory)
    return checks


def healthy(checks: list[Check]) -> bool:
    """False when any item is red (the CLI exits 1)."""
    return all(check.verdict is not Verdict.FAIL for check in checks)
