"""warmup.store.ops on SQLite and PostgreSQL (the `engine` fixture runs each test on both)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tests.invariant_checks import assert_quota_held, overfill
from warmup.core import ramp
from warmup.core.domain import Action, DayOutcome, Decision, NumberState, Reading, Reason
from warmup.core.errors import UserError
from warmup.store import ops
from warmup.store.models import metadata
from warmup.store.ops import ClaimStatus, InvalidWrite, PlannedSend

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = date(2026, 11, 23)
PHONE = "+5511999990001"
PEER = "+5511999990002"


def add(engine: Engine, phone: str = PHONE, timezone: str = "UTC", plan_name: str = "standard") -> int:
    return ops.add_number(
        engine,
        phone=phone,
        provider="whapi",
        token_ref="WHAPI_TOKEN_1",
        plan_name=plan_name,
        plan_path="plans/standard.yaml",
        timezone=timezone,
        registered=date(2026, 11, 1),
        now=NOW,
    )


def decision(
    quota: int = 5, local_date: date = DAY, action: Action = Action.ADVANCE, plan_day: int = 3
) -> Decision:
    return Decision(
        local_date=local_date,
        plan_day=plan_day,
        next_plan_day=plan_day + 1 if action is Action.ADVANCE else plan_day,
        action=action,
        quota=quota,
        plan_volume=quota,
        max_new_contacts=10,
        reasons=(Reason("ramp", action, f"plan day {plan_day}: volume {quota}"),),
    )


def sends(count: int, start: datetime = NOW - timedelta(hours=1), recipient: str = PEER) -> list[PlannedSend]:
    return [
        PlannedSend(recipient=recipient, text=f"hello {i}", scheduled_at=start + timedelta(minutes=i))
        for i in range(count)
    ]


def planned(engine: Engine, count: int = 3, quota: int = 5, number_id: int | None = None) -> list[int]:
    """A number (unless given) with a planned day of `count` due messages; their ids."""
    number_id = number_id if number_id is not None else add(engine)
    assert ops.plan_day(engine, number_id, decision(quota), sends(count))
    return [m.id for m in ops.list_messages(engine, number_id, DAY) if m.id is not None]


def used(engine: Engine, number_id: int = 1) -> int:
    day_plan = ops.get_day_plan(engine, number_id, DAY)
    assert day_plan is not None
    return day_plan.used


def state(engine: Engine, message_id: int) -> str:
    message = ops.get_message(engine, message_id)
    assert message is not None
    return message.state


def reason(engine: Engine, message_id: int) -> str | None:
    message = ops.get_message(engine, message_id)
    assert message is not None
    return message.reason


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in metadata.tables.items()
        }


# ------------------------------------------------------------------------------------------- numbers


def test_add_get_list_numbers(engine: Engine) -> None:
    first = add(engine)
    second = add(engine, PEER, plan_name="other")
    number = ops.get_number(engine, first)
    assert number is not None and number.phone == PHONE and number.state == "active" and number.plan_day == 1
    assert number.created_at == NOW and number.created_at.tzinfo is not None
    by_phone = ops.get_number(engine, phone=PEER)
    assert by_phone is not None and by_phone.id == second
    assert ops.get_number(engine, 999) is None
    assert [n.phone for n in ops.list_numbers(engine)] == [PHONE, PEER]
    assert [n.id for n in ops.list_numbers(engine, plan_name="other")] == [second]
    with pytest.raises(UserError, match="already enrolled"):
        add(engine)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("phone", "5511999990001", "E.164"),
        ("provider", "telegram", "provider"),
        ("timezone", "Mars/Olympus", "time zone"),
        ("token_ref", "wh_live_9f8e7d6c5b4a39281706", "never the token"),
    ],
)
def test_add_number_refuses_bad_input_and_stores_nothing(
    engine: Engine, field: str, value: str, message: str
) -> None:
    values = {
        "phone": PHONE,
        "provider": "whapi",
        "token_ref": "WHAPI_TOKEN_1",
        "plan_name": "p",
        "plan_path": "p.yaml",
        "timezone": "UTC",
    }
    values[field] = value
    with pytest.raises(InvalidWrite, match=message):
        ops.add_number(engine, **values)  # type: ignore[arg-type]
    assert ops.list_numbers(engine) == []


def test_token_is_never_stored_only_its_variable_name(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "tok-5ecret-value-123456"
    monkeypatch.setenv("WHAPI_TOKEN_1", secret)
    number_id = add(engine)
    planned(engine, number_id=number_id)
    ops.audit(engine, "cli", "apply", number_id, {"token_ref": "WHAPI_TOKEN_1"}, NOW)
    with engine.connect() as conn:
        dump = [
            str(value)
            for table in metadata.sorted_tables
            for row in conn.execute(sa.select(table))
            for value in row
        ]
    assert "WHAPI_TOKEN_1" in dump
    assert not any(secret in value for value in dump)
    with pytest.raises(InvalidWrite):  # a pasted token is refused, never echoed back
        ops.upsert_number(
            engine,
            phone=PHONE,
            provider="whapi",
            token_ref=secret,
            plan_name="p",
            plan_path="p.yaml",
            timezone="UTC",
        )


def test_upsert_number_updates_config_but_not_the_ramp(engine: Engine) -> None:
    number_id, created = ops.upsert_number(
        engine,
        phone=PHONE,
        provider="whapi",
        token_ref="T1",
        plan_name="a",
        plan_path="a.yaml",
        timezone="UTC",
    )
    assert created
    planned(engine, number_id=number_id)
    again, created = ops.upsert_number(
        engine,
        phone=PHONE,
        provider="cloud_api",
        token_ref="T2",
        plan_name="b",
        plan_path="b.yaml",
        timezone="Europe/Berlin",
        phone_number_id="1234",
    )
    number = ops.get_number(engine, number_id)
    assert (again, created) == (number_id, False)
    assert number is not None
    assert (number.provider, number.token_ref, number.plan_name, number.timezone) == (
        "cloud_api",
        "T2",
        "b",
        "Europe/Berlin",
    )
    assert (number.plan_day, number.last_volume) == (3, 5)  # from the planned day, untouched by the upsert


# ------------------------------------------------------------------------------------------ plan_day


def test_plan_day_stores_decision_and_messages_once(engine: Engine) -> None:
    number_id = add(engine)
    assert ops.plan_day(engine, number_id, decision(5), sends(4), cut=1, cut_reason="windows too short")
    day_plan = ops.get_day_plan(engine, number_id, DAY)
    assert day_plan is not None
    assert (day_plan.quota, day_plan.used, day_plan.plan_day, day_plan.next_plan_day) == (5, 0, 3, 4)
    assert day_plan.reasons == [{"rule": "ramp", "action": "advance", "text": "plan day 3: volume 5"}]
    assert (day_plan.cut, day_plan.cut_reason) == (1, "windows too short")
    messages = ops.list_messages(engine, number_id, DAY)
    assert [m.text for m in messages] == [f"hello {i}" for i in range(4)]
    assert {m.state for m in messages} == {"planned"}
    before = row_counts(engine)
    assert not ops.plan_day(engine, number_id, decision(9), sends(9))
    assert row_counts(engine) == before
    day_plan_again = ops.get_day_plan(engine, number_id, DAY)
    assert day_plan_again is not None and day_plan_again.quota == 5


def test_plan_day_keeps_the_ramp_state_like_ramp_state_after(engine: Engine) -> None:
    number_id = add(engine)
    first = decision(8, plan_day=1)
    assert ops.plan_day(engine, number_id, first, sends(2))
    expected = ramp.state_after(NumberState(registered=date(2026, 11, 1)), first)
    assert ops.number_state(engine, number_id) == expected
    hold = decision(0, DAY + timedelta(days=1), Action.HOLD, plan_day=1)
    assert ops.plan_day(engine, number_id, hold, [])
    assert ops.number_state(engine, number_id) == ramp.state_after(expected, hold)
    assert ops.number_state(engine, number_id).last_volume == 8  # a day with quota 0 keeps the last volume


def test_plan_day_pause_decision_pauses_the_number_with_an_audit_row(engine: Engine) -> None:
    number_id = add(engine)
    assert ops.plan_day(engine, number_id, decision(6, DAY - timedelta(days=1)), sends(1))
    pause = Decision(
        DAY, 3, 3, Action.PAUSE, 0, 6, 0, (Reason("risk.rules[0]", Action.PAUSE, "overall is 1"),)
    )
    assert ops.plan_day(engine, number_id, pause, [])
    number = ops.get_number(engine, number_id)
    assert number is not None
    assert (number.state, number.paused_reason, number.paused_volume) == ("paused", "overall is 1", 6)
    state_now = ops.number_state(engine, number_id)
    assert state_now.paused and state_now.paused_volume == 6
    [entry] = ops.list_audit(engine, number_id)
    assert (entry.action, entry.detail) == ("auto_pause", {"reason": "overall is 1"})


@pytest.mark.parametrize(
    "bad",
    [
        PlannedSend(recipient="12345", text="hi", scheduled_at=NOW),
        PlannedSend(recipient=PEER, text="  ", scheduled_at=NOW),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW.replace(tzinfo=None)),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, kind="broadcast"),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, typing_seconds=-1.0),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, typing_seconds=float("nan")),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, recipient_kind="stranger"),
        PlannedSend(recipient=PEER, text="hi", scheduled_at=NOW, window_end=NOW.replace(tzinfo=None)),
    ],
)
def test_plan_day_with_an_invalid_send_stores_nothing(engine: Engine, bad: PlannedSend) -> None:
    number_id = add(engine)
    before = row_counts(engine)
    with pytest.raises(InvalidWrite, match="send 2: "):  # the bad one is named
        ops.plan_day(engine, number_id, decision(5), [*sends(2), bad])
    assert row_counts(engine) == before
    assert ops.number_state(engine, number_id).plan_day == 1


def test_plan_day_rolled_back_when_the_database_refuses_a_message(engine: Engine) -> None:
    number_id = add(engine)
    before = row_counts(engine)
    dangling = PlannedSend(recipient=PEER, text="re", scheduled_at=NOW, kind="peer_reply", in_reply_to=4242)
    with pytest.raises(InvalidWrite, match="4242"):  # no message 4242: a clear error, not the foreign key's
        ops.plan_day(engine, number_id, decision(5), [*sends(2), dangling])
    assert row_counts(engine) == before
    assert ops.get_day_plan(engine, number_id, DAY) is None
    assert ops.plan_day(engine, number_id, decision(5), sends(2))  # the day can still be planned


def test_plan_day_refuses_more_sends_than_quota_and_unknown_numbers(engine: Engine) -> None:
    number_id = add(engine)
    with pytest.raises(InvalidWrite, match="exceed"):
        ops.plan_day(engine, number_id, decision(2), sends(3))
    with pytest.raises(UserError, match="no number"):
        ops.plan_day(engine, 999, decision(2), sends(1))
    assert ops.get_day_plan(engine, number_id, DAY) is None


def test_concurrent_plan_day_stores_one_plan(engine: Engine) -> None:
    number_id = add(engine)
    results: list[bool] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(ops.plan_day(engine, number_id, decision(5), sends(5)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [False] * 5 + [True]
    assert len(ops.list_messages(engine, number_id, DAY)) == 5


def test_add_sends_extends_a_planned_day_only(engine: Engine) -> None:
    [first, *_] = planned(engine, 1)
    reply = PlannedSend(recipient=PEER, text="sure!", scheduled_at=NOW, kind="peer_reply", in_reply_to=first)
    [new_id] = ops.add_sends(engine, 1, DAY, [reply])
    message = ops.get_message(engine, new_id)
    assert message is not None and (message.in_reply_to, message.kind, message.state) == (
        first,
        "peer_reply",
        "planned",
    )
    with pytest.raises(UserError, match="no plan"):
        ops.add_sends(engine, 1, DAY + timedelta(days=1), [reply])


def reply_to(message_id: int, at: datetime = NOW) -> PlannedSend:
    return PlannedSend(
        recipient=PEER, text="sure!", scheduled_at=at, kind="peer_reply", in_reply_to=message_id
    )


def live(engine: Engine, number_id: int = 1) -> list[str]:
    """The kinds of the day's messages that are not skipped, in schedule order."""
    return [m.kind for m in ops.list_messages(engine, number_id, DAY) if m.state != "skipped"]


