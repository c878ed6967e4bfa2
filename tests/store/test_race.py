"""Concurrent claims from several PROCESSES (each with several threads): exactly one winner per message,
and never more claims than the day's quota, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from multiprocessing import get_context

import pytest
import sqlalchemy as sa

from tests.invariant_checks import overfill
from warmup.core.domain import Action, Decision
from warmup.store import claims, days, db, history, outcomes
from warmup.store.claims import ClaimStatus
from warmup.store.numbers import add_number
from warmup.store.sends import PlannedSend

pytestmark = pytest.mark.slow

PROCESSES = 4
THREADS = 8
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = date(2026, 11, 23)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    db.upgrade(value)
    return value


def _setup(url: str, numbers: int, messages_per_number: int, quota: int) -> list[int]:
    """Numbers with one planned day each, every message due; returns all message ids."""
    engine = db.make_engine(url)
    ids: list[int] = []
    for index in range(numbers):
        number_id = add_number(
            engine,
            phone=f"+55119999{index:05d}",
            provider="simulator",
            token_ref=f"SIM_TOKEN_{index}",
            plan_name="race",
            plan_path="race.yaml",
            timezone="UTC",
        )
        decision = Decision(DAY, 1, 2, Action.ADVANCE, quota, quota, 10)
        start = NOW - timedelta(hours=2)
        sends = [
            PlannedSend(recipient="+5511988880000", text=f"m{i}", scheduled_at=start + timedelta(seconds=i))
            for i in range(messages_per_number)
        ]
        if len(sends) > quota:  # more messages than the quota: plan the quota, add the rest
            assert days.plan_day(engine, number_id, decision, sends[:quota])
            overfill(engine, number_id, DAY, sends[quota:])  # past the quota: the claims must hold the line
        else:
            assert days.plan_day(engine, number_id, decision, sends)
        ids.extend(m.id for m in history.list_messages(engine, number_id, DAY) if m.id is not None)
    engine.dispose()
    return ids


def _claim_everything(url: str, ids: list[int], process: int, record: bool = False) -> dict[str, list[int]]:
    """Run in a child process: THREADS threads each try to claim every id (all in the same order, so
    they collide); returns the ids each status was reported for. With ``record`` a winner records its
    send at once, and ids answered NOT_DUE (their number had a send in flight: one at a time per
    number) are tried again in further passes."""
    engine = db.make_engine(url, pool_size=THREADS, max_overflow=0)
    results: dict[str, list[int]] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def run(thread: int) -> None:
        worker = f"p{process}-t{thread}"
        mine: dict[str, list[int]] = {}
        barrier.wait()
        todo = list(ids)
        for _ in range(1000 if record else 1):
            waiting = []
            for message_id in todo:
                result = claims.claim(engine, message_id, worker, NOW)
                mine.setdefault(str(result.status), []).append(message_id)
                if result.claimed:
                    mine.setdefault(f"won-by:{worker}", []).append(message_id)
                    if record:
                        assert outcomes.record_sent(engine, message_id, f"p-{message_id}", NOW)
                elif result.status is ClaimStatus.NOT_DUE:
                    waiting.append(message_id)
            if not waiting:
                break
            todo = waiting
        with lock:
            for key, values in mine.items():
                results.setdefault(key, []).extend(values)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    return results


def _race(url: str, ids: list[int], record: bool = False) -> dict[str, list[int]]:
    merged: dict[str, list[int]] = {}
    with ProcessPoolExecutor(max_workers=PROCESSES, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_claim_everything, url, ids, p, record) for p in range(PROCESSES)]
        for future in futures:
            for key, values in future.result(timeout=120).items():
                merged.setdefault(key, []).extend(values)
    return merged


@pytest.mark.timeout(180)
def test_exactly_one_winner_per_message(url: str) -> None:
    # one message per number: each is claimable at once (a number has one send in flight at most)
    ids = _setup(url, numbers=400, messages_per_number=1, quota=1)
    results = _race(url, ids)
    winners = results.get(ClaimStatus.CLAIMED.value, [])
    assert len(winners) == len(ids) == 400
    assert Counter(winners).most_common(1)[0][1] == 1  # nobody claimed a message twice
    assert set(winners) == set(ids)
    assert set(results) - {ClaimStatus.CLAIMED.value, ClaimStatus.NOT_CLAIMABLE.value} == {
        key for key in results if key.startswith("won-by:")
    }
    engine = db.make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, state, claimed_by, attempts FROM outbound_messages")).all()
        used = conn.execute(sa.text("SELECT used FROM day_plans ORDER BY id")).scalars().all()
    engine.dispose()
    claimed_by = {
        message_id: key[len("won-by:") :]
        for key, v in results.items()
        if key.startswith("won-by:")
        for message_id in v
    }
    assert {(r.state, r.attempts) for r in rows} == {("sending", 1)}
    assert {r.id: r.claimed_by for r in rows} == claimed_by  # the database agrees with who won
    assert used == [1] * 400
    assert len(set(claimed_by.values())) > PROCESSES  # the work really was spread out


@pytest.mark.timeout(180)
def test_quota_race_claims_exactly_the_quota(url: str) -> None:
    ids = _setup(url, numbers=1, messages_per_number=200, quota=50)
    results = _race(url, ids, record=True)  # one send in flight: each winner records it at once
    winners = results.get(ClaimStatus.CLAIMED.value, [])
    assert len(winners) == len(set(winners)) == 50
    assert len(set(results.get(ClaimStatus.QUOTA_REACHED.value, []))) == 150
    engine = db.make_engine(url)
    with engine.connect() as conn:
        states = Counter(conn.execute(sa.text("SELECT state FROM outbound_messages")).scalars().all())
        used = conn.execute(sa.text("SELECT used FROM day_plans")).scalar_one()
    assert history.day_count(engine, 1, DAY) == 50
    engine.dispose()
    assert states == Counter({"sent": 50, "skipped": 150})
    assert used == 50
