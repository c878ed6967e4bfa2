"""Who gets today's messages, and with which words.

Fleet peers come first (they reply, which builds the response rate), then the plan's contacts. A
*new contact* is a recipient this number never messaged; at most ``max_new_contacts`` of them are
added per day (the plan's pacing limit, or a risk rule's tighter override carried by the decision).
A recipient never gets the same text twice in a row. ``choose`` is pure: the caller passes what the
store knows and a seeded ``random.Random``, so a planned day replays exactly.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass


@dataclass(frozen=True)
class Pick:
    """One planned message before it has a time: to whom, what, and whether the recipient is a peer."""

    to: str
    text: str
    peer: bool


@dataclass(frozen=True)
class AudienceResult:
    picks: list[Pick]
    new_contacts: int  # recipients in ``picks`` this number had never messaged
    shortfall_reason: str | None  # why fewer than the quota could be addressed, if so


def pick_text(pool: Sequence[str], last: str | None, rng: random.Random) -> str | None:
    """A text from the pool that differs from ``last``; None when the pool offers no other text."""
    if last is None or last not in pool:  # the same draw as from the filtered list, without building it
        return rng.choice(pool) if pool else None
    choices = [text for text in pool if text != last]
    if not choices:
        return None
    return rng.choice(choices)


_Distinct = tuple[tuple[str, ...], tuple[str, ...], frozenset[str]]
_recent: tuple[_Distinct, ...] = ()
_RECENT = 4


def _distinct(group: Sequence[str]) -> tuple[tuple[str, ...], frozenset[str]]:
    """``group`` without repeats (first occurrence kept), and as a set.

    The last few tuples seen and their answers are kept: batch planning hands the same peer tuple and
    the same contacts tuple over for every number of a fleet (the tuple of slots is replaced
    atomically: safe across threads).
    """
    global _recent
    recent = _recent
    for seen, unique, members in recent:
        if seen is group:
            return unique, members
    unique = tuple(dict.fromkeys(group))
    members = frozenset(unique)
    if isinstance(group, tuple):
        _recent = ((group, unique, members), *recent[: _RECENT - 1])
    return unique, members


KNOWN_SPARE = 16
"""How many recipients already in conversation are ordered beyond the quota: each can be passed over
only when its one possible text would repeat (a one-text pool), so a few spare are plenty."""


def _order(
    group: Sequence[str],
    excluded: Set[str],
    known: Set[str],
    self_phone: str | None,
    room: int,
    need: int,
    rng: random.Random,
) -> tuple[list[str], list[str], int]:
    """From ``group`` (minus ``excluded`` and ``self_phone``): recipients already in conversation in a
    random order (``need`` of them at most), up to ``room`` new ones in a random order, and how many
    new ones there were to choose from.

    Drawn without shuffling the group: a peer list is as long as the fleet and one is ordered for
    every day planned, so a whole shuffle made planning a fleet O(N^2) (10,000 numbers: 0.55 ms of
    shuffling each, most of the planning time). The known ones come from ``known`` (the number's own
    recipients, sorted so the draw does not depend on set order), the new ones by drawing positions
    in the group and redrawing the excluded or already drawn ones: O(room) draws while most of the
    group is new, a filtered list and `random.Random.sample` when it is not.
    """
    unique, members = _distinct(group)
    skip = {phone for phone in excluded if phone in members}
    if self_phone is not None and self_phone in members:
        skip.add(self_phone)
    old = sorted(phone for phone in known if phone in members and phone not in skip)
    old = rng.sample(old, min(len(old), max(need, 0)))
    skip.update(phone for phone in known if phone in members)
    fresh = len(unique) - len(skip)
    take = min(max(room, 0), fresh)
    if take <= 0:
        return old, [], fresh
    if take * 4 >= fresh or len(skip) * 2 >= len(unique):
        return old, rng.sample([phone for phone in unique if phone not in skip], take), fresh
    new: list[str] = []
    drawn: set[int] = set()
    size = len(unique)
    while len(new) < take:
        index = rng.randrange(size)
        if index in drawn:
            continue
        drawn.add(index)
        if unique[index] not in skip:
            new.append(unique[index])
    return old, new, fresh


def choose(
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
    """Address up to ``quota`` messages: peers first, then contacts, new ones within the day's budget.

    Recipients are cycled when there are fewer of them than the quota; a recipient whose only
    possible text would repeat its last one is passed over for that slot.
    """
    if quota <= 0:
        return AudienceResult([], 0, None)
    budget = max(max_new_contacts, 0)
    chosen: list[tuple[str, bool]] = []
    seen: set[str] = set()
    new_count = 0
    budget_hit = False
    for group, is_peer in ((peers, True), (contacts, False)):
        # recipients already in conversation first: they cost no new-contact budget; then new ones
        # within what is left of the budget
        room = budget - new_count
        first, fresh, available = _order(
            group, invalid | seen, known, self_phone, room, quota + KNOWN_SPARE - len(chosen), rng
        )
        if available > room:
            budget_hit = True
        new_count += len(fresh)
        for phone in (*first, *fresh):
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
