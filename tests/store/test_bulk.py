"""Batch planning's reads and writes (`warmup.store.bulk`) against the per-number ones they replace.

`planning_facts` must answer exactly what `ops.latest_reading`, `ops.get_day_plan` + `ops.day_outcome`
and `ops.list_recipients` answer number by number; `ops.plan_days` (set-based statements on PostgreSQL)
must store what `ops.plan_day` stores, and nothing at all when the batch is refused. Both databases.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from warmup.core.domain import Action, Decision, Reading, Reason
from warmup.store import bulk, ops

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TODAY = date(2026, 11, 24)
YESTERDAY = TODAY - timedelta(days=1)
ZONES = ("UTC", "America/Sao_Paulo", "Asia/Tokyo", "Europe/Berlin", "UTC")


def _numbers(engine: Engine) -> list[int]:
    return [
        ops.add_number(
            engine,
            phone=f"+55119999900{i:02d}",
            provider="simulator",
            token_ref=f"TOKEN_{i}",
            plan_name="p",
            plan_path="/nowhere/plan.yaml",
            timezone=zone,
            now=NOW - timedelta(days=10),
        )
        for i, zone in enumerate(ZONES)
    ]


def _decision(local_date: date, quota: int = 6, action: Action = Action.ADVANCE) -> Decision:
    return Decision(
        local_date=local_date,
        plan_day=3,
        next_plan_day=4,
        action=action,
        quota=quota,
        plan_volume=quota,
        max_new_contacts=2,
        reasons=(Reason("ramp", action, "day 3 of the ramp"), Reason("risk", Action.HOLD, "ok: ünïcode")),
    )


def _send(i: int, at: datetime, kind: str | None = "contact") -> ops.PlannedSend:
    return ops.PlannedSend(
        recipient=f"+55119777700{i:02d}",
        text=f"hello number {i}" if i % 3 else f"tab\there, new\nline, back\\slash \\N, 'quote' ünï 😀 {i}",
        scheduled_at=at,
        typing_seconds=1.25 * i,
        window_end=at + timedelta(hours=1) if i % 4 else None,
        recipient_kind=kind,
    )


def _reading(overall: int, at: datetime) -> Reading:
    return Reading(overall=overall, lifetime=2, response_rate=3, contacts=1, taken_at=at, source="simulator")


def _set_states(
    engine: Engine, number_id: int, local_date: date, states: list[tuple[str, str | None]]
) -> None:
    """Give that day's messages (by id) these (state, reason) and provider ids p<number>-<index>."""
    with engine.begin() as conn:
        ids = conn.execute(
            sa.select(ops.MESSAGES.c.id)
            .where(ops.MESSAGES.c.number_id == number_id, ops.MESSAGES.c.local_date == local_date)
            .order_by(ops.MESSAGES.c.id)
        ).scalars()
        for index, (message_id, (state, reason)) in enumerate(zip(ids, states, strict=False)):
            conn.execute(
                sa.update(ops.MESSAGES)
                .where(ops.MESSAGES.c.id == message_id)
                .values(state=state, reason=reason, provider_message_id=f"p{number_id}-{index}")
            )


