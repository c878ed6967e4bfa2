"""warmup.store.accounts: every number-day's quota accounted for by state and skip cause, a throttle's
cut told apart from what planning could not fit, and whether the plan day advanced after it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, add, decision, sends
from warmup.core.domain import SkipCause
from warmup.store import claims, days, expiry, history, outcomes
from warmup.store.accounts import day_accounts


def test_a_day_counts_each_message_once_by_state_and_cause(engine: Engine) -> None:
    number = add(engine)
    assert days.plan_day(engine, number, decision(8), sends(6), cut=2, cut_reason="windows too short")
    ids = [m.id for m in history.list_messages(engine, number, DAY) if m.id is not None]
    first = claims.claim(engine, ids[0], "w", NOW)
    assert first.claimed and outcomes.record_sent(engine, ids[0], "p1", NOW)
    second = claims.claim(engine, ids[1], "w", NOW + timedelta(hours=1))
    assert second.claimed and outcomes.record_failed(engine, ids[1], "bad", NOW + timedelta(hours=1))
    expiry.skip_remaining(engine, number, DAY, "paused", NOW, SkipCause.PAUSED)
    [account] = day_accounts(engine, [number])
    assert (account.quota, account.sent, account.failed, account.pending, account.cut) == (8, 1, 1, 0, 2)
    assert account.skipped == {"paused": 4}
    assert account.delivered == 1 / 8
    assert account.missing == 7
    assert account.shortfall() == [("skipped: paused", 4), ("not planned (did not fit)", 2), ("failed", 1)]
    assert account.shortfall_text() == "skipped: paused 4, not planned (did not fit) 2, failed 1"
    assert account.advanced is None  # no later day yet


def test_a_throttle_cut_is_a_shortfall_of_the_decided_quota(engine: Engine) -> None:
    number = add(engine)
    assert days.plan_day(engine, number, decision(10), sends(10))
    assert days.cut_quota(engine, number, DAY, 4, "provider throttle: 429", now=NOW) == 4
    [account] = day_accounts(engine, [number])
    assert (account.quota, account.quota_cut, account.cut) == (10, 6, 0)  # decided 10, cut by 6
    assert account.skipped == {"quota": 6}
    assert ("quota cut by a throttle", 6) in account.shortfall()
    assert all(label != "skipped: quota cut" for label, _ in account.shortfall())  # not counted twice


def test_advanced_compares_the_plan_day_with_the_next_day_planned(engine: Engine) -> None:
    number, other = add(engine), add(engine, phone="+5511999990009")
    tomorrow = DAY + timedelta(days=1)
    assert days.plan_day(engine, number, decision(3, plan_day=3), sends(0))
    assert days.plan_day(
        engine, number, decision(3, tomorrow, plan_day=3), sends(0), now=NOW + timedelta(days=1)
    )
    assert days.plan_day(engine, other, decision(3, plan_day=3), sends(0))
    assert days.plan_day(
        engine, other, decision(3, tomorrow, plan_day=4), sends(0), now=NOW + timedelta(days=1)
    )
    by_key = {(a.number_id, a.local_date): a.advanced for a in day_accounts(engine)}
    assert by_key == {
        (number, DAY): False,
        (number, tomorrow): None,
        (other, DAY): True,
        (other, tomorrow): None,
    }
    assert [a.local_date for a in day_accounts(engine, [number], since=tomorrow)] == [tomorrow]
    assert [a.local_date for a in day_accounts(engine, [number], until=DAY)] == [DAY]
