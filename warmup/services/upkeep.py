"""The scheduler's upkeep of days already planned: expired pauses end, a resumed day is re-spread over
the time left, and days that are over are closed (a backlog after an outage needs no upkeep: the claim
keeps each number's pace, `warmup.store.claims`).

Each function is one duty of `warmup.services.scheduler.Scheduler.tick`, safe to run twice at once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from warmup.core.localtime import local_date_of
from warmup.services.peers import holds_time, send_time
from warmup.services.planning import build_sends
from warmup.services.runtime import Runtime
from warmup.store import days, expiry, history, inbound, numbers, pauses, respread
from warmup.store.db import Engine
from warmup.store.models import (
    MessageState,
    NumberStatus,
)
from warmup.store.sends import PlannedSend

log = logging.getLogger(__name__)


def close_past_days(engine: Engine, now: datetime) -> int:
    """Skip what is left of local days that are over, with the reason; how many messages."""
    return expiry.expire_day(engine, now, reason="its local day ended before it could be sent")


def end_expired_pauses(runtime: Runtime, now: datetime) -> int:
    """Resume numbers whose timed pause has passed (the re-spread follows: `respread.pending_resumes`)."""
    return len(pauses.resume_expired(runtime.engine, now))


def respread_rest_of_day(runtime: Runtime, number_id: int, now: datetime, resume_id: int) -> int:
    """After a resume, spread the day's unused quota over the window time left (never a burst).

    The new sends keep the plan's gap and hourly cap with the sends the day already made (and those
    still pending), not only among themselves. Returns how many messages were added; 0 when the number
    is not active any more, the day has no plan (it will be planned knowing about the resume), nothing
    is left, or no window time is left. The store adds them at most once per resume, even when two
    schedulers re-spread the same resume at once (`respread.add_respread`), and always records a
    `respread` audit row naming the resume.
    """
    engine = runtime.engine
    number = numbers.get_number(engine, number_id)
    local_date = local_date_of(now, number.timezone) if number is not None else now.date()
    day = days.get_day_plan(engine, number_id, local_date) if number is not None else None
    detail: dict[str, object] = {}
    sends: list[PlannedSend] = []
    if number is not None and day is not None and number.state == NumberStatus.ACTIVE:
        messages = history.list_messages(engine, number_id, local_date)
        pending = [m for m in messages if m.state in (MessageState.PLANNED, MessageState.QUEUED)]
        left = day.quota - day.used - len(pending)
        detail.update(local_date=local_date.isoformat(), left=max(left, 0))
        if left > 0:
            plan = runtime.plans(number.plan_path)
            already_new = inbound.new_contacts_on(engine, number_id, local_date)
            sends, why = build_sends(
                engine,
                number,
                plan,
                local_date,
                left,
                max(day.max_new_contacts - already_new, 0),
                now,
                f":resume:{resume_id}",
                earlier=[send_time(m) for m in messages if holds_time(m)],
            )
            detail.update(why="; ".join(why)[:500])
    return respread.add_respread(
        engine, number_id, local_date, sends, resume_id=resume_id, detail=detail, now=now
    )
