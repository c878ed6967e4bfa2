"""warmup.store.pauses: a pause skips today's messages and blocks claims; resumes, timed pauses.
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine

from tests.store.helpers import DAY, NOW, PEER, PHONE, add, planned, row_counts, state
from warmup.core.errors import UserError
from warmup.store import audit as store_audit
from warmup.store import claims, history, numbers, pauses, queue
from warmup.store.claims import ClaimStatus
from warmup.store.tables import InvalidWrite


def test_pause_skips_todays_messages_blocks_claims_and_audits(engine: Engine) -> None:
    number_id = add(engine)
    other = add(engine, PEER)
    ids = planned(engine, 3, number_id=number_id)
    planned(engine, 1, number_id=other)
    assert claims.claim(engine, ids[0], "w", NOW).claimed
    assert queue.mark_queued(engine, [ids[1]], NOW) == [ids[1]]
    until = NOW + timedelta(hours=6)
    paused = pauses.pause_numbers(
        engine, phones=[PHONE], reason="admin check", actor="cli:ana", now=NOW, until=until
    )
    assert paused == [number_id]
    assert [state(engine, i) for i in ids] == ["sending", "skipped", "skipped"]  # in-flight send continues
    assert claims.claim(engine, ids[1], "w", NOW).status is ClaimStatus.NOT_CLAIMABLE
    number = numbers.get_number(engine, number_id)
    assert number is not None
    assert (number.state, number.paused_reason, number.paused_until, number.paused_volume) == (
        "paused",
        "admin check",
        until,
        5,
    )
    [entry] = store_audit.list_audit(engine, number_id)
    assert (entry.actor, entry.action, entry.at) == ("cli:ana", "pause", NOW)
    assert entry.detail == {"reason": "admin check", "until": until.isoformat(), "skipped": 2}
    assert pauses.pause_numbers(engine, phones=[PHONE], reason="again", actor="cli", now=NOW) == []
    assert [m.state for m in history.list_messages(engine, other, DAY)] == ["planned"]


def test_pause_with_an_unknown_phone_changes_nothing(engine: Engine) -> None:
    add(engine)
    before = row_counts(engine)
    with pytest.raises(UserError, match=r"\+5511000000000"):
        pauses.pause_numbers(engine, phones=[PHONE, "+5511000000000"], reason="x", actor="cli", now=NOW)
    assert row_counts(engine) == before
    assert numbers.list_numbers(engine, state="active") != []
    with pytest.raises(InvalidWrite, match="exactly one target"):
        pauses.pause_numbers(engine, phones=[PHONE], all_numbers=True, reason="x", actor="cli", now=NOW)


def test_pause_by_plan_and_all_then_resume(engine: Engine) -> None:
    first = add(engine, plan_name="a")
    second = add(engine, PEER, plan_name="b", timezone="America/Sao_Paulo")
    assert pauses.pause_numbers(engine, plan_name="b", reason="r", actor="cli", now=NOW) == [second]
    assert pauses.pause_numbers(engine, all_numbers=True, reason="r", actor="cli", now=NOW) == [first]
    with pytest.raises(UserError, match="no number uses plan"):
        pauses.pause_numbers(engine, plan_name="zzz", reason="r", actor="cli", now=NOW)
    late = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # still the 23rd in Sao Paulo
    assert pauses.resume_numbers(engine, all_numbers=True, actor="chat:+5511988880000", now=late) == [
        first,
        second,
    ]
    assert pauses.resume_numbers(engine, all_numbers=True, actor="cli", now=late) == []
    first_row, second_row = numbers.get_number(engine, first), numbers.get_number(engine, second)
    assert first_row is not None and second_row is not None
    assert (first_row.state, first_row.resumed_on, first_row.paused_reason) == (
        "active",
        date(2026, 11, 24),
        None,
    )
    assert second_row.resumed_on == date(2026, 11, 23)
    actions = [(e.number_id, e.action) for e in store_audit.list_audit(engine)]
    assert sorted(actions) == sorted(
        [(first, "pause"), (second, "pause"), (first, "resume"), (second, "resume")]
    )
    assert not numbers.number_state(engine, first).paused


def test_resume_expired_only_resumes_pauses_whose_time_passed(engine: Engine) -> None:
    first = add(engine)
    second = add(engine, PEER)
    pauses.pause_numbers(
        engine, number_ids=[first], reason="r", actor="cli", now=NOW, until=NOW + timedelta(hours=1)
    )
    pauses.pause_numbers(engine, number_ids=[second], reason="r", actor="cli", now=NOW)  # no end
    assert pauses.resume_expired(engine, NOW + timedelta(minutes=59)) == []
    assert pauses.resume_expired(engine, NOW + timedelta(hours=1)) == [first]
    assert [n.id for n in numbers.list_numbers(engine, state="paused")] == [second]
    [entry, *_] = store_audit.list_audit(engine, first)
    assert (entry.actor, entry.action, entry.detail) == (
        "scheduler",
        "resume",
        {"reason": "pause expired", "paused_reason": "r"},
    )
