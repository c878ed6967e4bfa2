"""Meta's signals as risk events: storing what a webhook says about a number (`record_signal`,
`record_alert`), finding the readings that came after a day was decided (`unjudged`), and applying a
re-judgement of the day (`apply_judgement`), each in one transaction under the number row's lock.

Which readings of a day were judged is kept with the day: every re-judgement appends one reason
(rule `signal`) to the day plan's `reasons`, naming the readings it judged (`readings`: their ids), so
the same reading never acts twice, whichever scheduler judges it and however often it is seen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.core.domain import SIGNALS, Action, Reading, Reason
from warmup.core.localtime import local_date_of
from warmup.store import audit
from warmup.store.days import cut_day
from warmup.store.models import NumberStatus
from warmup.store.pauses import pause_rows
from warmup.store.readings import insert_reading, reading_from
from warmup.store.tables import AUDIT, DAY_PLANS, NUMBERS, READINGS, aware, lock_number, read, write

SIGNAL_ACTION = "provider_signal"
"""Audit action of a webhook that changed what Meta says about a number (a reading was stored)."""
ALERT_ACTION = "provider_alert"
"""Audit action of a Meta account alert about a number (it changes no signal)."""
JUDGED_RULE = "signal"
"""The `rule` of the day plan reasons that record a re-judgement (`warmup.core.rejudge.RULE`)."""

_DAY_START_AT_MOST = timedelta(hours=26)
"""A local day started at most this long ago in any zone (24 h, a DST hour, and a margin)."""


# ------------------------------------------------------------------------------------ storing events


def record_signal(
    engine: Engine,
    number_id: int,
    *,
    changes: Mapping[str, str],
    fallback: Reading,
    source: str,
    at: datetime,
    timezone: str,
    actor: str,
    detail: Mapping[str, Any],
) -> int | None:
    """Store what an event says (``changes``: quality, status or tier -> new value) as a new reading
    that keeps the number's latest one (``fallback`` when it has none) but for those signals, with an
    audit row; the reading's id, or None when nothing changed (a redelivered or repeated event).

    Under the number row's lock, so two events at once each build on the other.
    """
    unknown = set(changes) - set(SIGNALS)
    if unknown:
        raise ValueError(f"not signals: {', '.join(sorted(unknown))}")
    at = aware(at, "at")
    with write(engine) as conn:
        lock_number(conn, number_id)
        row = conn.execute(
            sa.select(READINGS)
            .where(READINGS.c.number_id == number_id)
            .order_by(READINGS.c.taken_at.desc(), READINGS.c.id.desc())
            .limit(1)
        ).one_or_none()
        latest = reading_from(row) if row is not None else None
        base = latest or fallback
        if latest is not None and all(latest.signal(name) == value for name, value in changes.items()):
            return None
        if latest is None and not changes:
            return None
        reading = replace(
            base,
            source=source,
            taken_at=at,
            meter_error=None,
            quality=changes.get("quality", base.quality),
            status=changes.get("status", base.status),
            tier=changes.get("tier", base.tier),
        )
        reading_id = insert_reading(conn, number_id, local_date_of(at, timezone), reading)
        moved = {name: [base.signal(name), value] for name, value in changes.items()}
        audit.record(conn, actor, SIGNAL_ACTION, number_id, {**detail, **moved, "reading": reading_id}, at)
        return reading_id


def record_alert(
    engine: Engine, number_id: int, *, actor: str, detail: Mapping[str, Any], at: datetime
) -> bool:
    """An account alert about the number as an audit row; False (nothing stored) when its newest alert
    row says the same already (a redelivery)."""
    at = aware(at, "at")
    with write(engine) as conn:
        lock_number(conn, number_id)
        last = conn.execute(
            sa.select(AUDIT.c.detail)
            .where(AUDIT.c.number_id == number_id, AUDIT.c.action == ALERT_ACTION)
            .order_by(AUDIT.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if last == dict(detail):
            return False
        audit.record(conn, actor, ALERT_ACTION, number_id, dict(detail), at)
        return True


# --------------------------------------------------------------------------------- finding readings


@dataclass(frozen=True)
class Unjudged:
    """A number whose planned day has readings that came after it was decided and were not judged."""

    number_id: int
    timezone: str
    plan_path: str
    paused: bool
    day_plan_id: int
    local_date: date
    action: Action
    quota: int
    plan_day: int
    next_plan_day: int
    plan_volume: int
    readings: tuple[tuple[int, Reading], ...]  # (id, reading), oldest first


def judged_ids(reasons: Sequence[Mapping[str, Any]] | None) -> set[int]:
    """The ids of the readings the day's re-judgements judged (from its reasons)."""
    ids: set[int] = set()
    for reason in reasons or ():
        if isinstance(reason, Mapping) and reason.get("rule") == JUDGED_RULE:
            ids.update(int(i) for i in str(reason.get("readings", "")).split(",") if i.strip().isdigit())
    return ids