def test_a_reply_to_a_full_day_takes_the_latest_pending_openers_place(engine: Engine) -> None:
    ids = planned(engine, 4, quota=4)
    assert ops.claim(engine, ids[0], "w", NOW).claimed  # sending: no longer pending, cannot give way
    assert ops.record_sent(engine, ids[0], "wamid.0", NOW)
    ops.mark_queued(engine, [ids[1]], NOW)  # queued still counts as pending
    [reply] = ops.add_sends(engine, 1, DAY, [reply_to(ids[0], NOW + timedelta(hours=1))], now=NOW)
    assert (state(engine, ids[3]), reason(engine, ids[3])) == ("skipped", ops.GAVE_WAY)
    assert state(engine, reply) == "planned" and live(engine).count("peer_reply") == 1
    [second] = ops.add_sends(engine, 1, DAY, [reply_to(ids[0])], now=NOW)
    assert (state(engine, ids[2]), reason(engine, ids[2])) == ("skipped", ops.GAVE_WAY)
    [third] = ops.add_sends(engine, 1, DAY, [reply_to(ids[0])], now=NOW)
    assert (state(engine, ids[1]), reason(engine, ids[1])) == ("skipped", ops.GAVE_WAY)
    assert sorted(live(engine)) == ["opener", "peer_reply", "peer_reply", "peer_reply"]
    assert_quota_held(engine)
    # every reply gets its slot at claim time: the quota is not "reached" by the openers any more
    assert all(ops.claim(engine, m, "w", NOW + timedelta(hours=1)).claimed for m in (reply, second, third))
    # the day reads as planned = quota: the openers that gave way were replaced, not lost
    outcome = ops.day_outcome(engine, 1, DAY)
    assert (outcome.planned, outcome.skipped) == (4, 0)


