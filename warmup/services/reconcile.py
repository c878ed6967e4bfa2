"""Late confirmation of `unknown` sends: find them in the provider's list of the number's own messages.

A send is recorded `unknown` when we cannot tell whether it went out: a read timeout, a 502/504, a
broken answer, or a worker killed between the provider call and the record (a killed batch leaves all
of its claims so). `unknown` is never re-sent and counts against the quota, which keeps the invariants,
but the message's provider id is missing, so its delivery and read statuses cannot be matched and the
day's outcome undercounts. The provider knows: Whapi lists the channel's own messages with their
recipient, text and id. A message found there with the unknown row's number, recipient and text, sent
no earlier than a little before the claim, and whose id no other row holds, proves the send went out:
the row becomes `sent` with that id (`outcomes.record_sent` accepts unknown -> sent).

Nothing found means nothing is changed: the request may still have died on the way, or the list may
lag. A row is never re-sent on that evidence (invariant 2). Each provider message confirms at most one
row, earliest claim first, so two unknown rows of the same text to the same recipient need two
messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from warmup.providers.base import Inbound
from warmup.store import outcomes
from warmup.store.db import Engine

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=2)
"""Unknown rows claimed this long ago at most are still looked for (callers pass more when a claim
takes longer than that to be recovered as unknown, as in an accelerated run)."""

CLOCK_SLACK = timedelta(minutes=2)
"""The provider's timestamp of a send may precede our claim time by this much (clock skew)."""


def pending(engine: Engine, number_id: int, now: datetime, lookback: timedelta = LOOKBACK) -> datetime | None:
    """The claim time of the number's oldest unconfirmed `unknown` row within `LOOKBACK`, or None when
    there is none (then nothing needs asking)."""
    return outcomes.oldest_unknown(engine, number_id, now - lookback)


def confirm_unknown(
    engine: Engine, number_id: int, own: Sequence[Inbound], now: datetime, lookback: timedelta = LOOKBACK
) -> list[int]:
    """Turn the number's `unknown` rows that ``own`` (the provider's list of our sent messages) proves
    sent into `sent` with the provider's id; the ids of the rows confirmed.

    The store reads and writes under the number's row lock (`warmup.store.outcomes.confirm_unknown`),
    so two confirmations of one number at once (a poll and a webhook) cannot give the same provider id
    to two rows. A message of the same recipient and text still `sending` makes the match ambiguous
    (its worker may be about to record that very id): those rows wait for the next try.
    """
    sent = [m for m in own if m.from_me and m.kind == "message" and m.chat_phone and m.text is not None]
    if not sent:
        return []

    def match(evidence: outcomes.Evidence) -> list[tuple[int, str]]:
        candidates = sorted(
            (m for m in sent if m.provider_message_id not in evidence.taken),
            key=lambda m: (m.timestamp, m.provider_message_id),
        )
        pairs = []
        for row in evidence.unknown:
            if (row.recipient, row.text) in evidence.in_flight:
                continue
            found = next(
                (
                    m
                    for m in candidates
                    if m.chat_phone == row.recipient
                    and m.text == row.text
                    and m.timestamp >= row.claimed_at - CLOCK_SLACK
                ),
                None,
            )
            if found is None:
                continue
            candidates.remove(found)
            pairs.append((row.id, found.provider_message_id))
        return pairs

    ids = [m.provider_message_id for m in sent]
    confirmed = outcomes.confirm_unknown(engine, number_id, now - lookback, ids, match, now)
    for message_id in confirmed:
        log.info("message %s: unknown -> sent, found in the provider's list of our messages", message_id)
    return confirmed
