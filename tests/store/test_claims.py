"""warmup.store.claims: `claim` wins once and names every refusal; `claim_many` answers every id exactly
as `claim` would, never takes more slots than the quota, survives races and a pause in progress.
Both databases (the `engine` fixture)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.invariant_checks import assert_accounting, overfill
from tests.store.helpers import (
    DAY,
    NOW,
    OTHER,
    PEER,
    PHONE,
    add,
    day_plan,
    decision,
    free_pace,
    message,
    one_day,
    phone,
    planned,
    sends,
    state,
    used,
)
from warmup.store import claims, days, history, numbers, outcomes, tables
from warmup.store.claims import ClaimedMessage, ClaimResult, ClaimStatus
from warmup.store.sends import PlannedSend


def test_claim_wins_once_and_returns_what_the_sender_needs(engine: Engine) -> None:
    [message_id, *_] = planned(engine)
    result = claims.claim(engine, message_id, "worker-1", NOW)
    assert result.claimed and result.message is not None
    assert (result.message.phone, result.message.recipient, result.message.text) == (PHONE, PEER, "hello 0")
    assert (result.message.token_ref, result.message.attempts, result.message.timezone) == (
        "WHAPI_TOKEN_1",
        1,
        "UTC",
    )
    assert claims.claim(engine, message_id, "worker-2", NOW).status is ClaimStatus.NOT_CLAIMABLE
    assert claims.claim(engine, 99999, "worker-2", NOW).status is ClaimStatus.NOT_CLAIMABLE
    message = history.get_message(engine, message_id)
    assert message is not None and (message.state, message.claimed_by, message.claimed_at) == (
        "sending",
        "worker-1",
        NOW,
    )
    assert used(engine) == 1


def test_claim_on_postgresql_says_whether_the_recipient_is_a_fleet_number(engine: Engine) -> None:
    """The send worker skips its peer lookup when the claim already knows (PostgreSQL's one-statement
    claim); SQLite leaves it unknown (None) and the worker looks the phone up as before."""
    first, second, *_ = planned(engine)
    before = claims.claim(engine, first, "worker-1", NOW)
    assert outcomes.record_sent(engine, first, "p1", NOW)  # the number's one send in flight ends
    add(engine, phone=PEER)
    after = claims.claim(engine, second, "worker-1", NOW)
    assert before.message is not None and after.message is not None
    if engine.dialect.name == "postgresql":
        assert (before.message.recipient_is_number, after.message.recipient_is_number) == (False, True)
    else:
        assert (before.message.recipient_is_number, after.message.recipient_is_number) == (None, None)
    assert used(engine) == 2


def test_claim_leaves_messages_that_are_not_due(engine: Engine) -> None:
    number_id = add(engine)
    assert days.plan_day(engine, number_id, decision(5), sends(1, start=NOW + timedelta(minutes=5)))
    [message] = history.list_messages(engine, number_id, DAY)
    assert message.id is not None
    result = claims.claim(engine, message.id, "w", NOW)
    assert result.status is ClaimStatus.NOT_DUE
    assert (state(engine, message.id), used(engine)) == ("planned", 0)
    assert claims.claim(engine, message.id, "w", NOW + timedelta(minutes=5)).claimed


def test_claim_stops_at_the_quota_and_skips_the_rest(engine: Engine) -> None:
    ids = planned(engine, 2, quota=2)
    ids += overfill(engine, 1, DAY, sends(3, start=NOW - timedelta(minutes=30)))  # behind the store's back
    results = []
    for message_id in ids:
        results.append(claims.claim(engine, message_id, "w", NOW).status)
        if results[-1] is ClaimStatus.CLAIMED:  # its send ends (no gap): the next claim is not paced
            assert outcomes.record_sent(engine, message_id, f"wamid.{message_id}", NOW)
    assert results == [ClaimStatus.CLAIMED] * 2 + [ClaimStatus.QUOTA_REACHED] * 3
    skipped = history.get_message(engine, ids[-1])
    assert skipped is not None and (skipped.state, skipped.reason, skipped.attempts) == (
        "skipped",
        "the day's quota is reached",
        0,
    )
    assert used(engine) == 2


def test_claim_of_a_paused_number_skips_the_message(engine: Engine) -> None:
    number_id = add(engine)
    [message_id, *_] = planned(engine, number_id=number_id)
    with engine.begin() as conn:  # paused behind the store's back: claim must re-check anyway
        conn.execute(sa.text("UPDATE numbers SET state = 'paused', paused_reason = 'banned'"))
    result = claims.claim(engine, message_id, "w", NOW)
    assert (result.status, result.reason) == (ClaimStatus.PAUSED, "number paused: banned")
    assert (state(engine, message_id), used(engine, number_id)) == ("skipped", 0)


def test_claim_after_the_local_day_is_over_skips(engine: Engine) -> None:
    number_id = add(
        engine, timezone="America/Sao_Paulo"
    )  # UTC-3: local 2026-11-23 ends at 03:00 UTC on the 24th
    [message_id, *_] = planned(engine, number_id=number_id)
    late = datetime(2026, 11, 24, 2, 59, tzinfo=UTC)
    assert claims.claim(engine, message_id, "w", late).claimed
    [_, second, third] = [m.id for m in history.list_messages(engine, number_id, DAY)]
    assert second is not None and third is not None
    result = claims.claim(engine, second, "w", late + timedelta(minutes=1))
    assert result.status is ClaimStatus.DAY_OVER
    assert state(engine, second) == "skipped"


def test_a_claim_after_its_window_closed_skips_the_message(engine: Engine) -> None:
    number_id = add(engine)
    window_end = NOW - timedelta(minutes=1)
    late = PlannedSend(PEER, "late", NOW - timedelta(minutes=30), window_end=window_end)
    on_time = PlannedSend(PEER, "on time", NOW - timedelta(minutes=20), window_end=NOW + timedelta(hours=1))
    assert days.plan_day(engine, number_id, decision(5), [late, on_time])
    first, second = [m.id or 0 for m in history.list_messages(engine, number_id, DAY)]
    refused = claims.claim(engine, first, "w", NOW)
    assert refused.status is ClaimStatus.WINDOW_CLOSED and "window closed" in (refused.reason or "")
    assert state(engine, first) == "skipped" and used(engine, number_id) == 0
    assert (
        claims.claim(engine, first, "w", window_end - timedelta(minutes=5)).status
        is ClaimStatus.NOT_CLAIMABLE
    )
    assert claims.claim(engine, second, "w", NOW).claimed


def expected_claim(engine: Engine, message_id: int) -> ClaimedMessage:
    """What a claim of ``message_id`` must hand the worker, read from the rows after the claim."""
    row = message(engine, message_id)
    number = numbers.get_number(engine, row.number_id)
    assert number is not None
    is_number = numbers.get_number(engine, phone=row.recipient) is not None
    return ClaimedMessage(
        id=row.id,
        number_id=row.number_id,
        day_plan_id=row.day_plan_id,
        local_date=row.local_date,
        recipient=row.recipient,
        kind=row.kind,
        text=row.text,
        typing_seconds=row.typing_seconds,
        scheduled_at=row.scheduled_at,
        attempts=row.attempts,
        in_reply_to=row.in_reply_to,
        phone=number.phone,
        provider=number.provider,
        token_ref=number.token_ref,
        base_url=number.base_url,
        phone_number_id=number.phone_number_id,
        timezone=number.timezone,
        # PostgreSQL's claim looks the recipient up in the claiming statement; SQLite leaves it to the worker
        recipient_is_number=is_number if engine.dialect.name == "postgresql" else None,
    )


@dataclass
class Spy:
    """Counts what went through the batch statement and what through `claims.claim` one by one."""

    batch_ids: list[int]
    single_ids: list[int]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    found = Spy([], [])
    lock = threading.Lock()
    real_many = claims._claim_many_pg
    real_claim = claims.claim

    def claim_many_pg(
        engine: Engine, ids: list[int], worker_id: str, now: datetime
    ) -> dict[int, ClaimResult]:
        results = real_many(engine, ids, worker_id, now)
        with lock:
            found.batch_ids.extend(results)
        return results

    def claim(engine: Engine, message_id: int, worker_id: str, now: datetime) -> ClaimResult:
        with lock:
            found.single_ids.append(message_id)
        return real_claim(engine, message_id, worker_id, now)

    monkeypatch.setattr(claims, "_claim_many_pg", claim_many_pg)
    monkeypatch.setattr(claims, "claim", claim)  # `claim_many` calls it through the module
    yield found


def test_claim_many_claims_each_message_once_with_what_the_single_claim_gives(
    engine: Engine, spy: Spy
) -> None:
    first, first_ids = one_day(engine, PHONE, 2, recipient=PEER)  # PEER becomes a fleet number below
    second, second_ids = one_day(engine, PEER, 2, recipient=OTHER)
    third, third_ids = one_day(engine, phone(3), 2, recipient=PHONE)
    batch_ids = [second_ids[0], third_ids[0], first_ids[0]]
    spy.single_ids.clear()
    results = claims.claim_many(engine, batch_ids, "worker-1", NOW)
    assert set(results) == set(batch_ids)
    for message_id in batch_ids:
        result = results[message_id]
        assert result.status is ClaimStatus.CLAIMED and result.reason is None
        assert result.message == expected_claim(engine, message_id)
        row = message(engine, message_id)
        assert (row.state, row.claimed_by, row.claimed_at, row.attempts) == ("sending", "worker-1", NOW, 1)
    if engine.dialect.name == "postgresql":
        assert sorted(spy.batch_ids) == sorted(batch_ids) and spy.single_ids == []  # one statement
        assert [results[m].message.recipient_is_number for m in batch_ids] == [False, True, True]  # type: ignore[union-attr]
    # one slot each, the other messages untouched
    assert [day_plan(engine, n)[0] for n in (first, second, third)] == [1, 1, 1]
    assert {state(engine, m) for m in (first_ids[1], second_ids[1], third_ids[1])} == {"planned"}
    # the single path gives the same fields for the equivalent message of the same number
    for number_id, ids in ((first, first_ids), (second, second_ids), (third, third_ids)):
        # several claims of one number at one instant: the pace is not what this test is about
        free_pace(engine, number_id)
        single = claims.claim(engine, ids[1], "worker-1", NOW)
        assert single.message == expected_claim(engine, ids[1])
    # and nothing is claimable twice
    again = claims.claim_many(engine, batch_ids, "worker-2", NOW)
    assert {r.status for r in again.values()} == {ClaimStatus.NOT_CLAIMABLE}
    assert [day_plan(engine, n)[0] for n in (first, second, third)] == [2, 2, 2]
    assert_accounting(engine)


CASES = ("ok_a", "ok_b", "paused", "not_due", "quota", "window", "day_over", "sending")


def build_cases(engine: Engine, twin: int) -> dict[str, int]:
    """One number per case (so every claimable message could take the batch statement), each with one
    message in the situation its name says; ``twin`` keeps the phones of two copies apart."""
    ids: dict[str, int] = {}
    for index, case in enumerate(CASES):
        number_id = add(engine, phone=phone(twin * 100 + index))
        if case == "not_due":
            todo = sends(1, start=NOW + timedelta(minutes=5))
        elif case == "window":
            todo = [
                PlannedSend(PEER, "late", NOW - timedelta(minutes=30), window_end=NOW - timedelta(minutes=1))
            ]
        elif case == "day_over":
            yesterday = DAY - timedelta(days=1)
            assert days.plan_day(engine, number_id, decision(5, yesterday), sends(1, NOW - timedelta(days=1)))
            [row] = history.list_messages(engine, number_id, yesterday)
            assert row.id is not None
            ids[case] = row.id
            continue
        else:
            todo = sends(1)
        quota = 1 if case == "quota" else 5
        assert days.plan_day(engine, number_id, decision(quota), todo)
        [row] = history.list_messages(engine, number_id, DAY)
        assert row.id is not None
        ids[case] = row.id
        if case == "quota":  # the one slot is taken; a message added behind the store's back wants one
            assert claims.claim(engine, row.id, "earlier", NOW).claimed
            [ids[case]] = overfill(engine, number_id, DAY, sends(1))
        if case == "sending":
            assert claims.claim(engine, row.id, "earlier", NOW).claimed
        if case == "paused":
            with engine.begin() as conn:  # behind the store's back: the claim must re-check anyway
                conn.execute(
                    sa.update(tables.NUMBERS)
                    .where(tables.NUMBERS.c.id == number_id)
                    .values(state="paused", paused_reason="banned")
                )
    return ids


def outcome_of(engine: Engine, message_id: int) -> tuple[Any, ...]:
    row = message(engine, message_id)
    slots = day_plan(engine, row.number_id, row.local_date)
    return (row.state, row.reason, row.attempts, row.claimed_by, row.finished_at, *slots)


def test_a_mixed_batch_answers_each_message_exactly_as_the_single_claim(engine: Engine, spy: Spy) -> None:
    in_batch = build_cases(engine, 1)
    one_by_one = build_cases(engine, 2)
    order = [*in_batch.values(), 99999]
    random.Random(5).shuffle(order)
    spy.batch_ids.clear()
    spy.single_ids.clear()
    results = claims.claim_many(engine, order, "w", NOW)
    singles = {case: claims.claim(engine, one_by_one[case], "w", NOW) for case in CASES}
    missing = claims.claim(engine, 99998, "w", NOW)
    assert set(results) == {*in_batch.values(), 99999}
    statuses = {case: results[in_batch[case]].status for case in CASES}
    assert statuses == {
        "ok_a": ClaimStatus.CLAIMED,
        "ok_b": ClaimStatus.CLAIMED,
        "paused": ClaimStatus.PAUSED,
        "not_due": ClaimStatus.NOT_DUE,
        "quota": ClaimStatus.QUOTA_REACHED,
        "window": ClaimStatus.WINDOW_CLOSED,
        "day_over": ClaimStatus.DAY_OVER,
        "sending": ClaimStatus.NOT_CLAIMABLE,
    }
    assert (results[99999].status, results[99999].reason) == (missing.status, missing.reason)
    for case in CASES:
        mine, theirs = results[in_batch[case]], singles[case]
        assert (mine.status, mine.reason) == (theirs.status, theirs.reason), case
        assert outcome_of(engine, in_batch[case]) == outcome_of(engine, one_by_one[case]), case
        if mine.claimed:
            assert mine.message == expected_claim(engine, in_batch[case])
    assert outcome_of(engine, in_batch["not_due"])[:3] == ("planned", None, 0)
    assert outcome_of(engine, in_batch["quota"])[:3] == ("skipped", "the day's quota is reached", 0)
    assert outcome_of(engine, in_batch["paused"])[:2] == ("skipped", "number paused: banned")
    if engine.dialect.name == "postgresql":
        # the clean claims were decided by the batch statement, the rest one by one (the full quota's
        # number has a send in flight, so the statement leaves it to the single path)
        batch_ids = {in_batch[c] for c in ("ok_a", "ok_b")}
        assert set(spy.batch_ids) == batch_ids
        assert set(spy.single_ids) & set(order) == set(order) - batch_ids  # the rest one by one
    assert_accounting(engine)


def test_two_messages_of_one_day_plan_with_one_slot_left_claim_exactly_one(engine: Engine) -> None:
    """The batch statement takes ONE slot per day plan row it updates, however many messages join it:
    without the "shared day plan" guard both would be claimed for one slot."""
    number_id, [first] = one_day(engine, PHONE, 1, quota=1)
    [second] = overfill(engine, number_id, DAY, sends(1))  # past the quota, behind the store's back
    other, [elsewhere] = one_day(engine, PEER, 1)
    results = claims.claim_many(engine, [first, elsewhere, second], "w", NOW)
    statuses = Counter(results[m].status for m in (first, second))
    assert statuses == Counter({ClaimStatus.CLAIMED: 1, ClaimStatus.QUOTA_REACHED: 1})
    assert results[elsewhere].claimed
    assert day_plan(engine, number_id) == (1, 1)
    assert sorted(state(engine, m) for m in (first, second)) == ["sending", "skipped"]
    assert day_plan(engine, other)[0] == 1
    assert_accounting(engine)


def test_two_messages_of_one_day_plan_with_room_for_both_are_both_claimed(engine: Engine) -> None:
    """The batch leaves out messages sharing a number: the single path takes them, one send in flight
    at a time, each in its turn after the last one ended, one slot each, never past the quota."""
    number_id, ids = one_day(engine, PHONE, 3, quota=3)
    [extra] = overfill(engine, number_id, DAY, sends(1))  # past the quota, behind the store's back
    gap = timedelta(minutes=2)
    with engine.begin() as conn:
        conn.execute(sa.update(tables.DAY_PLANS).values(gap_seconds=gap.total_seconds()))
    assert claims.claim(engine, ids[0], "w", NOW).claimed
    waiting = claims.claim_many(engine, [ids[2], ids[1]], "w", NOW)
    assert {r.status for r in waiting.values()} == {ClaimStatus.NOT_DUE}  # the first send is in flight
    assert day_plan(engine, number_id) == (1, 3)  # waiting takes no slot
    assert outcomes.record_sent(engine, ids[0], None, NOW)
    early = claims.claim_many(engine, [ids[2], ids[1]], "w", NOW + gap / 2)
    assert not any(r.claimed for r in early.values())  # the gap after the first send is not over
    results = claims.claim_many(engine, [ids[2], ids[1]], "w", NOW + gap)
    [second] = [m for m, r in results.items() if r.claimed]
    [third] = [m for m in ids[1:] if m != second]
    assert results[third].status is ClaimStatus.NOT_DUE  # one send in flight at a time
    assert outcomes.record_sent(engine, second, None, NOW + gap)
    assert claims.claim_many(engine, [third], "w", NOW + 2 * gap)[third].claimed
    assert day_plan(engine, number_id) == (3, 3)
    assert outcomes.record_sent(engine, third, None, NOW + 2 * gap)
    assert claims.claim(engine, extra, "w", NOW + 3 * gap).status is ClaimStatus.QUOTA_REACHED
    assert day_plan(engine, number_id) == (3, 3)
    assert_accounting(engine)


def test_duplicate_ids_are_claimed_once(engine: Engine) -> None:
    number_id, [first] = one_day(engine, PHONE, 1)
    other, [second] = one_day(engine, PEER, 1)
    results = claims.claim_many(engine, [first, first, second, first, second], "w", NOW)
    assert sorted(results) == [first, second]
    assert all(r.claimed for r in results.values())
    assert [message(engine, m).attempts for m in (first, second)] == [1, 1]
    assert [day_plan(engine, n)[0] for n in (number_id, other)] == [1, 1]
    assert claims.claim_many(engine, [first, first], "w", NOW)[first].status is ClaimStatus.NOT_CLAIMABLE
    assert claims.claim_many(engine, [], "w", NOW) == {}


def test_claim_many_of_nothing_claimable_changes_nothing(engine: Engine) -> None:
    number_id, ids = one_day(engine, PHONE, 2)
    with engine.connect() as conn:
        before = conn.execute(sa.select(tables.MESSAGES).order_by(tables.MESSAGES.c.id)).all()
    results = claims.claim_many(engine, [*ids, 4242], "w", NOW - timedelta(hours=2))  # nothing due yet
    assert [results[m].status for m in ids] == [ClaimStatus.NOT_DUE] * 2
    with engine.connect() as conn:
        assert conn.execute(sa.select(tables.MESSAGES).order_by(tables.MESSAGES.c.id)).all() == before
    assert day_plan(engine, number_id)[0] == 0


RACE_NUMBERS = 8


RACE_QUOTA = 10


RACE_EXTRA = 4  # messages past the quota per number (overfilled): the claims must hold the line


RACE_THREADS = 6


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_racing_batches_claim_every_message_once_and_never_pass_the_quota(engine: Engine, spy: Spy) -> None:
    per_number: list[list[int]] = []
    for index in range(RACE_NUMBERS):
        number_id, ids = one_day(engine, phone(index), RACE_QUOTA, quota=RACE_QUOTA)
        ids += overfill(engine, number_id, DAY, sends(RACE_EXTRA, start=NOW - timedelta(minutes=30)))
        per_number.append(ids)
    everything = [m for ids in per_number for m in ids]
    results: list[tuple[str, int, ClaimStatus]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(RACE_THREADS)

    def run(thread: int) -> None:
        rng = random.Random(thread)
        worker = f"t{thread}"
        # batches of one message per number (the batch statement's case) in a shuffled order, every
        # other thread's with one more of some number (a shared day plan), then the whole list in chunks
        rounds = list(range(RACE_QUOTA + RACE_EXTRA))
        rng.shuffle(rounds)
        batches = []
        for r in rounds:
            ids = [per_number[n][r] for n in range(RACE_NUMBERS)]
            if thread % 2:  # the next message of some number: still claimable, same day plan
                ids.append(per_number[rng.randrange(RACE_NUMBERS)][(r + 1) % len(rounds)])
            rng.shuffle(ids)
            batches.append(ids)
        shuffled = everything[:]
        rng.shuffle(shuffled)
        batches += [shuffled[at : at + 10] for at in range(0, len(shuffled), 10)]
        mine: list[tuple[str, int, ClaimStatus]] = []
        try:
            barrier.wait()
            # a number has one send in flight: each winner records its send at once, and what waited
            # for a number's send in flight (NOT_DUE) is asked again until nothing waits
            for _ in range(200):
                waiting: list[int] = []
                for ids in batches:
                    answer = claims.claim_many(engine, ids, worker, NOW)
                    assert set(answer) == set(ids)
                    mine.extend((worker, m, r.status) for m, r in answer.items())
                    for m, r in answer.items():
                        if r.claimed:
                            assert outcomes.record_sent(engine, m, f"p-{m}", NOW)
                        elif r.status is ClaimStatus.NOT_DUE:
                            waiting.append(m)
                if not waiting:
                    break
                batches = [waiting[at : at + 10] for at in range(0, len(waiting), 10)]
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(RACE_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(200)
    assert not any(thread.is_alive() for thread in threads), "a batch claim hung"
    assert errors == []
    decided = [(w, m, s) for w, m, s in results if s not in (ClaimStatus.NOT_CLAIMABLE, ClaimStatus.NOT_DUE)]
    assert {s for _, _, s in decided} <= {ClaimStatus.CLAIMED, ClaimStatus.QUOTA_REACHED}
    # every message decided exactly once over all threads: claimed by one, or skipped at the quota once
    assert Counter(m for _, m, _ in decided) == Counter(everything)
    winners = {m: w for w, m, s in decided if s is ClaimStatus.CLAIMED}
    assert len(winners) == RACE_NUMBERS * RACE_QUOTA
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                tables.MESSAGES.c.id,
                tables.MESSAGES.c.state,
                tables.MESSAGES.c.claimed_by,
                tables.MESSAGES.c.attempts,
            )
        ).all()
    assert {r.id: r.claimed_by for r in rows if r.state == "sent"} == winners
    assert {(r.state, r.attempts) for r in rows} == {("sent", 1), ("skipped", 0)}
    for ids in per_number:
        number_id = message(engine, ids[0]).number_id
        assert day_plan(engine, number_id) == (RACE_QUOTA, RACE_QUOTA)
        assert sum(m in winners for m in ids) == RACE_QUOTA
    assert_accounting(engine)
    if engine.dialect.name == "postgresql":
        assert spy.batch_ids, "the batch statement never claimed anything: the race did not test it"


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_a_pause_in_progress_holds_back_only_its_own_number(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks between transactions: PostgreSQL only")
    paused, [held] = one_day(engine, PHONE, 1)
    first, [a] = one_day(engine, PEER, 1)
    second, [b] = one_day(engine, phone(3), 1)
    results: dict[int, ClaimResult] = {}
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            results.update(claims.claim_many(engine, [held, a, b], "w", NOW))  # the paused one first
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pause = engine.connect()
    pause_tx = pause.begin()
    thread = threading.Thread(target=claim)
    try:
        pause.execute(
            sa.update(tables.NUMBERS)
            .where(tables.NUMBERS.c.id == paused)
            .values(state="paused", paused_reason="admin check")
        )
        [pause_pid] = pause.execute(sa.text("SELECT pg_backend_pid()")).scalars()

        def waiting_for_the_pause() -> bool:
            with engine.connect() as conn:
                return bool(
                    conn.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock' AND :pid = ANY(pg_blocking_pids(pid))"
                        ),
                        {"pid": pause_pid},
                    ).scalar_one()
                )

        thread.start()
        _wait_until(lambda: waiting_for_the_pause() or not thread.is_alive(), "the claim waits for the pause")
        assert thread.is_alive() and errors == []  # it waits for the pause to end, it did not fail
        # while it waits, the other numbers' messages are claimed and committed already
        assert (state(engine, a), state(engine, b), state(engine, held)) == ("sending", "sending", "planned")
        pause_tx.commit()
        thread.join(60)
        assert not thread.is_alive(), "the claim hung after the pause committed"
    finally:
        if pause_tx.is_active:
            pause_tx.rollback()
        pause.close()
        thread.join(60)
    assert errors == []
    assert (results[held].status, results[held].reason) == (ClaimStatus.PAUSED, "number paused: admin check")
    assert results[a].claimed and results[b].claimed
    assert state(engine, held) == "skipped"
    assert [day_plan(engine, n)[0] for n in (paused, first, second)] == [0, 1, 1]
    assert_accounting(engine)
