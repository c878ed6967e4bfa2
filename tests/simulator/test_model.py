"""The simulator's behaviour model, without HTTP: readings, replies, statuses, bans, validation."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.simulator.model import (
    Behaviour,
    ChannelSpec,
    ChannelStatus,
    DuplicateChannel,
    SimConfig,
    SimError,
    SimModel,
    Thresholds,
    level,
    overall_of,
    phone_digits,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
A = ChannelSpec("tok-a", "+5511999990001", date(2026, 10, 1), name="A")
B = ChannelSpec("tok-b", "+5511999990002", date(2026, 10, 1), name="B")
FRIENDLY = Behaviour(friendliness=(1000.0, 0.001))  # every contact answers every message
HOSTILE = Behaviour(friendliness=(0.001, 1000.0))  # nobody ever answers


def contact(i: int) -> str:
    return f"+55219{i:07d}"


def model(*specs: ChannelSpec, seed: int = 7, **kw: object) -> SimModel:
    return SimModel(SimConfig(seed=seed, channels=specs or (A, B), **kw))  # type: ignore[arg-type]


def send(m: SimModel, token: str, to: str, now: datetime, body: str = "hello") -> dict[str, object]:
    return m.send_text(token, {"to": to, "body": body, "typing_time": 2}, now)


def reading(m: SimModel, token: str, now: datetime) -> dict[str, object]:
    return m.meter_compute(token, now)


# --- readings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age_days", "expected"), [(0, 1), (5, 1), (13, 1), (14, 2), (29, 2), (30, 3), (400, 3)]
)
def test_lifetime_follows_channel_age(age_days: int, expected: int) -> None:
    spec = replace(A, registered=T0.date() - timedelta(days=age_days))
    assert reading(model(spec), "tok-a", T0)["lifeTime"] == expected


def test_friendly_contacts_make_good_response_and_contacts() -> None:
    m = model(behaviour=FRIENDLY)
    for i in range(10):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=i))
    before = m.channel_state(A.phone, T0 + timedelta(minutes=10))
    assert before["reading"]["riskFactorChats"] == 1  # type: ignore[index]  # sent, nothing answered yet
    m.advance(T0 + timedelta(hours=2))
    r = reading(m, "tok-a", T0 + timedelta(hours=2))
    assert (r["riskFactorChats"], r["riskFactorContacts"], r["lifeTime"], r["riskFactor"]) == (3, 3, 3, 3)


def test_cold_sends_to_strangers_read_as_caution() -> None:
    m = model(behaviour=HOSTILE)
    for i in range(20):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=2 * i))
    m.advance(T0 + timedelta(days=1))
    r = reading(m, "tok-a", T0 + timedelta(hours=3))
    assert r["riskFactorChats"] == 1
    assert r["riskFactorContacts"] == 1
    assert r["riskFactor"] == 2  # lifetime 3 lifts the mean, but never more than one above the worst


def test_peers_count_as_known_contacts_and_no_data_is_neutral() -> None:
    m = model(behaviour=HOSTILE)
    assert reading(m, "tok-a", T0)["riskFactorChats"] == 2  # no sends yet: not enough data
    assert reading(m, "tok-a", T0)["riskFactorContacts"] == 2
    m2 = model(behaviour=HOSTILE)
    for i in range(3):
        send(m2, "tok-a", B.phone, T0 + timedelta(minutes=i))
    assert reading(m2, "tok-a", T0 + timedelta(minutes=5))["riskFactorContacts"] == 3


def test_response_rate_uses_a_trailing_window() -> None:
    m = model(behaviour=HOSTILE)
    for i in range(10):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=i))
    assert m.channel_state(A.phone, T0 + timedelta(hours=1))["reading"]["riskFactorChats"] == 1  # type: ignore[index]
    later = T0 + timedelta(days=8)  # the cold sends fell out of the 7-day window
    assert m.channel_state(A.phone, later)["reading"]["riskFactorChats"] == 2  # type: ignore[index]


def test_peer_answers_count_as_replies() -> None:
    m = model(behaviour=HOSTILE)
    for i in range(5):
        send(m, "tok-a", B.phone, T0 + timedelta(minutes=i))
    m.advance(T0 + timedelta(minutes=10))
    for i in range(5):
        send(m, "tok-b", A.phone, T0 + timedelta(minutes=10 + i))
    m.advance(T0 + timedelta(minutes=30))
    state = m.channel_state(A.phone, T0 + timedelta(minutes=30))
    assert state["replies_total"] == 5
    assert state["reading"]["riskFactorChats"] == 3  # type: ignore[index]


def test_meter_is_computed_once_per_simulated_day() -> None:
    m = model(behaviour=HOSTILE)
    first = reading(m, "tok-a", T0)
    for i in range(20):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=i))
    assert reading(m, "tok-a", T0 + timedelta(hours=5)) == first  # same day: the saved reading
    assert m.meter_last("tok-a") == first
    next_day = reading(m, "tok-a", T0 + timedelta(days=1))
    assert next_day != first
    assert next_day["lastUpdateDate"] == "11/24/2026"
    assert first == {
        "channel": "SIM-5511999990001",
        "lastUpdateDate": "11/23/2026",
        "lifeTime": 3,
        "riskFactor": 2,
        "riskFactorChats": 2,
        "riskFactorContacts": 2,
    }


def test_meter_needs_the_paid_plan_and_a_first_post() -> None:
    m = model(replace(A, meter=False), B)
    with pytest.raises(SimError) as err:
        m.meter_compute("tok-a", T0)
    assert err.value.status == 402
    with pytest.raises(SimError) as err:
        m.meter_last("tok-b")
    assert err.value.status == 404


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
def test_overall_stays_within_one_of_the_worst_factor(lifetime: int, chats: int, contacts: int) -> None:
    overall = overall_of(lifetime, chats, contacts)
    worst = min(lifetime, chats, contacts)
    assert worst <= overall <= worst + 1
    assert 1 <= overall <= 3
    assert overall_of(lifetime, chats, contacts) >= overall_of(1, chats, contacts)


@given(st.floats(0, 1), st.floats(0, 1))
def test_level_is_monotonic(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert level(low, 0.5, 0.2) <= level(high, 0.5, 0.2)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 29), st.integers(0, 600)), min_size=1, max_size=40),
    st.integers(0, 60),
)
def test_readings_always_in_range(sends: list[tuple[int, int]], age: int) -> None:
    spec = replace(A, registered=T0.date() - timedelta(days=age))
    m = model(spec, B)
    for who, minute in sorted(sends, key=lambda s: s[1]):
        to = B.phone if who == 0 else contact(who)
        with contextlib.suppress(SimError):
            send(m, "tok-a", to, T0 + timedelta(minutes=minute))
    m.advance(T0 + timedelta(days=1))
    r = m.channel_state(A.phone, T0 + timedelta(days=1))["reading"]
    for key in ("lifeTime", "riskFactor", "riskFactorChats", "riskFactorContacts"):
        assert r[key] in (1, 2, 3)  # type: ignore[index]


# --- replies, statuses, inbox -------------------------------------------------------------------


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


# --- bans ---------------------------------------------------------------------------------------


def test_a_sane_ramp_with_answers_is_never_banned() -> None:
    spec = replace(A, registered=T0.date())  # brand new number
    m = model(spec, B, seed=3)
    ramp = [8, 8, 8, 15, 23, 31, 40, 50, 60, 75, 90, 110, 130, 150, 200, 200, 200, 200, 200, 200, 200]
    people = 0
    for day, volume in enumerate(ramp):
        start = T0 + timedelta(days=day)
        for i in range(volume):
            at = start + timedelta(minutes=3 * i)
            m.advance(at)
            if i % 3 == 0:
                to = B.phone
            elif i % 3 == 1:
                people += 1
                to = contact(people)
            else:
                to = contact(max(1, people - 5))  # keep talking to people met before
            send(m, "tok-a", to, at)
    state = m.channel_state(A.phone, T0 + timedelta(days=len(ramp)))
    assert state["status"] == "connected"
    assert state["sent_total"] == sum(ramp)


def test_far_beyond_the_safe_volume_bans_on_the_first_excess_send() -> None:
    spec = replace(A, registered=T0.date())
    m = model(spec, B)
    limit = Thresholds().ban_limit(0)
    assert limit == 60
    for i in range(limit):
        send(m, "tok-a", B.phone, T0 + timedelta(seconds=10 * i))  # peers: no burst rule involved
    with pytest.raises(SimError) as err:
        send(m, "tok-a", B.phone, T0 + timedelta(hours=1))
    assert err.value.status == 401
    assert "banned" in err.value.envelope()["error"]["message"].lower()
    state = m.channel_state(A.phone, T0 + timedelta(hours=1))
    assert state["banned"] is True and state["sent_today"] == limit
    assert m.health("tok-a", T0 + timedelta(hours=1))["status"]["text"] == "ERROR"
    with pytest.raises(SimError) as err:
        send(m, "tok-a", B.phone, T0 + timedelta(days=3))  # a ban does not wear off
    assert err.value.status == 401


def test_cold_burst_to_strangers_bans_an_old_number() -> None:
    m = model(behaviour=HOSTILE)  # A is 53 days old: the daily limit is far away
    burst = Thresholds().burst_strangers
    for i in range(burst):
        send(m, "tok-a", contact(i), T0 + timedelta(seconds=30 * i))
    with pytest.raises(SimError) as err:
        send(m, "tok-a", contact(999), T0 + timedelta(seconds=30 * burst))
    assert err.value.status == 401
    assert "strangers" in str(m.channel_state(A.phone, T0)["ban_reason"])


def test_the_same_burst_spread_over_hours_or_with_answers_is_fine() -> None:
    spread = model(behaviour=HOSTILE)
    for i in range(80):
        send(spread, "tok-a", contact(i), T0 + timedelta(minutes=2 * i))  # 30 an hour
    answered = model(behaviour=FRIENDLY)
    for i in range(80):
        at = T0 + timedelta(seconds=20 * i)
        answered.advance(at)
        send(answered, "tok-a", contact(i % 40), at)
    assert spread.channel_state(A.phone, T0)["status"] == "connected"
    assert answered.channel_state(A.phone, T0)["status"] == "connected"


def test_bans_can_be_switched_off_and_tuned() -> None:
    off = model(replace(A, registered=T0.date()), B, thresholds=Thresholds(bans=False))
    for i in range(500):
        send(off, "tok-a", contact(i), T0 + timedelta(seconds=i))
    assert off.channel_state(A.phone, T0)["status"] == "connected"
    strict = model(thresholds=Thresholds(safe_base=1, safe_per_day=0, ban_multiple=2.0))
    send(strict, "tok-a", B.phone, T0)
    send(strict, "tok-a", B.phone, T0)
    with pytest.raises(SimError):
        send(strict, "tok-a", B.phone, T0)


# --- validation and channel states --------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"body": "x"}, 400),
        ({"to": "", "body": "x"}, 400),
        ({"to": "hello", "body": "x"}, 400),
        ({"to": "123", "body": "x"}, 400),
        ({"to": "120363000000000000@g.us", "body": "x"}, 400),
        ({"to": "+5521900000001"}, 400),
        ({"to": "+5521900000001", "body": "   "}, 400),
        ({"to": "+5521900000001", "body": 5}, 400),
        ({"to": "+5521900000001", "body": "x", "typing_time": 61}, 400),
        ({"to": "+5521900000001", "body": "x", "typing_time": -1}, 400),
        ({"to": "+5521900000001", "body": "x", "typing_time": "3"}, 400),
        ({"to": "+5521900000001", "body": "x", "typing_time": True}, 400),
        ({"to": "+5521900000001", "body": "x" * 4097}, 413),
        (["not", "an", "object"], 400),
    ],
)
def test_send_validation(payload: object, status: int) -> None:
    m = model()
    with pytest.raises(SimError) as err:
        m.send_text("tok-a", payload, T0)
    assert err.value.status == status
    assert set(err.value.envelope()["error"]) == {"code", "message", "details"}
    assert m.sends() == []


@pytest.mark.parametrize(
    "to", ["+5521900000001", "5521900000001", "5521900000001@s.whatsapp.net", "5521900000001@c.us"]
)
def test_send_accepts_phone_and_chat_id_forms(to: str) -> None:
    m = model()
    result = m.send_text("tok-a", {"to": to, "body": "hi", "typing_time": 0}, T0)
    assert result["message"]["chat_id"] == "5521900000001@s.whatsapp.net"  # type: ignore[index]
    assert [(r.to, r.typing_time) for r in m.sends()] == [("+5521900000001", 0.0)]


def test_unknown_token_logged_out_forbidden_and_trial_limit() -> None:
    m = model(replace(A, trial_limit=1, forbidden=frozenset({"5521900000009"})), B)
    with pytest.raises(SimError) as err:
        send(m, "nope", B.phone, T0)
    assert err.value.status == 401
    with pytest.raises(SimError) as err:
        send(m, "tok-a", "+5521900000009", T0)
    assert err.value.status == 403
    send(m, "tok-a", B.phone, T0)
    with pytest.raises(SimError) as err:
        send(m, "tok-a", B.phone, T0)
    assert err.value.status == 402
    m.update_channel(B.phone, status=ChannelStatus.LOGGED_OUT, now=T0)
    with pytest.raises(SimError) as err:
        send(m, "tok-b", A.phone, T0)
    assert err.value.status == 401 and "logged out" in err.value.details
    assert m.health("tok-b", T0)["status"] == {
        "code": 3,
        "text": "QR",
        "details": "logged out: scan the QR code to log in again",
    }
    m.update_channel(B.phone, status=ChannelStatus.CONNECTED, now=T0)
    assert m.health("tok-b", T0)["status"]["text"] == "AUTH"


def test_registration_refuses_duplicates_and_bad_phones() -> None:
    m = model()
    with pytest.raises(DuplicateChannel):
        m.register(replace(A, token="other"))
    with pytest.raises(DuplicateChannel):
        m.register(replace(B, phone="+5511999990077", token="tok-a"))
    with pytest.raises(ValueError):
        m.register(ChannelSpec("t", "not-a-phone", T0.date()))
    assert phone_digits("+55 11 99999-0001") == "5511999990001"


def test_list_paging_sorting_and_filters() -> None:
    m = model(behaviour=HOSTILE)
    for i in range(7):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=i), body=f"m{i}")
    now = T0 + timedelta(hours=1)
    desc = m.list_messages("tok-a", now, from_me=True, count=3)
    assert [x["text"]["body"] for x in desc["messages"]] == ["m6", "m5", "m4"]
    assert (desc["count"], desc["total"], desc["offset"]) == (3, 7, 0)
    asc = m.list_messages("tok-a", now, from_me=True, count=3, offset=3, sort="asc")
    assert [x["text"]["body"] for x in asc["messages"]] == ["m3", "m4", "m5"]
    since = m.list_messages("tok-a", now, time_from=(T0 + timedelta(minutes=5)).timestamp(), sort="asc")
    assert [x["text"]["body"] for x in since["messages"]] == ["m5", "m6"]
    assert m.list_messages("tok-a", now, from_me=False)["total"] == 0
    for bad in ({"count": 0}, {"count": 501}, {"offset": -1}, {"sort": "up"}):
        with pytest.raises(SimError):
            m.list_messages("tok-a", now, **bad)  # type: ignore[arg-type]


def test_settings_validate_webhooks() -> None:
    m = model()
    result = m.update_settings("tok-a", {"webhooks": [{"url": "https://example.test/h"}]})
    assert result["changes"] == ["webhooks"]
    assert (
        result["before_update"] == {}
        and m.get_settings("tok-a")["webhooks"][0]["url"] == "https://example.test/h"
    )
    for bad in ({"webhooks": "x"}, {"webhooks": [{"url": "ftp://x"}]}, {"webhooks": [{}]}, []):
        with pytest.raises(SimError) as err:
            m.update_settings("tok-a", bad)
        assert err.value.status == 400


def test_tokens_never_show_in_reprs_or_state() -> None:
    m = model()
    assert "tok-a" not in repr(A)
    assert "tok-a" not in str(m.channel_state(A.phone, T0))
    send(m, "tok-a", B.phone, T0)
    assert "tok-a" not in str(m.sends()[0].to_json())


def test_a_few_first_strangers_are_too_early_to_judge() -> None:
    m = model(behaviour=HOSTILE)
    for i in range(4):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=i))
    assert m.channel_state(A.phone, T0 + timedelta(hours=1))["reading"]["riskFactorContacts"] == 2  # type: ignore[index]
    send(m, "tok-a", contact(4), T0 + timedelta(minutes=5))
    assert m.channel_state(A.phone, T0 + timedelta(hours=1))["reading"]["riskFactorContacts"] == 1  # type: ignore[index]


def test_meta_phone_info_follows_status_and_quality() -> None:
    m = model(behaviour=HOSTILE)
    info = m.phone_info("tok-a", "5511999990001", T0)
    assert (info["quality_rating"], info["status"]) == ("GREEN", "CONNECTED")
    assert info["whatsapp_business_manager_messaging_limit"] == "TIER_2K"
    for i in range(20):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=i))
    info = m.phone_info("tok-a", "5511999990001", T0 + timedelta(hours=1))
    assert (info["quality_rating"], info["status"]) == ("RED", "FLAGGED")
    m.update_channel(A.phone, status=ChannelStatus.BANNED, now=T0)
    assert m.phone_info("tok-a", "5511999990001", T0)["status"] == "BANNED"
    with pytest.raises(SimError) as err:
        m.phone_info("tok-a", "5511999990002", T0)
    assert err.value.status == 400