def unjudged(engine: Engine, now: datetime, after_id: int | None = None) -> list[Unjudged]:
    """Every non-retired number whose day plan of its local today has readings taken after the day was
    decided that no re-judgement has judged yet, by number; only readings whose id is above
    ``after_id`` when given (`reading_floor`).

    One query: the readings newer than their day's decision, each with its day. With ``after_id`` it
    starts from the readings' primary key, so a tick that finds nothing new reads a few index entries
    (without it, the whole day's readings of the fleet are joined to their days).
    """
    now = aware(now)
    n, d, r = NUMBERS, DAY_PLANS, READINGS
    query = (
        sa.select(
            n.c.id.label("number_id"),
            n.c.timezone,
            n.c.plan_path,
            n.c.state,
            d.c.id.label("day_plan_id"),
            d.c.local_date.label("day_date"),
            d.c.action,
            d.c.quota,
            d.c.plan_day,
            d.c.next_plan_day,
            d.c.plan_volume,
            d.c.reasons,
            r.c.id.label("reading_id"),
            r.c.overall,
            r.c.lifetime,
            r.c.response_rate,
            r.c.contacts,
            r.c.taken_at,
            r.c.source,
            r.c.quality,
            r.c.status,
            r.c.tier,
            r.c.meter_error,
        )
        .select_from(
            n.join(r, r.c.number_id == n.c.id).join(
                d,
                sa.and_(
                    d.c.number_id == n.c.id,
                    d.c.local_date == r.c.local_date,
                    r.c.taken_at > d.c.created_at,
                ),
            )
        )
        .where(n.c.state != NumberStatus.RETIRED.value, r.c.taken_at >= now - _DAY_START_AT_MOST)
        .order_by(n.c.id, r.c.taken_at, r.c.id)
    )
    if after_id is not None:
        query = query.where(r.c.id > after_id)
    with read(engine) as conn:
        rows: list[Any] = list(conn.execute(query))
    found: dict[int, Unjudged] = {}
    for row in rows:
        if row.day_date != local_date_of(now, row.timezone):
            continue  # a day that is over: its rest is gone, tomorrow's decision reads anew
        if int(row.reading_id) in judged_ids(row.reasons):
            continue
        reading = (int(row.reading_id), reading_from(row))
        number_id = int(row.number_id)
        if number_id in found:
            found[number_id] = replace(found[number_id], readings=(*found[number_id].readings, reading))
            continue
        found[number_id] = Unjudged(
            number_id=number_id,
            timezone=row.timezone,
            plan_path=row.plan_path,
            paused=row.state == NumberStatus.PAUSED.value,
            day_plan_id=int(row.day_plan_id),
            local_date=row.day_date,
            action=Action(row.action),
            quota=int(row.quota),
            plan_day=int(row.plan_day),
            next_plan_day=int(row.next_plan_day),
            plan_volume=int(row.plan_volume),
            readings=(reading,),
        )
    return list(found.values())


def newest_reading_id(engine: Engine) -> int:
    """The greatest reading id (0: none yet)."""
    with read(engine) as conn:
        return int(conn.execute(sa.select(sa.func.max(READINGS.c.id))).scalar_one_or_none() or 0)


def previous_volume(engine: Engine, number_id: int, local_date: date) -> int:
    """The quota of the number's last sending day before ``local_date`` (0: none)."""
    with read(engine) as conn:
        quota = conn.execute(
            sa.select(DAY_PLANS.c.quota)
            .where(
                DAY_PLANS.c.number_id == number_id,
                DAY_PLANS.c.local_date < local_date,
                DAY_PLANS.c.quota > 0,
            )
            .order_by(DAY_PLANS.c.local_date.desc())
            .limit(1)
        ).scalar_one_or_none()
    return int(quota or 0)


# -------------------------------------------------------------------------------- acting on a day


