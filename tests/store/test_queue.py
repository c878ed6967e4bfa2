"""warmup.store.queue: due messages, marking them queued, and finding lost ones.
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, OTHER, PEER, PHONE, add, decision, message, one_day, planned, sends
from warmup.store import claims, days, history, outcomes, queue
from warmup.store.claims import claim
from warmup.store.days import DayPacing
from warmup.store.sends import PlannedSend


def test_due_messages_and_mark_queued(engine: Engine) -> None:
    number_id = add(engine)
    times = [NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)]
    assert days.plan_day(
        engine, number_id, decision(5), [PlannedSend(PEER, f"m{i}", at) for i, at in enumerate(times)]
    )
    due = queue.due_messages(engine, NOW, limit=10)
    assert len(due) == 2
    assert queue.due_messages(engine, NOW, limit=1) == due[:1]
    assert queue.mark_queued(engine, due, NOW) == due
    assert queue.mark_queued(engine, due, NOW) == []  # only still-planned ones move
    assert queue.due_messages(engine, NOW, limit=10) == []
    assert queue.mark_queued(engine, []) == []


def test_requeue_lost_finds_queued_messages_that_sat_too_long(engine: Engine) -> None:
    ids = planned(engine, 3)
    assert queue.mark_queued(engine, ids[:2], NOW - timedelta(minutes=30)) == ids[:2]
    assert claim(engine, ids[1], "w", NOW).claimed
    assert outcomes.release_for_retry(engine, ids[1], NOW + timedelta(minutes=10), "429", NOW)
    cutoff = NOW - timedelta(minutes=5)
    assert queue.requeue_lost(engine, cutoff) == [ids[0]]  # ids[1] waits for its not_before
    assert queue.requeue_lost(engine, cutoff, NOW) == [ids[0]]
    assert queue.requeue_lost(engine, cutoff, NOW) == []  # queued_at moved on: not again before the grace
    assert queue.requeue_lost(engine, NOW + timedelta(minutes=11)) == [ids[0], ids[1]]


def test_due_within_gives_each_planned_message_with_its_number_and_due_time(engine: Engine) -> None:
    first, [a, b] = one_day(engine, PHONE, 2)
    second = add(engine, phone=PEER)
    late = [PlannedSend(OTHER, "later", NOW + timedelta(minutes=10))]
    assert days.plan_day(engine, second, decision(5), late)
    [c] = [m.id for m in history.list_messages(engine, second, DAY)]
    assert c is not None
    assert claims.claim(engine, a, "w", NOW).claimed
    retry_at = NOW + timedelta(minutes=5)
    # queued, not planned: not due_within's
    assert outcomes.release_for_retry(engine, a, retry_at, "429", NOW)
    due = queue.due_within(engine, NOW + timedelta(minutes=10), 10)
    assert due == [
        queue.Due(b, first, message(engine, b).scheduled_at),
        queue.Due(c, second, NOW + timedelta(minutes=10)),
    ]
    assert queue.due_within(engine, NOW, 10) == due[:1]
    assert queue.due_within(engine, NOW + timedelta(minutes=10), 1) == due[:1]
    # `due_messages` is the same look-up at one instant: the ids of what is due now
    assert queue.due_messages(engine, NOW, 10) == [b]
    assert queue.due_messages(engine, NOW + timedelta(minutes=10), 10) == [b, c]


def test_next_turn_hands_over_the_overdue_message_a_gap_after_the_send_ended(engine: Engine) -> None:
    number = add(engine)
    gap = timedelta(seconds=45)
    assert days.plan_day(engine, number, decision(5), sends(4), pacing=DayPacing(gap=gap))
    ids = [m.id for m in history.list_messages(engine, number, DAY) if m.id is not None]
    assert claim(engine, ids[0], "w", NOW).claimed  # all four are overdue at NOW
    ended = NOW + timedelta(seconds=3)
    assert outcomes.record_sent(engine, ids[0], "p1", ended)
    turn = queue.next_turn(engine, number, ended)
    assert turn is not None and (turn.message_id, turn.at) == (ids[1], ended + gap)
    assert message(engine, ids[1]).state == "queued"  # the scheduler will not hand it over again
    assert claims.claim(engine, ids[1], "w", turn.at - timedelta(milliseconds=1)).status.value == "not_due"
    assert claims.claim(engine, ids[1], "w", turn.at).claimed
    # nothing overdue: the scheduler hands the next one over on time
    assert queue.next_turn(engine, number, NOW - timedelta(hours=2)) is None
