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