@dataclass(frozen=True)
class Judgement:
    """A re-judgement to apply (`warmup.core.rejudge.Rejudged`, with what it judged)."""

    reading_ids: Sequence[int]
    reason: Reason
    changed: bool
    pause: bool = False
    action: Action | None = None  # the day's new action (None: as it is)
    quota: int | None = None  # the day's new quota (None: as it is)
    next_plan_day: int | None = None


@dataclass(frozen=True)
class Applied:
    """What applying a judgement did."""

    applied: bool  # False: those readings were judged already (another scheduler, an earlier tick)
    paused: bool = False
    quota: tuple[int, int] | None = None  # (before, after) when the quota was lowered


def apply_judgement(
    engine: Engine, number_id: int, local_date: date, judgement: Judgement, now: datetime
) -> Applied:
    """Apply ``judgement`` to the number's day of ``local_date`` and record it with the day, in ONE
    transaction under the number row's lock; nothing when those readings were judged already.

    A pause pauses the number (`pause_rows`, audit `auto_pause`); a lower quota cuts the rest of the
    day (`cut_day`: the messages beyond it are skipped with cause `quota`). A changed day no longer
    advances the ramp: its action, `next_plan_day` and the number's `advance_pending`, `plan_day` and
    `last_volume` follow, as `warmup.core.ramp.state_after` keeps them for a decision.
    """
    at = aware(now)
    with write(engine) as conn:
        lock_number(conn, number_id)
        day = conn.execute(
            sa.select(DAY_PLANS.c.id, DAY_PLANS.c.quota, DAY_PLANS.c.used, DAY_PLANS.c.reasons).where(
                DAY_PLANS.c.number_id == number_id, DAY_PLANS.c.local_date == local_date
            )
        ).one_or_none()
        if day is None:
            return Applied(False)
        todo = [i for i in judgement.reading_ids if i not in judged_ids(day.reasons)]
        if not todo:
            return Applied(False)
        paused = cut = False
        quota_change: tuple[int, int] | None = None
        text = judgement.reason.text
        if judgement.changed and judgement.pause:
            row = conn.execute(sa.select(NUMBERS).where(NUMBERS.c.id == number_id)).one()
            paused = bool(
                pause_rows(conn, [row], reason=text, actor="scheduler", now=at, action="auto_pause")
            )
            if not paused:  # paused or retired meanwhile: the rule wanted a pause, none was made now
                state = row.state
                text = text.replace(
                    "paused, nothing more is sent until resumed",
                    f"would pause: the number is {state} already",
                )
        elif judgement.changed and judgement.quota is not None and judgement.quota < day.quota:
            text = _floored(text, judgement.quota, int(day.quota), int(day.used))
            new = cut_day(conn, number_id, local_date, judgement.quota, text, at, "scheduler")
            if new is not None and new < day.quota:
                quota_change, cut = (int(day.quota), new), True
        marker = {
            "rule": judgement.reason.rule,
            "action": str(judgement.reason.action),
            "text": text,
            "readings": ",".join(map(str, todo)),
        }
        values: dict[str, Any] = {"reasons": [*(day.reasons or []), marker]}
        if judgement.changed and not judgement.pause:
            if judgement.action is not None:
                values["action"] = str(judgement.action)
            if judgement.next_plan_day is not None:
                values["next_plan_day"] = judgement.next_plan_day
        conn.execute(sa.update(DAY_PLANS).where(DAY_PLANS.c.id == day.id).values(**values))
        if judgement.changed and not judgement.pause:
            ramp: dict[str, Any] = {"advance_pending": False, "updated_at": at}
            if judgement.next_plan_day is not None:
                ramp["plan_day"] = judgement.next_plan_day
            if cut and quota_change is not None and quota_change[1] > 0:
                ramp["last_volume"] = quota_change[1]
            conn.execute(sa.update(NUMBERS).where(NUMBERS.c.id == number_id).values(**ramp))
        return Applied(True, paused, quota_change)


def _floored(text: str, judged: int, quota: int, used: int) -> str:
    """The re-judgement's text with the quota the cut leaves: never below the slots already used
    (`cut_day`), so a judged quota under them is not what the day gets."""
    left = min(max(used, judged), quota)
    if left == judged:
        return text
    said = f"quota {quota} -> {left} ({used} already taken by sends; the rules allow {judged})"
    floored, found = re.subn(rf"quota \d+ -> {judged}\b", lambda _: said, text, count=1)
    return floored if found else f"{text}; {said}"