def test_a_reply_with_no_opener_to_give_way_is_not_added(engine: Engine) -> None:
    ids = planned(engine, 2, quota=2)
    for message_id in ids:
        assert ops.claim(engine, message_id, "w", NOW).claimed
    assert ops.add_sends(engine, 1, DAY, [reply_to(ids[0])], now=NOW) == []
    assert ops.add_sends(engine, 1, DAY, sends(1), now=NOW) == []  # an opener never pushes anything out
    assert len(ops.list_messages(engine, 1, DAY)) == 2
    audit = {row.action: row.detail for row in ops.list_audit(engine, 1)}
    assert audit["peer_reply_skipped"] is not None and audit["send_not_added"] is not None
    assert audit["peer_reply_skipped"]["in_reply_to"] == ids[0]
    assert "no pending opener can give way" in audit["peer_reply_skipped"]["reason"]
    # room left is used first: nothing gives way while the day is not full
    assert ops.plan_day(engine, add(engine, phone="+5511999990003"), decision(3), sends(1))
    [first] = [m.id for m in ops.list_messages(engine, 2, DAY)]
    assert first is not None and len(ops.add_sends(engine, 2, DAY, [reply_to(first)] * 2, now=NOW)) == 2
    assert live(engine, 2) == ["opener", "peer_reply", "peer_reply"]


def test_concurrent_replies_never_push_a_day_over_its_quota(engine: Engine) -> None:
    ids = planned(engine, 6, quota=6)
    results: list[list[int]] = []
    claims: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def run(index: int) -> None:
        try:
            barrier.wait()
            if index < 2:  # claims race the replies: a claimed opener can no longer give way
                claims.append(ops.claim(engine, ids[index], f"w{index}", NOW).claimed)
            else:
                results.append(ops.add_sends(engine, 1, DAY, [reply_to(ids[0])], now=NOW))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # six replies for six openers, less those claimed before a reply took their place
    claimed = sum(claims)
    assert sorted(len(r) for r in results) == [0] * claimed + [1] * (6 - claimed)
    messages = ops.list_messages(engine, 1, DAY)
    gave_way = [m for m in messages if m.reason == ops.GAVE_WAY]
    assert len(gave_way) == 6 - claimed and all(m.kind == "opener" for m in gave_way)
    assert ids[2:] == sorted(m.id for m in gave_way)[-4:]  # the latest went first
    assert len([r for r in ops.list_audit(engine, 1) if r.action == "peer_reply_skipped"]) == claimed
    assert_quota_held(engine)
    day = ops.get_day_plan(engine, 1, DAY)
    assert day is not None and day.used == claimed and sum(m.state != "skipped" for m in messages) == 6
    assert sorted(live(engine)) == ["opener"] * claimed + ["peer_reply"] * (6 - claimed)


# --------------------------------------------------------------------------------------------- claim


