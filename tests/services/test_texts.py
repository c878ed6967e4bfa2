"""warmup.services.texts: the texts of a day's sends (conditions in the number's zone, names, no repeat
within a week across the day and the stored history) and the timeless texts peer replies draw from."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.core.plan.model import Plan
from warmup.files.content import NO_REPEAT, Entry, MessagePool, When, entries
from warmup.files.plans import load_plan
from warmup.services.texts import DEFAULT_POOL, FIRST_NAMES, choose_texts, pool_of, texts_of
from warmup.testing.fleet_setup import PlanValues, write_plan_files

MONDAY = "Hope your Monday isn't too rough"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # Monday 12:00 UTC


def _plan(directory: Path, pool: str) -> Plan:
    values = PlanValues(
        name="texts",
        volume=5,
        ramp_days=10,
        hours="08:00-20:00",
        gap="2m..6m",
        typing="1s..2s",
        max_per_hour=30,
        max_new_contacts=10,
        reply_probability=0.0,
        reply_delay="1m..5m",
    )
    contacts = [("+5511977770001", "Ana Souza"), ("+5511977770002", '"Rivera, Alex"'), ("+5511977770003", "")]
    return load_plan(write_plan_files(directory, values, contacts, pool))


def test_conditions_are_checked_in_the_number_s_zone() -> None:
    """Sunday 23:30 UTC: already Monday in Berlin (CET), still Sunday in Sao Paulo."""
    pool = MessagePool("en", (Entry("Hi"), Entry(MONDAY, When(weekdays=frozenset({0})))), entries("r"))
    at = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    sends = [(f"+55119000{i:05d}", at) for i in range(60)]
    berlin = choose_texts(pool, "opener", sends, "Europe/Berlin", {}, {}, random.Random(1))
    sao_paulo = choose_texts(pool, "opener", sends, "America/Sao_Paulo", {}, {}, random.Random(1))
    assert MONDAY in berlin
    assert MONDAY not in sao_paulo


def test_names_and_weekdays_are_filled() -> None:
    pool = MessagePool("pt-BR", entries("Oi, {first_name}! Boa {weekday}", "Tudo bem?"), entries("r"))
    at = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # Tuesday
    named = {f"+1{i:03d}": "Ana" for i in range(30)}
    sends = [(phone, at) for phone in named] + [(f"+2{i:03d}", at) for i in range(30)]
    texts = choose_texts(pool, "opener", sends, "America/Sao_Paulo", named, {}, random.Random(0))
    assert set(texts[:30]) == {"Oi, Ana! Boa terça-feira", "Tudo bem?"}
    assert set(texts[30:]) == {"Oi! Boa terça-feira", "Tudo bem?"}


def test_a_recipient_gets_no_text_twice_within_a_week_across_the_day_and_the_history() -> None:
    pool = MessagePool("en", entries(*(f"text {i}" for i in range(6))), entries("r"))
    recent = {"+1": {"text 0": T0 - timedelta(days=2), "text 1": T0 - timedelta(days=8)}}
    sends = [("+1", T0 + timedelta(minutes=10 * i)) for i in range(5)] + [("+2", T0)]
    texts = choose_texts(pool, "opener", sends, "UTC", {}, recent, random.Random(3))
    first = texts[:5]
    assert len(set(first)) == 5 and "text 0" not in first  # text 1 was 8 days ago: allowed again
    sixth = choose_texts(
        pool, "opener", [*sends[:5], ("+1", T0 + timedelta(hours=2))], "UTC", {}, recent, random.Random(3)
    )[-1]
    assert sixth == "text 0"  # every text is recent by then: the least recent one


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=10),
    st.lists(
        st.tuples(st.sampled_from(["+1", "+2", "+3"]), st.integers(0, 14 * 24 * 60)), min_size=1, max_size=40
    ),
    st.integers(min_value=0, max_value=2**32),
)
def test_no_repeat_within_a_week_over_many_days(size: int, raw: list[tuple[str, int]], seed: int) -> None:
    """Sends over two weeks, chosen day by day with what earlier days stored as the history: a text is
    repeated to a recipient within a week only when every text was sent to them within that week, and
    then it is the one sent longest before. The same seed gives the same texts."""
    pool = MessagePool("en", entries(*(f"text {i}" for i in range(size))), entries("r"))
    sends = sorted(((phone, T0 + timedelta(minutes=minute)) for phone, minute in raw), key=lambda s: s[1])
    got: dict[str, dict[str, datetime]] = {}
    for day in range(15):
        todays = [s for s in sends if (s[1] - T0).days == day]
        texts = choose_texts(pool, "opener", todays, "UTC", {}, got, random.Random(seed + day))
        assert texts == choose_texts(pool, "opener", todays, "UTC", {}, got, random.Random(seed + day))
        for (phone, at), text in zip(todays, texts, strict=True):
            history = got.setdefault(phone, {})
            within = {t: when for t, when in history.items() if at - when < NO_REPEAT}
            if text in within:
                assert len(within) == size, "repeated although another text was free"
                assert within[text] == min(within.values())
            history[text] = at


def test_texts_of_gives_what_needs_no_time_nor_name(tmp_path: Path) -> None:
    pool = (
        "language: en\n"
        "openers:\n"
        "  - Hello\n"
        "  - 'Hey {first_name}, all good?'\n"
        "  - 'Happy {weekday}'\n"
        "  - {text: Morning!, when: {hours: '05:00-11:00'}}\n"
        "replies: [Sure, 'Thanks {first_name}!']\n"
    )
    plan = _plan(tmp_path, pool)
    assert texts_of(plan) == ("Hello", "Hey, all good?")
    assert texts_of(plan, "reply") == ("Sure", "Thanks!")
    assert len(pool_of(plan).openers) == 4
    assert texts_of(plan.model_copy(update={"content": None}), "reply") == DEFAULT_POOL.timeless("reply")


def test_contacts_first_names(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "language: en\nopeners: [Hi]\nreplies: [Yo]\n")
    assert plan.audience.contacts is not None
    assert FIRST_NAMES(plan.audience.contacts) == {"+5511977770001": "Ana", "+5511977770002": "Alex"}
