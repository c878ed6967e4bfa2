"""Checkers for the store's safety invariants, shared by the invariant test files.

`assert_accounting` is the quota bookkeeping every scenario must leave intact: for every day plan,
`used` equals the number of its messages that took a slot and kept it (sent, sending, unknown and
failed: a failed send may have been counted by the provider, so its slot is not given back), and
neither that nor the messages that went out (or may have) ever exceed the quota.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.store import ops
from warmup.store.models import COUNTED_STATES, TERMINAL_STATES, MessageState

SLOT_STATES = frozenset(COUNTED_STATES | {MessageState.FAILED})
"""States whose message holds a quota slot (`DayPlan.used`)."""


def accounting_errors(engine: Engine) -> list[str]:
    """Every day plan whose `used` disagrees with its messages, or whose sends exceed the quota."""
    with engine.connect() as conn:
        plans = conn.execute(sa.select(ops.DAY_PLANS.c.id, ops.DAY_PLANS.c.quota, ops.DAY_PLANS.c.used)).all()
        rows = conn.execute(sa.select(ops.MESSAGES.c.day_plan_id, ops.MESSAGES.c.state)).all()
    holding: Counter[int] = Counter()
    counted: Counter[int] = Counter()
    for row in rows:
        if row.state in {s.value for s in SLOT_STATES}:
            holding[row.day_plan_id] += 1
        if row.state in {s.value for s in COUNTED_STATES}:
            counted[row.day_plan_id] += 1
    errors = []
    for plan in plans:
        if plan.used != holding[plan.id]:
            errors.append(f"day plan {plan.id}: used {plan.used} but {holding[plan.id]} messages hold a slot")
        if holding[plan.id] > plan.quota or counted[plan.id] > plan.quota:
            errors.append(f"day plan {plan.id}: {holding[plan.id]} slots taken over quota {plan.quota}")
    return errors


def assert_accounting(engine: Engine) -> None:
    errors = accounting_errors(engine)
    assert not errors, "\n".join(errors)


def states(engine: Engine, number_id: int, local_date: date) -> Counter[str]:
    return Counter(m.state for m in ops.list_messages(engine, number_id, local_date))


def assert_all_terminal(engine: Engine, number_id: int, local_date: date) -> None:
    """Invariant 3: every message of the day ended sent, failed, skipped (with a reason) or unknown."""
    for message in ops.list_messages(engine, number_id, local_date):
        assert message.state in {s.value for s in TERMINAL_STATES}, (message.id, message.state)
        if message.state == MessageState.SKIPPED:
            assert message.reason, f"message {message.id} skipped without a reason"


def quota_errors(engine: Engine, number_id: int | None = None) -> list[str]:
    """Every day plan (of `number_id`, or of all numbers) whose messages that are not skipped outnumber
    its quota. They never must: a reply takes an opener's place rather than add to a full day, and a
    quota cut skips what no longer fits."""
    plans_query = sa.select(ops.DAY_PLANS.c.id, ops.DAY_PLANS.c.quota)
    if number_id is not None:
        plans_query = plans_query.where(ops.DAY_PLANS.c.number_id == number_id)
    with engine.connect() as conn:
        plans = conn.execute(plans_query).all()
        live = Counter(
            conn.execute(
                sa.select(ops.MESSAGES.c.day_plan_id).where(
                    ops.MESSAGES.c.state != MessageState.SKIPPED.value
                )
            ).scalars()
        )
    return [
        f"day plan {plan.id}: {live[plan.id]} messages not skipped over quota {plan.quota}"
        for plan in plans
        if live[plan.id] > plan.quota
    ]


def assert_quota_held(engine: Engine, number_id: int | None = None) -> None:
    errors = quota_errors(engine, number_id)
    assert not errors, "\n".join(errors)


def overfill(engine: Engine, number_id: int, local_date: date, sends: list[ops.PlannedSend]) -> list[int]:
    """Insert messages into a day plan BEHIND the store's back, past its quota (as a bug or a manual
    edit could): the claim must still hold the line. `ops.add_sends` would refuse them."""
    day = ops.get_day_plan(engine, number_id, local_date)
    assert day is not None and day.id is not None
    with engine.begin() as conn:
        return [
            int(
                conn.execute(
                    sa.insert(ops.MESSAGES)
                    .values(
                        number_id=number_id,
                        day_plan_id=day.id,
                        local_date=local_date,
                        recipient=send.recipient,
                        kind=send.kind,
                        text=send.text,
                        typing_seconds=send.typing_seconds,
                        scheduled_at=send.scheduled_at,
                        state=MessageState.PLANNED.value,
                        in_reply_to=send.in_reply_to,
                        window_end=send.window_end,
                        attempts=0,
                        created_at=send.scheduled_at,
                    )
                    .returning(ops.MESSAGES.c.id)
                ).scalar_one()
            )
            for send in sends
        ]
