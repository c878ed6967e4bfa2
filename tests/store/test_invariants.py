"""Trying to break invariants 1-4 and 6 at the store level, on SQLite and PostgreSQL.

Every scenario ends with `assert_accounting`: each day plan's `used` equals the messages holding a
slot (sent, sending, unknown, failed), and nothing exceeds the quota. A hypothesis test drives random
interleavings of every store operation against that rule and against a model of the state machine.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.invariant_checks import assert_accounting, assert_quota_held, overfill, states
from tests.store.helpers import free_pace
from warmup.core.domain import Action, Decision, Reason
from warmup.core.localtime import local_date_of
from warmup.store import days, expiry, history, inbound, models, numbers, outcomes, pauses, queue
from warmup.store.claims import ClaimStatus, claim
from warmup.store.models import MessageState
from warmup.store.sends import GAVE_WAY, PlannedSend, add_sends
from warmup.store.tables import InvalidWrite

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = date(2026, 11, 23)
_phones = itertools.count(1)


def add_number(engine: Engine, timezone: str = "UTC") -> int:
    return numbers.add_number(
        engine,
        phone=f"+55119{next(_phones):08d}",
        provider="simulator",
        token_ref="SIM_TOKEN_0",
        plan_name="inv",
        plan_path="inv.yaml",
        timezone=timezone,
        now=NOW,
    )


def plan(
    engine: Engine,
    number_id: int,
    quota: int,
    count: int,
    *,
    day: date = DAY,
    at: datetime = NOW - timedelta(hours=1),
    action: Action = Action.ADVANCE,
) -> list[int]:
    """Plan `day` with `quota` and `count` due messages (those beyond the quota added later)."""
    decision = Decision(day, 1, 2, action, quota, quota, 10)
    sends = [
        PlannedSend(recipient="+5511988880000", text=f"m{i}", scheduled_at=at + timedelta(seconds=i))
        for i in range(count)
    ]
    assert days.plan_day(engine, number_id, decision, sends[:quota], now=NOW)
    if count > quota:  # more than `add_sends` would take: the claim must still stop at the quota
        overfill(engine, number_id, day, sends[quota:])
    return [m.id for m in history.list_messages(engine, number_id, day) if m.id is not None]


def over_quota(engine: Engine, number_id: int, day: date = DAY) -> int:
    """How many of the day's messages that are not skipped exceed its quota (negative: room left)."""
    plan = days.get_day_plan(engine, number_id, day)
    assert plan is not None
    return sum(m.state != "skipped" for m in history.list_messages(engine, number_id, day)) - plan.quota


def count_gave_way(engine: Engine, number_id: int) -> int:
    return sum(m.reason == GAVE_WAY for m in history.list_messages(engine, number_id, DAY))


def message_state(engine: Engine, message_id: int) -> str:
    message = history.get_message(engine, message_id)
    assert message is not None
    return message.state


# ------------------------------------------------------------------------ random interleavings (model)