def test_claim_wins_once_and_returns_what_the_sender_needs(engine: Engine) -> None:
    [message_id, *_] = planned(engine)
    result = ops.claim(engine, message_id, "worker-1", NOW)
    assert result.claimed and result.message is not None
    assert (result.message.phone, result.message.recipient, result.message.text) == (PHONE, PEER, "hello 0")
    assert (result.message.token_ref, result.message.attempts, result.message.timezone) == (
        "WHAPI_TOKEN_1",
        1,
        "UTC",
    )
    assert ops.claim(engine, message_id, "worker-2", NOW).status is ClaimStatus.NOT_CLAIMABLE
    assert ops.claim(engine, 99999, "worker-2", NOW).status is ClaimStatus.NOT_CLAIMABLE
    message = ops.get_message(engine, message_id)
    assert message is not None and (message.state, message.claimed_by, message.claimed_at) == (
        "sending",
        "worker-1",
        NOW,
    )
    assert used(engine) == 1


def test_claim_on_postgresql_says_whether_the_recipient_is_a_fleet_number(engine: Engine) -> None:
    """The send worker skips its peer lookup when the claim already knows (PostgreSQL's one-statement
    claim); SQLite leaves it unknown (None) and the worker looks the phone up as before."""
    first, second, *_ = planned(engine)
    before = ops.claim(engine, first, "worker-1", NOW)
    add(engine, phone=PEER)
    after = ops.claim(engine, second, "worker-1", NOW)
    assert before.message is not None and after.message is not None
    if engine.dialect.name == "postgresql":
        assert (before.message.recipient_is_number, after.message.recipient_is_number) == (False, True)
    else:
        assert (before.message.recipient_is_number, after.message.recipient_is_number) == (None, None)
    assert used(engine) == 2


def test_claim_leaves_messages_that_are_not_due(engine: Engine) -> None:
    number_id = add(engine)
    assert ops.plan_day(engine, number_id, decision(5), sends(1, start=NOW + timedelta(minutes=5)))
    [message] = ops.list_messages(engine, number_id, DAY)
    assert message.id is not None
    result = ops.claim(engine, message.id, "w", NOW)
    assert result.status is ClaimStatus.NOT_DUE
    assert (state(engine, message.id), used(engine)) == ("planned", 0)
    assert ops.claim(engine, message.id, "w", NOW + timedelta(minutes=5)).claimed


def test_claim_stops_at_the_quota_and_skips_the_rest(engine: Engine) -> None:
    ids = planned(engine, 2, quota=2)
    ids += overfill(engine, 1, DAY, sends(3, start=NOW - timedelta(minutes=30)))  # behind the store's back
    results = [ops.claim(engine, message_id, "w", NOW).status for message_id in ids]
    assert results == [ClaimStatus.CLAIMED] * 2 + [ClaimStatus.QUOTA_REACHED] * 3
    skipped = ops.get_message(engine, ids[-1])
    assert skipped is not None and (skipped.state, skipped.reason, skipped.attempts) == (
        "skipped",
        "the day's quota is reached",
        0,
    )
    assert used(engine) == 2


def test_claim_of_a_paused_number_skips_the_message(engine: Engine) -> None:
    number_id = add(engine)
    [message_id, *_] = planned(engine, number_id=number_id)
    with engine.begin() as conn:  # paused behind the store's back: claim must re-check anyway
        conn.execute(sa.text("UPDATE numbers SET state = 'paused', paused_reason = 'banned'"))
    result = ops.claim(engine, message_id, "w", NOW)
    assert (result.status, result.reason) == (ClaimStatus.PAUSED, "number paused: banned")
    assert (state(engine, message_id), used(engine, number_id)) == ("skipped", 0)


def test_claim_after_the_local_day_is_over_skips(engine: Engine) -> None:
    number_id = add(
        engine, timezone="America/Sao_Paulo"
    )  # UTC-3: local 2026-11-23 ends at 03:00 UTC on the 24th
    [message_id, *_] = planned(engine, number_id=number_id)
    late = datetime(2026, 11, 24, 2, 59, tzinfo=UTC)
    assert ops.claim(engine, message_id, "w", late).claimed
    [_, second, third] = [m.id for m in ops.list_messages(engine, number_id, DAY)]
    assert second is not None and third is not None
    result = ops.claim(engine, second, "w", late + timedelta(minutes=1))
    assert result.status is ClaimStatus.DAY_OVER
    assert state(engine, second) == "skipped"


# ------------------------------------------------------------------------------------------ outcomes


def test_slot_accounting_of_every_outcome(engine: Engine) -> None:
    ids = planned(engine, 5, quota=5)
    for message_id in ids:
        assert ops.claim(engine, message_id, "w", NOW).claimed
    assert used(engine) == 5
    assert ops.record_sent(engine, ids[0], "wamid.1", NOW)
    assert ops.record_failed(engine, ids[1], "recipient blocked", NOW)
    assert ops.record_unknown(engine, ids[2], "read timeout", NOW)
    assert used(engine) == 5  # sent, failed and unknown keep their slot
    assert ops.record_skipped(engine, ids[3], "retries exhausted", NOW)
    assert used(engine) == 4  # nothing went out: the slot comes back
    assert ops.release_for_retry(engine, ids[4], NOW + timedelta(minutes=2), "HTTP 503", NOW)
    assert used(engine) == 3
    assert [state(engine, i) for i in ids] == ["sent", "failed", "unknown", "skipped", "queued"]
    assert ops.day_count(engine, 1, DAY) == 2  # sent + unknown (+ sending, none left)


def test_outcomes_apply_only_from_sending(engine: Engine) -> None:
    ids = planned(engine, 2)
    assert not ops.record_sent(engine, ids[0], "x", NOW)  # still planned
    assert not ops.record_skipped(engine, ids[0], "x", NOW)
    assert not ops.release_for_retry(engine, ids[0], NOW, "x")
    assert ops.claim(engine, ids[0], "w", NOW).claimed
    assert ops.record_failed(engine, ids[0], "boom", NOW)
    assert not ops.record_failed(engine, ids[0], "again", NOW)
    assert not ops.record_unknown(engine, ids[0], "again", NOW)
    assert not ops.record_skipped(engine, ids[0], "again", NOW)
    assert not ops.release_for_retry(engine, ids[0], NOW, "again")
    assert not ops.record_sent(engine, ids[0], "late", NOW)  # failed is final
    assert used(engine) == 1
    message = ops.get_message(engine, ids[0])
    assert message is not None and (message.state, message.reason) == ("failed", "boom")


