"""warmup.store.inbound: inbound events are stored once; recipients keep their first contact day.
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, PEER, add, row_counts
from warmup.store import inbound
from warmup.store.tables import InvalidWrite


def test_add_inbound_is_idempotent_and_marks_replies(engine: Engine) -> None:
    number_id = add(engine)
    inbound.upsert_recipient(engine, number_id, PEER, "peer", now=NOW)
    event = {"kind": "message", "provider_message_id": "in.1", "chat_phone": PEER, "received_at": NOW}
    assert inbound.add_inbound(engine, number_id, **event)  # type: ignore[arg-type]
    assert not inbound.add_inbound(engine, number_id, **event)  # type: ignore[arg-type]
    assert inbound.list_recipients(engine, number_id)[0].replied
    assert inbound.add_inbound(
        engine, number_id, kind="status", provider_message_id="in.1", status="read", received_at=NOW
    )
    with pytest.raises(InvalidWrite, match="status"):
        inbound.add_inbound(engine, number_id, kind="status", provider_message_id="x", received_at=NOW)
    assert row_counts(engine)["inbound_messages"] == 2


def test_upsert_recipient_keeps_the_first_contact_day(engine: Engine) -> None:
    number_id = add(engine)
    first = inbound.upsert_recipient(
        engine, number_id, PEER, "contact", name="Ana", contacted_on=DAY, now=NOW
    )
    again = inbound.upsert_recipient(
        engine, number_id, PEER, "contact", contacted_on=DAY + timedelta(days=2), last_text="oi", now=NOW
    )
    assert first == again
    [recipient] = inbound.list_recipients(engine, number_id, kind="contact")
    assert (recipient.name, recipient.first_contacted_on, recipient.last_text) == ("Ana", DAY, "oi")
    assert inbound.new_contacts_on(engine, number_id, DAY) == 1
    assert inbound.list_recipients(engine, number_id, kind="peer") == []
    with pytest.raises(InvalidWrite):
        inbound.upsert_recipient(engine, number_id, "not-a-phone", "contact")
