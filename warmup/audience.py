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
    choices = [text for text in pool if text != last]
    if not choices:
        return None
    return rng.choice(choices)


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
        excluded = invalid | seen  # once per group: per candidate it made a large fleet quadratic
        candidates = [
            phone for phone in dict.fromkeys(group) if phone not in excluded and phone != self_phone
        ]
        rng.shuffle(candidates)
        # recipients already in conversation first: they cost no new-contact budget
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
