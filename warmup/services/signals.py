"""Meta's signals during the day: quality webhooks become readings, and the scheduler acts on them.

Receiving (`receive`, called by the webhook app for a signed, valid Cloud API webhook):

* `phone_number_quality_update` is matched to our Cloud API number by its `display_phone_number`. Its
  event word is not the whole story (FLAGGED and UNFLAGGED say the quality moved, not where to), so the
  number's quality rating, status and messaging limit are read from Meta at once
  (`CloudApiProvider.quality`); when that read fails, the event says what it can: FLAGGED -> status
  flagged, UNFLAGGED -> connected, and the tier it names.
* `business_capability_update` moves the messaging limit (tier) of the numbers whose `portfolio` is the
  event's WhatsApp Business Account id.
* `account_alerts` goes to the audit log of the number (a PHONE_NUMBER entity, by phone number id) or of
  the numbers of the portfolio (a BUSINESS entity, by portfolio id); it moves no signal.

A signal that changes is stored as a new reading, source `webhook`, that keeps the number's latest
factors (`warmup.store.signals.record_signal`), with a `provider_signal` audit row; an event that changes
nothing (a redelivery) stores nothing. An event about a number that is not ours is acknowledged and
stored nowhere, as for messages.

Acting (`act_on_signals`, a scheduler duty): every number whose newest reading came after its day was
decided gets the day re-judged by its plan's rules (`warmup.core.rejudge`): a pause pauses it now, a
throttle/cap/hold/step-back cuts the rest of today's quota, never raising it. Each reading is judged
once (`store.signals.apply_judgement` records it with the day), and the next day's decision reads it
as the latest reading like any other.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from warmup.core.localtime import local_date_of
from warmup.core.rejudge import DayNow, rejudge
from warmup.providers.base import Provider, ProviderError
from warmup.providers.cloud_api import CloudApiProvider
from warmup.providers.webhooks import (
    ALERTS_FIELD,
    CAPABILITY_FIELD,
    QUALITY_FIELD,
    CloudSignal,
)
from warmup.secrets import clip
from warmup.services import metrics
from warmup.services.readings import CLOUD_KIND, local_meter
from warmup.services.runtime import Runtime
from warmup.store import readings
from warmup.store import signals as store_signals
from warmup.store.db import Engine
from warmup.store.models import Number, NumberStatus

log = logging.getLogger(__name__)

WEBHOOK_SOURCE = "webhook"
ACTOR = "webhook:cloud_api"


# ------------------------------------------------------------------------------------------ receive


@dataclass(frozen=True)
class Received:
    """What `receive` did with a webhook's account events."""

    stored: int = 0  # readings or alert rows stored
    ignored: int = 0  # events about numbers that are not ours, or that changed nothing


def targets(signal: CloudSignal, numbers: Sequence[Number]) -> list[Number]:
    """Our numbers an account event is about (see the module doc); retired ones are left out."""
    cloud = [n for n in numbers if n.provider == CLOUD_KIND and n.state != NumberStatus.RETIRED]
    if signal.field == QUALITY_FIELD:
        return [n for n in cloud if n.phone == signal.phone]
    if signal.field == CAPABILITY_FIELD:
        return [n for n in cloud if n.portfolio is not None and n.portfolio == signal.waba_id]
    if signal.phone_number_id is not None:
        return [n for n in cloud if n.phone_number_id == signal.phone_number_id]
    if signal.business_id is not None:
        return [n for n in cloud if n.portfolio is not None and n.portfolio == signal.business_id]
    return []


def receive(
    engine: Engine,
    signals: Sequence[CloudSignal],
    numbers: Sequence[Number],
    now: datetime,
    provider_for: Callable[[int], Provider],
) -> Received:
    """Store the account events of one webhook (already verified and parsed) for the numbers they are
    about; ``provider_for`` reads a number's quality from Meta."""
    stored = ignored = 0
    for signal in signals:
        found = targets(signal, numbers)
        if not found:
            who = signal.phone or signal.phone_number_id or signal.business_id or f"account {signal.waba_id}"
            log.info("cloud webhook: %s about %s: not a number of ours, ignored", signal.field, who)
            ignored += 1
            continue
        for number in found:
            if _record(engine, number, signal, now, provider_for):
                stored += 1
            else:
                ignored += 1
    return Received(stored, ignored)


