"""warmup.store.batch on SQLite and PostgreSQL: `claim_many` answers every id exactly as `ops.claim`
would, never takes more slots than the quota, survives races and a pause in progress;
`record_sent_many`, `give_back` and `due_within` keep the single path's bookkeeping."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.invariant_checks import assert_accounting, overfill
from tests.store.test_ops import DAY, NOW, PEER, PHONE, add, decision, sends, state
from warmup.store import batch, ops
from warmup.store.ops import ClaimedMessage, ClaimResult, ClaimStatus, PlannedSend

OTHER = "+5511988880000"  # a contact, not a number of the fleet


def phone(index: int) -> str:
    return f"+55119777{index:05d}"


def day_plan(engine: Engine, number_id: int, local_date: date = DAY) -> tuple[int, int]:
    """(used, quota) of the number's day."""
    plan = ops.get_day_plan(engine, number_id, local_date)
    assert plan is not None
    return plan.used, plan.quota


def message(engine: Engine, message_id: int) -> Any:
    row = ops.get_message(engine, message_id)
    assert row is not None
    return row


def expected_claim(engine: Engine, message_id: int) -> ClaimedMessage:
    """What a claim of ``message_id`` must hand the worker, read from the rows after the claim."""
    row = message(engine, message_id)
    number = ops.get_number(engine, row.number_id)
    assert number is not None
    is_number = ops.get_number(engine, phone=row.recipient) is not None
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
    """Counts what went through the batch statement and what through `ops.claim` one by one."""

    batch_ids: list[int]
    single_ids: list[int]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    found = Spy([], [])
    lock = threading.Lock()
    real_many = batch._claim_many_pg
    real_claim = ops.claim

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

    monkeypatch.setattr(batch, "_claim_many_pg", claim_many_pg)
    monkeypatch.setattr(ops, "claim", claim)  # batch.py calls it through the module
    yield found


def one_day(
    engine: Engine, phone_: str, count: int = 1, *, quota: int = 5, recipient: str = PEER, **kwargs: Any
) -> tuple[int, list[int]]:
    """A number with a planned day of ``count`` due messages: (number id, message ids)."""
    number_id = add(engine, phone=phone_, **kwargs)
    assert ops.plan_day(engine, number_id, decision(quota), sends(count, recipient=recipient))
    return number_id, [m.id for m in ops.list_messages(engine, number_id, DAY) if m.id is not None]


# --------------------------------------------------------------------------------------- claim_many


