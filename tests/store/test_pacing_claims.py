"""Trying to break pacing at the claim (`warmup.store.claims`): one send of a number in flight at a time,
the next a gap after the last one ENDED, at most `per_hour` claims in any 60 minutes, a message that
comes too early waits (NOT_DUE with its turn) and a closed window moves it to the day's next window.

Racing claimers run on separate engines (separate connections, as separate worker processes would),
both databases (the `engine` fixture). Times are on a manual timeline: no wall-clock assertion.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.core.test_spread import make_plan
from tests.invariant_checks import assert_accounting
from tests.store.helpers import DAY, NOW, PEER, PHONE, add, decision, phone
from warmup.core.domain import SkipCause
from warmup.core.localtime import local_date_of, window_spans
from warmup.store import claims, days, history, outcomes, queue, tables
from warmup.store.claims import ClaimResult, ClaimStatus
from warmup.store.db import make_engine
from warmup.store.sends import PlannedSend

GAP = timedelta(minutes=5)
TICK = timedelta(microseconds=1)
STALE = timedelta(minutes=10)
RACERS = 6


def paced(
    engine: Engine,
    count: int,
    *,
    gap: timedelta = GAP,
    per_hour: int | None = None,
    windows: Sequence[tuple[datetime, datetime]] | None = None,
    window_end: datetime | None = None,
    scheduled_at: datetime = NOW - timedelta(hours=1),
    phone_: str = PHONE,
    timezone: str = "UTC",
    local_date: date = DAY,
) -> tuple[int, list[int]]:
    """A number whose day holds ``count`` messages all due at ``scheduled_at`` (a backlog), with the
    day's pacing and windows stored on its day plan: (number id, message ids in id order)."""
    number_id = add(engine, phone=phone_, timezone=timezone)
    planned = [PlannedSend(PEER, f"hello {i}", scheduled_at, window_end=window_end) for i in range(count)]
    pacing = days.DayPacing(gap=gap, per_hour=per_hour, windows=windows)
    assert days.plan_day(engine, number_id, decision(count, local_date), planned, pacing=pacing)
    return number_id, sorted(m.id or 0 for m in history.list_messages(engine, number_id, local_date))


def row(engine: Engine, message_id: int) -> Any:
    message = history.get_message(engine, message_id)
    assert message is not None
    return message


def pace_row(engine: Engine, number_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(tables.PACES).where(tables.PACES.c.number_id == number_id)).one()


def won(results: Sequence[ClaimResult]) -> list[int]:
    return [r.message.id for r in results if r.claimed and r.message is not None]


def earliest(results: Sequence[ClaimResult]) -> datetime:
    """The earliest turn any NOT_DUE answer gave."""
    turns = [r.due_at for r in results if r.status is ClaimStatus.NOT_DUE and r.due_at is not None]
    assert turns, "no answer said when to come back"
    return min(turns)


@contextmanager
def separate_engines(engine: Engine, count: int = RACERS) -> Iterator[list[Engine]]:
    """``count`` engines on the store ``engine`` uses: each racer has its own pool and connections."""
    url = engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url) for _ in range(count)]
    try:
        yield engines
    finally:
        for other in engines:
            other.dispose()


def race(engines: Sequence[Engine], batches: Sequence[Sequence[int]], at: datetime) -> list[ClaimResult]:
    """Every racer claims every message of ``batches`` at ``at``, in its own shuffled order, released
    together; every third racer claims batch by batch (`claim_many`), the others one by one."""
    results: list[ClaimResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(engines))

    def run(index: int) -> None:
        rng = random.Random(index * 7919 + int(at.timestamp()))
        mine: list[ClaimResult] = []
        try:
            barrier.wait()
            for batch in rng.sample(list(batches), len(batches)):
                ids = rng.sample(list(batch), len(batch))
                if index % 3 == 2:
                    answers = claims.claim_many(engines[index], ids, f"racer-{index}", at)
                    mine.extend(answers[m] for m in ids)
                else:
                    mine.extend(claims.claim(engines[index], m, f"racer-{index}", at) for m in ids)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a claim hung"
    assert errors == []
    return results