OPERATIONS = (
    "queue",
    "claim",
    "sent",
    "failed",
    "unknown",
    "skipped",
    "retry",
    "recover",
    "cut",
    "pause",
    "resume",
    "skip_rest",
    "expire",
    "reply",
    "tick",
)
FINAL = {"sent", "failed", "skipped"}


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    quota=st.integers(1, 4),
    count=st.integers(1, 6),
    steps=st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 5)), min_size=1, max_size=35),
)
def test_random_interleavings_keep_the_books_and_never_resend(
    engine: Engine, quota: int, count: int, steps: list[tuple[str, int]]
) -> None:
    number = add_number(engine)
    ids = plan(engine, number, quota, count)
    now = NOW
    claims = dict.fromkeys(ids, 0)  # successful claims per message
    releases = dict.fromkeys(ids, 0)  # successful release_for_retry per message
    went_out: set[int] = set()  # messages whose claim ended sent / failed / unknown
    was_over = over_quota(engine, number)
    for name, index in steps:
        mid = ids[index % len(ids)]
        before = message_state(engine, mid)
        if name == "queue":
            queue.mark_queued(engine, [mid], now)
        elif name == "claim":
            # several claims of one number at one instant: the pace is not what this test is about
            free_pace(engine, number)
            result = claim(engine, mid, "w", now)
            if result.claimed:
                assert before in ("planned", "queued")
                assert mid not in went_out, "a message that went out was claimed again"
                claims[mid] += 1
            else:
                assert result.status is not ClaimStatus.NOT_DUE
        elif name == "sent":
            changed = outcomes.record_sent(engine, mid, f"p{mid}", now)
            assert changed == (before in ("sending", "unknown"))
        elif name == "failed":
            assert outcomes.record_failed(engine, mid, "no", now) == (before == "sending")
        elif name == "unknown":
            assert outcomes.record_unknown(engine, mid, "timeout", now) == (before == "sending")
        elif name == "skipped":
            assert outcomes.record_skipped(engine, mid, "gave up", now) == (before == "sending")
        elif name == "retry":
            released = outcomes.release_for_retry(engine, mid, now, "429", now)
            assert released == (before == "sending")
            releases[mid] += released
        elif name == "recover":
            outcomes.recover_stale(engine, now + timedelta(microseconds=1), now)
        elif name == "cut":
            day = days.get_day_plan(engine, number, DAY)
            assert day is not None
            new = days.cut_quota(engine, number, DAY, index, "throttle", now=now)
            assert new == max(day.used, min(day.quota, index))
        elif name == "pause":
            pauses.pause_numbers(engine, reason="stop", actor="t", now=now, number_ids=[number])
        elif name == "resume":
            pauses.resume_numbers(engine, actor="t", now=now, number_ids=[number])
        elif name == "skip_rest":
            expiry.skip_remaining(engine, number, DAY, "throttled to zero", now)
        elif name == "reply":
            before, gave_before = over_quota(engine, number), count_gave_way(engine, number)
            pending_openers = sum(
                m.kind == "opener" and m.state in ("planned", "queued")
                for m in history.list_messages(engine, number, DAY)
            )
            reply = PlannedSend("+5511988880001", "re", now, kind="peer_reply", in_reply_to=ids[0])
            added = add_sends(engine, number, DAY, [reply], now=now)
            after, gave_after = over_quota(engine, number), count_gave_way(engine, number)
            # a reply fits in the room left, else takes a pending opener's place, else is not added
            if before < 0:
                assert len(added) == 1 and after == before + 1 and gave_after == gave_before
            elif pending_openers > before:  # enough openers give way: the reply goes in, the day fits
                assert len(added) == 1 and after == 0 and gave_after == gave_before + before + 1
            else:  # not added; the openers that gave way in vain only bring an overfilled day down
                assert added == [] and after == before - (gave_after - gave_before)
        elif name == "expire":
            expiry.expire_day(engine, now)  # the day is not over: must change nothing
            assert message_state(engine, mid) == before
        else:
            now += timedelta(seconds=1)
        after = message_state(engine, mid)
        if before in FINAL:
            assert after == before, f"{name}: {mid} left final state {before} for {after}"
        if before == "unknown":
            assert after in ("unknown", "sent"), f"{name}: unknown became {after}"
        if after in ("sent", "failed", "unknown"):
            went_out.add(mid)
        assert_accounting(engine)
        # messages not skipped never outnumber the quota, and an overfilled day (behind the store's
        # back) never gets fuller
        over = over_quota(engine, number)
        assert over <= max(was_over, 0), f"{name}: {over} messages over the quota (was {was_over})"
        was_over = over
        if count <= quota:
            assert_quota_held(engine, number)
    for mid in ids:
        assert claims[mid] <= 1 + releases[mid]
    counted = history.day_count(engine, number, DAY)
    day = days.get_day_plan(engine, number, DAY)
    assert day is not None and counted <= day.quota <= quota


# ------------------------------------------------------------------------------------- crash recovery


