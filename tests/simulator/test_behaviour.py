"""What recipients do (`warmup/simulator/behaviour.py`): replies, statuses, inboxes, determinism."""

from __future__ import annotations

from datetime import timedelta

from tests.simulator.model_fixture import FRIENDLY, T0, A, B, contact, model, send
from warmup.simulator import SimConfig, SimModel


def test_replies_appear_only_when_their_time_has_come() -> None:
    m = model(behaviour=FRIENDLY)
    send(m, "tok-a", contact(1), T0)
    m.advance(T0 + timedelta(seconds=59))  # reply_delay starts at 60 s
    assert m.list_messages("tok-a", T0 + timedelta(seconds=59), from_me=False)["messages"] == []
    m.advance(T0 + timedelta(hours=1))
    listed = m.list_messages("tok-a", T0 + timedelta(hours=1), from_me=False)
    assert listed["total"] == 1
    reply = listed["messages"][0]
    assert reply["from"] == "552190000001"
    assert reply["chat_id"] == "552190000001@s.whatsapp.net"
    assert reply["from_me"] is False
    assert reply["text"]["body"] in FRIENDLY.replies
    assert T0.timestamp() + 60 <= reply["timestamp"] <= T0.timestamp() + 1800 + 20


def test_peer_message_lands_in_peer_inbox_without_an_automatic_answer() -> None:
    m = model(behaviour=FRIENDLY)
    sent = send(m, "tok-a", B.phone, T0, body="hi peer")
    assert m.list_messages("tok-b", T0, from_me=False)["total"] == 0
    m.advance(T0 + timedelta(minutes=5))
    inbox = m.list_messages("tok-b", T0 + timedelta(minutes=5), from_me=False)["messages"]
    assert [(x["from"], x["text"]["body"]) for x in inbox] == [("5511999990001", "hi peer")]
    assert inbox[0]["id"] == sent["message"]["id"]  # type: ignore[index]
    m.advance(T0 + timedelta(days=1))
    assert (
        m.list_messages("tok-a", T0 + timedelta(days=1), from_me=False)["total"] == 0
    )  # peers never auto-reply


def test_statuses_progress_and_reach_webhooks() -> None:
    m = model(behaviour=FRIENDLY)
    m.update_settings(
        "tok-a", {"webhooks": [{"url": "http://127.0.0.1:9/hook", "events": [{"type": "statuses"}]}]}
    )
    send(m, "tok-a", contact(3), T0)
    posts = m.advance(T0 + timedelta(hours=1))
    statuses = [s["status"] for p in posts for s in p.payload.get("statuses", [])]
    assert statuses == ["delivered", "read"]
    assert all("messages" not in p.payload for p in posts)  # subscribed to statuses only
    own = m.list_messages("tok-a", T0 + timedelta(hours=1), from_me=True)["messages"]
    assert own[0]["status"] == "read"


def _run_conversation(seed: int, order: list[tuple[str, str]]) -> list[tuple[str, str, int]]:
    m = SimModel(SimConfig(seed=seed, channels=(A, B)))
    for token, to in order:
        m.send_text(token, {"to": to, "body": "hey"}, T0)
    m.advance(T0 + timedelta(days=1))
    out = []
    for token in ("tok-a", "tok-b"):
        for msg in m.list_messages(token, T0 + timedelta(days=1), from_me=False, count=500)["messages"]:
            out.append((token, msg["text"]["body"], msg["timestamp"]))
    return sorted(out)


def test_replies_are_deterministic_for_a_seed_whatever_the_interleaving() -> None:
    a_sends = [("tok-a", contact(i)) for i in range(15)]
    b_sends = [("tok-b", contact(i)) for i in range(15)]
    interleaved = [x for pair in zip(a_sends, b_sends, strict=True) for x in pair]
    first = _run_conversation(11, a_sends + b_sends)
    assert first == _run_conversation(11, interleaved)
    assert first != _run_conversation(12, a_sends + b_sends)
    assert 0 < len(first) < 30  # Beta(2, 2) friendliness: some answer, some do not