# ---------------------------------------------------------------------------------- one in flight (1)


def test_racing_claimers_get_one_send_of_a_number_at_a_time_a_gap_after_the_last_ended(
    engine: Engine,
) -> None:
    number_id, ids = paced(engine, 6)
    sent: list[tuple[datetime, datetime]] = []  # (claimed, ended) of each send, in order
    at = NOW
    with separate_engines(engine) as engines:
        for round_ in range(len(ids)):
            results = race(engines, [ids], at)
            [winner] = won(results)  # exactly one, however many racers and messages
            assert {r.status for r in results if not r.claimed} <= {
                ClaimStatus.NOT_DUE,
                ClaimStatus.NOT_CLAIMABLE,
            }
            assert (row(engine, winner).state, pace_row(engine, number_id).busy_id) == ("sending", winner)
            # in flight: nothing else of the number is claimed, however long the send takes
            for later in (at + TICK, at + GAP, at + 3 * GAP):
                assert won(race(engines, [ids], later)) == []
            ended = at + 3 * GAP + timedelta(seconds=17)
            assert outcomes.record_sent(engine, winner, f"p-{round_}", ended)
            sent.append((at, ended))
            if round_ == len(ids) - 1:
                break
            # recorded: still none before a gap from its end, and the answer names that moment
            early = race(engines, [ids], ended + GAP - TICK)
            assert won(early) == []
            assert earliest(early) == ended + GAP
            at = ended + GAP
    assert all(row(engine, m).state == "sent" for m in ids)
    assert all(start - end >= GAP for (_, end), (start, _) in itertools.pairwise(sent))
    assert pace_row(engine, number_id).busy_id is None
    assert_accounting(engine)


def test_racing_claimers_of_two_numbers_send_one_of_each_at_once(engine: Engine) -> None:
    """Pacing holds each number back, not the fleet: two numbers' sends go out side by side, also
    through the batch statement (a batch of one message per number)."""
    _, first = paced(engine, 3, phone_=phone(1))
    _, second = paced(engine, 3, phone_=phone(2))
    pairs = [[a, b] for a, b in zip(first, second, strict=True)]
    ended = NOW + GAP + timedelta(seconds=10)
    with separate_engines(engine) as engines:
        winners = won(race(engines, pairs, NOW))
        assert len(winners) == 2 and {w in first for w in winners} == {True, False}
        assert won(race(engines, pairs, NOW + GAP)) == []  # both still in flight
        for winner in winners:
            assert outcomes.record_sent(engine, winner, f"p-{winner}", ended)
        assert won(race(engines, pairs, ended + GAP - TICK)) == []
        again = won(race(engines, pairs, ended + GAP))
        assert len(again) == 2 and {w in first for w in again} == {True, False}
    assert_accounting(engine)


def test_a_number_without_a_gap_still_has_one_send_in_flight(engine: Engine) -> None:
    """A day plan stored without pacing (gap 0: any planned before the pacing migration) still holds
    the number to one send in flight; its next may start the moment that one ended."""
    _, ids = paced(engine, 3, gap=timedelta(0))
    assert claims.claim(engine, ids[0], "w", NOW).claimed
    for at in (NOW, NOW + timedelta(minutes=1)):
        assert claims.claim(engine, ids[1], "w", at).status is ClaimStatus.NOT_DUE
    assert outcomes.record_sent(engine, ids[0], "p-0", NOW + timedelta(minutes=2))
    assert claims.claim(engine, ids[1], "w", NOW + timedelta(minutes=2)).claimed


# ---------------------------------------------------------------------------------- a killed worker (2)


