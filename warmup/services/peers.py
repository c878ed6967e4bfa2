"""Peer replies: a message to a fleet number may make that peer answer, as a planned send of the PEER's
number on its own local day (its quota binds at the claim), placed inside its windows and pacing.

Also the send time a pacing check reads from a message row (`holds_time`, `send_time`), which the
re-spread of a resumed day (`warmup.services.upkeep`) reads too.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from warmup.core.localtime import local_date_of, window_spans
from warmup.core.pacing import due_at, place_reply, span_end
from warmup.core.plan.model import Plan
from warmup.services.texts import texts_of
from warmup.store import audit, claims, days, history, inbound, numbers, sends
from warmup.store.db import Engine
from warmup.store.models import MessageKind, MessageState, NumberStatus, OutboundMessage, RecipientKind

log = logging.getLogger(__name__)

PlanFor = Callable[[str], Plan]
"""Loads a number's plan by its path (`Runtime.plans`, a cache that re-reads an edited file)."""


def holds_time(message: OutboundMessage) -> bool:
    """A message whose send time the pacing must respect: it went out (or may have), or still will."""
    if message.state in (MessageState.PLANNED, MessageState.QUEUED):
        return True
    return message.claimed_at is not None and message.state != MessageState.SKIPPED


def send_time(message: OutboundMessage) -> datetime:
    """When the message went out (its claim), or when it is due if it has not yet."""
    if message.state in (MessageState.PLANNED, MessageState.QUEUED) or message.claimed_at is None:
        return due_at(message.scheduled_at, message.not_before)
    return message.claimed_at


def schedule_peer_reply(
    engine: Engine, message: claims.ClaimedMessage, now: datetime, plans: PlanFor | None
) -> int | None:
    """If the recipient is an active number of the fleet, maybe plan its reply; the reply's id.

    Probability and delay come from the peer's plan (``audience.peers``), falling back to the
    sender's; the draw is seeded by the message id, so a redelivered send decides the same way. The
    reply is a message of the PEER's number on the peer's local day: its quota binds at claim time.

    It is placed like any planned send of the peer (`place_reply`): at the first instant at or after
    now + delay that lies inside the peer's windows of its CURRENT local day, at least ``gap.low`` from
    the peer's other sends of that day and within its ``max_per_hour``. When nothing fits today, there
    is no reply (logged, with a `peer_reply_skipped` audit row): a late-night reply would be the very
    out-of-hours send the plan forbids.

    Replies win over openers: on a peer day already full, the store skips the peer's latest pending
    opener to make room (`sends.add_sends`); with no opener left to give way there is no reply.
    """
    if plans is None or message.kind == MessageKind.PEER_REPLY:
        return None  # replies are not answered, or a conversation would never end
    if message.recipient_is_number is False:
        return None  # the claim found no fleet number with that phone: skip the lookup
    peer = numbers.get_number(engine, phone=message.recipient)
    if peer is None or peer.id is None or peer.state != NumberStatus.ACTIVE:
        return None
    try:
        peer_plan = plans(peer.plan_path)
        settings = peer_plan.audience.peers
        if settings is None:
            sender = numbers.get_number(engine, message.number_id)
            settings = plans(sender.plan_path).audience.peers if sender is not None else None
    except Exception:
        log.warning("peer %s (%s): plan could not be loaded, no reply", peer.id, peer.phone)
        return None
    if settings is None:
        return None
    rng = random.Random(f"warmup:peer-reply:{message.id}")
    if rng.random() >= settings.reply_probability:
        return None
    low, high = settings.reply_delay.low.total_seconds(), settings.reply_delay.high.total_seconds()
    earliest = now + timedelta(seconds=rng.uniform(low, high))
    local_date = local_date_of(now, peer.timezone)
    if days.get_day_plan(engine, peer.id, local_date) is None:
        return None  # the peer's day is not planned (yet): no reply rather than an unplanned send
    spans = window_spans(local_date, peer_plan, peer.timezone)
    taken = [send_time(m) for m in history.list_messages(engine, peer.id, local_date) if holds_time(m)]
    pacing = peer_plan.pacing
    at = place_reply(earliest, spans, taken, max(pacing.gap.low, timedelta(seconds=1)), pacing.max_per_hour)
    if at is None:
        why = "no time left in the peer's send windows today that keeps its pacing"
        log.info("message %s: no reply from peer %s (%s): %s", message.id, peer.id, peer.phone, why)
        audit.audit(
            engine,
            "worker",
            "peer_reply_skipped",
            peer.id,
            {"in_reply_to": message.id, "local_date": local_date.isoformat(), "reason": why},
            now,
        )
        return None

    recipient = next((r for r in inbound.list_recipients(engine, peer.id) if r.phone == message.phone), None)
    choices = [t for t in texts_of(peer_plan, "reply") if recipient is None or t != recipient.last_text]
    if not choices:
        return None
    inbound.upsert_recipient(engine, peer.id, message.phone, RecipientKind.PEER.value, now=now)
    send = sends.PlannedSend(
        recipient=message.phone,
        text=rng.choice(choices),
        scheduled_at=at,
        kind=MessageKind.PEER_REPLY.value,
        typing_seconds=round(
            rng.uniform(
                peer_plan.pacing.typing.low.total_seconds(), peer_plan.pacing.typing.high.total_seconds()
            ),
            3,
        ),
        in_reply_to=message.id,
        window_end=span_end(spans, at),
    )
    ids = sends.add_sends(engine, peer.id, local_date, [send], now=now)
    if not ids:  # the store wrote the `peer_reply_skipped` audit row in the same transaction
        log.info(
            "message %s: no reply from peer %s (%s): its day is full and no opener could give way",
            message.id,
            peer.id,
            peer.phone,
        )
    return ids[0] if ids else None