def test_unknown_may_become_sent_but_is_never_claimable_again(engine: Engine) -> None:
    [message_id, *_] = planned(engine)
    assert ops.claim(engine, message_id, "w", NOW).claimed
    assert ops.record_unknown(engine, message_id, "read timeout", NOW)
    assert ops.claim(engine, message_id, "w2", NOW).status is ClaimStatus.NOT_CLAIMABLE
    assert not ops.release_for_retry(engine, message_id, NOW, "retry?")
    assert ops.record_sent(engine, message_id, "wamid.late", NOW)
    message = ops.get_message(engine, message_id)
    assert message is not None and (message.state, message.provider_message_id) == ("sent", "wamid.late")
    assert used(engine) == 1


def test_release_for_retry_waits_for_not_before_and_keeps_attempts(engine: Engine) -> None:
    [message_id, *_] = planned(engine)
    assert ops.claim(engine, message_id, "w", NOW).claimed
    retry_at = NOW + timedelta(minutes=3)
    assert ops.release_for_retry(engine, message_id, retry_at, "HTTP 429", NOW)
    assert ops.claim(engine, message_id, "w", NOW + timedelta(minutes=1)).status is ClaimStatus.NOT_DUE
    result = ops.claim(engine, message_id, "w", retry_at)
    assert result.claimed and result.message is not None and result.message.attempts == 2
    assert used(engine) == 1


def test_record_sent_and_failed_update_the_recipient(engine: Engine) -> None:
    ids = planned(engine, 2)
    ops.upsert_recipient(engine, 1, PEER, "peer", now=NOW)
    for message_id in ids:
        assert ops.claim(engine, message_id, "w", NOW).claimed
    assert ops.record_sent(engine, ids[0], "wamid.1", NOW)
    [recipient] = ops.list_recipients(engine, 1)
    assert (recipient.last_text, recipient.first_contacted_on) == ("hello 0", DAY)
    assert ops.record_failed(engine, ids[1], "403 forbidden recipient", NOW, recipient_invalid=True)
    assert ops.list_recipients(engine, 1) == []
    [invalid] = ops.list_recipients(engine, 1, include_invalid=True)
    assert (invalid.invalid, invalid.invalid_reason) == (True, "403 forbidden recipient")


def test_recover_stale_turns_old_claims_unknown(engine: Engine) -> None:
    ids = planned(engine, 3)
    assert ops.claim(engine, ids[0], "dead", NOW - timedelta(minutes=61)).status is ClaimStatus.NOT_DUE
    early = NOW - timedelta(minutes=58)
    assert ops.claim(engine, ids[0], "dead", early).claimed
    assert ops.claim(engine, ids[1], "alive", NOW).claimed
    assert ops.recover_stale(engine, NOW - timedelta(minutes=10), NOW) == 1
    assert [state(engine, i) for i in ids] == ["unknown", "sending", "planned"]
    assert ops.recover_stale(engine, NOW - timedelta(minutes=10), NOW) == 0
    assert used(engine) == 2 and ops.day_count(engine, 1, DAY) == 2


def test_day_outcome_counts_states_deliveries_and_replies(engine: Engine) -> None:
    ids = planned(engine, 4)
    for message_id in ids[:3]:
        assert ops.claim(engine, message_id, "w", NOW).claimed
    assert ops.record_sent(engine, ids[0], "wamid.A", NOW)
    assert ops.record_sent(engine, ids[1], "wamid.B", NOW)
    assert ops.record_failed(engine, ids[2], "bad", NOW)
    ops.skip_remaining(engine, 1, DAY, "day over", NOW)
    for status in ("delivered", "read"):
        ops.add_inbound(
            engine, 1, kind="status", provider_message_id="wamid.A", status=status, received_at=NOW
        )
    ops.add_inbound(
        engine, 1, kind="message", provider_message_id="in.1", chat_phone=PEER, text="hi!", received_at=NOW
    )
    ops.add_inbound(
        engine,
        1,
        kind="message",
        provider_message_id="in.0",
        chat_phone=PEER,
        received_at=NOW - timedelta(days=1),
    )
    ops.add_inbound(
        engine, 1, kind="message", provider_message_id="in.2", from_me=True, chat_phone=PEER, received_at=NOW
    )
    assert ops.day_outcome(engine, 1, DAY) == DayOutcome(
        planned=4, sent=2, delivered=1, failed=1, skipped=1, unknown=0, replies=1
    )
    assert ops.day_outcome(engine, 1, DAY + timedelta(days=1)) == DayOutcome()


# ------------------------------------------------------------------------------------------ dispatch


def test_due_messages_and_mark_queued(engine: Engine) -> None:
    number_id = add(engine)
    times = [NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)]
    assert ops.plan_day(
        engine, number_id, decision(5), [PlannedSend(PEER, f"m{i}", at) for i, at in enumerate(times)]
    )
    due = ops.due_messages(engine, NOW, limit=10)
    assert len(due) == 2
    assert ops.due_messages(engine, NOW, limit=1) == due[:1]
    assert ops.mark_queued(engine, due, NOW) == due
    assert ops.mark_queued(engine, due, NOW) == []  # only still-planned ones move
    assert ops.due_messages(engine, NOW, limit=10) == []
    assert ops.mark_queued(engine, []) == []