def test_a_worker_killed_between_claim_and_record_holds_its_number_until_recovery(engine: Engine) -> None:
    number_id, ids = paced(engine, 4)
    killed = claims.claim(engine, ids[0], "doomed", NOW)
    assert killed.claimed  # ... and the worker dies: no outcome is ever recorded
    recovered_at = NOW + 3 * STALE
    with separate_engines(engine) as engines:
        for at in (NOW + GAP, NOW + STALE + TICK, recovered_at):
            assert won(race(engines, [ids], at)) == []
        # a cut-off older than the claim recovers nothing: the number stays held
        assert outcomes.recover_stale(engine, older_than=NOW - TICK, now=recovered_at) == 0
        assert pace_row(engine, number_id).busy_id == ids[0]
        assert won(race(engines, [ids], recovered_at)) == []
        assert outcomes.recover_stale(engine, older_than=recovered_at - STALE, now=recovered_at) == 1
        assert row(engine, ids[0]).state == "unknown"  # counted, never sent again
        pace = pace_row(engine, number_id)
        assert (pace.busy_id, tables.aware(pace.free_at)) == (None, recovered_at)
        # the next send waits a gap from the recovery (the dead send may have reached the provider)
        early = race(engines, [ids], recovered_at + GAP - TICK)
        assert won(early) == []
        assert earliest(early) == recovered_at + GAP
        [winner] = won(race(engines, [ids], recovered_at + GAP))
    assert winner != ids[0]
    assert row(engine, ids[0]).state == "unknown" and row(engine, ids[0]).attempts == 1
    assert_accounting(engine)


# ---------------------------------------------------------------------------------- the hourly cap (3)


def test_the_hourly_cap_refuses_the_fourth_claim_until_an_hour_after_the_first_ended(engine: Engine) -> None:
    """The cap counts the sends' ENDS: a send reaches the provider between its claim and its end, so an
    hour after the first END, the provider has seen at most `per_hour` sends in any 60 minutes."""
    gap, took = timedelta(minutes=1), timedelta(seconds=10)
    number_id, ids = paced(engine, 6, gap=gap, per_hour=3)
    for index, at in enumerate((NOW, NOW + timedelta(minutes=5), NOW + timedelta(minutes=10))):
        assert claims.claim(engine, ids[index], "w", at).claimed
        assert outcomes.record_sent(engine, ids[index], f"p-{index}", at + took)
    fourth = claims.claim(engine, ids[3], "w", NOW + timedelta(minutes=20))
    assert (fourth.status, fourth.due_at) == (ClaimStatus.NOT_DUE, NOW + timedelta(hours=1) + took)
    # waits, neither sent nor skipped; its turn is not a retry time: `not_before` stays unset
    assert (row(engine, ids[3]).state, row(engine, ids[3]).not_before) == ("queued", None)
    turn = NOW + timedelta(hours=1) + took
    assert claims.claim(engine, ids[3], "w", turn - TICK).status is ClaimStatus.NOT_DUE
    assert claims.claim(engine, ids[3], "w", turn).claimed
    assert outcomes.record_sent(engine, ids[3], "p-3", turn + took)
    # the window slides: the fifth waits for an hour after the SECOND end, not the gap
    fifth = claims.claim(engine, ids[4], "w", NOW + timedelta(hours=1, minutes=2))
    second_end = NOW + timedelta(minutes=5) + took
    assert (fifth.status, fifth.due_at) == (ClaimStatus.NOT_DUE, second_end + timedelta(hours=1))
    assert claims.claim(engine, ids[4], "w", second_end + timedelta(hours=1)).claimed
    recent = sorted(float(t) for t in pace_row(engine, number_id).recent)
    expected = [second_end, NOW + timedelta(minutes=10) + took, turn + took]
    assert recent == [t.timestamp() for t in expected]  # the ends of the hour before the last one
    assert_accounting(engine)


