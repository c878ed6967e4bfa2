"""The daily cycle against a real store (SQLite and PostgreSQL) and a real simulator over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.clock import ManualClock
from warmup.core.domain import Action, Decision, Reading
from warmup.core.localtime import local_date_of, window_spans
from warmup.services.planning import plan_number_day, plan_number_days
from warmup.services.runtime import ProviderPool, Runtime
from warmup.services.upkeep import respread_rest_of_day
from warmup.store import history, inbound, numbers, pauses, tables
from warmup.store.days import get_day_plan, plan_day, unplanned
from warmup.store.readings import latest_reading, save_reading
from warmup.store.respread import pending_resumes

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 09:00 in Sao Paulo, 13:00 Berlin, 21:00 Tokyo


def runtime_for(engine: Engine, clock: ManualClock) -> Runtime:
    return Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine))


def test_plans_a_day_once_within_quota_and_windows(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, volume=8)
    runtime = runtime_for(engine, clock)
    try:
        assert sorted(n for n, _ in unplanned(engine, clock.now())) == sorted(fleet.number_ids)
        sao_paulo = fleet.number_ids[0]
        day = local_date_of(clock.now(), "America/Sao_Paulo")
        result = plan_number_day(runtime, sao_paulo, day)
        assert result.planned and result.decision is not None
        messages = history.list_messages(engine, sao_paulo, day)
        stored = get_day_plan(engine, sao_paulo, day)
        assert stored is not None and stored.quota == result.decision.quota == 8
        assert 0 < len(messages) <= stored.quota
        assert len(messages) + stored.cut == stored.quota
        spans = window_spans(day, runtime.plans(str(fleet.plan_path)), "America/Sao_Paulo")
        for message in messages:
            assert message.scheduled_at >= clock.now()
            assert any(start <= message.scheduled_at < end for start, end in spans)
            assert message.recipient != fleet.phones[0]
        # peers come first: both other numbers of the fleet are among today's recipients
        assert set(fleet.phones[1:]) <= {m.recipient for m in messages}
        # the provider meter was read (once) and stored
        reading = latest_reading(engine, sao_paulo)
        assert reading is not None and reading.source == "simulator"

        again = plan_number_day(runtime, sao_paulo, day)
        assert not again.planned
        assert [m.id for m in history.list_messages(engine, sao_paulo, day)] == [m.id for m in messages]
        assert sao_paulo not in [n for n, _ in unplanned(engine, clock.now())]
    finally:
        runtime.close()


POOL_WITH_CONDITIONS = (
    "language: en\n"
    "openers:\n"
    + "".join(f"  - Plain text {i}\n" for i in range(6))
    + "".join(f"  - {{text: 'Monday text {i}', when: {{weekdays: mon}}}}\n" for i in range(12))
    + "".join(f"  - 'Hi {{first_name}}, news {i}?'\n" for i in range(3))
    + "replies: [Sure]\n"
)


def test_planned_texts_follow_the_local_day_names_and_a_week_without_repeats(
    engine: Engine, make_fleet: Any
) -> None:
    """Three days of one number (Sao Paulo): Monday texts only on its local Monday, contacts greeted
    by name and peers without one, and no recipient given the same text twice (9 texts outside
    Mondays, each of the 5 recipients gets 2 a day): the texts of earlier days come from the store."""
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, volume=10)
    (fleet.plan_path.parent / "pool.yaml").write_text(POOL_WITH_CONDITIONS)
    runtime = runtime_for(engine, clock)
    try:
        number = fleet.number_ids[0]
        names = {"+5511977770001": "Ana", "+5511977770002": "Bruno", "+5511977770003": "Carla"}
        got: dict[str, list[str]] = {}
        for offset in range(3):
            day = local_date_of(clock.now(), "America/Sao_Paulo")
            assert plan_number_day(runtime, number, day).planned
            texts = [(m.recipient, m.text) for m in history.list_messages(engine, number, day)]
            assert len(texts) == 10
            mondays = [text for _, text in texts if text.startswith("Monday text")]
            assert bool(mondays) is (offset == 0), (day, texts)
            for recipient, text in texts:
                assert "{" not in text
                if text.startswith("Hi"):  # contacts by name; fleet peers have none
                    assert text.startswith(
                        f"Hi {names[recipient]}, news" if recipient in names else "Hi, news"
                    )
                got.setdefault(recipient, []).append(text)
            clock.set(clock.now() + timedelta(days=1))
        assert any(text.startswith(f"Hi {names[phone]}, news") for phone in names for text in got[phone])
        assert any(text.startswith("Hi, news") for phone in fleet.phones[1:] for text in got[phone])
        for recipient, texts in got.items():
            assert len(texts) == len(set(texts)), (recipient, texts)
    finally:
        runtime.close()


def test_no_window_time_left_cuts_the_day_and_says_why(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, volume=5)
    runtime = runtime_for(engine, clock)
    try:
        tokyo = fleet.number_ids[2]  # 21:00 local, the 08:00-20:00 window is over
        day = local_date_of(clock.now(), "Asia/Tokyo")
        result = plan_number_day(runtime, tokyo, day)
        assert result.planned
        assert history.list_messages(engine, tokyo, day) == []
        stored = get_day_plan(engine, tokyo, day)
        assert stored is not None and stored.cut == 5
        assert stored.cut_reason is not None and "no send-window time is left" in stored.cut_reason
    finally:
        runtime.close()


def test_unplanned_takes_each_zone_s_own_today(engine: Engine, make_fleet: Any) -> None:
    """At 23:30 UTC it is still Monday in Sao Paulo and Berlin is past midnight, Tuesday already in
    Tokyo: each number's own date is asked for, a plan of another date does not count, retired
    numbers are left out, and the answer is ordered by phone."""
    late = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    clock = ManualClock(late)
    fleet = make_fleet(engine, clock, count=3)
    sao_paulo, berlin, tokyo = fleet.number_ids
    monday, tuesday = local_date_of(late, "America/Sao_Paulo"), local_date_of(late, "Asia/Tokyo")
    assert tuesday == monday + timedelta(days=1) == local_date_of(late, "Europe/Berlin")
    assert unplanned(engine, late) == [(sao_paulo, monday), (berlin, tuesday), (tokyo, tuesday)]
    decision = Decision(monday, 1, 1, Action.HOLD, 0, 0, 0, ())
    assert plan_day(engine, tokyo, decision, [], now=late)  # Tokyo's Monday: not its today
    assert plan_day(engine, sao_paulo, decision, [], now=late)
    assert unplanned(engine, late) == [(berlin, tuesday), (tokyo, tuesday)]
    with engine.begin() as conn:
        conn.execute(sa.update(tables.NUMBERS).where(tables.NUMBERS.c.id == berlin).values(state="retired"))
    assert unplanned(engine, late) == [(tokyo, tuesday)]


def test_only_today_is_planned(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=1)
    runtime = runtime_for(engine, clock)
    try:
        today = local_date_of(clock.now(), "America/Sao_Paulo")
        assert not plan_number_day(runtime, fleet.number_ids[0], today - timedelta(days=1)).planned
        assert not plan_number_day(runtime, fleet.number_ids[0], today + timedelta(days=1)).planned
        assert get_day_plan(engine, fleet.number_ids[0], today - timedelta(days=1)) is None
    finally:
        runtime.close()


def test_resume_respreads_the_rest_of_the_day_once(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=2, volume=10)
    runtime = runtime_for(engine, clock)
    try:
        number = fleet.number_ids[0]
        day = local_date_of(clock.now(), "America/Sao_Paulo")
        assert plan_number_day(runtime, number, day).planned
        pauses.pause_numbers(engine, reason="test", actor="admin", now=clock.now(), number_ids=[number])
        assert all(m.state == "skipped" for m in history.list_messages(engine, number, day))
        resume_at = clock.advance(timedelta(hours=2))
        pauses.resume_numbers(engine, actor="admin", now=resume_at, number_ids=[number])
        pending = pending_resumes(engine, resume_at - timedelta(days=1))
        assert [n for _, n in pending] == [number]
        added = respread_rest_of_day(runtime, number, resume_at, pending[0][0])
        assert added > 0
        fresh = [m for m in history.list_messages(engine, number, day) if m.state == "planned"]
        assert len(fresh) == added
        assert all(m.scheduled_at >= resume_at for m in fresh)  # the rest is spread, not burst
        assert pending_resumes(engine, resume_at - timedelta(days=1)) == []
    finally:
        runtime.close()


def test_peer_list_follows_pauses_resumes_and_swaps(engine: Engine) -> None:
    """The cached peer list is re-read whenever the active set changes, also when a pause and a
    resume leave the count and the sum of ids unchanged."""
    from warmup.services.planning import active_phones

    phones = [f"+1555010{i:04d}" for i in range(1, 9)]
    ids = [
        numbers.add_number(
            engine,
            phone=phone,
            provider="simulator",
            token_ref=f"TOKEN_{i}",
            plan_name="p",
            plan_path="p.yaml",
            timezone="UTC",
        )
        for i, phone in enumerate(phones)
    ]
    assert [phone for _, phone in active_phones(engine)] == sorted(phones)
    # pause ids[2] and ids[4] (sum 3+5 in 1-based terms), then swap: resume them, pause ids[0] and ids[6]
    pauses.pause_numbers(engine, reason="t", actor="test", now=MONDAY_NOON, number_ids=[ids[2], ids[4]])
    assert {n for n, _ in active_phones(engine)} == set(ids) - {ids[2], ids[4]}
    pauses.resume_numbers(engine, actor="test", now=MONDAY_NOON, number_ids=[ids[2], ids[4]])
    pauses.pause_numbers(engine, reason="t", actor="test", now=MONDAY_NOON, number_ids=[ids[0], ids[6]])
    assert {n for n, _ in active_phones(engine)} == set(ids) - {ids[0], ids[6]}


# ----------------------------------------------------------------------------------- batch planning

_PLANNING_TABLES = (tables.MESSAGES, tables.DAY_PLANS, tables.READINGS, tables.RECIPIENTS, tables.AUDIT)


def _rows(engine: Engine, table: sa.Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(table.c.id))]


def _planning_snapshot(engine: Engine) -> dict[str, Any]:
    """What planning wrote, without the ids a second run numbers differently (messages name their day)."""
    days = {row["id"]: (row["number_id"], row["local_date"]) for row in _rows(engine, tables.DAY_PLANS)}
    skip = {"id", "day_plan_id"}
    snapshot: dict[str, Any] = {
        table.name: sorted(
            (repr(sorted((k, v) for k, v in row.items() if k not in skip)) for row in _rows(engine, table)),
        )
        for table in (tables.DAY_PLANS, tables.READINGS, tables.RECIPIENTS, tables.AUDIT, tables.NUMBERS)
    }
    snapshot["messages"] = sorted(
        repr((days[row["day_plan_id"]], sorted((k, v) for k, v in row.items() if k not in skip)))
        for row in _rows(engine, tables.MESSAGES)
    )
    return snapshot


def _restore(engine: Engine, saved: dict[str, list[dict[str, Any]]]) -> None:
    """Put the planning tables and the numbers back as they were before planning."""
    with engine.begin() as conn:
        for table in _PLANNING_TABLES:
            conn.execute(sa.delete(table))
        for table in reversed(_PLANNING_TABLES):
            if saved[table.name]:
                conn.execute(sa.insert(table), saved[table.name])
        for row in saved[tables.NUMBERS.name]:
            conn.execute(sa.update(tables.NUMBERS).where(tables.NUMBERS.c.id == row["id"]).values(**row))


def test_batch_planning_equals_one_by_one_and_is_idempotent(engine: Engine, make_fleet: Any) -> None:
    """`plan_number_days` stores exactly the day plans, messages, recipients, readings and ramp columns
    that planning each number alone stores, on a first day and on the day after (which reads
    yesterday's outcome); a second batch, or a batch over a day already planned alone, changes nothing."""
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, volume=6)
    runtime = runtime_for(engine, clock)
    try:
        for _ in range(2):  # Monday, then Tuesday
            day = local_date_of(clock.now(), "UTC")
            before = {t.name: _rows(engine, t) for t in (*_PLANNING_TABLES, tables.NUMBERS)}
            alone = [plan_number_day(runtime, n, day) for n in fleet.number_ids]
            assert all(r.planned for r in alone)
            expected = _planning_snapshot(engine)

            _restore(engine, before)
            assert _planning_snapshot(engine) != expected
            batch = plan_number_days(runtime, fleet.number_ids, day)
            assert batch == alone
            assert _planning_snapshot(engine) == expected

            again = plan_number_days(runtime, [*fleet.number_ids, 999_999], day)
            assert [r.planned for r in again] == [False] * (len(fleet.number_ids) + 1)
            assert _planning_snapshot(engine) == expected
            clock.set(clock.now() + timedelta(days=1))
            _live_a_day(engine, fleet.number_ids, day, clock.now())
    finally:
        runtime.close()


