"""warmup.store.days: `plan_day` stores a day once and keeps the ramp as `state_after` says; `plan_days`
(set-based statements on PostgreSQL) stores what `plan_day` stores, and nothing at all when the batch is
refused; `cut_quota` never goes below the slots used.
Both databases (the `engine` fixture)."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.invariant_checks import assert_quota_held
from tests.store.helpers import (
    BATCH_NOW,
    DAY,
    NOW,
    PEER,
    TODAY,
    add,
    batch_decision,
    batch_send,
    decision,
    free_pace,
    planned,
    reason,
    row_counts,
    sends,
    state,
    store_snapshot,
    zoned_numbers,
)
from warmup.core import ramp
from warmup.core.domain import Action, Decision, NumberState, Reason
from warmup.core.errors import UserError
from warmup.store import audit as store_audit
from warmup.store import claims, days, history, inbound, numbers, tables
from warmup.store.claims import ClaimStatus
from warmup.store.days import DayToPlan
from warmup.store.numbers import get_number, number_state
from warmup.store.sends import PlannedSend, add_sends
from warmup.store.tables import InvalidWrite


def test_plan_day_stores_decision_and_messages_once(engine: Engine) -> None:
    number_id = add(engine)
    assert days.plan_day(engine, number_id, decision(5), sends(4), cut=1, cut_reason="windows too short")
    day_plan = days.get_day_plan(engine, number_id, DAY)
    assert day_plan is not None
    assert (day_plan.quota, day_plan.used, day_plan.plan_day, day_plan.next_plan_day) == (5, 0, 3, 4)
    assert day_plan.reasons == [{"rule": "ramp", "action": "advance", "text": "plan day 3: volume 5"}]
    assert (day_plan.cut, day_plan.cut_reason) == (1, "windows too short")
    messages = history.list_messages(engine, number_id, DAY)
    assert [m.text for m in messages] == [f"hello {i}" for i in range(4)]
    assert {m.state for m in messages} == {"planned"}
    before = row_counts(engine)
    assert not days.plan_day(engine, number_id, decision(9), sends(9))
    assert row_counts(engine) == before
    day_plan_again = days.get_day_plan(engine, number_id, DAY)
    assert day_plan_again is not None and day_plan_again.quota == 5


def test_plan_day_keeps_the_ramp_state_like_ramp_state_after(engine: Engine) -> None:
    number_id = add(engine)
    first = decision(8, plan_day=1)
    assert days.plan_day(engine, number_id, first, sends(2))
    expected = ramp.state_after(NumberState(registered=date(2026, 11, 1)), first)
    assert number_state(engine, number_id) == expected
    hold = decision(0, DAY + timedelta(days=1), Action.HOLD, plan_day=1)
    assert days.plan_day(engine, number_id, hold, [])
    assert number_state(engine, number_id) == ramp.state_after(expected, hold)
    assert number_state(engine, number_id).last_volume == 8  # a day with quota 0 keeps the last volume


def test_plan_day_pause_decision_pauses_the_number_with_an_audit_row(engine: Engine) -> None:
    number_id = add(engine)
    assert days.plan_day(engine, number_id, decision(6, DAY - timedelta(days=1)), sends(1))
    before = number_state(engine, number_id)
    assert before.advance_pending  # the pause must clear it
    pause = Decision(
        DAY, 3, 3, Action.PAUSE, 0, 6, 0, (Reason("risk.rules[0]", Action.PAUSE, "overall is 1"),)
    )
    assert days.plan_day(engine, number_id, pause, [])
    assert number_state(engine, number_id) == ramp.state_after(before, pause)  # what the preview uses
    number = get_number(engine, number_id)
    assert number is not None
    assert (number.state, number.paused_reason, number.paused_volume) == ("paused", "overall is 1", 6)
    state_now = number_state(engine, number_id)
    assert state_now.paused and state_now.paused_volume == 6
    [entry] = store_audit.list_audit(engine, number_id)
    assert (entry.action, entry.detail) == ("auto_pause", {"reason": "overall is 1"})


@pytest.mark.parametrize(
    "bad",
    [
        PlannedSend(recipient="12345", text="hi", scheduled_at=NOW),
        PlannedSend(recipient=PEER, text="  ", scheduled_at=NOW),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW.replace(tzinfo=None)),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, kind="broadcast"),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, typing_seconds=-1.0),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, typing_seconds=float("nan")),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, recipient_kind="stranger"),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, window_end=NOW.replace(tzinfo=None)),
    ],
)
def test_plan_day_with_an_invalid_send_stores_nothing(engine: Engine, bad: PlannedSend) -> None:
    number_id = add(engine)
    before = row_counts(engine)
    with pytest.raises(InvalidWrite, match="send 2: "):  # the bad one is named
        days.plan_day(engine, number_id, decision(5), [*sends(2), bad])
    assert row_counts(engine) == before
    assert number_state(engine, number_id).plan_day == 1


def test_plan_day_rolled_back_when_the_database_refuses_a_message(engine: Engine) -> None:
    number_id = add(engine)
    before = row_counts(engine)
    dangling = PlannedSend(recipient=PEER, text="re", scheduled_at=NOW, kind="peer_reply", in_reply_to=4242)
    with pytest.raises(InvalidWrite, match="4242"):  # no message 4242: a clear error, not the foreign key's
        days.plan_day(engine, number_id, decision(5), [*sends(2), dangling])
    assert row_counts(engine) == before
    assert days.get_day_plan(engine, number_id, DAY) is None
    assert days.plan_day(engine, number_id, decision(5), sends(2))  # the day can still be planned


def test_plan_day_refuses_more_sends_than_quota_and_unknown_numbers(engine: Engine) -> None:
    number_id = add(engine)
    with pytest.raises(InvalidWrite, match="exceed"):
        days.plan_day(engine, number_id, decision(2), sends(3))
    with pytest.raises(UserError, match="no number"):
        days.plan_day(engine, 999, decision(2), sends(1))
    assert days.get_day_plan(engine, number_id, DAY) is None


def test_concurrent_plan_day_stores_one_plan(engine: Engine) -> None:
    number_id = add(engine)
    results: list[bool] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(days.plan_day(engine, number_id, decision(5), sends(5)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [False] * 5 + [True]
    assert len(history.list_messages(engine, number_id, DAY)) == 5


def test_cut_quota_never_goes_below_used(engine: Engine) -> None:
    ids = planned(engine, 4, quota=5)
    for message_id in ids[:3]:  # three sends in flight when the cut comes
        # several claims of one number at one instant: the pace is not what this test is about
        free_pace(engine, 1)
        assert claims.claim(engine, message_id, "w", NOW).claimed
    assert days.cut_quota(engine, 1, DAY, 1, "131048 spam rate limit", now=NOW) == 3
    day_plan = days.get_day_plan(engine, 1, DAY)
    assert day_plan is not None and (day_plan.quota, day_plan.cut, day_plan.cut_reason) == (
        3,
        2,
        "131048 spam rate limit",
    )
    # the pending message that no longer fits is skipped at once, not left for the claim to refuse
    assert (state(engine, ids[3]), reason(engine, ids[3])) == ("skipped", "quota cut: 131048 spam rate limit")
    assert claims.claim(engine, ids[3], "w", NOW).status is ClaimStatus.NOT_CLAIMABLE
    assert_quota_held(engine)
    assert days.cut_quota(engine, 1, DAY + timedelta(days=1), 1, "x") is None


def test_plan_day_with_a_dangling_in_reply_to_is_a_clear_error(engine: Engine) -> None:
    number_id = add(engine)
    bad = PlannedSend(PEER, "reply", NOW, kind="peer_reply", in_reply_to=9999)
    with pytest.raises(InvalidWrite, match="in_reply_to"):
        days.plan_day(engine, number_id, decision(5), [bad])
    assert days.get_day_plan(engine, number_id, DAY) is None  # nothing stored
    planned(engine, 1, number_id=number_id)
    with pytest.raises(InvalidWrite, match="in_reply_to"):
        add_sends(engine, number_id, DAY, [bad], now=NOW)


def _days(ids: list[int]) -> list[DayToPlan]:
    """Days for the batch: sends with and without recipient rows, a day without sends, an auto-pause."""
    at = BATCH_NOW + timedelta(minutes=5)
    return [
        DayToPlan(
            ids[0], batch_decision(TODAY), [batch_send(i, at + timedelta(minutes=7 * i)) for i in range(6)]
        ),
        DayToPlan(
            ids[1],
            batch_decision(TODAY, 4),
            [batch_send(i, at, None if i % 2 else "peer") for i in range(3)],
            1,
            "cut",
        ),
        DayToPlan(ids[2], batch_decision(TODAY, 0, Action.HOLD), []),
        DayToPlan(ids[3], batch_decision(TODAY, 0, Action.PAUSE), [], 0, None),
    ]


def test_plan_days_stores_what_plan_day_stores(engine: Engine) -> None:
    ids = zoned_numbers(engine)
    # a known recipient keeps its kind
    inbound.upsert_recipient(engine, ids[0], "+5511977770001", "peer", last_text="hi", now=BATCH_NOW)
    batch = _days(ids)
    with engine.connect() as conn:
        saved = {
            t.name: [dict(r._mapping) for r in conn.execute(sa.select(t))]
            for t in (tables.RECIPIENTS, tables.NUMBERS)
        }
    for day in batch:
        assert days.plan_day(
            engine,
            day.number_id,
            day.decision,
            day.sends,
            cut=day.cut,
            cut_reason=day.cut_reason,
            now=BATCH_NOW,
        )
    expected = store_snapshot(engine)

    with engine.begin() as conn:  # back to before planning
        for table in (tables.MESSAGES, tables.DAY_PLANS, tables.AUDIT, tables.RECIPIENTS):
            conn.execute(sa.delete(table))
        conn.execute(sa.insert(tables.RECIPIENTS), saved[tables.RECIPIENTS.name])
        for row in saved[tables.NUMBERS.name]:
            conn.execute(sa.update(tables.NUMBERS).where(tables.NUMBERS.c.id == row["id"]).values(**row))
    assert store_snapshot(engine) != expected

    assert sorted(days.plan_days(engine, batch, now=BATCH_NOW)) == sorted(d.number_id for d in batch)
    assert store_snapshot(engine) == expected
    paused = numbers.get_number(engine, ids[3])
    assert paused is not None and paused.state == "paused"  # the auto-pause took the per-row path
    assert days.plan_days(engine, batch, now=BATCH_NOW) == []  # planned already: nothing changes
    assert store_snapshot(engine) == expected


def test_an_invalid_send_refuses_the_whole_batch(engine: Engine) -> None:
    ids = zoned_numbers(engine)
    batch = _days(ids)
    bad = PlannedSend(recipient="+5511977770001", text="  ", scheduled_at=BATCH_NOW)
    batch[2] = DayToPlan(ids[2], batch_decision(TODAY), [bad])
    with pytest.raises(tables.InvalidWrite, match="send 0: empty text"):
        days.plan_days(engine, batch, now=BATCH_NOW)
    assert all(days.get_day_plan(engine, n, TODAY) is None for n in ids)


def test_a_failing_statement_leaves_nothing_half_written(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The messages' insert fails after the day plans and recipients went in: all of it is rolled back."""
    ids = zoned_numbers(engine)
    batch = _days(ids)
    before = store_snapshot(engine)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(days, "_insert_messages", broken)  # the COPY on PostgreSQL, an INSERT on SQLite
    with pytest.raises(RuntimeError, match="connection lost"):
        days.plan_days(engine, batch, now=BATCH_NOW)
    monkeypatch.undo()
    assert store_snapshot(engine) == before


def test_a_second_day_plan_for_the_same_day_is_an_integrity_error_on_both_databases(engine: Engine) -> None:
    """The day-plan insert (a raw binary statement on PostgreSQL) reports a duplicate (number, local
    date) as SQLAlchemy's IntegrityError on both databases, the error `plan_day` recognises as a day
    planned by a writer that did not lock the number first."""
    number_id = add(engine)
    day = DayToPlan(number_id, decision(5), sends(1))
    row = days._plan_row(day, NOW)
    duplicate = r"uq_day_plans_number_date|day_plans\.number_id"
    with pytest.raises(sa.exc.IntegrityError, match=duplicate), engine.begin() as conn:
        days._insert_day_plans(conn, [row])
        days._insert_day_plans(conn, [row])
    assert days.get_day_plan(engine, number_id, DAY) is None  # rolled back whole