def test_a_refused_claim_counts_for_the_hourly_cap_too(engine: Engine) -> None:
    """Any request to the provider counts: a 429'd attempt (released for a retry) is a claim of the hour."""
    _, ids = paced(engine, 3, gap=timedelta(minutes=1), per_hour=2)
    assert claims.claim(engine, ids[0], "w", NOW).claimed
    assert outcomes.release_for_retry(engine, ids[0], NOW + timedelta(seconds=5), "429", NOW)
    assert claims.claim(engine, ids[0], "w", NOW + timedelta(minutes=1)).claimed
    assert outcomes.record_sent(engine, ids[0], "p-0", NOW + timedelta(minutes=1))
    third = claims.claim(engine, ids[1], "w", NOW + timedelta(minutes=2))
    assert (third.status, third.due_at) == (ClaimStatus.NOT_DUE, NOW + timedelta(hours=1))


# ---------------------------------------------------------------------------------- a backlog (4)


def timed(answers: Sequence[ClaimResult]) -> list[datetime]:
    """The times to come back that NOT_DUE answers gave (an answer without one is handed over later)."""
    assert {a.status for a in answers} == {ClaimStatus.NOT_DUE}
    return sorted(a.due_at for a in answers if a.due_at is not None)


def test_a_backlog_asked_again_comes_back_one_at_a_time_a_gap_apart(engine: Engine) -> None:
    """The queue position: every waiting message asked again (a redelivery, the lost-message recovery)
    is told a distinct time, a gap apart, none before the pace allows; in flight or not."""
    _, ids = paced(engine, 6, windows=[(NOW - timedelta(hours=2), NOW + timedelta(hours=3))])
    ended = NOW + timedelta(seconds=20)
    assert claims.claim(engine, ids[0], "w", NOW).claimed
    for at in (NOW, NOW + TICK):  # in flight
        turns = timed([claims.claim(engine, m, "w", at) for m in ids[1:]])
        assert all(t >= at + GAP for t in turns)
        assert len(set(turns)) == len(turns) and all(b - a >= GAP for a, b in itertools.pairwise(turns))
    assert outcomes.record_sent(engine, ids[0], "p-0", ended)
    for order in (ids[1:], ids[:0:-1]):  # free, inside the gap: in due order, then in reverse
        turns = timed([claims.claim(engine, m, "w", ended + timedelta(minutes=1)) for m in order])
        assert turns and turns[0] == ended + GAP
        assert len(set(turns)) == len(turns) and all(b - a >= GAP for a, b in itertools.pairwise(turns))


def test_a_waiting_backlog_is_handed_over_one_message_at_a_time_and_nothing_is_skipped(
    engine: Engine,
) -> None:
    number_id, ids = paced(engine, 4, windows=[(NOW - timedelta(hours=2), NOW + timedelta(hours=3))])
    took = timedelta(seconds=20)
    assert claims.claim(engine, ids[0], "w", NOW).claimed
    waiting = [claims.claim(engine, m, "w", NOW) for m in ids[1:]]
    assert all(t >= NOW + GAP for t in timed(waiting))  # never told to come back before the pace allows
    # waiting, neither sent nor skipped; no retry time is written for a pace (only a Retry-After or a
    # window sets one)
    assert {(row(engine, m).state, row(engine, m).not_before) for m in ids[1:]} == {("queued", None)}
    free = NOW
    for message_id in ids[1:]:
        free += took
        assert outcomes.record_sent(engine, ids[ids.index(message_id) - 1], f"p-{message_id}", free)
        turn = queue.next_turn(engine, number_id, free)  # the worker that ended the send hands one over
        assert turn is not None and (turn.message_id, turn.at) == (message_id, free + GAP)
        assert not claims.claim(engine, message_id, "w", free + GAP - TICK).claimed
        assert claims.claim(engine, message_id, "w", free + GAP).claimed
        free += GAP
    assert outcomes.record_sent(engine, ids[-1], "p-last", free + took)
    assert queue.next_turn(engine, number_id, free + took) is None  # nothing left to hand over
    assert [row(engine, m).state for m in ids] == ["sent"] * 4
    assert_accounting(engine)