def _live_a_day(engine: Engine, number_ids: list[int], day: Any, now: datetime) -> None:
    """What a day leaves behind for the next one to read: sends in several states with delivery
    statuses and replies, a recipient found invalid, and one number's next reading already taken."""
    first, second, third = number_ids
    for number_id, states in ((first, ("sent", "sent", "failed")), (second, ("sent", "skipped"))):
        for index, (message, state) in enumerate(
            zip(history.list_messages(engine, number_id, day), states, strict=False)
        ):
            with engine.begin() as conn:
                conn.execute(
                    sa.update(tables.MESSAGES)
                    .where(tables.MESSAGES.c.id == message.id)
                    .values(state=state, provider_message_id=f"p{message.id}")
                )
            if state == "sent" and index == 0:
                inbound.add_inbound(
                    engine,
                    number_id,
                    kind="status",
                    provider_message_id=f"p{message.id}",
                    received_at=now - timedelta(hours=20),
                    status="read",
                )
                inbound.add_inbound(
                    engine,
                    number_id,
                    kind="message",
                    provider_message_id=f"reply{message.id}",
                    received_at=now - timedelta(hours=20),
                    chat_phone=message.recipient,
                    text="hi back",
                )
    recipient = inbound.list_recipients(engine, second)[0]
    inbound.upsert_recipient(engine, second, recipient.phone, recipient.kind, invalid_reason="gone", now=now)
    save_reading(
        engine,
        third,
        day + timedelta(days=1),
        Reading(overall=1, lifetime=1, response_rate=2, contacts=2, taken_at=now - timedelta(hours=1)),
    )


