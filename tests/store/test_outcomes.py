"""warmup.store.outcomes: the slot accounting of every outcome, the recipient update after a send, and
`record_sent_many` and `give_back` keeping the single path's bookkeeping.
Both databases (the `engine` fixture)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from tests.invariant_checks import assert_accounting
from tests.store.helpers import (
    DAY,
    NOW,
    OTHER,
    PEER,
    PHONE,
    add,
    day_plan,
    decision,
    free_pace,
    message,
    one_day,
    phone,
    planned,
    state,
    used,
)
from warmup.store import claims, days, history, inbound, outcomes
from warmup.store.claims import ClaimStatus, claim
from warmup.store.sends import PlannedSend


def test_slot_accounting_of_every_outcome(engine: Engine) -> None:
    ids = planned(engine, 5, quota=5)
    for message_id in ids:
        # several claims of one number at one instant: the pace is not what this test is about
        free_pace(engine, 1)
        assert claim(engine, message_id, "w", NOW).claimed
    assert used(engine) == 5
    assert outcomes.record_sent(engine, ids[0], "wamid.1", NOW)
    assert outcomes.record_failed(engine, ids[1], "recipient blocked", NOW)
    assert outcomes.record_unknown(engine, ids[2], "read timeout", NOW)
    assert used(engine) == 5  # sent, failed and unknown keep their slot
    assert outcomes.record_skipped(engine, ids[3], "retries exhausted", NOW)
    assert used(engine) == 4  # nothing went out: the slot comes back
    assert outcomes.release_for_retry(engine, ids[4], NOW + timedelta(minutes=2), "HTTP 503", NOW)
    assert used(engine) == 3
    assert [state(engine, i) for i in ids] == ["sent", "failed", "unknown", "skipped", "queued"]
    assert history.day_count(engine, 1, DAY) == 2  # sent + unknown (+ sending, none left)


def test_outcomes_apply_only_from_sending(engine: Engine) -> None:
    ids = planned(engine, 2)
    assert not outcomes.record_sent(engine, ids[0], "x", NOW)  # still planned
    assert not outcomes.record_skipped(engine, ids[0], "x", NOW)
    assert not outcomes.release_for_retry(engine, ids[0], NOW, "x")
    assert claim(engine, ids[0], "w", NOW).claimed
    assert outcomes.record_failed(engine, ids[0], "boom", NOW)
    assert not outcomes.record_failed(engine, ids[0], "again", NOW)
    assert not outcomes.record_unknown(engine, ids[0], "again", NOW)
    assert not outcomes.record_skipped(engine, ids[0], "again", NOW)
    assert not outcomes.release_for_retry(engine, ids[0], NOW, "again")
    assert not outcomes.record_sent(engine, ids[0], "late", NOW)  # failed is final
    assert used(engine) == 1
    message = history.get_message(engine, ids[0])
    assert message is not None and (message.state, message.reason) == ("failed", "boom")


def test_unknown_may_become_sent_but_is_never_claimable_again(engine: Engine) -> None:
    [message_id, *_] = planned(engine)
    assert claim(engine, message_id, "w", NOW).claimed
    assert outcomes.record_unknown(engine, message_id, "read timeout", NOW)
    assert claim(engine, message_id, "w2", NOW).status is ClaimStatus.NOT_CLAIMABLE
    assert not outcomes.release_for_retry(engine, message_id, NOW, "retry?")
    assert outcomes.record_sent(engine, message_id, "wamid.late", NOW)
    message = history.get_message(engine, message_id)
    assert message is not None and (message.state, message.provider_message_id) == ("sent", "wamid.late")
    assert used(engine) == 1


def test_release_for_retry_waits_for_not_before_and_keeps_attempts(engine: Engine) -> None:
    [message_id, *_] = planned(engine)
    assert claim(engine, message_id, "w", NOW).claimed
    retry_at = NOW + timedelta(minutes=3)
    assert outcomes.release_for_retry(engine, message_id, retry_at, "HTTP 429", NOW)
    assert claim(engine, message_id, "w", NOW + timedelta(minutes=1)).status is ClaimStatus.NOT_DUE
    result = claim(engine, message_id, "w", retry_at)
    assert result.claimed and result.message is not None and result.message.attempts == 2
    assert used(engine) == 1


def test_record_sent_and_failed_update_the_recipient(engine: Engine) -> None:
    ids = planned(engine, 2)
    inbound.upsert_recipient(engine, 1, PEER, "peer", now=NOW)
    assert claim(engine, ids[0], "w", NOW).claimed
    assert outcomes.record_sent(engine, ids[0], "wamid.1", NOW)
    [recipient] = inbound.list_recipients(engine, 1)
    assert (recipient.last_text, recipient.first_contacted_on) == ("hello 0", DAY)
    assert claim(engine, ids[1], "w", NOW).claimed  # after the first send ended: one in flight at a time
    assert outcomes.record_failed(engine, ids[1], "403 forbidden recipient", NOW, recipient_invalid=True)
    assert inbound.list_recipients(engine, 1) == []
    [invalid] = inbound.list_recipients(engine, 1, include_invalid=True)
    assert (invalid.invalid, invalid.invalid_reason) == (True, "403 forbidden recipient")


def test_recover_stale_turns_old_claims_unknown(engine: Engine) -> None:
    ids = planned(engine, 3)
    assert claim(engine, ids[0], "dead", NOW - timedelta(minutes=61)).status is ClaimStatus.NOT_DUE
    early = NOW - timedelta(minutes=58)
    assert claim(engine, ids[0], "dead", early).claimed
    # several claims of one number in flight at once: the pace is not what this test is about
    free_pace(engine, 1)
    assert claim(engine, ids[1], "alive", NOW).claimed
    assert outcomes.recover_stale(engine, NOW - timedelta(minutes=10), NOW) == 1
    assert [state(engine, i) for i in ids] == ["unknown", "sending", "planned"]
    assert outcomes.recover_stale(engine, NOW - timedelta(minutes=10), NOW) == 0
    assert used(engine) == 2 and history.day_count(engine, 1, DAY) == 2


def test_a_retry_moves_the_message_to_its_new_window(engine: Engine) -> None:
    number_id = add(engine)
    send = PlannedSend(PEER, "x", NOW - timedelta(minutes=5), window_end=NOW + timedelta(minutes=1))
    assert days.plan_day(engine, number_id, decision(5), [send])
    mid = history.list_messages(engine, number_id, DAY)[0].id or 0
    assert claim(engine, mid, "w", NOW).claimed
    later = NOW + timedelta(hours=2)
    assert outcomes.release_for_retry(engine, mid, later, "503", NOW, window_end=later + timedelta(hours=1))
    assert claim(engine, mid, "w", later + timedelta(minutes=1)).claimed


def test_record_sent_many_records_sending_and_unknown_only(engine: Engine) -> None:
    recipients = [phone(10 + i) for i in range(5)]
    number_id = add(engine)
    todo = [PlannedSend(r, f"text {i}", NOW - timedelta(minutes=10 - i)) for i, r in enumerate(recipients)]
    assert days.plan_day(engine, number_id, decision(5), todo)
    ids = [m.id or 0 for m in history.list_messages(engine, number_id, DAY)]
    earlier = DAY - timedelta(days=3)
    for i, r in enumerate(recipients):
        inbound.upsert_recipient(
            engine, number_id, r, "contact", contacted_on=earlier if i == 1 else None, now=NOW
        )
    other, [elsewhere] = one_day(engine, PEER, 1, recipient=OTHER)
    inbound.upsert_recipient(engine, other, OTHER, "contact", now=NOW)
    sending, unknown, planned, sent, failed = ids
    # each send of the number ends before its next claim (one send in flight per number)
    assert claims.claim(engine, unknown, "w", NOW).claimed
    assert outcomes.record_unknown(engine, unknown, "read timeout", NOW)
    assert claims.claim(engine, sent, "w", NOW).claimed
    assert outcomes.record_sent(engine, sent, "wamid.old", NOW)
    assert claims.claim(engine, failed, "w", NOW).claimed
    assert outcomes.record_failed(engine, failed, "blocked", NOW)
    for m in (sending, elsewhere):
        assert claims.claim(engine, m, "w", NOW).claimed
    before = {m: message(engine, m) for m in (planned, sent, failed)}
    later = NOW + timedelta(minutes=1)
    recorded = outcomes.record_sent_many(
        engine,
        [
            outcomes.Sent(sending, "wamid.a"),
            outcomes.Sent(unknown, "wamid.b"),
            outcomes.Sent(planned, "wamid.c"),
            outcomes.Sent(sent, "wamid.d"),
            outcomes.Sent(failed, "wamid.e"),
            outcomes.Sent(elsewhere, None),
            outcomes.Sent(99999, "wamid.f"),
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
    rows = {r.phone: r for r in inbound.list_recipients(engine, number_id, include_invalid=True)}
    assert (rows[recipients[0]].last_text, rows[recipients[0]].first_contacted_on) == ("text 0", DAY)
    assert (rows[recipients[1]].last_text, rows[recipients[1]].first_contacted_on) == ("text 1", earlier)
    assert rows[recipients[0]].updated_at == later
    for untouched in (2, 4):  # planned, failed: no contact was made by this record
        assert (rows[recipients[untouched]].last_text, rows[recipients[untouched]].first_contacted_on) == (
            None,
            None,
        )
    [elsewhere_row] = inbound.list_recipients(engine, other)
    assert (elsewhere_row.last_text, elsewhere_row.first_contacted_on) == ("hello 0", DAY)
    assert day_plan(engine, number_id)[0] == 4  # recording keeps the slots as they were
    assert (
        outcomes.record_sent_many(
            engine, [outcomes.Sent(sending, "again"), outcomes.Sent(unknown, "x")], later
        )
        == set()
    )
    assert message(engine, sending).provider_message_id == "wamid.a"
    assert outcomes.record_sent_many(engine, [], later) == set()
    assert_accounting(engine)


def test_record_sent_many_takes_sends_without_provider_ids(engine: Engine) -> None:
    _, [first] = one_day(engine, PHONE, 1)
    _, [second] = one_day(engine, PEER, 1)
    for m in (first, second):
        assert claims.claim(engine, m, "w", NOW).claimed
    assert outcomes.record_sent_many(
        engine, [outcomes.Sent(first, None), outcomes.Sent(second, None)], NOW
    ) == {
        first,
        second,
    }
    assert [(message(engine, m).state, message(engine, m).provider_message_id) for m in (first, second)] == [
        ("sent", None),
        ("sent", None),
    ]


def test_record_sent_many_matches_record_sent(engine: Engine) -> None:
    """Twin messages: one recorded by the batch, one by `outcomes.record_sent`; every column the same."""
    twins = []
    for index in range(2):
        number_id, [m] = one_day(engine, phone(index), 1, recipient=OTHER)
        inbound.upsert_recipient(engine, number_id, OTHER, "contact", now=NOW)
        assert claims.claim(engine, m, "w", NOW).claimed
        twins.append((number_id, m))
    _, [helper] = one_day(engine, phone(5), 1)
    assert claims.claim(engine, helper, "w", NOW).claimed
    later = NOW + timedelta(seconds=30)
    assert outcomes.record_sent_many(
        engine, [outcomes.Sent(twins[0][1], "p"), outcomes.Sent(helper, "q")], later
    )
    assert outcomes.record_sent(engine, twins[1][1], "p", later)

    def comparable(number_id: int, message_id: int) -> tuple[Any, ...]:
        row = message(engine, message_id)
        [recipient] = inbound.list_recipients(engine, number_id)
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


def test_give_back_returns_the_claim_slot_and_attempt(engine: Engine) -> None:
    number_id, ids = one_day(engine, PHONE, 3)
    retry_at = NOW + timedelta(minutes=3)
    assert claims.claim(engine, ids[0], "w", NOW).claimed
    assert outcomes.release_for_retry(engine, ids[0], retry_at, "HTTP 429", NOW)
    retry = claims.claim(engine, ids[0], "w", retry_at)
    assert retry.claimed and retry.message is not None and retry.message.attempts == 2
    # several claims of one number at one instant: the pace is not what this test is about
    free_pace(engine, number_id)
    assert claims.claim(engine, ids[1], "w", retry_at).claimed
    assert day_plan(engine, number_id)[0] == 2
    later = retry_at + timedelta(seconds=10)
    assert outcomes.give_back(engine, ids[0], "out of time", later)
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
        assert not outcomes.give_back(engine, other, "again", later)
        assert message(engine, other) == before
    assert outcomes.record_sent(engine, ids[1], "wamid.1", later)
    assert not outcomes.give_back(engine, ids[1], "too late", later)
    assert state(engine, ids[1]) == "sent" and day_plan(engine, number_id)[0] == 1
    assert not outcomes.give_back(engine, 99999, "missing", later)
    # the message given back is claimable again, as if the batch never had it
    again = claims.claim(engine, ids[0], "w2", later)
    assert again.claimed and again.message is not None and again.message.attempts == 2
    assert day_plan(engine, number_id)[0] == 2
    assert_accounting(engine)


def test_a_late_confirmation_of_two_sends_to_one_recipient_notes_the_newest_text(engine: Engine) -> None:
    """Two unknown sends to the same recipient confirmed at once: the recipient row gets the newest text
    and its first contact, as recording them one by one in claim order did (one UPDATE per recipient)."""
    ids = planned(engine, 2)
    inbound.upsert_recipient(engine, 1, PEER, "peer", now=NOW)
    for message_id in ids:
        assert claim(engine, message_id, "w", NOW).claimed
        assert outcomes.record_unknown(engine, message_id, "read timeout", NOW)

    def both(evidence: outcomes.Evidence) -> list[tuple[int, str]]:
        assert [u.id for u in evidence.unknown] == ids
        return [(u.id, f"wamid.{u.id}") for u in evidence.unknown]

    assert outcomes.confirm_unknown(engine, 1, NOW - timedelta(hours=1), [], both, NOW) == ids
    [recipient] = inbound.list_recipients(engine, 1)
    assert (recipient.last_text, recipient.first_contacted_on) == ("hello 1", DAY)
    assert [state(engine, m) for m in ids] == ["sent", "sent"]