def drain(
    engine: Engine, ids: list[int], start: datetime, took: timedelta
) -> list[tuple[datetime, datetime]]:
    """A dispatcher on a manual timeline: at each moment claim every due message in due order, record a
    claimed one ``took`` later, then jump to the earliest turn any answer gave; the (claim, end) of
    every send. Fails if one moment claims two messages of the number or a message is skipped."""
    sends: list[tuple[datetime, datetime]] = []
    at = start
    for _ in range(10 * len(ids)):
        pending = [row(engine, m) for m in ids if row(engine, m).state in ("planned", "queued")]
        if not pending:
            return sends
        pending.sort(key=lambda m: (max(m.scheduled_at, m.not_before or m.scheduled_at), m.id))
        answers = [claims.claim(engine, m.id, "w", at) for m in pending]
        assert not {a.status for a in answers} - {ClaimStatus.CLAIMED, ClaimStatus.NOT_DUE}, answers
        claimed = won(answers)
        assert len(claimed) <= 1
        if claimed:
            assert outcomes.record_sent(engine, claimed[0], f"p-{claimed[0]}", at + took)
            sends.append((at, at + took))
            at += took  # the dispatcher comes back after the send ended
            continue
        at = earliest(answers)
    raise AssertionError("the backlog did not drain")


def test_a_backlog_drains_one_send_at_a_time_and_nothing_is_skipped_while_windows_hold_it(
    engine: Engine,
) -> None:
    took = timedelta(seconds=20)
    windows = [
        (NOW - timedelta(hours=2), NOW + timedelta(minutes=12)),
        (NOW + timedelta(hours=1), NOW + timedelta(hours=2)),
    ]
    _, ids = paced(engine, 6, windows=windows, window_end=windows[0][1])
    sends = drain(engine, ids, NOW, took)
    assert len(sends) == len(ids)
    assert all(row(engine, m).state == "sent" for m in ids)
    assert all(b[0] - a[1] >= GAP for a, b in itertools.pairwise(sends))
    # the first window held three of them; the rest went in the second, none in between
    assert all(any(low <= start < high for low, high in windows) for start, _ in sends)
    assert [start < windows[0][1] for start, _ in sends] == [True] * 3 + [False] * 3
    assert sends[3][0] == windows[1][0]
    assert_accounting(engine)


# ---------------------------------------------------------------------------------- windows (5)

WINDOWS = [
    (NOW - timedelta(hours=1), NOW),
    (NOW + timedelta(hours=1), NOW + timedelta(hours=2)),
    (NOW + timedelta(hours=3), NOW + timedelta(hours=4)),
]


def test_a_message_whose_window_closed_moves_to_the_next_window_then_is_skipped_after_the_last(
    engine: Engine,
) -> None:
    _, ids = paced(
        engine, 4, windows=WINDOWS, window_end=WINDOWS[0][1], scheduled_at=NOW - timedelta(minutes=30)
    )
    moved = claims.claim(engine, ids[0], "w", NOW + timedelta(minutes=10))
    assert (moved.status, moved.due_at) == (ClaimStatus.NOT_DUE, WINDOWS[1][0])
    message = row(engine, ids[0])
    assert (message.state, message.cause) == ("planned", None)
    assert (tables.aware(message.not_before), tables.aware(message.window_end)) == WINDOWS[1]
    assert claims.claim(engine, ids[0], "w", WINDOWS[1][0] - TICK).status is ClaimStatus.NOT_DUE
    assert claims.claim(engine, ids[0], "w", WINDOWS[1][0]).claimed
    assert outcomes.record_sent(engine, ids[0], "p-0", WINDOWS[1][0])
    # asked inside a later window: claimed at once, its window end now that window's
    assert claims.claim(engine, ids[1], "w", WINDOWS[1][0] + timedelta(minutes=30)).claimed
    assert tables.aware(row(engine, ids[1]).window_end) == WINDOWS[1][1]
    assert outcomes.record_sent(engine, ids[1], "p-1", WINDOWS[1][0] + timedelta(minutes=30))
    # missed its window twice: moves twice
    assert claims.claim(engine, ids[2], "w", NOW + timedelta(minutes=1)).due_at == WINDOWS[1][0]
    again = claims.claim(engine, ids[2], "w", WINDOWS[1][1] + timedelta(minutes=1))
    assert (again.status, again.due_at) == (ClaimStatus.NOT_DUE, WINDOWS[2][0])
    assert (
        tables.aware(row(engine, ids[2]).not_before),
        tables.aware(row(engine, ids[2]).window_end),
    ) == WINDOWS[2]
    # after the day's last window: skipped, with the cause, and the rest of the day with it
    skipped = claims.claim(engine, ids[2], "w", WINDOWS[2][1])
    assert skipped.status is ClaimStatus.WINDOW_CLOSED
    for message_id in (ids[2], ids[3]):
        message = row(engine, message_id)
        assert (message.state, message.cause) == ("skipped", SkipCause.WINDOWS_ENDED.value)
        assert "last send window" in (message.reason or "")
    later = claims.claim(engine, ids[3], "w", WINDOWS[2][1] + timedelta(minutes=5))
    assert (later.status, later.reason) == (ClaimStatus.NOT_CLAIMABLE, "message is skipped")
    assert_accounting(engine)


