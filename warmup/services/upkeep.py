"""The scheduler's upkeep of days already planned: expired pauses end, a resumed day is re-spread over
the time left, a backlog after an outage is re-timed at the plan's pace (or its surplus skipped with the
reason), and days that are over are closed.

Each function is one duty of `warmup.services.scheduler.Scheduler.tick`, safe to run twice at once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from warmup.core.localtime import local_date_of, window_spans
from warmup.core.pacing import due_at, span_end
from warmup.core.plan.model import Plan
from warmup.core.plan.values import format_duration
from warmup.core.spread import backlog_reason, spread
from warmup.services import metrics
from warmup.services.peers import holds_time, send_time
from warmup.services.planning import build_sends, day_rng
from warmup.services.runtime import Runtime
from warmup.store import days, expiry, history, inbound, numbers, pauses, respread
from warmup.store.db import Engine
from warmup.store.models import (
    MessageKind,
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


# ------------------------------------------------------------------------------ a backlog after an outage


BACKLOG_SKIPPED = "backlog after an outage: no send-window time left at the plan's pace"


def retime_backlog(
    plan: Plan,
    timezone: str,
    local_date: date,
    rows: Sequence[respread.DayMessage],
    now: datetime,
    tolerance: timedelta,
    rng: random.Random,
) -> respread.Retiming | None:
    """The re-spread of a day's backlog, or None when its pending messages break no pacing rule.

    Pure (the rows are the day's messages: id, state, kind, scheduled_at, not_before, claimed_at).
    The pending messages keep their order, recipients and texts and get new times from `spread` over
    the window time left after ``now``, keeping the gap and hourly rules with the sends already made;
    those that no longer fit are skipped (openers, latest first: replies build the response rate).
    A message waiting for a provider's Retry-After keeps its time, and the new ones come after it.
    """
    pending = [r for r in rows if r.state in (MessageState.PLANNED, MessageState.QUEUED)]
    sent = [r.claimed_at for r in rows if r.state not in _NOT_SENT and r.claimed_at is not None]
    due = {r.id: due_at(r.scheduled_at, r.not_before) for r in pending}
    gap = max(plan.pacing.gap.low, timedelta(seconds=1))
    why = backlog_reason(sent, list(due.values()), now, gap, plan.pacing.max_per_hour, tolerance)
    if why is None:
        return None
    waiting = [r for r in pending if r.not_before is not None and r.not_before > now]
    movable = sorted((r for r in pending if r not in waiting), key=lambda r: (due[r.id], r.id))
    timing = spread(
        local_date,
        len(movable),
        plan,
        timezone,
        rng,
        not_before=now,
        earlier=sorted(sent + [due[r.id] for r in waiting]),
    )
    fits = len(timing.times)
    by_priority = sorted(movable, key=lambda r: (r.kind == MessageKind.OPENER, due[r.id], r.id))
    kept = sorted(by_priority[:fits], key=lambda r: (due[r.id], r.id))
    spans = window_spans(local_date, plan, timezone)
    moves = {r.id: (at, span_end(spans, at)) for r, at in zip(kept, timing.times, strict=True)}
    reason = f"{BACKLOG_SKIPPED} ({timing.reason})" if timing.reason else BACKLOG_SKIPPED
    skips = {r.id: reason[:500] for r in by_priority[fits:]}
    detail: dict[str, Any] = {
        "reason": why,
        "pending": len(pending),
        "moved": len(moves),
        "skipped": len(skips),
        "next_at": min(timing.times).isoformat() if timing.times else "",
        "gap": format_duration(gap),
        "why": timing.reason or "",
    }
    return respread.Retiming(moves, skips, detail)


_NOT_SENT = (MessageState.PLANNED, MessageState.QUEUED, MessageState.SKIPPED)
"""States of a message that did not go out (a skipped one may carry the claim that skipped it)."""


def respread_backlog(runtime: Runtime, number_id: int, now: datetime, tolerance: timedelta) -> int:
    """Re-spread the rest of today of a number whose pending messages would go out in a burst (workers
    or the scheduler were down): `retime_backlog` under the number's lock (`respread.retime_day`, so it
    happens once however many schedulers ask). Returns how many messages were re-timed or skipped."""
    number = numbers.get_number(runtime.engine, number_id)
    if number is None or number.state != NumberStatus.ACTIVE:
        return 0
    try:
        plan = runtime.plans(number.plan_path)
    except Exception:  # a broken plan file: its sends are not re-timed blind (the claim still checks)
        log.warning("number %s: plan %s unreadable, backlog not re-spread", number_id, number.plan_path)
        return 0
    local_date = local_date_of(now, number.timezone)
    rng = day_rng(number_id, local_date, f"backlog:{now.isoformat()}")
    tolerance = min(tolerance, max(plan.pacing.gap.low, timedelta(seconds=1)) / 2)

    def decide(rows: Sequence[respread.DayMessage]) -> respread.Retiming | None:
        return retime_backlog(plan, number.timezone, local_date, rows, now, tolerance, rng)

    done = respread.retime_day(runtime.engine, number_id, local_date, decide, now=now)
    if done is None:
        return 0
    log.info("number %s: backlog re-spread: %s", number_id, dict(done.detail))
    metrics.BACKLOG_RESPREADS.inc()
    return len(done.moves) + len(done.skips)
