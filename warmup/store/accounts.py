"""Each number-day's account of its quota (`warmup.core.accounting.DayAccount`): its decision and its
messages counted by state and skip cause, in two statements however many days are asked for.

An opener that gave way to a reply was replaced, not lost: it is left out, as `history.day_outcome`
leaves it out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.core.accounting import DayAccount
from warmup.core.domain import SkipCause
from warmup.store.models import MessageState
from warmup.store.tables import DAY_PLANS, MESSAGES, read

_PENDING = (MessageState.PLANNED.value, MessageState.QUEUED.value, MessageState.SENDING.value)


def day_accounts(
    engine: Engine,
    number_ids: Sequence[int] | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[DayAccount]:
    """The accounts of every planned day of ``number_ids`` (all numbers: None) from ``since`` to
    ``until`` (inclusive, either open), by number then date.

    `advanced` compares a day's plan day with the number's next planned day: known once that day is
    planned (the ramp decides whether to move on when it plans the next day).
    """
    plans = sa.select(
        DAY_PLANS.c.id,
        DAY_PLANS.c.number_id,
        DAY_PLANS.c.local_date,
        DAY_PLANS.c.plan_day,
        DAY_PLANS.c.action,
        DAY_PLANS.c.quota,
        DAY_PLANS.c.cut,
        DAY_PLANS.c.quota_cut,
        DAY_PLANS.c.cut_reason,
    )
    counts = sa.select(
        MESSAGES.c.day_plan_id, MESSAGES.c.state, MESSAGES.c.cause, sa.func.count().label("n")
    ).where(sa.or_(MESSAGES.c.cause.is_(None), MESSAGES.c.cause != SkipCause.GAVE_WAY.value))
    if number_ids is not None:
        plans = plans.where(DAY_PLANS.c.number_id.in_(list(number_ids)))
        counts = counts.where(MESSAGES.c.number_id.in_(list(number_ids)))
    # the next day is read too, so the last day asked for knows whether it advanced
    if since is not None:
        plans = plans.where(DAY_PLANS.c.local_date >= since)
        counts = counts.where(MESSAGES.c.local_date >= since)
    if until is not None:
        counts = counts.where(MESSAGES.c.local_date <= until)
    counts = counts.group_by(MESSAGES.c.day_plan_id, MESSAGES.c.state, MESSAGES.c.cause)
    with read(engine) as conn:
        days: list[Any] = list(conn.execute(plans.order_by(DAY_PLANS.c.number_id, DAY_PLANS.c.local_date)))
        tally: dict[int, dict[tuple[str, str | None], int]] = defaultdict(dict)
        for day_plan_id, state, cause, n in conn.execute(counts):
            tally[int(day_plan_id)][(state, cause)] = int(n)
    accounts: list[DayAccount] = []
    for at, day in enumerate(days):
        if until is not None and day.local_date > until:
            continue
        following = days[at + 1] if at + 1 < len(days) else None
        advanced = None
        if following is not None and following.number_id == day.number_id:
            advanced = following.plan_day > day.plan_day
        accounts.append(_account(day, tally.get(int(day.id), {}), advanced))
    return accounts


def _account(day: Any, tally: dict[tuple[str, str | None], int], advanced: bool | None) -> DayAccount:
    by_state: dict[str, int] = defaultdict(int)
    skipped: dict[str, int] = defaultdict(int)
    for (state, cause), n in tally.items():
        by_state[state] += n
        if state == MessageState.SKIPPED.value:
            skipped[cause or "other"] += n
    return DayAccount(
        number_id=int(day.number_id),
        local_date=day.local_date,
        plan_day=int(day.plan_day),
        action=str(day.action),
        quota=int(day.quota) + int(day.quota_cut),
        sent=by_state[MessageState.SENT.value],
        failed=by_state[MessageState.FAILED.value],
        unknown=by_state[MessageState.UNKNOWN.value],
        pending=sum(by_state[s] for s in _PENDING),
        skipped=dict(skipped),
        cut=int(day.cut) - int(day.quota_cut),
        quota_cut=int(day.quota_cut),
        cut_reason=day.cut_reason,
        advanced=advanced,
    )