def test_a_message_waiting_for_its_pace_past_its_window_moves_to_the_next_window(engine: Engine) -> None:
    _, ids = paced(
        engine, 2, windows=WINDOWS, window_end=WINDOWS[0][1], scheduled_at=NOW - timedelta(minutes=30)
    )
    assert claims.claim(engine, ids[0], "w", NOW - timedelta(minutes=2)).claimed
    assert outcomes.record_sent(engine, ids[0], "p-0", NOW - timedelta(minutes=1))
    waits = claims.claim(engine, ids[1], "w", NOW - timedelta(seconds=30))
    assert (waits.status, waits.due_at) == (ClaimStatus.NOT_DUE, NOW - timedelta(minutes=1) + GAP)
    moved = claims.claim(engine, ids[1], "w", NOW - timedelta(minutes=1) + GAP)  # its window has closed
    assert (moved.status, moved.due_at) == (ClaimStatus.NOT_DUE, WINDOWS[1][0])
    assert (row(engine, ids[1]).state, row(engine, ids[1]).cause) == ("queued", None)
    assert (
        tables.aware(row(engine, ids[1]).not_before),
        tables.aware(row(engine, ids[1]).window_end),
    ) == WINDOWS[1]
    assert claims.claim(engine, ids[1], "w", WINDOWS[1][0]).claimed


# ---------------------------------------------------------------------------------- a retry (6)


@pytest.mark.parametrize(
    ("retry_after", "goes_at"),
    [(timedelta(seconds=2), GAP), (GAP + timedelta(minutes=3), GAP + timedelta(minutes=3))],
    ids=["shorter-than-the-gap", "longer-than-the-gap"],
)
def test_a_retry_goes_at_the_later_of_its_retry_after_and_the_gap(
    engine: Engine, retry_after: timedelta, goes_at: timedelta
) -> None:
    number_id, [message_id] = paced(engine, 1)
    assert claims.claim(engine, message_id, "w", NOW).claimed
    released = NOW + timedelta(seconds=1)  # the provider answered 429: the request counts
    assert outcomes.release_for_retry(engine, message_id, released + retry_after, "429", released)
    assert tables.aware(pace_row(engine, number_id).free_at) == released
    early = claims.claim(engine, message_id, "w", released + goes_at - TICK)
    assert (early.status, early.due_at) == (ClaimStatus.NOT_DUE, released + goes_at)
    assert row(engine, message_id).state == "queued"
    assert claims.claim(engine, message_id, "w", released + goes_at).claimed
    assert row(engine, message_id).attempts == 2


# ---------------------------------------------------------------------------------- DST (7)

MADRID = "Europe/Madrid"


