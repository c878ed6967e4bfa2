"""warmup.store.sends: adding to a planned day never overfills it; a reply takes the place of a pending
opener.
Both databases (the `engine` fixture)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from tests.invariant_checks import assert_quota_held
from tests.store.helpers import DAY, NOW, PEER, add, decision, planned, reason, sends, state
from warmup.core.errors import UserError
from warmup.store import audit as store_audit
from warmup.store import days, history, outcomes, queue
from warmup.store.claims import claim
from warmup.store.sends import GAVE_WAY, PlannedSend, add_sends


def test_add_sends_extends_a_planned_day_only(engine: Engine) -> None:
    [first, *_] = planned(engine, 1)
    reply = PlannedSend(recipient=PEER, text="sure!", scheduled_at=NOW, kind="peer_reply", in_reply_to=first)
    [new_id] = add_sends(engine, 1, DAY, [reply])
    message = history.get_message(engine, new_id)
    assert message is not None and (message.in_reply_to, message.kind, message.state) == (
        first,
        "peer_reply",
        "planned",
    )
    with pytest.raises(UserError, match="no plan"):
        add_sends(engine, 1, DAY + timedelta(days=1), [reply])


def reply_to(message_id: int, at: datetime = NOW) -> PlannedSend:
    return PlannedSend(
        recipient=PEER, text="sure!", scheduled_at=at, kind="peer_reply", in_reply_to=message_id
    )


def live(engine: Engine, number_id: int = 1) -> list[str]:
    """The kinds of the day's messages that are not skipped, in schedule order."""
    return [m.kind for m in history.list_messages(engine, number_id, DAY) if m.state != "skipped"]


def test_a_reply_to_a_full_day_takes_the_latest_pending_openers_place(engine: Engine) -> None:
    ids = planned(engine, 4, quota=4)
    assert claim(engine, ids[0], "w", NOW).claimed  # sending: no longer pending, cannot give way
    assert outcomes.record_sent(engine, ids[0], "wamid.0", NOW)
    queue.mark_queued(engine, [ids[1]], NOW)  # queued still counts as pending
    [reply] = add_sends(engine, 1, DAY, [reply_to(ids[0], NOW + timedelta(hours=1))], now=NOW)
    assert (state(engine, ids[3]), reason(engine, ids[3])) == ("skipped", GAVE_WAY)
    assert state(engine, reply) == "planned" and live(engine).count("peer_reply") == 1
    [second] = add_sends(engine, 1, DAY, [reply_to(ids[0])], now=NOW)
    assert (state(engine, ids[2]), reason(engine, ids[2])) == ("skipped", GAVE_WAY)
    [third] = add_sends(engine, 1, DAY, [reply_to(ids[0])], now=NOW)
    assert (state(engine, ids[1]), reason(engine, ids[1])) == ("skipped", GAVE_WAY)
    assert sorted(live(engine)) == ["opener", "peer_reply", "peer_reply", "peer_reply"]
    assert_quota_held(engine)
    # every reply gets its slot at claim time: the quota is not "reached" by the openers any more
    for m in (reply, second, third):  # each send ends before the next claim: one in flight at a time
        assert claim(engine, m, "w", NOW + timedelta(hours=1)).claimed
        assert outcomes.record_sent(engine, m, f"wamid.{m}", NOW + timedelta(hours=1))
    # the day reads as planned = quota: the openers that gave way were replaced, not lost
    outcome = history.day_outcome(engine, 1, DAY)
    assert (outcome.planned, outcome.skipped) == (4, 0)


def test_a_reply_with_no_opener_to_give_way_is_not_added(engine: Engine) -> None:
    ids = planned(engine, 2, quota=2)
    assert claim(engine, ids[0], "w", NOW).claimed  # sent, and the other sending: neither is pending
    assert outcomes.record_sent(engine, ids[0], "wamid.0", NOW)
    assert claim(engine, ids[1], "w", NOW).claimed
    assert add_sends(engine, 1, DAY, [reply_to(ids[0])], now=NOW) == []
    assert add_sends(engine, 1, DAY, sends(1), now=NOW) == []  # an opener never pushes anything out
    assert len(history.list_messages(engine, 1, DAY)) == 2
    audit = {row.action: row.detail for row in store_audit.list_audit(engine, 1)}
    assert audit["peer_reply_skipped"] is not None and audit["send_not_added"] is not None
    assert audit["peer_reply_skipped"]["in_reply_to"] == ids[0]
    assert "no pending opener can give way" in audit["peer_reply_skipped"]["reason"]
    # room left is used first: nothing gives way while the day is not full
    assert days.plan_day(engine, add(engine, phone="+5511999990003"), decision(3), sends(1))
    [first] = [m.id for m in history.list_messages(engine, 2, DAY)]
    assert first is not None and len(add_sends(engine, 2, DAY, [reply_to(first)] * 2, now=NOW)) == 2
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
                claims.append(claim(engine, ids[index], f"w{index}", NOW).claimed)
            else:
                results.append(add_sends(engine, 1, DAY, [reply_to(ids[0])], now=NOW))
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
    messages = history.list_messages(engine, 1, DAY)
    gave_way = [m for m in messages if m.reason == GAVE_WAY]
    assert len(gave_way) == 6 - claimed and all(m.kind == "opener" for m in gave_way)
    assert ids[2:] == sorted(m.id for m in gave_way)[-4:]  # the latest went first
    assert len([r for r in store_audit.list_audit(engine, 1) if r.action == "peer_reply_skipped"]) == claimed
    assert_quota_held(engine)
    day = days.get_day_plan(engine, 1, DAY)
    assert day is not None and day.used == claimed and sum(m.state != "skipped" for m in messages) == 6
    assert sorted(live(engine)) == ["opener"] * claimed + ["peer_reply"] * (6 - claimed)