def test_claim_many_claims_each_message_once_with_what_the_single_claim_gives(
    engine: Engine, spy: Spy
) -> None:
    first, first_ids = one_day(engine, PHONE, 2, recipient=PEER)  # PEER becomes a fleet number below
    second, second_ids = one_day(engine, PEER, 2, recipient=OTHER)
    third, third_ids = one_day(engine, phone(3), 2, recipient=PHONE)
    batch_ids = [second_ids[0], third_ids[0], first_ids[0]]
    spy.single_ids.clear()
    results = batch.claim_many(engine, batch_ids, "worker-1", NOW)
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
    for ids in (first_ids, second_ids, third_ids):
        single = ops.claim(engine, ids[1], "worker-1", NOW)
        assert single.message == expected_claim(engine, ids[1])
    # and nothing is claimable twice
    again = batch.claim_many(engine, batch_ids, "worker-2", NOW)
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
            assert ops.plan_day(engine, number_id, decision(5, yesterday), sends(1, NOW - timedelta(days=1)))
            [row] = ops.list_messages(engine, number_id, yesterday)
            assert row.id is not None
            ids[case] = row.id
            continue
        else:
            todo = sends(1)
        quota = 1 if case == "quota" else 5
        assert ops.plan_day(engine, number_id, decision(quota), todo)
        [row] = ops.list_messages(engine, number_id, DAY)
        assert row.id is not None
        ids[case] = row.id
        if case == "quota":  # the one slot is taken; a message added behind the store's back wants one
            assert ops.claim(engine, row.id, "earlier", NOW).claimed
            [ids[case]] = overfill(engine, number_id, DAY, sends(1))
        if case == "sending":
            assert ops.claim(engine, row.id, "earlier", NOW).claimed
        if case == "paused":
            with engine.begin() as conn:  # behind the store's back: the claim must re-check anyway
                conn.execute(
                    sa.update(ops.NUMBERS)
                    .where(ops.NUMBERS.c.id == number_id)
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
    results = batch.claim_many(engine, order, "w", NOW)
    singles = {case: ops.claim(engine, one_by_one[case], "w", NOW) for case in CASES}
    missing = ops.claim(engine, 99998, "w", NOW)
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
        # the clean claims and the full quota were decided by the batch statement, the rest one by one
        batch_ids = {in_batch[c] for c in ("ok_a", "ok_b", "quota")}
        assert set(spy.batch_ids) == batch_ids
        assert set(spy.single_ids) & set(order) == set(order) - batch_ids  # the rest one by one
    assert_accounting(engine)


def test_two_messages_of_one_day_plan_with_one_slot_left_claim_exactly_one(engine: Engine) -> None:
    """The batch statement takes ONE slot per day plan row it updates, however many messages join it:
    without the "shared day plan" guard both would be claimed for one slot."""
    number_id, [first] = one_day(engine, PHONE, 1, quota=1)
    [second] = overfill(engine, number_id, DAY, sends(1))  # past the quota, behind the store's back
    other, [elsewhere] = one_day(engine, PEER, 1)
    results = batch.claim_many(engine, [first, elsewhere, second], "w", NOW)
    statuses = Counter(results[m].status for m in (first, second))
    assert statuses == Counter({ClaimStatus.CLAIMED: 1, ClaimStatus.QUOTA_REACHED: 1})
    assert results[elsewhere].claimed
    assert day_plan(engine, number_id) == (1, 1)
    assert sorted(state(engine, m) for m in (first, second)) == ["sending", "skipped"]
    assert day_plan(engine, other)[0] == 1
    assert_accounting(engine)


def test_two_messages_of_one_day_plan_with_room_for_both_are_both_claimed(engine: Engine) -> None:
    number_id, ids = one_day(engine, PHONE, 3, quota=3)
    assert ops.claim(engine, ids[0], "w", NOW).claimed
    results = batch.claim_many(engine, [ids[2], ids[1]], "w", NOW)
    assert [results[m].status for m in ids[1:]] == [ClaimStatus.CLAIMED] * 2
    assert day_plan(engine, number_id) == (3, 3)
    assert_accounting(engine)


def test_duplicate_ids_are_claimed_once(engine: Engine) -> None:
    number_id, [first] = one_day(engine, PHONE, 1)
    other, [second] = one_day(engine, PEER, 1)
    results = batch.claim_many(engine, [first, first, second, first, second], "w", NOW)
    assert sorted(results) == [first, second]
    assert all(r.claimed for r in results.values())
    assert [message(engine, m).attempts for m in (first, second)] == [1, 1]
    assert [day_plan(engine, n)[0] for n in (number_id, other)] == [1, 1]
    assert batch.claim_many(engine, [first, first], "w", NOW)[first].status is ClaimStatus.NOT_CLAIMABLE
    assert batch.claim_many(engine, [], "w", NOW) == {}


def test_claim_many_of_nothing_claimable_changes_nothing(engine: Engine) -> None:
    number_id, ids = one_day(engine, PHONE, 2)
    with engine.connect() as conn:
        before = conn.execute(sa.select(ops.MESSAGES).order_by(ops.MESSAGES.c.id)).all()
    results = batch.claim_many(engine, [*ids, 4242], "w", NOW - timedelta(hours=2))  # nothing due yet
    assert [results[m].status for m in ids] == [ClaimStatus.NOT_DUE] * 2
    with engine.connect() as conn:
        assert conn.execute(sa.select(ops.MESSAGES).order_by(ops.MESSAGES.c.id)).all() == before
    assert day_plan(engine, number_id)[0] == 0


# ------------------------------------------------------------------------------------------- races

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
            for ids in batches:
                answer = batch.claim_many(engine, ids, worker, NOW)
                assert set(answer) == set(ids)
                mine.extend((worker, m, r.status) for m, r in answer.items())
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
    decided = [(w, m, s) for w, m, s in results if s is not ClaimStatus.NOT_CLAIMABLE]
    assert {s for _, _, s in decided} <= {ClaimStatus.CLAIMED, ClaimStatus.QUOTA_REACHED}
    # every message decided exactly once over all threads: claimed by one, or skipped at the quota once
    assert Counter(m for _, m, _ in decided) == Counter(everything)
    winners = {m: w for w, m, s in decided if s is ClaimStatus.CLAIMED}
    assert len(winners) == RACE_NUMBERS * RACE_QUOTA
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                ops.MESSAGES.c.id, ops.MESSAGES.c.state, ops.MESSAGES.c.claimed_by, ops.MESSAGES.c.attempts
            )
        ).all()
    assert {r.id: r.claimed_by for r in rows if r.state == "sending"} == winners
    assert {(r.state, r.attempts) for r in rows} == {("sending", 1), ("skipped", 0)}
    for ids in per_number:
        number_id = message(engine, ids[0]).number_id
        assert day_plan(engine, number_id) == (RACE_QUOTA, RACE_QUOTA)
        assert sum(m in winners for m in ids) == RACE_QUOTA
    assert_accounting(engine)
    if engine.dialect.name == "postgresql":
        assert spy.batch_ids, "the batch statement never claimed anything: the race did not test it"


