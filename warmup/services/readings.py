"""Today's risk reading of a number: the stored one, else the provider's meter (once a day), else the
local meter computed from our own sends and replies.

Read at the start of a number's local day by planning (`warmup.services.planning`). The plan's
`risk.meter` says which meter: `local` never asks the provider; `provider_or_local` falls back to the
local meter when the provider's meter fails, the failure stored with the reading (`meter_error`);
`provider` takes no reading when it fails, so the day is decided on the last one stored (which the
plan's `stale_after` judges) and the failure is an audit row (`meter_failed`). Either way `why` says
so, `doctor` is red and `warmup_meter_failures_total` counts it.

A Cloud API number has no risk meter: unless its plan says `risk.meter: local`, its reading is the local
meter's factors with Meta's quality rating, status and messaging limit (`meta_reading`), or the local
factors alone with `meter_error` when Meta cannot be asked.

A Whapi meter computes once a day (POST) and returns the last computation (GET): the database says
whether the number's meter was already read on its local day (`readings.read_from_on`), so a fleet of
processes POSTs once per number and local day; only reads racing in the same instant both POST.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from warmup.core.domain import Reading
from warmup.core.localtime import local_date_of
from warmup.core.plan.model import MeterChoice, Risk
from warmup.core.risk import local_reading
from warmup.providers.base import ProviderError
from warmup.providers.cloud_api import CloudApiProvider
from warmup.providers.whapi import MeterRead, WhapiProvider, failure_class
from warmup.secrets import clip
from warmup.services import metrics
from warmup.services.runtime import Runtime, provider_from_row
from warmup.store import audit, history, inbound, readings
from warmup.store.db import Engine
from warmup.store.models import (
    Number,
    RecipientKind,
)

log = logging.getLogger(__name__)

LOCAL_METER_DAYS = 7
"""The trailing window, in local days, the local risk meter counts sends and replies over."""


# --------------------------------------------------------------------------------------- the reading


def taken_on(reading: Reading | None, number: Number, local_date: date) -> bool:
    return reading is not None and local_date_of(reading.taken_at, number.timezone) == local_date


CLOUD_KIND = "cloud_api"
"""The Meta Cloud API provider: its numbers' readings carry Meta's signals (`meta_reading`)."""
WHAPI_KINDS = ("whapi", "simulator")
"""Providers whose numbers have a Whapi risk meter (`riskOfBlocking`)."""
METER_FAILED = "meter_failed"
"""Audit action of a failed provider meter read that left the day without a new reading."""


@dataclass(frozen=True)
class Metered:
    """What a day is decided on: a reading taken now (`new`: store it), or, when the plan wants the
    provider's meter only (`risk.meter: provider`) and it failed, the last one stored (None: none)."""

    reading: Reading | None
    new: bool = True


def meter_readings(
    runtime: Runtime, numbers: Sequence[Number], local_date: date, now: datetime
) -> dict[int, Metered]:
    """`meter_reading` of each number in turn, each with its own client (a batch's share of reads),
    with one query for which Whapi meters were already read that day, not one per number."""
    whapi = [n.id for n in numbers if n.id is not None and n.provider in WHAPI_KINDS]
    try:
        read = readings.read_on(runtime.engine, whapi, local_date, WHAPI_KINDS) if whapi else set()
    except Exception:  # each read then asks on its own (and says so if the database is away)
        log.warning("could not tell which meters were already read on %s", local_date, exc_info=True)
        read = None
    return {
        n.id: meter_reading(
            runtime,
            n,
            local_date,
            now,
            own_client=True,
            read_today=None if read is None else n.id in read,
        )
        for n in numbers
        if n.id is not None
    }


def meter_reading(
    runtime: Runtime,
    number: Number,
    local_date: date,
    now: datetime,
    *,
    own_client: bool = False,
    read_today: bool | None = None,
) -> Metered:
    """A new reading, not stored, from the meter the plan names (`risk.meter`; see the module doc).

    A Whapi meter is read through a client built here from the number row (its `meter_url`) and closed
    after the call. Other providers: ``own_client`` as for Whapi, else the process's shared client
    (`runtime.provider_for`). Batch planning reads every number's meter at once: the shared pool
    builds clients one at a time under one lock, each after a query for the number's row, which made
    the meter reads of a fleet wait in line. ``read_today``: whether the number's Whapi meter was read
    on `local_date` already (None: asked from the database).
    """
    assert number.id is not None
    choice = meter_choice(runtime, number)
    if choice == "local":
        return Metered(local_meter(runtime.engine, number, local_date, now))
    if number.provider == CLOUD_KIND:
        return Metered(meta_reading(runtime, number, local_date, now, own_client=own_client))
    if number.provider in WHAPI_KINDS:
        return _whapi_metered(runtime, number, local_date, now, choice, read_today)
    reading: Reading | None = None
    try:
        provider = provider_from_row(number) if own_client else runtime.provider_for(number.id)
        try:
            reading = provider.fetch_reading(local_date)
            if reading is None:
                log.info(
                    "number %s (%s): provider meter unavailable: %s",
                    number.id,
                    number.phone,
                    provider.last_reading_error,
                )
        finally:
            if own_client:
                provider.close()
    except Exception as exc:  # no token, bad URL...: the local meter still gives an honest reading
        log.warning("number %s (%s): provider meter failed: %s", number.id, number.phone, type(exc).__name__)
    if reading is None:
        reading = local_meter(runtime.engine, number, local_date, now)
    return Metered(reading)


