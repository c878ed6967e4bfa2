"""Today's risk reading of a number: the stored one, else the provider's meter (once a day), else the
local meter computed from our own sends and replies.

Read at the start of a number's local day by planning (`warmup.services.planning`), and on demand by the
`refresh_reading` actor.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from warmup.core.domain import Reading
from warmup.core.localtime import local_date_of
from warmup.core.risk import local_reading
from warmup.services import metrics
from warmup.services.runtime import Runtime, provider_from_row
from warmup.store import history, inbound, numbers, readings
from warmup.store.db import Engine
from warmup.store.models import (
    Number,
    RecipientKind,
)

log = logging.getLogger(__name__)

LOCAL_METER_DAYS = 7
"""The trailing window, in local days, the local risk meter counts sends and replies over."""


# --------------------------------------------------------------------------------------- the reading


def todays_reading(runtime: Runtime, number: Number, local_date: date, now: datetime) -> Reading:
    """Today's reading: the stored one if taken today, else the provider meter (once), else the local one."""
    assert number.id is not None
    latest = readings.latest_reading(runtime.engine, number.id)
    if taken_on(latest, number, local_date):
        assert latest is not None
        return latest
    reading = meter_reading(runtime, number, local_date, now)
    readings.save_reading(runtime.engine, number.id, local_date, reading)
    metrics.READINGS.labels(source=reading.source).inc()
    return reading


def taken_on(reading: Reading | None, number: Number, local_date: date) -> bool:
    return reading is not None and local_date_of(reading.taken_at, number.timezone) == local_date


def meter_reading(
    runtime: Runtime, number: Number, local_date: date, now: datetime, *, own_client: bool = False
) -> Reading:
    """A new reading, not stored: the provider meter (one HTTP call), else the local meter.

    ``own_client``: call the meter through a client built here from the row in hand and closed after
    the call, instead of the process's shared one (`runtime.provider_for`). Batch planning reads every
    number's meter at once: the shared pool builds clients one at a time under one lock, each after a
    query for the number's row, which made the meter reads of a fleet wait in line.
    """
    assert number.id is not None
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
    return reading


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


def refresh_reading(runtime: Runtime, number_id: int) -> Reading | None:
    """Take today's reading for a number now (the `refresh_reading` actor); None for an unknown number."""
    number = numbers.get_number(runtime.engine, number_id)
    if number is None:
        return None
    now = runtime.clock.now()
    return todays_reading(runtime, number, local_date_of(now, number.timezone), now)
