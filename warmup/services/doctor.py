"""`warmup doctor`: is everything a run needs in place? One verdict per item, red means it cannot work.

Items: the database (reachable and migrated to the newest schema), the broker (Redis answers PING when
`WARMUP_REDIS_URL` is set, else the embedded in-process broker), and every non-retired number: its token
variable, its channel's health through its provider, and its risk meter: a Whapi meter that fails is red
unless the plan meters the number locally (`risk.meter: local`), even when the local meter stands in;
a provider without a meter (the Cloud API) falls back to the local meter: a warning, not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from warmup.core.domain import Reading
from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of
from warmup.core.plan.model import MeterChoice, Risk
from warmup.files.plans import load_plan
from warmup.providers.base import OutcomeAction, Provider
from warmup.providers.whapi import WhapiProvider
from warmup.services.readings import WHAPI_KINDS
from warmup.services.runtime import provider_from_row
from warmup.store import readings as reading_store
from warmup.store.days import planning_failure
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
    """The number's provider client (meter URL included), built as the runtime builds it."""

    return provider_from_row(number)


_HEALTH = {
    OutcomeAction.OK: Verdict.OK,
    OutcomeAction.UNKNOWN: Verdict.WARN,
    OutcomeAction.THROTTLE: Verdict.WARN,
}
"""Channel health -> verdict; anything else is red: `retry` (unreachable, 5xx) means it cannot send NOW."""


@dataclass(frozen=True)
class MeterFacts:
    """What the database says about a Whapi number's risk meter (`meter_facts`)."""

    choice: MeterChoice = "provider_or_local"  # the plan's risk.meter
    read_today: bool = False  # its meter was read on its local today: the day's POST happened
    today: Reading | None = None  # the reading of its local today, if any


def meter_facts(engine: Engine, number: Number, now: datetime) -> MeterFacts:
    """The plan's `risk.meter` (the default when the plan cannot be read) and today's meter reads."""
    assert number.id is not None
    try:
        choice = load_plan(number.plan_path).risk.meter
    except Exception:
        choice = Risk().meter
    today = local_date_of(now, number.timezone)
    source = "simulator" if number.provider == "simulator" else "whapi"
    try:
        return MeterFacts(
            choice,
            reading_store.read_from_on(engine, number.id, today, source),
            reading_store.reading_of_day(engine, number.id, today),
        )
    except Exception:  # the database item says what is wrong with it; the meter is still checked
        return MeterFacts(choice)


def _shown(url: str) -> str:
    """A URL without its credentials or query (a meter URL may carry a token parameter)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def whapi_meter_check(item: str, provider: WhapiProvider, now: datetime, facts: MeterFacts) -> Check:
    """A Whapi risk meter, read live as the fleet reads it (POST if the day's computation was not asked
    for yet, else GET): red when it fails and the plan wants it, whatever the fallback."""
    if facts.choice == "local":
        return Check(item, Verdict.OK, "not read: the plan meters this number locally (risk.meter: local)")
    read = provider.read_meter(now, post=not facts.read_today)
    where = _shown(provider.meter_url)
    if read.reading is None:
        instead = (
            "no reading is taken, so days are decided on the last stored one until stale_after holds them"
            if facts.choice == "provider"
            else "the local meter is used instead"
        )
        hint = (
            "; if the channel's plan has no meter, set risk.meter: local"
            if read.failure == "no_access"
            else ""
        )
        return Check(item, Verdict.FAIL, f"{where} failed: {read.error}; {instead}{hint}")
    r = read.reading
    factors = f"overall {r.overall}, lifetime {r.lifetime}, response {r.response_rate}, contacts {r.contacts}"
    if read.error is not None:  # the POST failed; GET still gives the last computation
        return Check(item, Verdict.FAIL, f"{where} failed: {read.error} ({factors})")
    if facts.today is not None and facts.today.meter_error:
        return Check(
            item,
            Verdict.WARN,
            f"{where} answers now ({factors}), but today's reading was taken while it failed: "
            f"{facts.today.meter_error}",
        )
    return Check(item, Verdict.OK, f"{where}: {factors}")


def check_number(
    number: Number,
    now: datetime,
    factory: ProviderFactory = default_provider,
    *,
    meter: MeterFacts | None = None,
) -> list[Check]:
    """The number's channel health and risk-meter access (two items), through its provider.

    Reading the meter is a real meter query, so the doctor costs one per number. A Whapi number's
    meter is read as the fleet reads it (`whapi_meter_check`, with `meter` from the database): a POST
    when the number's meter was not read yet on its local day; the fleet does not know of the doctor's
    POST and POSTs again that day (Whapi computes at most once a day: it answers the same reading).
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
        if isinstance(provider, WhapiProvider):
            checks.append(whapi_meter_check(f"{item} risk meter", provider, now, meter or MeterFacts()))
            return checks
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


def check_planning(engine: Engine, number: Number, now: datetime) -> list[Check]:
    """Red when the number's local today could not be planned (the rest of its batch was): no item
    otherwise, the day being planned or not due yet."""
    assert number.id is not None
    today = local_date_of(now, number.timezone)
    error = planning_failure(engine, number.id, today)
    if error is None:
        return []
    detail = f"today ({today}) could not be planned: {error}; the scheduler keeps retrying it"
    return [Check(f"{number.phone} ({number.provider}) planning", Verdict.FAIL, detail)]


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
        try:
            numbers = [n for n in list_numbers(engine) if n.state != NumberStatus.RETIRED]
        except Exception as exc:
            checks.append(Check("numbers", Verdict.FAIL, f"cannot be read: {type(exc).__name__}"))
            numbers = []
        if not numbers:
            checks.append(Check("numbers", Verdict.WARN, "none enrolled: run `warmup apply FLEET.yaml`"))
        for number in numbers:
            meter = meter_facts(engine, number, now) if number.provider in WHAPI_KINDS else None
            checks += check_number(number, now, factory, meter=meter)
            checks += check_planning(engine, number, now)
    finally:
        engine.dispose()
    return checks


def healthy(checks: list[Check]) -> bool:
    """False when any item is red (the CLI exits 1)."""
    return all(check.verdict is not Verdict.FAIL for check in checks)