def test_requeue_lost_finds_queued_messages_that_sat_too_long(engine: Engine) -> None:
    ids = planned(engine, 3)
    assert ops.mark_queued(engine, ids[:2], NOW - timedelta(minutes=30)) == ids[:2]
    assert ops.claim(engine, ids[1], "w", NOW).claimed
    assert ops.release_for_retry(engine, ids[1], NOW + timedelta(minutes=10), "429", NOW)
    cutoff = NOW - timedelta(minutes=5)
    assert ops.requeue_lost(engine, cutoff) == [ids[0]]  # ids[1] waits for its not_before
    assert ops.requeue_lost(engine, cutoff, NOW) == [ids[0]]
    assert ops.requeue_lost(engine, cutoff, NOW) == []  # queued_at moved on: not again before the grace
    assert ops.requeue_lost(engine, NOW + timedelta(minutes=11)) == [ids[0], ids[1]]


def test_skip_remaining_and_expire_day(engine: Engine) -> None:
    utc = add(engine)
    tokyo = add(engine, PEER, timezone="Asia/Tokyo")
    assert ops.plan_day(engine, utc, decision(5), sends(2))
    assert ops.plan_day(engine, tokyo, decision(5), sends(2))
    [first, _] = [m.id for m in ops.list_messages(engine, utc, DAY)]
    assert first is not None and ops.claim(engine, first, "w", NOW).claimed
    # 2026-11-23 23:00 UTC is already the 24th in Tokyo, still the 23rd in UTC
    assert ops.expire_day(engine, datetime(2026, 11, 23, 23, 0, tzinfo=UTC)) == 2
    assert {m.state for m in ops.list_messages(engine, tokyo, DAY)} == {"skipped"}
    assert ops.skip_remaining(engine, utc, DAY, "throttled to zero", NOW) == 1
    assert [m.state for m in ops.list_messages(engine, utc, DAY)] == ["sending", "skipped"]
    assert ops.skip_remaining(engine, utc, DAY, "again", NOW) == 0


@pytest.mark.postgres
def test_expire_day_with_nothing_past_never_waits_on_locked_numbers(engine: Engine) -> None:
    """The scheduler calls it every tick: it must not queue behind (or hold up) a day being planned,
    which holds its numbers' rows FOR UPDATE."""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    number_id = add(engine)
    assert ops.plan_day(engine, number_id, decision(5), sends(2))
    with engine.connect() as locker, locker.begin():
        locker.execute(sa.select(ops.NUMBERS.c.id).with_for_update())  # every number row
        done: list[int] = []
        thread = threading.Thread(target=lambda: done.append(ops.expire_day(engine, NOW)))
        thread.start()
        thread.join(10)
        assert done == [0]  # nothing of a past day: no lock asked for, no wait
    tomorrow = datetime.combine(DAY + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=1)
    assert ops.expire_day(engine, tomorrow) == 2  # once the day is over, its messages are skipped


# ------------------------------------------------------------------------------------ pause / resume


def test_pause_skips_todays_messages_blocks_claims_and_audits(engine: Engine) -> None:
    number_id = add(engine)
    other = add(engine, PEER)
    ids = planned(engine, 3, number_id=number_id)
    planned(engine, 1, number_id=other)
    assert ops.claim(engine, ids[0], "w", NOW).claimed
    assert ops.mark_queued(engine, [ids[1]], NOW) == [ids[1]]
    until = NOW + timedelta(hours=6)
    paused = ops.pause_numbers(
        engine, phones=[PHONE], reason="admin check", actor="cli:ana", now=NOW, until=until
    )
    assert paused == [number_id]
    assert [state(engine, i) for i in ids] == ["sending", "skipped", "skipped"]  # in-flight send continues
    assert ops.claim(engine, ids[1], "w", NOW).status is ClaimStatus.NOT_CLAIMABLE
    number = ops.get_number(engine, number_id)
    assert number is not None
    assert (number.state, number.paused_reason, number.paused_until, number.paused_volume) == (
        "paused",
        "admin check",
        until,
        5,
    )
    [entry] = ops.list_audit(engine, number_id)
    assert (entry.actor, entry.action, entry.at) == ("cli:ana", "pause", NOW)
    assert entry.detail == {"reason": "admin check", "until": until.isoformat(), "skipped": 2}
    assert ops.pause_numbers(engine, phones=[PHONE], reason="again", actor="cli", now=NOW) == []
    assert [m.state for m in ops.list_messages(engine, other, DAY)] == ["planned"]


def test_pause_with_an_unknown_phone_changes_nothing(engine: Engine) -> None:
    add(engine)
    before = row_counts(engine)
    with pytest.raises(UserError, match=r"\+5511000000000"):
        ops.pause_numbers(engine, phones=[PHONE, "+5511000000000"], reason="x", actor="cli", now=NOW)
    assert row_counts(engine) == before
    assert ops.list_numbers(engine, state="active") != []
    with pytest.raises(InvalidWrite, match="exactly one target"):
        ops.pause_numbers(engine, phones=[PHONE], all_numbers=True, reason="x", actor="cli", now=NOW)


def test_pause_by_plan_and_all_then_resume(engine: Engine) -> None:
    first = add(engine, plan_name="a")
    second = add(engine, PEER, plan_name="b", timezone="America/Sao_Paulo")
    assert ops.pause_numbers(engine, plan_name="b", reason="r", actor="cli", now=NOW) == [second]
    assert ops.pause_numbers(engine, all_numbers=True, reason="r", actor="cli", now=NOW) == [first]
    with pytest.raises(UserError, match="no number uses plan"):
        ops.pause_numbers(engine, plan_name="zzz", reason="r", actor="cli", now=NOW)
    late = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # still the 23rd in Sao Paulo
    assert ops.resume_numbers(engine, all_numbers=True, actor="chat:+5511988880000", now=late) == [
        first,
        second,
    ]
    assert ops.resume_numbers(engine, all_numbers=True, actor="cli", now=late) == []
    first_row, second_row = ops.get_number(engine, first), ops.get_number(engine, second)
    assert first_row is not None and second_row is not None
    assert (first_row.state, first_row.resumed_on, first_row.paused_reason) == (
        "active",
        date(2026, 11, 24),
        None,
    )
    assert second_row.resumed_on == date(2026, 11, 23)
    actions = [(e.number_id, e.action) for e in ops.list_audit(engine)]
    assert sorted(actions) == sorted(
        [(first, "pause"), (second, "pause"), (first, "resume"), (second, "resume")]
    )
    assert not ops.number_state(engine, first).paused


