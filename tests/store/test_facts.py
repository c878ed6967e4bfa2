"""warmup.store.facts: `planning_facts` answers exactly what `readings.latest_reading`,
`days.get_day_plan` + `history.day_outcome` and `inbound.list_recipients` answer number by number.
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy import Engine

from tests.store.helpers import (
    BATCH_NOW,
    TODAY,
    YESTERDAY,
    ZONES,
    batch_decision,
    batch_send,
    reading_of,
    zoned_numbers,
)
from warmup.store import days, history, inbound, readings, tables
from warmup.store.facts import planning_facts
from warmup.store.sends import GAVE_WAY


def _set_states(
    engine: Engine, number_id: int, local_date: date, states: list[tuple[str, str | None]]
) -> None:
    """Give that day's messages (by id) these (state, reason) and provider ids p<number>-<index>."""
    with engine.begin() as conn:
        ids = conn.execute(
            sa.select(tables.MESSAGES.c.id)
            .where(tables.MESSAGES.c.number_id == number_id, tables.MESSAGES.c.local_date == local_date)
            .order_by(tables.MESSAGES.c.id)
        ).scalars()
        for index, (message_id, (state, reason)) in enumerate(zip(ids, states, strict=False)):
            conn.execute(
                sa.update(tables.MESSAGES)
                .where(tables.MESSAGES.c.id == message_id)
                .values(state=state, reason=reason, provider_message_id=f"p{number_id}-{index}")
            )


def _world(engine: Engine) -> list[int]:
    """Five numbers in four zones with a varied yesterday: sends in every state, an opener that gave way,
    delivery statuses (one for another number's message id), replies inside and outside each local day,
    readings (ties on taken_at, old ones, none), recipients (invalid, with and without a last text)."""
    ids = zoned_numbers(engine)
    a, b, c, d, _ = ids  # the fifth has nothing at all
    start = BATCH_NOW - timedelta(days=1, hours=3)
    for number_id in (a, b, c):
        sends = [batch_send(i, start + timedelta(minutes=10 * i)) for i in range(6)]
        assert days.plan_day(
            engine, number_id, batch_decision(YESTERDAY), sends, now=start - timedelta(hours=1)
        )
    gave_way = GAVE_WAY
    _set_states(
        engine,
        a,
        YESTERDAY,
        [("sent", None), ("sent", None), ("failed", "x"), ("skipped", gave_way), ("skipped", "day over")],
    )
    _set_states(engine, b, YESTERDAY, [("sent", None), ("unknown", "timeout"), ("sent", gave_way)])
    statuses = ((a, 0, "delivered"), (a, 0, "read"), (a, 1, "sent"), (b, 0, "read"), (b, 2, "delivered"))
    for number_id, index, status in statuses:  # b's message 2 is sent but gave way: still delivered
        inbound.add_inbound(
            engine,
            number_id,
            kind="status",
            provider_message_id=f"p{number_id}-{index}",
            received_at=start,
            status=status,
        )
    _set_states(engine, c, YESTERDAY, [("sent", None)])
    inbound.add_inbound(  # another number's status for c's sent message does not count for c
        engine, d, kind="status", provider_message_id=f"p{c}-0", received_at=start, status="delivered"
    )
    for number_id in (a, b, c, d):
        for n, hours in enumerate((-30, -20, -12, -1, 5)):  # around yesterday in every zone
            inbound.add_inbound(
                engine,
                number_id,
                kind="message",
                provider_message_id=f"m{number_id}-{n}",
                received_at=BATCH_NOW + timedelta(hours=hours),
                chat_phone="+5511977770001",
                text="hey",
            )
        inbound.add_inbound(
            engine,
            number_id,
            kind="message",
            provider_message_id=f"mine{number_id}",
            received_at=BATCH_NOW - timedelta(hours=20),
            chat_phone="+5511977770001",
            from_me=True,
            text="mine",
        )
    tie = BATCH_NOW - timedelta(hours=2)
    readings.save_reading(engine, a, TODAY, reading_of(1, tie))
    readings.save_reading(engine, a, TODAY, reading_of(3, tie))  # same taken_at: the later row wins
    readings.save_reading(engine, b, YESTERDAY, reading_of(2, BATCH_NOW - timedelta(hours=30)))
    readings.save_reading(engine, b, TODAY, reading_of(1, BATCH_NOW - timedelta(hours=1)))
    older = reading_of(3, BATCH_NOW - timedelta(hours=3))
    readings.save_reading(engine, b, TODAY, older)  # older, stored later
    readings.save_reading(engine, c, YESTERDAY, reading_of(2, BATCH_NOW - timedelta(hours=30)))
    inbound.upsert_recipient(
        engine, c, "+5511977770009", "contact", invalid_reason="not on WhatsApp", now=BATCH_NOW
    )
    inbound.upsert_recipient(engine, d, "+5511977770008", "peer", last_text="see you", contacted_on=YESTERDAY)
    return ids


def test_planning_facts_equal_the_per_number_reads(engine: Engine) -> None:
    ids = _world(engine)
    zones = dict(zip(ids, ZONES, strict=True))
    with engine.connect() as conn:
        facts = planning_facts(conn, zones, TODAY, since=BATCH_NOW - timedelta(days=2))
    assert sorted(facts) == sorted(ids)
    for number_id in ids:
        got = facts[number_id]
        assert got.latest_reading == readings.latest_reading(engine, number_id)
        planned = days.get_day_plan(engine, number_id, YESTERDAY) is not None
        assert got.yesterday == (history.day_outcome(engine, number_id, YESTERDAY) if planned else None)
        expected = [
            inbound.KnownRecipient(r.phone, r.first_contacted_on, r.invalid, r.last_text)
            for r in inbound.list_recipients(engine, number_id, include_invalid=True)
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
    ids = zoned_numbers(engine)
    readings.save_reading(engine, ids[0], YESTERDAY, reading_of(2, BATCH_NOW - timedelta(days=3)))
    with engine.connect() as conn:
        facts = planning_facts(conn, {ids[0]: "UTC"}, TODAY, since=BATCH_NOW - timedelta(days=2))
    assert facts[ids[0]].latest_reading is None