def meta_reading(
    runtime: Runtime, number: Number, local_date: date, now: datetime, *, own_client: bool = False
) -> Reading:
    """A Cloud API number's reading: the local meter's factors with what Meta says about the number
    (`CloudApiProvider.quality`: quality rating, status, messaging limit), source `cloud_api`.

    The Cloud API has no risk meter, so the factors are always local. When Meta's answer cannot be had
    the reading is the local meter's alone, without signals, and `meter_error` says why (`why` shows
    it, `warmup_meter_failures_total` counts it). Never raises for the provider.
    """
    assert number.id is not None
    local = local_meter(runtime.engine, number, local_date, now)
    try:
        provider = provider_from_row(number) if own_client else runtime.provider_for(number.id)
    except Exception as exc:  # SecretError / UserError text names the variable or field, never a token
        return _meta_failed(number, local, f"no Cloud API client: {exc}", "no_client")
    try:
        if not isinstance(provider, CloudApiProvider):
            return _meta_failed(
                number, local, f"provider {number.provider!r} is not a Cloud API client", "no_client"
            )
        info = provider.quality()
    except ProviderError as exc:
        return _meta_failed(number, local, f"Meta {exc.reason}", failure_class(exc.http_status))
    except Exception as exc:  # a bug below us: the day is still planned, on the local factors
        log.warning("number %s (%s): Meta phone number info failed", number.id, number.phone, exc_info=True)
        return _meta_failed(number, local, f"Meta phone number info: {type(exc).__name__}", "network")
    finally:
        if own_client:
            provider.close()
    said = info.signals()
    return replace(
        local, source=provider.source, quality=said["quality"], status=said["status"], tier=said["tier"]
    )


def _meta_failed(number: Number, local: Reading, error: str, failure: str) -> Reading:
    metrics.METER_FAILURES.labels(provider=number.provider, status=failure).inc()
    log.warning("number %s (%s): %s; the local meter alone is used", number.id, number.phone, error)
    return replace(local, meter_error=clip(error, 300))


def meter_choice(runtime: Runtime, number: Number) -> MeterChoice:
    """The number's plan's `risk.meter` (the default when the plan cannot be read: planning then
    reports the plan's problem itself)."""
    try:
        return runtime.plans(number.plan_path).risk.meter
    except Exception:
        return Risk().meter


def read_whapi_meter(
    engine: Engine, number: Number, local_date: date, now: datetime, read_today: bool | None = None
) -> MeterRead:
    """One read of a Whapi number's meter at its `meter_url`: POST when the database holds no reading
    from it for the number's local day yet (today's computation), else GET. ``read_today`` says so
    when the caller asked already. Never raises."""
    assert number.id is not None
    try:
        provider = provider_from_row(number)
    except Exception as exc:  # SecretError / UserError text names the variable or field, never a token
        return MeterRead(None, clip(f"no meter client: {exc}", 300), "no_client")
    try:
        if not isinstance(provider, WhapiProvider):  # a provider kind in WHAPI_KINDS is built as one
            return MeterRead(None, f"provider {number.provider!r} has no Whapi meter", "no_client")
        if read_today is None:
            read_today = readings.read_from_on(engine, number.id, local_date, provider.source)
        return provider.read_meter(now, post=not read_today)
    except Exception as exc:  # the database or a bug: the day is still planned, on the local meter
        log.warning("number %s (%s): meter read failed", number.id, number.phone, exc_info=True)
        return MeterRead(None, f"risk meter: {type(exc).__name__}", "no_client")
    finally:
        provider.close()


def _whapi_metered(
    runtime: Runtime,
    number: Number,
    local_date: date,
    now: datetime,
    choice: MeterChoice,
    read_today: bool | None,
) -> Metered:
    assert number.id is not None
    read = read_whapi_meter(runtime.engine, number, local_date, now, read_today)
    if read.error is None and read.reading is not None:
        return Metered(read.reading)
    error = clip(read.error or "no reason given", 300)
    metrics.METER_FAILURES.labels(provider=number.provider, status=read.failure or "network").inc()
    log.warning("number %s (%s): risk meter failed: %s", number.id, number.phone, error)
    if read.reading is not None:  # today's POST failed, the last computation stands in
        return Metered(replace(read.reading, meter_error=error))
    if choice == "provider_or_local":
        local = local_meter(runtime.engine, number, local_date, now)
        return Metered(replace(local, meter_error=error))
    last = readings.latest_reading(runtime.engine, number.id)
    detail = {
        "error": error,
        "meter": "provider",
        "decided_on": describe_used(last),
        "reading_at": last.taken_at.isoformat() if last is not None else None,
    }
    audit.audit(runtime.engine, "planning", METER_FAILED, number.id, detail, now)
    return Metered(last, new=False)


def describe_used(reading: Reading | None) -> str:
    """The reading a day was decided on when its meter failed, for `why`."""
    if reading is None:
        return "no reading at all (none stored yet)"
    return (
        f"the last stored reading, {reading.source} of {reading.taken_at:%Y-%m-%d %H:%M} UTC (overall "
        f"{reading.overall}, lifetime {reading.lifetime}, response {reading.response_rate}, contacts "
        f"{reading.contacts})"
    )


def local_meter(engine: Engine, number: Number, local_date: date, now: datetime) -> Reading:
    """The local risk meter from our own data: age, replies vs sends over a week, engaged recipients."""
    assert number.id is not None
    sent = replies = 0
    for back in range(1, LOCAL_METER_DAYS + 1):
        outcome = history.day_outcome(engine, number.id, local_date - timedelta(days=back))
        sent += outcome.sent
        replies += outcome.replies
    recipients = [r for r in inbound.list_recipients(engine, number.id) if r.first_contacted_on is not None]
    engaged = sum(1 for r in recipients if r.replied or r.kind == RecipientKind.PEER)
    registered = number.registered or local_date_of(number.created_at, number.timezone)
    return local_reading(registered, local_date, sent, replies, len(recipients), engaged, now)