def test_resume_expired_only_resumes_pauses_whose_time_passed(engine: Engine) -> None:
    first = add(engine)
    second = add(engine, PEER)
    ops.pause_numbers(
        engine, number_ids=[first], reason="r", actor="cli", now=NOW, until=NOW + timedelta(hours=1)
    )
    ops.pause_numbers(engine, number_ids=[second], reason="r", actor="cli", now=NOW)  # no end
    assert ops.resume_expired(engine, NOW + timedelta(minutes=59)) == []
    assert ops.resume_expired(engine, NOW + timedelta(hours=1)) == [first]
    assert [n.id for n in ops.list_numbers(engine, state="paused")] == [second]
    [entry, *_] = ops.list_audit(engine, first)
    assert (entry.actor, entry.action, entry.detail) == (
        "scheduler",
        "resume",
        {"reason": "pause expired", "paused_reason": "r"},
    )


# ---------------------------------------------------------------------------- readings, inbound, etc.


def test_readings_latest_wins_and_bad_factors_are_refused(engine: Engine) -> None:
    number_id = add(engine)
    assert ops.latest_reading(engine, number_id) is None
    old = Reading(3, 3, 2, 3, NOW - timedelta(days=1), "whapi")
    new = Reading(2, 1, 2, 3, NOW, "local")
    ops.save_reading(engine, number_id, DAY, new)
    ops.save_reading(engine, number_id, DAY - timedelta(days=1), old)
    assert ops.latest_reading(engine, number_id) == new
    with pytest.raises(InvalidWrite, match="contacts"):
        ops.save_reading(engine, number_id, DAY, Reading(1, 1, 1, 4, NOW))


def test_add_inbound_is_idempotent_and_marks_replies(engine: Engine) -> None:
    number_id = add(engine)
    ops.upsert_recipient(engine, number_id, PEER, "peer", now=NOW)
    event = {"kind": "message", "provider_message_id": "in.1", "chat_phone": PEER, "received_at": NOW}
    assert ops.add_inbound(engine, number_id, **event)  # type: ignore[arg-type]
    assert not ops.add_inbound(engine, number_id, **event)  # type: ignore[arg-type]
    assert ops.list_recipients(engine, number_id)[0].replied
    assert ops.add_inbound(
        engine, number_id, kind="status", provider_message_id="in.1", status="read", received_at=NOW
    )
    with pytest.raises(InvalidWrite, match="status"):
        ops.add_inbound(engine, number_id, kind="status", provider_message_id="x", received_at=NOW)
    assert row_counts(engine)["inbound_messages"] == 2


def test_upsert_recipient_keeps_the_first_contact_day(engine: Engine) -> None:
    number_id = add(engine)
    first = ops.upsert_recipient(engine, number_id, PEER, "contact", name="Ana", contacted_on=DAY, now=NOW)
    again = ops.upsert_recipient(
        engine, number_id, PEER, "contact", contacted_on=DAY + timedelta(days=2), last_text="oi", now=NOW
    )
    assert first == again
    [recipient] = ops.list_recipients(engine, number_id, kind="contact")
    assert (recipient.name, recipient.first_contacted_on, recipient.last_text) == ("Ana", DAY, "oi")
    assert ops.new_contacts_on(engine, number_id, DAY) == 1
    assert ops.list_recipients(engine, number_id, kind="peer") == []
    with pytest.raises(InvalidWrite):
        ops.upsert_recipient(engine, number_id, "not-a-phone", "contact")


def test_audit_rows_newest_first(engine: Engine) -> None:
    number_id = add(engine)
    ops.audit(engine, "cli", "apply", None, {"file": "fleet.yaml"}, NOW)
    ops.audit(engine, "cli", "note", number_id, None, NOW + timedelta(seconds=1))
    assert [e.action for e in ops.list_audit(engine)] == ["note", "apply"]
    assert [e.action for e in ops.list_audit(engine, number_id)] == ["note"]
    assert ops.list_audit(engine, limit=1)[0].action == "note"


def test_cut_quota_never_goes_below_used(engine: Engine) -> None:
    ids = planned(engine, 4, quota=5)
    for message_id in ids[:3]:
        assert ops.claim(engine, message_id, "w", NOW).claimed
    assert ops.cut_quota(engine, 1, DAY, 1, "131048 spam rate limit", now=NOW) == 3
    day_plan = ops.get_day_plan(engine, 1, DAY)
    assert day_plan is not None and (day_plan.quota, day_plan.cut, day_plan.cut_reason) == (
        3,
        2,
        "131048 spam rate limit",
    )
    # the pending message that no longer fits is skipped at once, not left for the claim to refuse
    assert (state(engine, ids[3]), reason(engine, ids[3])) == ("skipped", "quota cut: 131048 spam rate limit")
    assert ops.claim(engine, ids[3], "w", NOW).status is ClaimStatus.NOT_CLAIMABLE
    assert_quota_held(engine)
    assert ops.cut_quota(engine, 1, DAY + timedelta(days=1), 1, "x") is None


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    [message_id, *_] = planned(engine)
    with pytest.raises(InvalidWrite, match="aware"):
        ops.claim(engine, message_id, "w", NOW.replace(tzinfo=None))
    with pytest.raises(InvalidWrite, match="aware"):
        ops.due_messages(engine, NOW.replace(tzinfo=None), 10)
    assert state(engine, message_id) == "planned"