def test_windows_stored_on_a_spring_forward_day_are_kept_in_real_time(engine: Engine) -> None:
    """2026-03-29 in Madrid: 02:00 CET jumps to 03:00 CEST (01:00 UTC). The window 01:00-02:30 ends at the
    jump (real 00:00-01:00 UTC); 03:30-05:00 is real 01:30-03:00 UTC: half an hour later, not 1 h 30 min."""
    day = date(2026, 3, 29)
    windows = window_spans(
        day, make_plan(windows=[("daily", "01:00-02:30"), ("daily", "03:30-05:00")]), MADRID
    )
    first = (datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    second = (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), datetime(2026, 3, 29, 3, 0, tzinfo=UTC))
    assert windows == [first, second]
    _, ids = paced(
        engine,
        3,
        windows=windows,
        window_end=first[1],
        scheduled_at=first[0] + timedelta(minutes=10),
        timezone=MADRID,
        local_date=day,
    )
    assert claims.claim(engine, ids[0], "w", first[0] + timedelta(minutes=50)).claimed
    assert outcomes.record_sent(engine, ids[0], "p-0", first[0] + timedelta(minutes=51))
    # 01:05 UTC is 03:05 CEST: between the windows, whatever the wall clock says
    moved = claims.claim(engine, ids[1], "w", first[1] + timedelta(minutes=5))
    assert (moved.status, moved.due_at) == (ClaimStatus.NOT_DUE, second[0])
    assert (
        tables.aware(row(engine, ids[1]).not_before),
        tables.aware(row(engine, ids[1]).window_end),
    ) == second
    assert claims.claim(engine, ids[1], "w", second[0] - TICK).status is ClaimStatus.NOT_DUE
    assert claims.claim(engine, ids[1], "w", second[0]).claimed
    assert outcomes.record_sent(engine, ids[1], "p-1", second[0])
    skipped = claims.claim(engine, ids[2], "w", second[1])  # 05:00 CEST: the day's last window closed
    assert skipped.status is ClaimStatus.WINDOW_CLOSED
    assert row(engine, ids[2]).cause == SkipCause.WINDOWS_ENDED.value
    assert local_date_of(second[1], MADRID) == day


def test_the_gap_is_kept_in_real_time_across_a_fall_back_hour(engine: Engine) -> None:
    """2026-10-25 in Madrid: 03:00 CEST falls back to 02:00 CET (01:00 UTC). A send ended at 02:51 CEST
    holds the next one until 02:06 CET: earlier on the wall clock, a gap later in real time."""
    day = date(2026, 10, 25)
    windows = window_spans(day, make_plan(windows=[("daily", "02:00-03:00")]), MADRID)
    assert windows == [(datetime(2026, 10, 25, 0, 0, tzinfo=UTC), datetime(2026, 10, 25, 2, 0, tzinfo=UTC))]
    gap = timedelta(minutes=15)
    _, ids = paced(
        engine,
        2,
        gap=gap,
        windows=windows,
        window_end=windows[0][1],
        scheduled_at=windows[0][0],
        timezone=MADRID,
        local_date=day,
    )
    ended = datetime(2026, 10, 25, 0, 51, tzinfo=UTC)
    assert claims.claim(engine, ids[0], "w", ended - timedelta(minutes=1)).claimed
    assert outcomes.record_sent(engine, ids[0], "p-0", ended)
    assert claims.claim(engine, ids[1], "w", ended + gap - TICK).status is ClaimStatus.NOT_DUE
    assert claims.claim(engine, ids[1], "w", ended + gap).claimed


def test_when_the_last_window_has_closed_the_rest_of_the_day_is_skipped_with_it(engine: Engine) -> None:
    """The first claim after the day's last window says so for every message of the day still waiting,
    with the same cause, instead of leaving them to the end of the day."""
    start, end = NOW - timedelta(hours=2), NOW - timedelta(minutes=5)
    _, ids = paced(engine, 4, windows=[(start, end)], window_end=end, scheduled_at=start)
    answer = claims.claim(engine, ids[0], "w", NOW)
    assert answer.status is ClaimStatus.WINDOW_CLOSED
    assert [(row(engine, i).state, row(engine, i).cause) for i in ids] == [("skipped", "windows_ended")] * 4
    assert_accounting(engine)
