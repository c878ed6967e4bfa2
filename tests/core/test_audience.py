"""Audience selection: peers first, new-contact budget, never the same text twice in a row."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.core.audience import choose, pick_text

phones = st.lists(st.sampled_from([f"+55119999{i:04d}" for i in range(12)]), max_size=8, unique=True)
texts = st.lists(
    st.sampled_from(["hi", "hello", "hey", "good morning", "how are you?"]), max_size=5, unique=True
)


@settings(max_examples=150, deadline=None)
@given(
    quota=st.integers(0, 40),
    peers=phones,
    contacts=phones,
    known=phones,
    invalid=phones,
    max_new=st.integers(0, 6),
    pool=texts,
    seed=st.integers(0, 2**32),
    last=st.sampled_from(["hi", "hello", None]),
)
def test_audience_invariants(
    quota: int,
    peers: list[str],
    contacts: list[str],
    known: list[str],
    invalid: list[str],
    max_new: int,
    pool: list[str],
    seed: int,
    last: str | None,
) -> None:
    last_text = {phone: last for phone in known if last is not None}
    kwargs = dict(
        peers=peers,
        contacts=contacts,
        known=set(known),
        invalid=set(invalid),
        last_text=last_text,
        max_new_contacts=max_new,
        texts=pool,
        self_phone=peers[0] if peers else None,
    )
    result = choose(quota, rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]
    again = choose(quota, rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]
    assert result == again  # a day replays exactly

    assert len(result.picks) <= quota
    recipients = {pick.to for pick in result.picks}
    assert not recipients & set(invalid)
    if peers:
        assert peers[0] not in recipients  # never to itself
    new = recipients - set(known)
    assert len(new) <= max_new
    assert result.new_contacts == len(new)
    # never the same text to the same recipient twice in a row (including the last stored text)
    previous = dict(last_text)
    for pick in result.picks:
        assert pick.text in pool
        assert previous.get(pick.to) != pick.text
        previous[pick.to] = pick.text
        assert pick.peer == (pick.to in peers)
    # peers come before contacts in the rotation
    first_seen = list(dict.fromkeys((pick.to, pick.peer) for pick in result.picks))
    kinds = [is_peer for _, is_peer in first_seen]
    assert kinds == sorted(kinds, reverse=True)
    if len(result.picks) < quota and quota > 0:
        assert result.shortfall_reason


def test_fills_the_quota_by_cycling_through_few_recipients() -> None:
    result = choose(
        10,
        peers=["+1"],
        contacts=["+2"],
        known={"+1"},
        invalid=set(),
        last_text={"+1": "a"},
        max_new_contacts=1,
        texts=["a", "b"],
        rng=random.Random(1),
    )
    assert len(result.picks) == 10
    assert result.shortfall_reason is None
    assert [p.to for p in result.picks[:2]] == ["+1", "+2"]
    assert result.picks[0].text == "b"  # "a" was the last text +1 got


def test_new_contact_budget_limits_and_says_why() -> None:
    result = choose(
        5,
        peers=[],
        contacts=["+2", "+3", "+4"],
        known=set(),
        invalid=set(),
        last_text={},
        max_new_contacts=0,
        texts=["a", "b"],
        rng=random.Random(1),
    )
    assert result.picks == []
    assert result.shortfall_reason is not None
    assert "recipient" in result.shortfall_reason


def test_single_text_pool_never_repeats_to_the_same_recipient() -> None:
    result = choose(
        6,
        peers=["+1", "+2"],
        contacts=[],
        known={"+1", "+2"},
        invalid=set(),
        last_text={"+2": "only"},
        max_new_contacts=5,
        texts=["only"],
        rng=random.Random(3),
    )
    assert [(p.to, p.text) for p in result.picks] == [("+1", "only")]
    assert result.shortfall_reason is not None and "repeating" in result.shortfall_reason


def test_pick_text_avoids_the_last_one() -> None:
    rng = random.Random(0)
    assert all(pick_text(["x", "y"], "x", rng) == "y" for _ in range(20))
    assert pick_text(["x"], "x", rng) is None
    assert pick_text([], None, rng) is None


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=6),
    st.one_of(st.none(), st.sampled_from(["a", "b", "z"])),
    st.integers(0, 2**32),
)
def test_pick_text_draws_as_from_the_pool_without_the_last_text(
    pool: list[str], last: str | None, seed: int
) -> None:
    """The shortcut (no filtering when ``last`` is not in the pool) draws what the filtered list would."""
    choices = [text for text in pool if text != last]
    expected = random.Random(seed).choice(choices) if choices else None
    assert pick_text(pool, last, random.Random(seed)) == expected