def _world(engine: Engine) -> list[int]:
    """Five numbers in four zones with a varied yesterday: sends in every state, an opener that gave way,
    delivery statuses (one for another number's message id), replies inside and outside each local day,
    readings (ties on taken_at, old ones, none), recipients (invalid, with and without a last text)."""
    ids = _numbers(engine)
    a, b, c, d, _ = ids  # the fifth has nothing at all
    start = NOW - timedelta(days=1, hours=3)
    for number_id in (a, b, c):
        sends = [_send(i, start + timedelta(minutes=10 * i)) for i in range(6)]
        assert ops.plan_day(engine, number_id, _decision(YESTERDAY), sends, now=start - timedelta(hours=1))
    gave_way = ops.GAVE_WAY
    _set_states(
        engine,
        a,
        YESTERDAY,
        [("sent", None), ("sent", None), ("failed", "x"), ("skipped", gave_way), ("skipped", "day over")],
    )
    _set_states(engine, b, YESTERDAY, [("sent", None), ("unknown", "timeout"), ("sent", gave_way)])
    statuses = ((a, 0, "delivered"), (a, 0, "read"), (a, 1, "sent"), (b, 0, "read"), (b, 2, "delivered"))
    for number_id, index, status in statuses:  # b's message 2 is sent but gave way: still delivered
        ops.add_inbound(
            engine,
            number_id,
            kind="status",
            provider_message_id=f"p{number_id}-{index}",
            received_at=start,
            status=status,
        )
    _set_states(engine, c, YESTERDAY, [("sent", None)])
    ops.add_inbound(  # another number's status for c's sent message does not count for c
        engine, d, kind="status", provider_message_id=f"p{c}-0", received_at=start, status="delivered"
    )
    for number_id in (a, b, c, d):
        for n, hours in enumerate((-30, -20, -12, -1, 5)):  # around yesterday in every zone
            ops.add_inbound(
                engine,
                number_id,
                kind="message",
                provider_message_id=f"m{number_id}-{n}",
                received_at=NOW + timedelta(hours=hours),
                chat_phone="+5511977770001",
                text="hey",
            )
        ops.add_inbound(
            engine,
            number_id,
            kind="message",
            provider_message_id=f"mine{number_id}",
            received_at=NOW - timedelta(hours=20),
            chat_phone="+5511977770001",
            from_me=True,
            text="mine",
        )
    tie = NOW - timedelta(hours=2)
    ops.save_reading(engine, a, TODAY, _reading(1, tie))
    ops.save_reading(engine, a, TODAY, _reading(3, tie))  # same taken_at: the later row wins
    ops.save_reading(engine, b, YESTERDAY, _reading(2, NOW - timedelta(hours=30)))
    ops.save_reading(engine, b, TODAY, _reading(1, NOW - timedelta(hours=1)))
    ops.save_reading(engine, b, TODAY, _reading(3, NOW - timedelta(hours=3)))  # older, stored later
    ops.save_reading(engine, c, YESTERDAY, _reading(2, NOW - timedelta(hours=30)))
    ops.upsert_recipient(engine, c, "+5511977770009", "contact", invalid_reason="not on WhatsApp", now=NOW)
    ops.upsert_recipient(engine, d, "+5511977770008", "peer", last_text="see you", contacted_on=YESTERDAY)
    return ids


def test_planning_facts_equal_the_per_number_reads(engine: Engine) -> None:
    ids = _world(engine)
    zones = dict(zip(ids, ZONES, strict=True))
    with engine.connect() as conn:
        facts = bulk.planning_facts(conn, zones, TODAY, since=NOW - timedelta(days=2))
    assert sorted(facts) == sorted(ids)
    for number_id in ids:
        got = facts[number_id]
        assert got.latest_reading == ops.latest_reading(engine, number_id)
        planned = ops.get_day_plan(engine, number_id, YESTERDAY) is not None
        assert got.yesterday == (ops.day_outcome(engine, number_id, YESTERDAY) if planned else None)
        expected = [
            bulk.KnownRecipient(r.phone, r.first_contacted_on, r.invalid, r.last_text)
            for r in ops.list_recipients(engine, number_id, include_invalid=True)
        ]
        assert list(got.recipients) == expected
    a, b, c, d, e = ids
    # the world is as varied as intended (the comparison above is not between empty answers)
    outcome = facts[a].yesterday
    assert outcome is not None and (outcome.planned, outcome.sent, outcome.delivered) == (5, 2, 1)
    assert outcome.failed == 1 and outcome.skipped == 1 and outcome.replies > 0
    outcome = facts[b].yesterday
    assert outcome is not None and (outcome.planned, outcome.sent, outcome.delivered, outcome.unknown) == (
        5,
        1,
        2,
        1,
    )
    assert facts[d].yesterday is None and facts[e].yesterday is None
    outcome = facts[c].yesterday
    assert outcome is not None and (outcome.sent, outcome.delivered) == (1, 0)
    assert [r.overall for r in (facts[a].latest_reading, facts[b].latest_reading) if r] == [3, 1]
    assert facts[e].latest_reading is None
    assert any(r.invalid for r in facts[c].recipients)


def test_readings_before_since_are_not_looked_at(engine: Engine) -> None:
    ids = _numbers(engine)
    ops.save_reading(engine, ids[0], YESTERDAY, _reading(2, NOW - timedelta(days=3)))
    with engine.connect() as conn:
        facts = bulk.planning_facts(conn, {ids[0]: "UTC"}, TODAY, since=NOW - timedelta(days=2))
    assert facts[ids[0]].latest_reading is None


def _rows(engine: Engine, table: sa.Table, skip: tuple[str, ...] = ("id", "day_plan_id")) -> list[str]:
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(table.c.id))]
    return sorted(repr(sorted((k, v) for k, v in row.items() if k not in skip)) for row in rows)


