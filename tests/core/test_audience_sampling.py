"""How `choose` orders a group without shuffling it: valid, complete where it must be, and uniform.

The draw replaced a shuffle of the whole group (O(fleet) per day planned); these tests pin what the
draw must keep: the right recipients, none twice, the counts the budget logic relies on, a replay
from the same seed, and no favourite among the candidates.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.core.audience import _order, choose

PHONES = [f"+55119{i:08d}" for i in range(60)]


@settings(max_examples=300, deadline=None)
@given(
    group=st.lists(st.sampled_from(PHONES), max_size=60),
    excluded=st.sets(st.sampled_from(PHONES), max_size=20),
    known=st.sets(st.sampled_from(PHONES), max_size=30),
    self_index=st.none() | st.integers(0, 59),
    room=st.integers(-2, 70),
    need=st.integers(-2, 70),
    seed=st.integers(0, 2**32),
)
def test_order_draws_the_right_recipients_once_each(
    group: list[str],
    excluded: set[str],
    known: set[str],
    self_index: int | None,
    room: int,
    need: int,
    seed: int,
) -> None:
    self_phone = PHONES[self_index] if self_index is not None else None
    old, new, fresh = _order(group, excluded, known, self_phone, room, need, random.Random(seed))
    eligible = set(group) - excluded - {self_phone}
    eligible_known = eligible & known
    eligible_new = eligible - known
    assert fresh == len(eligible_new)
    assert len(old) == len(set(old)) == min(len(eligible_known), max(need, 0))
    assert set(old) <= eligible_known
    assert len(new) == len(set(new)) == min(len(eligible_new), max(room, 0))
    assert set(new) <= eligible_new
    again = _order(group, excluded, known, self_phone, room, need, random.Random(seed))
    assert again == (old, new, fresh)  # a day replays exactly


def _frequencies(size: int, room: int, runs: int, excluded: set[str]) -> Counter[str]:
    group = [f"+55118{i:08d}" for i in range(size)]
    counts: Counter[str] = Counter()
    for seed in range(runs):
        _old, new, _fresh = _order(group, excluded, set(), None, room, 0, random.Random(seed))
        counts.update(new)
        assert not set(new) & excluded
    return counts


def test_the_sparse_draw_favours_no_candidate() -> None:
    """Few new recipients out of many: positions are drawn and redrawn (the fast path)."""
    excluded = {f"+55118{i:08d}" for i in range(0, 200, 10)}  # 20 of 200
    counts = _frequencies(200, 5, 4000, excluded)
    expected = 4000 * 5 / 180
    assert len(counts) == 180
    assert all(0.6 * expected < n < 1.4 * expected for n in counts.values())


def test_the_dense_draw_favours_no_candidate() -> None:
    """Most of a small group: the filtered list is sampled."""
    counts = _frequencies(12, 6, 4000, set())
    expected = 4000 * 6 / 12
    assert all(0.9 * expected < n < 1.1 * expected for n in counts.values())


def test_known_recipients_come_first_and_all_of_them_when_few() -> None:
    peers = [f"+55119{i:08d}" for i in range(10_000)]
    known = set(peers[:5])
    result = choose(
        20,
        peers=peers,
        contacts=[],
        known=known,
        invalid=set(),
        last_text={},
        max_new_contacts=10,
        texts=["a", "b", "c"],
        rng=random.Random(7),
        self_phone=peers[0],
    )
    recipients = list(dict.fromkeys(pick.to for pick in result.picks))
    assert set(recipients[:4]) == known - {peers[0]}  # every known peer but itself, before any new one
    assert len(recipients) == 4 + 10  # and exactly the day's new-contact budget after them
    assert result.new_contacts == 10 and len(result.picks) == 20