def test_a_failing_number_does_not_stop_its_batch_and_keeps_its_reading(
    engine: Engine, make_fleet: Any
) -> None:
    """One number's plan file is gone: the others of the batch are planned, it is not, and the failure
    is recorded on it (issue 14: one number's failure once stopped its whole batch); every reading
    taken is stored, and the retry reads no meter twice."""
    from warmup.services import metrics
    from warmup.store import audit

    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, count=3, timezones=("UTC",))
    runtime = runtime_for(engine, clock)
    first, second, third = fleet.number_ids
    day = local_date_of(clock.now(), "UTC")
    counted = metrics.REGISTRY.get_sample_value("warmup_planning_failures_total", {"stage": "decide"}) or 0
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.update(tables.NUMBERS)
                .where(tables.NUMBERS.c.id == second)
                .values(plan_path="/gone/plan.yaml")
            )
        results = plan_number_days(runtime, fleet.number_ids, day)
        assert [r.planned for r in results] == [True, False, True]
        assert get_day_plan(engine, second, day) is None
        assert get_day_plan(engine, first, day) is not None and get_day_plan(engine, third, day) is not None
        (row,) = [r for r in audit.list_audit(engine, second) if r.action == "planning_failed"]
        assert row.detail is not None and row.detail["error"] == results[1].error
        assert "/gone/plan.yaml" in row.detail["error"]
        assert (
            metrics.REGISTRY.get_sample_value("warmup_planning_failures_total", {"stage": "decide"})
            == counted + 1
        )
        kept = {r["number_id"] for r in _rows(engine, tables.READINGS)}
        assert set(fleet.number_ids) <= kept

        with engine.begin() as conn:
            conn.execute(
                sa.update(tables.NUMBERS)
                .where(tables.NUMBERS.c.id == second)
                .values(plan_path=str(fleet.plan_path))
            )
        assert [r.planned for r in plan_number_days(runtime, fleet.number_ids, day)] == [False, True, False]
        readings = [r["number_id"] for r in _rows(engine, tables.READINGS)]
        assert sorted(readings) == sorted(fleet.number_ids)  # one each: none read twice
    finally:
        runtime.close()


