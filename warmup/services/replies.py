"""Poll a number's provider for incoming replies and delivery statuses, and store each event once.

Replies feed the local risk meter (response rate) and mark recipients as engaged; statuses mark
messages delivered (`history.day_outcome.delivered`). Statuses normally come by webhook; a provider that
can also list them (`list_statuses`, e.g. Whapi's own messages with their `status`) is asked too, so
embedded mode without a webhook still sees deliveries. Storing is idempotent
(`store.inbound.add_inbound_events` ignores an event it already has), so polling overlapping periods, or
two workers polling at once, is harmless. A NEWLY stored message may be an admin's chat command
(`warmup.services.chat_commands.process_inbound`): it runs once, when stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from warmup.providers.base import Inbound, ProviderError
from warmup.services import metrics, reconcile
from warmup.services.chat_commands import process_inbound
from warmup.services.runtime import Runtime
from warmup.store import inbound
from warmup.store.db import Engine

log = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=5)
"""Poll from a little before the newest stored event: events can arrive out of order."""

FIRST_LOOKBACK = timedelta(days=1)


def poll_state(
    engine: Engine, number_id: int, now: datetime, lookback: timedelta
) -> tuple[datetime, datetime | None]:
    """Where the next poll starts (the newest stored event minus an overlap, or a day back) and the
    claim time of the oldest `unknown` send to confirm (`reconcile.pending`), read together
    (`warmup.store.inbound.poll_marks`)."""
    newest, oldest_unknown = inbound.poll_marks(engine, number_id, now - lookback)
    since = now - FIRST_LOOKBACK if newest is None else min(newest - OVERLAP, now)
    return since, oldest_unknown


def ingest_replies(runtime: Runtime, number_id: int) -> int:
    """Fetch and store the number's new inbound events; how many were new (0 when the provider fails)."""
    now = runtime.clock.now()
    # a claim becomes unknown only `stale_after` after it was taken: look back well past that
    lookback = max(reconcile.LOOKBACK, 2 * runtime.bounds.stale_after)
    try:
        provider = runtime.provider_for(number_id)  # built on first use from the number's row
    except LookupError:  # no such number (any more)
        return 0
    except Exception as exc:  # no token: sending will auto-pause the number and say why
        log.warning("number %s: replies not polled: %s", number_id, type(exc).__name__)
        return 0
    since, oldest_unknown = poll_state(runtime.engine, number_id, now, lookback)
    try:
        events = list(provider.list_inbound(since))
        statuses = getattr(provider, "list_statuses", None)
        if callable(statuses):
            events.extend(statuses(since))
    except ProviderError as exc:
        log.info("number %s: replies not polled: %s", number_id, exc.reason)
        return 0
    except Exception as exc:  # a bad URL: sending will auto-pause the number and say why
        log.warning("number %s: replies not polled: %s", number_id, type(exc).__name__)
        return 0
    stored, new_messages = store_events(runtime.engine, number_id, events)
    for event in new_messages:
        _run_chat_command(runtime, number_id, event)
    if oldest_unknown is not None:
        _confirm_unknown(runtime, number_id, provider, oldest_unknown, now, lookback)
    return stored


def _confirm_unknown(
    runtime: Runtime, number_id: int, provider: object, oldest: datetime, now: datetime, lookback: timedelta
) -> None:
    """Ask a provider that lists our own messages (`list_own`) about the number's `unknown` sends, the
    oldest claimed at ``oldest`` (`warmup.services.reconcile`); a failure leaves them unknown until the
    next poll."""
    list_own = getattr(provider, "list_own", None)
    if not callable(list_own):
        return
    try:
        own = list_own(oldest - reconcile.CLOCK_SLACK)
    except Exception as exc:  # ProviderError or a transport problem: try again at the next poll
        log.info("number %s: unknown sends not checked: %s", number_id, type(exc).__name__)
        return
    confirmed = reconcile.confirm_unknown(runtime.engine, number_id, own, now, lookback)
    if confirmed:
        log.info(
            "number %s: %s unknown sends confirmed sent by the provider's list", number_id, len(confirmed)
        )


def store_events(engine: Engine, number_id: int, events: list[Inbound]) -> tuple[int, list[Inbound]]:
    """Store each event once; (how many were new, the new incoming messages). Polling and the webhook app
    both store through here (`store_batches` for a body about several numbers); only a NEW message may
    carry a chat command (it runs once)."""
    return store_batches(engine, [(number_id, events)])


def store_batches(
    engine: Engine, batches: Sequence[tuple[int, Sequence[Inbound]]]
) -> tuple[int, list[Inbound]]:
    """`store_events` of several numbers' events (one webhook body) in ONE write transaction.

    All or nothing (`warmup.store.inbound.add_inbound_events`): when any event cannot be stored
    (`InvalidWrite`) or the database fails, nothing is, and the caller answers an error; a redelivery
    then finds every event new, so the chat command of a message runs once, after the one commit that
    stored it. Storing part of a batch instead lost commands: the stored message was skipped by the
    redelivery, and its command had never run. One transaction is also what a big batch costs (7,000
    events were 7,000 transactions).

    Our own sends echoed back (a webhook) may confirm `unknown` sends first; that is idempotent, so a
    batch refused afterwards and redelivered confirms nothing twice.
    """
    check_batches(batches)  # a batch the store would refuse changes nothing, not even by its echoes
    rows: list[inbound.InboundEvent] = []
    sources: list[Inbound] = []
    for number_id, events in batches:
        events = [e for e in events if not (e.kind == "message" and e.from_me)]
        # polls overlap (statuses look back an hour): the events stored already are found in one read,
        # and a poll that brings nothing new costs no write transaction
        known = inbound.stored_already(
            engine, number_id, [e.provider_message_id for e in events if e.provider_message_id]
        )
        for event in events:
            if (event.kind, event.provider_message_id, event.status or "") in known:
                continue
            sources.append(event)
            rows.append(_row(number_id, event))
    for number_id, events in batches:
        echoes = [e for e in events if e.kind == "message" and e.from_me]
        if echoes:  # our own sends echoed back (a webhook): each may confirm an `unknown` send
            reconcile.confirm_unknown(engine, number_id, echoes, max(e.timestamp for e in echoes))
    if not rows:
        return 0, []
    new = [sources[at] for at in inbound.add_inbound_events(engine, rows)]
    for event in new:
        metrics.INBOUND.labels(kind=event.kind).inc()
    return len(new), [event for event in new if event.kind == "message"]


def check_batches(batches: Sequence[tuple[int, Sequence[Inbound]]]) -> None:
    """`InvalidWrite` when `store_batches` would refuse these events (checked without the database):
    a caller with other writes to make first (the webhook app's account events) checks before them."""
    for number_id, events in batches:
        for event in events:
            if not (event.kind == "message" and event.from_me):
                inbound.check_event(_row(number_id, event))


def _row(number_id: int, event: Inbound) -> inbound.InboundEvent:
    return inbound.InboundEvent(
        number_id,
        event.kind,
        event.provider_message_id,
        event.timestamp,
        chat_phone=event.chat_phone,
        from_me=event.from_me,
        text=event.text,
        status=event.status,
        ref_message_id=event.ref_message_id,
    )


def _run_chat_command(runtime: Runtime, number_id: int, event: Inbound) -> None:
    """An admin's `/pause`, `/status`... arriving by polling (the webhook app does the same on push)."""
    try:
        process_inbound(runtime.engine, number_id, event, runtime.clock.now(), runtime.provider_for)
    except Exception:  # one bad command must not stop the rest of the poll from being stored
        log.exception("number %s: chat command in %s failed", number_id, event.provider_message_id)
