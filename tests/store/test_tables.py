"""warmup.store.tables: naive datetimes are refused everywhere.
Both databases (the `engine` fixture)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.store.helpers import NOW, planned, state
from warmup.store import claims, queue
from warmup.store.tables import InvalidWrite


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    [message_id, *_] = planned(engine)
    with pytest.raises(InvalidWrite, match="aware"):
        claims.claim(engine, message_id, "w", NOW.replace(tzinfo=None))
    with pytest.raises(InvalidWrite, match="aware"):
        queue.due_messages(engine, NOW.replace(tzinfo=None), 10)
    assert state(engine, message_id) == "planned"