def _store_snapshot(engine: Engine) -> dict[str, list[str]]:
    return {
        t.name: _rows(engine, t)
        for t in (ops.DAY_PLANS, ops.MESSAGES, ops.RECIPIENTS, ops.AUDIT, ops.NUMBERS)
    }


def _days(ids: list[int]) -> list[ops.DayToPlan]:
    """Days for the batch: sends with and without recipient rows, a day without sends, an auto-pause."""
    at = NOW + timedelta(minutes=5)
    return [
        ops.DayToPlan(ids[0], _decision(TODAY), [_send(i, at + timedelta(minutes=7 * i)) for i in range(6)]),
        ops.DayToPlan(
            ids[1], _decision(TODAY, 4), [_send(i, at, None if i % 2 else "peer") for i in range(3)], 1, "cut"
        ),
        ops.DayToPlan(ids[2], _decision(TODAY, 0, Action.HOLD), []),
        ops.DayToPlan(ids[3], _decision(TODAY, 0, Action.PAUSE), [], 0, None),
    ]


def test_plan_days_stores_what_plan_day_stores(engine: Engine) -> None:
    ids = _numbers(engine)
    ops.upsert_recipient(engine, ids[0], "+5511977770001", "peer", last_text="hi", now=NOW)  # kept kind
    days = _days(ids)
    with engine.connect() as conn:
        saved = {
            t.name: [dict(r._mapping) for r in conn.execute(sa.select(t))]
            for t in (ops.RECIPIENTS, ops.NUMBERS)
        }
    for day in days:
        assert ops.plan_day(
            engine, day.number_id, day.decision, day.sends, cut=day.cut, cut_reason=day.cut_reason, now=NOW
        )
    expected = _store_snapshot(engine)

    with engine.begin() as conn:  # back to before planning
        for table in (ops.MESSAGES, ops.DAY_PLANS, ops.AUDIT, ops.RECIPIENTS):
            conn.execute(sa.delete(table))
        conn.execute(sa.insert(ops.RECIPIENTS), saved[ops.RECIPIENTS.name])
        for row in saved[ops.NUMBERS.name]:
            conn.execute(sa.update(ops.NUMBERS).where(ops.NUMBERS.c.id == row["id"]).values(**row))
    assert _store_snapshot(engine) != expected

    assert sorted(ops.plan_days(engine, days, now=NOW)) == sorted(d.number_id for d in days)
    assert _store_snapshot(engine) == expected
    paused = ops.get_number(engine, ids[3])
    assert paused is not None and paused.state == "paused"  # the auto-pause took the per-row path
    assert ops.plan_days(engine, days, now=NOW) == []  # planned already: nothing changes
    assert _store_snapshot(engine) == expected


def test_an_invalid_send_refuses_the_whole_batch(engine: Engine) -> None:
    ids = _numbers(engine)
    days = _days(ids)
    bad = ops.PlannedSend(recipient="+5511977770001", text="  ", scheduled_at=NOW)
    days[2] = ops.DayToPlan(ids[2], _decision(TODAY), [bad])
    with pytest.raises(ops.InvalidWrite, match="send 0: empty text"):
        ops.plan_days(engine, days, now=NOW)
    assert all(ops.get_day_plan(engine, n, TODAY) is None for n in ids)


def test_a_failing_statement_leaves_nothing_half_written(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The messages' insert fails after the day plans and recipients went in: all of it is rolled back."""
    ids = _numbers(engine)
    days = _days(ids)
    before = _store_snapshot(engine)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(bulk, "copy_messages_pg", broken)
    original = sa.engine.Connection.execute

    def execute(self: sa.engine.Connection, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(statement, "table", None) is ops.MESSAGES and statement.is_insert:
            raise RuntimeError("connection lost")
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(sa.engine.Connection, "execute", execute)
    with pytest.raises(RuntimeError, match="connection lost"):
        ops.plan_days(engine, days, now=NOW)
    monkeypatch.undo()
    assert _store_snapshot(engine) == before


def test_save_readings_checks_every_reading_first(engine: Engine) -> None:
    ids = _numbers(engine)
    good = (ids[0], TODAY, _reading(3, NOW))
    bad = (ids[1], TODAY, Reading(overall=4, lifetime=2, response_rate=3, contacts=1, taken_at=NOW))
    with pytest.raises(ValueError, match="overall must be 1, 2 or 3"):
        bulk.save_readings(engine, [good, bad])
    assert ops.latest_reading(engine, ids[0]) is None
    bulk.save_readings(engine, [good])
    assert ops.latest_reading(engine, ids[0]) == good[2]
