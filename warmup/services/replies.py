"""Poll a number's provider for incoming replies and delivery statuses, and store each event once.

Replies feed the local risk meter (response rate) and mark recipients as engaged; statuses mark
messages delivered (`history.day_outcome.delivered`). Statuses normally come by webhook; a provider that
can also list them (`list_statuses`, e.g. Whapi's own messages with their `status`) is asked too, so
embedded mode without a webhook still sees deliveries. Storing is idempotent (`store.inbound.add_inbound`
ignores an event it already has), so polling overlapping periods, or two workers polling at once, is
harmless. A NEWLY stored message may be an admin's chat command
(`warmup.services.chat_commands.process_inbound`): it runs once, when stored.
"""

from __future__ import annotations

import logging
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
    both store through here; only a NEW message may carry a chat command (it runs once)."""
    stored = 0
    new_messages: list[Inbound] = []
    echoes = [e for e in events if e.kind == "message" and e.from_me]
    if echoes:  # our own sends echoed back (a webhook): each may confirm an `unknown` send
        reconcile.confirm_unknown(engine, number_id, echoes, max(e.timestamp for e in echoes))
    events = [e for e in events if not (e.kind == "message" and e.from_me)]
    # polls overlap (statuses look back an hour): the events stored already are found in one read
    known = inbound.stored_already(
        engine, number_id, [e.provider_message_id for e in events if e.provider_message_id]
    )
    for event in events:
        if (event.kind, event.provider_message_id, event.status or "") in known:
            continue  # no write transaction for these
        new = inbound.add_inbound(
            engine,
            number_id,
            kind=event.kind,
            provider_message_id=event.provider_message_id,
            received_at=event.timestamp,
            chat_phone=event.chat_phone,
            from_me=event.from_me,
            text=event.text,
            status=event.status,
            ref_message_id=event.ref_message_id,
        )
        if new:
            stored += 1
            metrics.INBOUND.labels(kind=event.kind).inc()
            if event.kind == "message":
                new_messages.append(event)
    return stored, new_messages


def _run_chat_command(runtime: Runtime, number_id: int, event: Inbound) -> None:
    """An admin's `/pause`, `/status`... arriving by polling (the webhook app does the same on push)."""
    try:
        process_inbound(runtime.engine, number_id, event, runtime.clock.now(), runtime.provider_for)
    except Exception:  # one bad command must not stop the rest of the poll from being stored
        log.exception("number %s: chat command in %s failed", number_id, event.provider_message_id)
