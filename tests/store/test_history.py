"""warmup.store.history: a day's outcome (states, deliveries, replies in the number's local day).
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, OTHER, PEER, add, decision, planned
from warmup.core.domain import DayOutcome
from warmup.store import claims, days, expiry, history, inbound, outcomes, tables
from warmup.store.sends import PlannedSend

CONTACT = OTHER
OTHER_NUMBER = "+5511999990009"


def test_day_outcome_counts_states_deliveries_and_replies(engine: Engine) -> None:
    ids = planned(engine, 4)
    # each send ends before the next claim (one send in flight per number)
    assert claims.claim(engine, ids[0], "w", NOW).claimed
    assert outcomes.record_sent(engine, ids[0], "wamid.A", NOW)
    assert claims.claim(engine, ids[1], "w", NOW).claimed
    assert outcomes.record_sent(engine, ids[1], "wamid.B", NOW)
    assert claims.claim(engine, ids[2], "w", NOW).claimed
    assert outcomes.record_failed(engine, ids[2], "bad", NOW)
    expiry.skip_remaining(engine, 1, DAY, "day over", NOW)
    for status in ("delivered", "read"):
        inbound.add_inbound(
            engine, 1, kind="status", provider_message_id="wamid.A", status=status, received_at=NOW
        )
    inbound.add_inbound(
        engine, 1, kind="message", provider_message_id="in.1", chat_phone=PEER, text="hi!", received_at=NOW
    )
    inbound.add_inbound(
        engine,
        1,
        kind="message",
        provider_message_id="in.0",
        chat_phone=PEER,
        received_at=NOW - timedelta(days=1),
    )
    inbound.add_inbound(
        engine, 1, kind="message", provider_message_id="in.2", from_me=True, chat_phone=PEER, received_at=NOW
    )
    assert history.day_outcome(engine, 1, DAY) == DayOutcome(
        planned=4, sent=2, delivered=1, failed=1, skipped=1, unknown=0, replies=1
    )
    assert history.day_outcome(engine, 1, DAY + timedelta(days=1)) == DayOutcome()


def test_recent_texts_per_number_and_recipient(engine: Engine) -> None:
    """What each recipient got from each number since a local date: skipped and failed messages never
    reached them, pending ones will; the latest time per text, a claim's time over the schedule."""
    first, second = add(engine), add(engine, phone=OTHER_NUMBER)
    earlier = DAY - timedelta(days=3)
    old = DAY - timedelta(days=9)
    for number_id, local_date, texts in (
        (first, old, ["ancient"]),
        (first, earlier, ["hi", "sup", "gone"]),
        (first, DAY, ["hi", "later", "failed one"]),
        (second, DAY, ["hi"]),
    ):
        start = datetime.combine(local_date, time(10), tzinfo=UTC)
        planned_sends = [
            PlannedSend(
                recipient=PEER if text != "sup" else CONTACT,
                text=text,
                scheduled_at=start + timedelta(hours=i),
            )
            for i, text in enumerate(texts)
        ]
        assert days.plan_day(engine, number_id, decision(5, local_date), planned_sends)
    by_text = {
        (m.local_date, m.text): m
        for d in (old, earlier, DAY)
        for m in history.list_messages(engine, first, d)
    }
    claimed_at = datetime.combine(DAY, time(10, 5), tzinfo=UTC)
    with engine.begin() as conn:
        for key, values in (
            ((earlier, "gone"), {"state": "skipped", "reason": "day over"}),
            ((DAY, "failed one"), {"state": "failed"}),
            ((DAY, "hi"), {"state": "sent", "claimed_at": claimed_at}),
        ):
            conn.execute(
                sa.update(tables.MESSAGES).where(tables.MESSAGES.c.id == by_text[key].id).values(**values)
            )

    recent = history.recent_texts(engine, [first, second, 999], DAY - timedelta(days=8))
    assert recent == {
        first: {
            PEER: {
                "hi": claimed_at,  # sent today (claimed 10:05) and 3 days ago: the latest
                "later": datetime.combine(DAY, time(11), tzinfo=UTC),  # still planned: it will go out
            },
            CONTACT: {"sup": datetime.combine(earlier, time(11), tzinfo=UTC)},
        },
        second: {PEER: {"hi": datetime.combine(DAY, time(10), tzinfo=UTC)}},
    }
    assert history.recent_texts(engine, [second], DAY - timedelta(days=8)) == {second: recent[second]}
    assert history.recent_texts(engine, [], DAY) == {}
    assert "ancient" in history.recent_texts(engine, [first], old)[first][PEER]