def test_crash_between_claim_and_record_leaves_unknown_counted_and_never_resent(engine: Engine) -> None:
    number = add_number(engine)
    first, second = plan(engine, number, 2, 2)
    assert claim(engine, first, "doomed-worker", NOW).claimed  # ...and the worker dies here
    assert_accounting(engine)
    assert outcomes.recover_stale(engine, NOW, NOW) == 0  # not stale yet: a live worker keeps its claim
    later = NOW + timedelta(minutes=11)
    assert outcomes.recover_stale(engine, later - timedelta(minutes=10), later) == 1
    row = history.get_message(engine, first)
    assert row is not None and row.state == "unknown" and row.reason and "claim expired" in row.reason
    assert history.day_count(engine, number, DAY) == 1
    # the broker redelivers, the dispatcher re-queues, a late worker reports: never a second send
    assert claim(engine, first, "other-worker", later).status is ClaimStatus.NOT_CLAIMABLE
    assert queue.mark_queued(engine, [first], later) == []
    assert queue.requeue_lost(engine, later + timedelta(days=1), later) == []
    assert not outcomes.release_for_retry(engine, first, later, "429", later)
    assert not outcomes.record_skipped(engine, first, "gave up", later)
    assert_accounting(engine)
    # the slot stays taken: only one more message fits in the quota of two
    assert claim(engine, second, "other-worker", later).claimed
    extra = overfill(engine, number, DAY, [PlannedSend("+5511988880001", "x", NOW - timedelta(minutes=5))])
    assert claim(engine, extra[0], "other-worker", later).status is ClaimStatus.QUOTA_REACHED
    assert add_sends(engine, number, DAY, [PlannedSend("+5511988880001", "x", NOW)], now=NOW) == []
    # a late confirmation of the first one turns it sent, still counted once
    assert outcomes.record_sent(engine, first, "wamid.1", later)
    assert history.day_count(engine, number, DAY) == 2
    assert_accounting(engine)


# -------------------------------------------------------------------------------------- pause racing


def test_no_claim_started_after_pause_returns_succeeds(engine: Engine) -> None:
    number = add_number(engine)
    ids = plan(engine, number, 400, 400)
    queue.mark_queued(engine, ids, NOW)
    results: list[tuple[float, ClaimStatus]] = []
    lock = threading.Lock()
    start = threading.Barrier(5)

    def hammer(seed: int) -> None:
        order = ids[:]
        random.Random(seed).shuffle(order)
        start.wait()
        for mid in order:
            began = time.monotonic()
            status = claim(engine, mid, f"w{seed}", NOW).status
            with lock:
                results.append((began, status))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    while True:  # pause once the workers are well under way
        with lock:
            if len(results) >= 40:
                break
        time.sleep(0.001)
    assert pauses.pause_numbers(engine, reason="admin", actor="admin", now=NOW, number_ids=[number]) == [
        number
    ]
    returned = time.monotonic()
    for thread in threads:
        thread.join()
    won_late = [began for began, status in results if status is ClaimStatus.CLAIMED and began > returned]
    assert won_late == [], f"{len(won_late)} claims started after the pause returned and succeeded"
    counts = states(engine, number, DAY)
    assert set(counts) <= {"sending", "skipped"} and counts["skipped"] > 0
    assert counts["sending"] == sum(status is ClaimStatus.CLAIMED for _, status in results)
    assert_accounting(engine)


# ------------------------------------------------------------------------------------ local day edges


