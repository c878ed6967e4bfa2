"""The risk meter's readings (`warmup/simulator/meter.py`), through the model."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.simulator.model_fixture import FRIENDLY, HOSTILE, T0, A, B, contact, model, reading, send
from warmup.simulator import SimError
from warmup.simulator.meter import level, overall_of


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


def test_a_few_first_strangers_are_too_early_to_judge() -> None:
    m = model(behaviour=HOSTILE)
    for i in range(4):
        send(m, "tok-a", contact(i), T0 + timedelta(minutes=i))
    assert m.channel_state(A.phone, T0 + timedelta(hours=1))["reading"]["riskFactorContacts"] == 2  # type: ignore[index]
    send(m, "tok-a", contact(4), T0 + timedelta(minutes=5))
    assert m.channel_state(A.phone, T0 + timedelta(hours=1))["reading"]["riskFactorContacts"] == 1  # type: ignore[index]
