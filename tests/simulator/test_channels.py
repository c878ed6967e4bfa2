"""Channels (`warmup/simulator/channels.py`): bans, registration, phone numbers, tokens kept secret."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from tests.simulator.model_fixture import FRIENDLY, HOSTILE, T0, A, B, contact, model, send
from warmup.simulator import ChannelSpec, SimError, Thresholds
from warmup.simulator.channels import DuplicateChannel, phone_digits


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


def test_registration_refuses_duplicates_and_bad_phones() -> None:
    m = model()
    with pytest.raises(DuplicateChannel):
        m.register(replace(A, token="other"))
    with pytest.raises(DuplicateChannel):
        m.register(replace(B, phone="+5511999990077", token="tok-a"))
    with pytest.raises(ValueError):
        m.register(ChannelSpec("t", "not-a-phone", T0.date()))
    assert phone_digits("+55 11 99999-0001") == "5511999990001"


def test_tokens_never_show_in_reprs_or_state() -> None:
    m = model()
    assert "tok-a" not in repr(A)
    assert "tok-a" not in str(m.channel_state(A.phone, T0))
    send(m, "tok-a", B.phone, T0)
    assert "tok-a" not in str(m.sends()[0].to_json())