def test_local_midnight_passing_skips_the_queued_rest_without_touching_the_next_day(engine: Engine) -> None:
    number = add_number(engine, "Pacific/Kiritimati")  # UTC+14
    day = date(2026, 11, 24)
    # 23:30 local on the 24th is 09:30 UTC on the 24th
    evening = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    ids = plan(engine, number, 5, 5, day=day, at=evening)
    queue.mark_queued(engine, ids, evening)
    assert claim(engine, ids[0], "w", evening + timedelta(minutes=1)).claimed
    assert outcomes.record_sent(engine, ids[0], "p", evening + timedelta(minutes=1))
    past_midnight = datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC)  # 00:00:01 on the 25th, local
    midnight = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    next_ids = plan(engine, number, 3, 3, day=day + timedelta(days=1), at=midnight)
    result = claim(engine, ids[1], "w", past_midnight)
    assert result.status is ClaimStatus.DAY_OVER
    assert expiry.expire_day(engine, past_midnight, reason="its local day ended") == 3
    assert states(engine, number, day) == {"sent": 1, "skipped": 4}
    assert all(m.reason for m in history.list_messages(engine, number, day) if m.state == "skipped")
    tomorrow = days.get_day_plan(engine, number, day + timedelta(days=1))
    assert tomorrow is not None and tomorrow.used == 0  # nothing of yesterday landed on today's quota
    for mid in next_ids:  # each send ends before the next claim: one in flight at a time
        assert claim(engine, mid, "w", midnight + timedelta(seconds=5)).claimed
        assert outcomes.record_sent(engine, mid, f"p{mid}", midnight + timedelta(seconds=5))
    assert_accounting(engine)


DST_DAYS = [
    # zone, local day, first instant of the day (UTC), first instant of the next day (UTC)
    ("America/New_York", date(2026, 3, 8), datetime(2026, 3, 8, 5, 0), datetime(2026, 3, 9, 4, 0)),
    ("America/New_York", date(2026, 11, 1), datetime(2026, 11, 1, 4, 0), datetime(2026, 11, 2, 5, 0)),
    ("Europe/Berlin", date(2026, 3, 29), datetime(2026, 3, 28, 23, 0), datetime(2026, 3, 29, 22, 0)),
    ("Europe/Berlin", date(2026, 10, 25), datetime(2026, 10, 24, 22, 0), datetime(2026, 10, 25, 23, 0)),
]


@pytest.mark.parametrize(("zone", "day", "start", "end"), DST_DAYS)
def test_dst_days_count_every_real_instant_of_the_local_day(
    engine: Engine, zone: str, day: date, start: datetime, end: datetime
) -> None:
    start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    tick = timedelta(microseconds=1)
    assert local_date_of(start - tick, zone) == day - timedelta(days=1)
    assert local_date_of(start, zone) == day
    assert local_date_of(end - tick, zone) == day
    assert local_date_of(end, zone) == day + timedelta(days=1)
    number = add_number(engine, zone)
    ids = plan(engine, number, 3, 3, day=day, at=start)
    assert claim(engine, ids[0], "w", start + timedelta(seconds=5)).claimed
    assert outcomes.record_sent(engine, ids[0], "p0", start + timedelta(seconds=5))  # ends before the next
    assert claim(engine, ids[1], "w", end - tick).claimed  # the 23rd or 25th hour is still the day
    assert claim(engine, ids[2], "w", end).status is ClaimStatus.DAY_OVER
    assert history.day_count(engine, number, day) == 2
    for i, at in enumerate((start, end - timedelta(minutes=1), end)):
        inbound.add_inbound(
            engine, number, kind="message", provider_message_id=f"in{i}", received_at=at, chat_phone="+1"
        )
    assert history.day_outcome(engine, number, day).replies == 2  # the reply at `end` is the next day's
    assert_accounting(engine)