# ------------------------------------------------------------------------- a pause in progress (PG)


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
            results.update(batch.claim_many(engine, [held, a, b], "w", NOW))  # the paused one first
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pause = engine.connect()
    pause_tx = pause.begin()
    thread = threading.Thread(target=claim)
    try:
        pause.execute(
            sa.update(ops.NUMBERS)
            .where(ops.NUMBERS.c.id == paused)
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


# -------------------------------------------------------------------------------- record_sent_many


def test_record_sent_many_records_sending_and_unknown_only(engine: Engine) -> None:
    recipients = [phone(10 + i) for i in range(5)]
    number_id = add(engine)
    todo = [PlannedSend(r, f"text {i}", NOW - timedelta(minutes=10 - i)) for i, r in enumerate(recipients)]
    assert ops.plan_day(engine, number_id, decision(5), todo)
    ids = [m.id or 0 for m in ops.list_messages(engine, number_id, DAY)]
    earlier = DAY - timedelta(days=3)
    for i, r in enumerate(recipients):
        ops.upsert_recipient(
            engine, number_id, r, "contact", contacted_on=earlier if i == 1 else None, now=NOW
        )
    other, [elsewhere] = one_day(engine, PEER, 1, recipient=OTHER)
    ops.upsert_recipient(engine, other, OTHER, "contact", now=NOW)
    sending, unknown, planned, sent, failed = ids
    for m in (sending, unknown, sent, failed, elsewhere):
        assert ops.claim(engine, m, "w", NOW).claimed
    assert ops.record_unknown(engine, unknown, "read timeout", NOW)
    assert ops.record_sent(engine, sent, "wamid.old", NOW)
    assert ops.record_failed(engine, failed, "blocked", NOW)
    before = {m: message(engine, m) for m in (planned, sent, failed)}
    later = NOW + timedelta(minutes=1)
    recorded = batch.record_sent_many(
        engine,
        [
            batch.Sent(sending, "wamid.a"),
            batch.Sent(unknown, "wamid.b"),
            batch.Sent(planned, "wamid.c"),
            batch.Sent(sent, "wamid.d"),
            batch.Sent(failed, "wamid.e"),
            batch.Sent(elsewhere, None),
            batch.Sent(99999, "wamid.f"),
        ],
        later,
    )
    assert recorded == {sending, unknown, elsewhere}
    for m, provider_id in ((sending, "wamid.a"), (unknown, "wamid.b"), (elsewhere, None)):
        row = message(engine, m)
        assert (row.state, row.provider_message_id, row.finished_at, row.reason) == (
            "sent",
            provider_id,
            later,
            None,
        )
    assert {m: message(engine, m) for m in (planned, sent, failed)} == before
    rows = {r.phone: r for r in ops.list_recipients(engine, number_id, include_invalid=True)}
    assert (rows[recipients[0]].last_text, rows[recipients[0]].first_contacted_on) == ("text 0", DAY)
    assert (rows[recipients[1]].last_text, rows[recipients[1]].first_contacted_on) == ("text 1", earlier)
    assert rows[recipients[0]].updated_at == later
    for untouched in (2, 4):  # planned, failed: no contact was made by this record
        assert (rows[recipients[untouched]].last_text, rows[recipients[untouched]].first_contacted_on) == (
            None,
            None,
        )
    [elsewhere_row] = ops.list_recipients(engine, other)
    assert (elsewhere_row.last_text, elsewhere_row.first_contacted_on) == ("hello 0", DAY)
    assert day_plan(engine, number_id)[0] == 4  # recording keeps the slots as they were
    assert (
        batch.record_sent_many(engine, [batch.Sent(sending, "again"), batch.Sent(unknown, "x")], later)
        == set()
    )
    assert message(engine, sending).provider_message_id == "wamid.a"
    assert batch.record_sent_many(engine, [], later) == set()
    assert_accounting(engine)


def test_record_sent_many_takes_sends_without_provider_ids(engine: Engine) -> None:
    _, [first] = one_day(engine, PHONE, 1)
    _, [second] = one_day(engine, PEER, 1)
    for m in (first, second):
        assert ops.claim(engine, m, "w", NOW).claimed
    assert batch.record_sent_many(engine, [batch.Sent(first, None), batch.Sent(second, None)], NOW) == {
        first,
        second,
    }
    assert [(message(engine, m).state, message(engine, m).provider_message_id) for m in (first, second)] == [
        ("sent", None),
        ("sent", None),
    ]


def test_record_sent_many_matches_record_sent(engine: Engine) -> None:
    """Twin messages: one recorded by the batch, one by `ops.record_sent`; every column the same."""
    twins = []
    for index in range(2):
        number_id, [m] = one_day(engine, phone(index), 1, recipient=OTHER)
        ops.upsert_recipient(engine, number_id, OTHER, "contact", now=NOW)
        assert ops.claim(engine, m, "w", NOW).claimed
        twins.append((number_id, m))
    _, [helper] = one_day(engine, phone(5), 1)
    assert ops.claim(engine, helper, "w", NOW).claimed
    later = NOW + timedelta(seconds=30)
    assert batch.record_sent_many(engine, [batch.Sent(twins[0][1], "p"), batch.Sent(helper, "q")], later)
    assert ops.record_sent(engine, twins[1][1], "p", later)

    def comparable(number_id: int, message_id: int) -> tuple[Any, ...]:
        row = message(engine, message_id)
        [recipient] = ops.list_recipients(engine, number_id)
        return (
            row.state,
            row.provider_message_id,
            row.finished_at,
            row.reason,
            row.attempts,
            recipient.last_text,
            recipient.first_contacted_on,
            recipient.updated_at,
            day_plan(engine, number_id),
        )

    assert comparable(*twins[0]) == comparable(*twins[1])


# -------------------------------------------------------------------------------------- give_back


def test_give_back_returns_the_claim_slot_and_attempt(engine: Engine) -> None:
    number_id, ids = one_day(engine, PHONE, 3)
    retry_at = NOW + timedelta(minutes=3)
    assert ops.claim(engine, ids[0], "w", NOW).claimed
    assert ops.release_for_retry(engine, ids[0], retry_at, "HTTP 429", NOW)
    retry = ops.claim(engine, ids[0], "w", retry_at)
    assert retry.claimed and retry.message is not None and retry.message.attempts == 2
    assert ops.claim(engine, ids[1], "w", retry_at).claimed
    assert day_plan(engine, number_id)[0] == 2
    later = retry_at + timedelta(seconds=10)
    assert batch.give_back(engine, ids[0], "out of time", later)
    row = message(engine, ids[0])
    assert (row.state, row.reason, row.attempts, row.claimed_by, row.claimed_at) == (
        "queued",
        "out of time",
        1,
        None,
        None,
    )
    assert (row.not_before, row.queued_at, row.finished_at) == (retry_at, later, None)  # not_before kept
    assert day_plan(engine, number_id)[0] == 1
    assert_accounting(engine)
    # not sending (any more): False, nothing changes
    for other in (ids[0], ids[2]):  # queued, planned
        before = message(engine, other)
        assert not batch.give_back(engine, other, "again", later)
        assert message(engine, other) == before
    assert ops.record_sent(engine, ids[1], "wamid.1", later)
    assert not batch.give_back(engine, ids[1], "too late", later)
    assert state(engine, ids[1]) == "sent" and day_plan(engine, number_id)[0] == 1
    assert not batch.give_back(engine, 99999, "missing", later)
    # the message given back is claimable again, as if the batch never had it
    again = ops.claim(engine, ids[0], "w2", later)
    assert again.claimed and again.message is not None and again.message.attempts == 2
    assert day_plan(engine, number_id)[0] == 2
    assert_accounting(engine)


# ------------------------------------------------------------------------------------- due_within


def test_due_within_gives_each_planned_message_with_its_number_and_due_time(engine: Engine) -> None:
    first, [a, b] = one_day(engine, PHONE, 2)
    second = add(engine, phone=PEER)
    late = [PlannedSend(OTHER, "later", NOW + timedelta(minutes=10))]
    assert ops.plan_day(engine, second, decision(5), late)
    [c] = [m.id for m in ops.list_messages(engine, second, DAY)]
    assert c is not None
    assert ops.claim(engine, a, "w", NOW).claimed
    retry_at = NOW + timedelta(minutes=5)
    assert ops.release_for_retry(engine, a, retry_at, "429", NOW)  # queued, not planned: not due_within's
    due = batch.due_within(engine, NOW + timedelta(minutes=10), 10)
    assert due == [
        batch.Due(b, first, message(engine, b).scheduled_at),
        batch.Due(c, second, NOW + timedelta(minutes=10)),
    ]
    assert batch.due_within(engine, NOW, 10) == due[:1]
    assert batch.due_within(engine, NOW + timedelta(minutes=10), 1) == due[:1]
    # the same messages and due times as the single path's look-up
    assert [(d.message_id, d.due_at) for d in due] == ops.due_within(engine, NOW + timedelta(minutes=10), 10)
