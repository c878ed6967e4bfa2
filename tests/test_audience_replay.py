"""The fast audience choice replays the original one exactly: same picks, same generator state after.

A day is planned from generators seeded by (number, date); a faster `choose` that drew differently
would plan different days for the same seed. `_reference_choose` is `choose` as it was before it was
optimised (per-element shuffle, filter and sort), kept here as the specification.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence, Set

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.audience import AudienceResult, Pick, choose, pick_text, shuffle


def _reference_choose(
    quota: int,
    *,
    peers: Sequence[str],
    contacts: Sequence[str],
    known: Set[str],
    invalid: Set[str],
    last_text: Mapping[str, str],
    max_new_contacts: int,
    texts: Sequence[str],
    rng: random.Random,
    self_phone: str | None = None,
) -> AudienceResult:
    if quota <= 0:
        return AudienceResult([], 0, None)
    budget = max(max_new_contacts, 0)
    chosen: list[tuple[str, bool]] = []
    seen: set[str] = set()
    new_count = 0
    budget_hit = False
    for group, is_peer in ((peers, True), (contacts, False)):
        excluded = invalid | seen
        candidates = [
            phone for phone in dict.fromkeys(group) if phone not in excluded and phone != self_phone
        ]
        rng.shuffle(candidates)
        candidates.sort(key=lambda phone: phone not in known)
        for phone in candidates:
            if phone not in known:
                if new_count >= budget:
                    budget_hit = True
                    continue
                new_count += 1
            chosen.append((phone, is_peer))
            seen.add(phone)
    if not chosen:
        why = "no recipient available (no peers, no contacts, or none left within the new-contact limit)"
        return AudienceResult([], 0, why)
    if not texts:
        return AudienceResult([], 0, "the plan's message pool has no text to send")
    picks: list[Pick] = []
    last: dict[str, str] = dict(last_text)
    stalled = 0
    index = 0
    while len(picks) < quota and stalled < len(chosen):
        phone, is_peer = chosen[index % len(chosen)]
        index += 1
        text = pick_text(texts, last.get(phone), rng)
        if text is None:
            stalled += 1
            continue
        stalled = 0
        last[phone] = text
        picks.append(Pick(phone, text, is_peer))
    reason: str | None = None
    if len(picks) < quota:
        reason = f"only {len(picks)} of {quota} messages could be addressed without repeating a text" + (
            f" (new contacts limited to {budget} today)" if budget_hit else ""
        )
    return AudienceResult(picks, len({pick.to for pick in picks} - known), reason)


PHONES = [f"+55119999{i:04d}" for i in range(60)]
some_phones = st.lists(st.sampled_from(PHONES), max_size=40)  # repeats allowed: `choose` drops them


@settings(max_examples=300, deadline=None)
@given(
    quota=st.integers(0, 30),
    peers=some_phones,
    contacts=some_phones,
    known=st.frozensets(st.sampled_from(PHONES), max_size=20),
    invalid=st.frozensets(st.sampled_from(PHONES), max_size=10),
    last=st.dictionaries(st.sampled_from(PHONES), st.sampled_from(["hi", "hello", "hey"]), max_size=10),
    max_new=st.integers(-1, 25),
    texts=st.lists(st.sampled_from(["hi", "hello", "hey", "yo"]), max_size=4, unique=True),
    seed=st.integers(0, 2**32),
    self_index=st.integers(0, len(PHONES)),
    as_tuple=st.booleans(),
)
def test_choose_replays_the_reference_exactly(
    quota: int,
    peers: list[str],
    contacts: list[str],
    known: frozenset[str],
    invalid: frozenset[str],
    last: dict[str, str],
    max_new: int,
    texts: list[str],
    seed: int,
    self_index: int,
    as_tuple: bool,
) -> None:
    self_phone = PHONES[self_index] if self_index < len(PHONES) else None
    peer_group: Sequence[str] = tuple(peers) if as_tuple else peers
    results = []
    states = []
    for implementation in (_reference_choose, choose, choose):  # twice: the second hits the tuple cache
        rng = random.Random(seed)
        results.append(
            implementation(
                quota,
                peers=peer_group,
                contacts=contacts,
                known=known,
                invalid=invalid,
                last_text=last,
                max_new_contacts=max_new,
                texts=texts,
                rng=rng,
                self_phone=self_phone,
            )
        )
        states.append(rng.getstate())
    assert results[1] == results[0]
    assert results[2] == results[0]
    assert states[1] == states[0] == states[2]


def test_choose_over_a_large_fleet_replays_the_reference() -> None:
    """Thousands of peers (the case the optimisation is for), some known, invalid or new."""
    fleet = tuple(f"+5511{i:08d}" for i in range(3000))
    known = frozenset(fleet[i] for i in range(0, 3000, 97))
    invalid = frozenset(fleet[i] for i in range(5, 3000, 211))
    contacts = [f"+4930{i:08d}" for i in range(50)]
    for number in range(20):
        outcomes = []
        for implementation in (_reference_choose, choose):
            rng = random.Random(f"warmup:{number}:2026-11-23:audience")
            result = implementation(
                20,
                peers=fleet,
                contacts=contacts,
                known=known,
                invalid=invalid,
                last_text={fleet[0]: "hi"},
                max_new_contacts=number % 12,
                texts=("hi", "hello", "hey"),
                rng=rng,
                self_phone=fleet[number * 7],
            )
            outcomes.append((result, rng.getstate()))
        assert outcomes[1] == outcomes[0]


@pytest.mark.parametrize("length", [*range(0, 40), 63, 64, 65, 127, 128, 129, 1000, 1023, 1024, 1025, 4097])
def test_shuffle_is_random_shuffle(length: int) -> None:
    for seed in range(3):
        expected, actual = list(range(length)), list(range(length))
        reference, fast = random.Random(seed), random.Random(seed)
        reference.shuffle(expected)
        shuffle(actual, fast)
        assert actual == expected
        assert fast.getstate() == reference.getstate()


def test_shuffle_leaves_other_generators_to_their_own_shuffle() -> None:
    class Counting(random.Random):
        calls = 0

        def shuffle(self, x: list[object]) -> None:  # type: ignore[override]
            Counting.calls += 1
            super().shuffle(x)

    items = [str(i) for i in range(10)]
    shuffle(items, Counting(1))
    assert Counting.calls == 1