def _record(
    engine: Engine,
    number: Number,
    signal: CloudSignal,
    now: datetime,
    provider_for: Callable[[int], Provider],
) -> bool:
    assert number.id is not None
    detail: dict[str, Any] = {"field": signal.field, **signal.detail}
    if signal.at is not None:
        detail["sent_at"] = signal.at.isoformat()
    if signal.field == ALERTS_FIELD:
        return store_signals.record_alert(engine, number.id, actor=ACTOR, detail=detail, at=now)
    changes: dict[str, str] = dict(signal.changes)
    if signal.field == QUALITY_FIELD:
        said, detail["meta"] = meta_now(number, provider_for)
        if said is not None:  # Meta's own answer wins over what the event word suggests
            changes = {**{k: v for k, v in changes.items() if k == "tier"}, **said}
    if not changes:
        return False
    latest = readings.latest_reading(engine, number.id)
    fallback = latest or local_meter(engine, number, local_date_of(now, number.timezone), now)
    reading_id = store_signals.record_signal(
        engine,
        number.id,
        changes=changes,
        fallback=fallback,
        source=WEBHOOK_SOURCE,
        at=now,
        timezone=number.timezone,
        actor=ACTOR,
        detail=detail,
    )
    if reading_id is None:
        return False
    metrics.READINGS.labels(source=WEBHOOK_SOURCE).inc()
    log.info("number %s (%s): %s %s", number.id, number.phone, signal.field, changes)
    return True


def meta_now(number: Number, provider_for: Callable[[int], Provider]) -> tuple[dict[str, str] | None, str]:
    """What Meta says about the number now (its non-empty signals), or None, and a note for the audit row."""
    assert number.id is not None
    try:
        provider = provider_for(number.id)
        if not isinstance(provider, CloudApiProvider):
            return None, "not a Cloud API client"
        info = provider.quality()
    except ProviderError as exc:
        log.warning("number %s (%s): %s", number.id, number.phone, exc.reason)
        return None, clip(f"unread: {exc.reason}", 200)
    except Exception as exc:  # no token, bad URL, a bug: the event still says what it can
        log.warning("number %s (%s): Meta phone number info failed", number.id, number.phone, exc_info=True)
        return None, f"unread: {type(exc).__name__}"
    said = {name: value for name, value in info.signals().items() if value is not None}
    return said, "phone number info read"


# ---------------------------------------------------------------------------------------------- act


def act_on_signals(runtime: Runtime, now: datetime, after_id: int | None = None) -> int:
    """Re-judge the day of every number whose newest readings came after its day was decided (see the
    module doc); how many days changed. Only readings with an id above ``after_id`` when given
    (`SignalWatch` keeps it)."""
    engine = runtime.engine
    changed = 0
    for day in store_signals.unjudged(engine, now, after_id):
        try:
            plan = runtime.plans(day.plan_path)
        except Exception as exc:  # planning reports the plan's problem; the reading waits for a fix
            log.warning("number %s: cannot re-judge its day, plan unreadable: %s", day.number_id, exc)
            continue
        reading_id, reading = day.readings[-1]  # the newest says how the number is now
        last_volume = store_signals.previous_volume(engine, day.number_id, day.local_date)
        now_day = DayNow(
            day.action, day.quota, day.plan_day, day.next_plan_day, day.plan_volume, paused=day.paused
        )
        verdict = rejudge(plan, now_day, reading, last_volume)
        judgement = store_signals.Judgement(
            reading_ids=[i for i, _ in day.readings],
            reason=verdict.reason,
            changed=verdict.changed,
            pause=verdict.pause,
            action=verdict.action,
            quota=verdict.quota,
            next_plan_day=verdict.next_plan_day,
        )
        applied = store_signals.apply_judgement(engine, day.number_id, day.local_date, judgement, now)
        if not applied.applied:
            continue  # another scheduler judged them first
        if applied.paused:
            metrics.PAUSES.labels(actor="scheduler").inc()
        if verdict.changed:
            changed += 1
        log.info("number %s: reading %s judged: %s", day.number_id, reading_id, verdict.reason.text)
    return changed


SETTLE_WALL = 10.0
"""Seconds after which a reading id seen as the newest has surely committed with every lower one: a
reading's transaction takes its id at its insert and commits milliseconds later."""


class SignalWatch:
    """`act_on_signals` for a scheduler, tick after tick, reading only readings it has not looked at.

    Its first tick joins every reading of the last day to its day (a scan of the readings); after that,
    a tick asks only for the readings above a floor: the newest reading id seen `SETTLE_WALL` seconds
    ago, when every reading up to it had surely committed. So an idle tick reads a few index entries,
    and a reading whose transaction committed late (after a higher id was seen) is still found.
    """

    def __init__(self, settle_wall: float = SETTLE_WALL) -> None:
        self.settle_wall = settle_wall
        self.floor: int | None = None
        self._seen: deque[tuple[float, int]] = deque()

    def tick(self, runtime: Runtime, now: datetime) -> int:
        newest = store_signals.newest_reading_id(runtime.engine)  # before the scan: it covers them all
        changed = act_on_signals(runtime, now, self.floor)
        wall = time.monotonic()
        self._seen.append((wall, newest))
        while self._seen and self._seen[0][0] <= wall - self.settle_wall:
            self.floor = max(self.floor or 0, self._seen.popleft()[1])
        return changed
