"""warmup.store.history: a day's outcome (states, deliveries, replies in the number's local day).
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, PEER, planned
from warmup.core.domain import DayOutcome
from warmup.store import claims, expiry, history, inbound, outcomes


def test_day_outcome_counts_states_deliveries_and_replies(engine: Engine) -> None:
    ids = planned(engine, 4)
    for message_id in ids[:3]:
        assert claims.claim(engine, message_id, "w", NOW).claimed
    assert outcomes.record_sent(engine, ids[0], "wamid.A", NOW)
    assert outcomes.record_sent(engine, ids[1], "wamid.B", NOW)
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
