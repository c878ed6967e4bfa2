"""Checkers for the store's safety invariants, shared by the invariant test files.

`assert_accounting` is the quota bookkeeping every scenario must leave intact: for every day plan,
`used` equals the number of its messages that took a slot and kept it (sent, sending, unknown and
failed: a failed send may have been counted by the provider, so its slot is not given back), and
neither that nor the messages that went out (or may have) ever exceed the quota. It is the store half
of the run checker's quota invariant (`warmup.testing.invariants.slot_problems`), asserted here
without a simulator; `assert_all_terminal` applies its rule for invariant 3 (`unfinished`) to one day.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.store import days, history, tables
from warmup.store.checks import day_tallies
from warmup.store.models import MessageState
from warmup.store.sends import PlannedSend
from warmup.testing.invariants import slot_problems, unfinished


def accounting_errors(engine: Engine) -> list[str]:
    """Every day plan whose `used` disagrees with its messages, or whose slots exceed the quota."""
    return [f"day plan {day.id}: {problem}" for day in day_tallies(engine) for problem in slot_problems(day)]


def assert_accounting(engine: Engine) -> None:
    errors = accounting_errors(engine)
    assert not errors, "\n".join(errors)


def states(engine: Engine, number_id: int, local_date: date) -> Counter[str]:
    return Counter(m.state for m in history.list_messages(engine, number_id, local_date))


def assert_all_terminal(engine: Engine, number_id: int, local_date: date) -> None:
    """Invariant 3: every message of the day ended sent, failed, skipped (with a reason) or unknown."""
    for message in history.list_messages(engine, number_id, local_date):
        problem = unfinished(message.state, message.reason)
        assert problem is None, f"message {message.id} {problem}"


def quota_errors(engine: Engine, number_id: int | None = None) -> list[str]:
    """Every day plan (of `number_id`, or of all numbers) whose messages that are not skipped outnumber
    its quota. They never must: a reply takes an opener's place rather than add to a full day, and a
    quota cut skips what no longer fits."""
    return [
        f"day plan {day.id}: {day.not_skipped} messages not skipped over quota {day.quota}"
        for day in day_tallies(engine, number_id)
        if day.not_skipped > day.quota
    ]


def assert_quota_held(engine: Engine, number_id: int | None = None) -> None:
    errors = quota_errors(engine, number_id)
    assert not errors, "\n".join(errors)


def overfill(engine: Engine, number_id: int, local_date: date, sends: list[PlannedSend]) -> list[int]:
    """Insert messages into a day plan BEHIND the store's back, past its quota (as a bug or a manual
    edit could): the claim must still hold the line. `sends.add_sends` would refuse them."""
    day = days.get_day_plan(engine, number_id, local_date)
    assert day is not None and day.id is not None
    with engine.begin() as conn:
        return [
            int(
                conn.execute(
                    sa.insert(tables.MESSAGES)
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
                    .returning(tables.MESSAGES.c.id)
                ).scalar_one()
            )
            for send in sends
        ]