def test_batch_skips_days_planned_alone_meanwhile(engine: Engine, make_fleet: Any) -> None:
    clock = ManualClock(MONDAY_NOON)
    fleet = make_fleet(engine, clock, volume=4)
    runtime = runtime_for(engine, clock)
    try:
        day = local_date_of(clock.now(), "UTC")
        first = fleet.number_ids[0]
        assert plan_number_day(runtime, first, day).planned
        messages = [m.id for m in history.list_messages(engine, first, day)]
        results = plan_number_days(runtime, fleet.number_ids, day)
        assert [r.planned for r in results] == [False, True, True]
        assert [m.id for m in history.list_messages(engine, first, day)] == messages
        assert all(get_day_plan(engine, n, day) is not None for n in fleet.number_ids)
        assert unplanned(engine, clock.now()) == []
    finally:
        runtime.close()


def test_at_most_planning_slots_batches_are_planned_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """However many worker threads take `plan_days` requests, a process plans `PLANNING_SLOTS`
    batches at a time; the others wait their turn and still get planned."""
    import threading
    import time

    from warmup.services import planning as cycle

    running = 0
    most = 0
    done: list[int] = []
    lock = threading.Lock()

    def plan(_runtime: object, number_ids: list[int], _local_date: object) -> list[object]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.1)
        with lock:
            running -= 1
            done.extend(number_ids)
        return []

    monkeypatch.setattr(cycle, "_plan_number_days", plan)
    threads = [
        threading.Thread(target=cycle.plan_number_days, args=(None, [i], None))
        for i in range(3 * cycle.PLANNING_SLOTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == cycle.PLANNING_SLOTS and sorted(done) == list(range(3 * cycle.PLANNING_SLOTS))