def test_one_tick_plans_numbers_two_calendar_days_apart(engine: Engine) -> None:
    kiritimati = add_number(engine, "Pacific/Kiritimati")  # UTC+14
    pago_pago = add_number(engine, "Pacific/Pago_Pago")  # UTC-11
    now = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)  # 00:30 on the 24th and 23:30 on the 22nd
    assert sorted(days.unplanned(engine, now)) == [
        (kiritimati, date(2026, 11, 24)),
        (pago_pago, date(2026, 11, 22)),
    ]
    plan(engine, kiritimati, 2, 2, day=date(2026, 11, 24), at=now - timedelta(minutes=10))
    plan(engine, pago_pago, 2, 2, day=date(2026, 11, 22), at=now - timedelta(minutes=10))
    assert days.unplanned(engine, now) == []
    assert expiry.expire_day(engine, now) == 0  # both days are running
    later = datetime(2026, 11, 23, 11, 0, 1, tzinfo=UTC)  # Pago Pago's 22nd is over, Kiritimati's is not
    assert expiry.expire_day(engine, later) == 2
    assert states(engine, pago_pago, date(2026, 11, 22)) == {"skipped": 2}
    assert states(engine, kiritimati, date(2026, 11, 24)) == {"planned": 2}
    assert days.unplanned(engine, later) == [(pago_pago, date(2026, 11, 23))]


# ------------------------------------------------------------------------------ bad input, no change


def _snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    tables = ("numbers", "day_plans", "outbound_messages", "audit_log")
    with engine.connect() as conn:
        return {
            name: [tuple(r) for r in conn.execute(sa.select(models.metadata.tables[name])).all()]
            for name in tables
        }


def test_plan_day_with_one_bad_message_changes_nothing(engine: Engine) -> None:
    number = add_number(engine)
    before = _snapshot(engine)
    pause = Decision(DAY, 3, 3, Action.PAUSE, 3, 3, 1, (Reason("overall", Action.PAUSE, "risk"),))
    good = PlannedSend("+5511988880000", "hello", NOW)
    bad_inputs = [
        [good, PlannedSend("5511988880000", "no plus", NOW)],
        [good, PlannedSend("+5511988880000", "   ", NOW)],
        [good, PlannedSend("+5511988880000", "naive", NOW.replace(tzinfo=None))],
        [good, PlannedSend("+5511988880000", "typing", NOW, typing_seconds=-1)],
        [good, PlannedSend("+5511988880000", "kind", NOW, kind="broadcast")],
        [good, good, good, good],  # more sends than the quota
    ]
    for sends in bad_inputs:
        with pytest.raises(InvalidWrite):
            days.plan_day(engine, number, pause, sends, now=NOW)
        assert _snapshot(engine) == before
    with pytest.raises(InvalidWrite, match="in_reply_to"):  # a reply to a message that does not exist
        days.plan_day(engine, number, pause, [good, PlannedSend("+5511988880000", "r", NOW, in_reply_to=999)])
    assert _snapshot(engine) == before
    with pytest.raises(InvalidWrite):
        days.plan_day(engine, number, pause, [good], cut=-1)
    assert _snapshot(engine) == before
    # and the same day can still be planned properly afterwards, once
    assert days.plan_day(engine, number, pause, [good], now=NOW)
    assert not days.plan_day(engine, number, pause, [good, good], now=NOW)
    assert states(engine, number, DAY) == {"planned": 1}
    assert_accounting(engine)


def test_bad_writes_to_a_running_day_change_nothing(engine: Engine) -> None:
    number = add_number(engine)
    ids = plan(engine, number, 2, 2)
    assert claim(engine, ids[0], "w", NOW).claimed
    before = _snapshot(engine)
    with pytest.raises(InvalidWrite):
        add_sends(engine, number, DAY, [PlannedSend("+5511988880000", "ok", NOW), PlannedSend("x", "b", NOW)])
    with pytest.raises(InvalidWrite):
        days.cut_quota(engine, number, DAY, -1, "negative")
    with pytest.raises(InvalidWrite):
        claim(engine, ids[1], "w", NOW.replace(tzinfo=None))
    with pytest.raises(InvalidWrite):
        outcomes.release_for_retry(engine, ids[0], NOW.replace(tzinfo=None), "naive")
    with pytest.raises(InvalidWrite):
        pauses.pause_numbers(engine, reason="x", actor="t", now=NOW)  # no target
    assert _snapshot(engine) == before
    assert message_state(engine, ids[0]) == MessageState.SENDING
    assert_accounting(engine)