# --- send windows, reply links, time zone changes, bulk lock order -------------------------------------


def test_a_claim_after_its_window_closed_skips_the_message(engine: Engine) -> None:
    number_id = add(engine)
    window_end = NOW - timedelta(minutes=1)
    late = PlannedSend(PEER, "late", NOW - timedelta(minutes=30), window_end=window_end)
    on_time = PlannedSend(PEER, "on time", NOW - timedelta(minutes=20), window_end=NOW + timedelta(hours=1))
    assert ops.plan_day(engine, number_id, decision(5), [late, on_time])
    first, second = [m.id or 0 for m in ops.list_messages(engine, number_id, DAY)]
    refused = ops.claim(engine, first, "w", NOW)
    assert refused.status is ClaimStatus.WINDOW_CLOSED and "window closed" in (refused.reason or "")
    assert state(engine, first) == "skipped" and used(engine, number_id) == 0
    assert (
        ops.claim(engine, first, "w", window_end - timedelta(minutes=5)).status is ClaimStatus.NOT_CLAIMABLE
    )
    assert ops.claim(engine, second, "w", NOW).claimed


def test_a_retry_moves_the_message_to_its_new_window(engine: Engine) -> None:
    number_id = add(engine)
    send = PlannedSend(PEER, "x", NOW - timedelta(minutes=5), window_end=NOW + timedelta(minutes=1))
    assert ops.plan_day(engine, number_id, decision(5), [send])
    mid = ops.list_messages(engine, number_id, DAY)[0].id or 0
    assert ops.claim(engine, mid, "w", NOW).claimed
    later = NOW + timedelta(hours=2)
    assert ops.release_for_retry(engine, mid, later, "503", NOW, window_end=later + timedelta(hours=1))
    assert ops.claim(engine, mid, "w", later + timedelta(minutes=1)).claimed


def test_plan_day_with_a_dangling_in_reply_to_is_a_clear_error(engine: Engine) -> None:
    number_id = add(engine)
    bad = PlannedSend(PEER, "reply", NOW, kind="peer_reply", in_reply_to=9999)
    with pytest.raises(InvalidWrite, match="in_reply_to"):
        ops.plan_day(engine, number_id, decision(5), [bad])
    assert ops.get_day_plan(engine, number_id, DAY) is None  # nothing stored
    planned(engine, 1, number_id=number_id)
    with pytest.raises(InvalidWrite, match="in_reply_to"):
        ops.add_sends(engine, number_id, DAY, [bad], now=NOW)


def _upsert(engine: Engine, timezone: str, now: datetime) -> tuple[int, bool]:
    return ops.upsert_number(
        engine,
        phone=PHONE,
        provider="whapi",
        token_ref="WHAPI_TOKEN_1",
        plan_name="standard",
        plan_path="plans/standard.yaml",
        timezone=timezone,
        now=now,
    )


def test_a_time_zone_change_mid_day_waits_for_the_end_of_the_planned_day(engine: Engine) -> None:
    number_id, _ = _upsert(engine, "Asia/Tokyo", NOW)  # 21:00 in Tokyo on the 23rd
    assert ops.plan_day(engine, number_id, decision(5), sends(2))
    _upsert(engine, "America/Sao_Paulo", NOW)  # 09:00 on the 23rd there: a second "23rd" would overlap
    number = ops.get_number(engine, number_id)
    assert number is not None and number.timezone == "Asia/Tokyo"
    assert number.pending_timezone == "America/Sao_Paulo"
    tokyo_midnight = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert number.timezone_from == tokyo_midnight
    assert ops.apply_timezone_changes(engine, tokyo_midnight - timedelta(seconds=1)) == []
    assert ops.apply_timezone_changes(engine, tokyo_midnight) == [number_id]
    number = ops.get_number(engine, number_id)
    assert number is not None and number.timezone == "America/Sao_Paulo" and number.pending_timezone is None
    # the new zone's "today" (the 23rd, already planned) gets no second plan: no fresh quota today
    assert ops.local_date_of(number.timezone, tokyo_midnight) == DAY
    assert not ops.plan_day(engine, number_id, decision(5), sends(1))
    # without a plan for today, a change applies at once
    _upsert(engine, "Europe/Berlin", NOW + timedelta(days=2))
    number = ops.get_number(engine, number_id)
    assert number is not None and number.timezone == "Europe/Berlin" and number.pending_timezone is None


@pytest.mark.postgres
def test_concurrent_pause_and_expire_day_never_deadlock(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row-lock order only matters on PostgreSQL")
    numbers = [
        add(engine, phone=f"+55119999900{i:02d}", timezone=tz)
        for i, tz in enumerate(["UTC", "Asia/Tokyo"] * 2)
    ]
    errors: list[BaseException] = []
    for round_ in range(15):
        yesterday = DAY - timedelta(days=round_ + 1)
        for number_id in numbers:
            ops.plan_day(
                engine,
                number_id,
                decision(60, local_date=yesterday),
                sends(60, NOW - timedelta(days=round_ + 1)),
            )
        barrier = threading.Barrier(3)

        def pause(barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                ops.pause_numbers(engine, reason="r", actor="t", now=NOW, number_ids=list(reversed(numbers)))
                ops.resume_numbers(engine, actor="t", now=NOW, number_ids=numbers)
            except BaseException as exc:
                errors.append(exc)

        def expire(barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                ops.expire_day(engine, NOW + timedelta(days=1))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=f) for f in (pause, expire, expire)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == [], errors
    with engine.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).where(ops.MESSAGES.c.state.in_(["planned", "queued"]))
        ).scalar_one()
    assert left == 0
