"""Send one outbound message: claim -> provider -> record, with each provider outcome mapped to a state.

The claim (`store.claims.claim`) re-checks pause, due time, local day and quota atomically at the last
moment and takes a quota slot; the HTTP call happens with NO transaction open; the outcome is
recorded in its own short transaction. What each `OutcomeAction` does (docs/design.md, "Provider error
actions"):

* ok -> sent; a message to a fleet peer may schedule the peer's reply (a message of the PEER's number,
  counted against the peer's quota, placed inside the peer's windows and pacing: `place_reply`);
* retry -> back to the queue with ``not_before`` = now + Retry-After (or a backoff), only if that is still
  inside today's send windows; otherwise skipped with the reason;
* skip_recipient -> failed, recipient marked invalid; fail -> failed;
* throttle -> failed (or sent, if the provider accepted it), today's remaining quota halved, risk event
  in the audit log;
* stop_number -> skipped (nothing went out) and the number auto-paused with the reason in the audit log;
* unknown -> unknown: counted against the quota, never re-sent.

Pacing and windows are claim rules (`warmup.store.claims`): a message that comes due before its
number's pace allows waits for its turn, one whose window closed before its turn moves to the day's
next window, and only when the day's last window has closed is it skipped ("windows ended"). A retry
moves to the window its new time falls in (or the next one), or is skipped when none is left today.

When the store refuses to record an outcome (the message is no longer `sending`: e.g. a slow worker
whose claim was already recovered as `unknown`), the `SendOutcome` says so and nothing is re-enqueued.

Every outcome and claim refusal is counted in `warmup.services.metrics` (`record_send`), with the claim's lag
behind the scheduled time for claimed messages.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from warmup.clock import Clock
from warmup.core.domain import SkipCause
from warmup.core.localtime import local_date_of, window_spans
from warmup.core.pacing import in_windows, next_window
from warmup.core.plan.model import Plan
from warmup.providers.base import OutcomeAction, Provider, SendResult
from warmup.providers.cloud_api import CloudApiProvider
from warmup.secrets import clip
from warmup.services import metrics
from warmup.services.peers import PlanFor, schedule_peer_reply
from warmup.services.runtime import ProviderPool
from warmup.services.service_window import NotSent, send_cloud
from warmup.store import audit, days, history, numbers, pauses, queue
from warmup.store import claims as store_claims
from warmup.store.db import Engine
from warmup.store.outcomes import (
    Sent,
    give_back,
    record_failed,
    record_sent,
    record_sent_many,
    record_skipped,
    record_unknown,
    release_for_retry,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
"""A message whose provider keeps saying "retry" is skipped after this many attempts."""

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(minutes=30)
THROTTLE_KEEP = 0.5
"""A provider throttle keeps this share of the day's remaining quota."""

ProviderFor = Callable[[int], Provider]
Requeue = Callable[[int, float], None]
"""Enqueue a message again after a delay in WALL seconds (the actor's delayed send)."""


@dataclass(frozen=True)
class SendOutcome:
    """What `send_one` did: the claim status, or the provider action and the state recorded."""

    message_id: int
    status: str  # a ClaimStatus value when not claimed, else the OutcomeAction value
    state: str | None = None  # the message's new state, when this call changed it
    reason: str | None = None
    reply_id: int | None = None  # the peer reply scheduled by this send


RETRY_AFTER_CAP = timedelta(days=1)
"""A longer Retry-After (or an infinite one) is as good as a day: the retry falls outside today."""


def retry_delay(result: SendResult, attempts: int) -> timedelta:
    """The server's Retry-After when given (capped at a day), else an exponential backoff from 30 s
    capped at 30 min. A huge or infinite Retry-After must not crash the send after its claim."""
    wait = result.retry_after
    if wait is not None and math.isfinite(wait) and wait > 0:
        return timedelta(seconds=min(wait, RETRY_AFTER_CAP.total_seconds()))
    if wait is not None and math.isinf(wait) and wait > 0:
        return RETRY_AFTER_CAP
    backoff: timedelta = min(RETRY_BASE * (2 ** max(attempts - 1, 0)), RETRY_CAP)
    return backoff


REFUSALS = frozenset(
    {
        store_claims.ClaimStatus.PAUSED,
        store_claims.ClaimStatus.QUOTA_REACHED,
        store_claims.ClaimStatus.DAY_OVER,
        store_claims.ClaimStatus.WINDOW_CLOSED,
        store_claims.ClaimStatus.PORTFOLIO_LIMIT,
    }
)
"""Claim statuses that turned the message `skipped` (counted as send outcomes in the metrics)."""


def send_one(
    engine: Engine,
    message_id: int,
    worker_id: str,
    clock: Clock,
    provider_for: ProviderFor,
    *,
    plans: PlanFor | None = None,
    requeue: Requeue | None = None,
    hand_over: Requeue | None = None,
) -> SendOutcome:
    """Claim, send and record one message; safe to call any number of times for the same id.

    ``plans`` loads a plan by path (retry windows, peer replies); ``requeue`` re-enqueues a message
    with a wall-clock delay (retries, early deliveries). Without them, retries are confined to the
    local day and a lost re-enqueue is found again by the scheduler's `requeue_lost`. ``hand_over``
    (the same kind of callable) enqueues the number's next overdue message once this send has ended
    (`_hand_over`); without it that message waits for its own delivery or the scheduler.
    """
    claimed_at = clock.now()
    claim = store_claims.claim(engine, message_id, worker_id, claimed_at)
    if not claim.claimed or claim.message is None:
        return _not_claimed(engine, message_id, claim, clock, requeue)
    message = claim.message
    outcome = _send_claimed(engine, message, clock, provider_for, plans, requeue)
    metrics.record_send(outcome.status, (claimed_at - message.scheduled_at).total_seconds())
    if outcome.state is not None:  # the send ended (recorded): the number's pace is free
        _hand_over(engine, [message.number_id], clock, hand_over)
    return outcome


def _hand_over(engine: Engine, number_ids: Sequence[int], clock: Clock, requeue: Requeue | None) -> None:
    """The sends of these numbers have ended: hand each one's next due message over for the moment
    its pace allows (`queue.next_turn`), so a number that fell behind catches up one gap at a time,
    not at the next guess or scheduler tick."""
    if requeue is None:
        return
    now = clock.now()
    for number_id in number_ids:
        turn = queue.next_turn(engine, number_id, now)
        if turn is not None:
            requeue(turn.message_id, max((turn.at - now).total_seconds(), 0.0) / clock.scale)


def _not_claimed(
    engine: Engine, message_id: int, claim: store_claims.ClaimResult, clock: Clock, requeue: Requeue | None
) -> SendOutcome:
    """A claim that did not give us the message: an early delivery is enqueued again for its time (one
    waiting for its number's send in flight is not: that send's end hands it over)."""
    if claim.status is store_claims.ClaimStatus.NOT_DUE and requeue is not None and claim.due_at is not None:
        requeue(message_id, max((claim.due_at - clock.now()).total_seconds(), 0.0) / clock.scale)
    if claim.status in REFUSALS:
        metrics.record_send(claim.status.value)
    return SendOutcome(message_id, claim.status.value, reason=claim.reason)


BATCH_BUDGET_WALL = 2.0
"""Wall seconds a batch may spend sending after its claim; the claims it has not used by then go back
to the queue (slot and attempt returned) and are enqueued again. The claim checked each message's
window and due time; a run of slow provider answers must not send the batch's last messages long after
that check (outside their window, or at a time the pacing did not plan). A healthy batch takes a few
milliseconds per message."""


def send_batch(
    engine: Engine,
    message_ids: Sequence[int],
    worker_id: str,
    clock: Clock,
    provider_for: ProviderFor,
    *,
    plans: PlanFor | None = None,
    requeue: Requeue | None = None,
    hand_over: Requeue | None = None,
    budget_wall: float = BATCH_BUDGET_WALL,
) -> list[SendOutcome]:
    """`send_one` for messages that fall due together, with one claim and one record for the lot
    (`warmup.store.claims`); the outcome of each id, in order. Safe to call any number of times for
    the same ids: a message claimed or finished already is not claimable again.

    Each claimed message is sent in turn; an accepted send is recorded with the others at the end, any
    other provider answer at once through the single path (`_record`), so retries, throttles and stops
    behave exactly as for one message.
    """
    ids = list(dict.fromkeys(message_ids))
    claimed_at = clock.now()
    started = time.monotonic()
    claims = store_claims.claim_many(engine, ids, worker_id, claimed_at)
    outcomes: dict[int, SendOutcome] = {}
    accepted: list[tuple[store_claims.ClaimedMessage, SendResult]] = []
    for message_id in ids:
        claim = claims[message_id]
        message = claim.message
        if not claim.claimed or message is None:
            outcomes[message_id] = _not_claimed(engine, message_id, claim, clock, requeue)
            continue
        lag = (claimed_at - message.scheduled_at).total_seconds()
        if time.monotonic() - started > budget_wall:
            outcomes[message_id] = _give_back(engine, message, clock, requeue)
            continue
        result = _call(engine, message, clock, provider_for, plans)
        if isinstance(result, SendResult) and result.action is OutcomeAction.OK:
            accepted.append((message, result))
            continue
        outcome = (
            result
            if isinstance(result, SendOutcome)
            else _record(engine, message, result, clock, plans, requeue)
        )
        outcomes[message_id] = outcome
        metrics.record_send(outcome.status, lag)
    if accepted:
        now = clock.now()
        recorded = record_sent_many(engine, [Sent(m.id, r.provider_message_id) for m, r in accepted], now)
        for message, result in accepted:
            action = OutcomeAction.OK.value
            if message.id in recorded:
                reply_id = schedule_peer_reply(engine, message, now, plans)
                outcomes[message.id] = SendOutcome(message.id, action, "sent", None, reply_id)
            else:
                outcomes[message.id] = _refused(engine, message.id, action, result.reason or action)
            metrics.record_send(action, (claimed_at - message.scheduled_at).total_seconds())
    ended = [
        claim.message.number_id
        for message_id, claim in claims.items()
        if claim.message is not None
        and outcomes[message_id].state is not None
        and outcomes[message_id].status != "given_back"
    ]
    _hand_over(engine, ended, clock, hand_over)
    return [outcomes[message_id] for message_id in ids]


def _give_back(
    engine: Engine, message: store_claims.ClaimedMessage, clock: Clock, requeue: Requeue | None
) -> SendOutcome:
    """Return a claim a long-running batch did not get to; it is enqueued again at once."""
    reason = "its batch ran out of time before sending it: queued again"
    if not give_back(engine, message.id, reason, clock.now()):
        return _refused(engine, message.id, "given_back", reason)
    if requeue is not None:
        requeue(message.id, 0.0)
    return SendOutcome(message.id, "given_back", "queued", reason)


def _send_claimed(
    engine: Engine,
    message: store_claims.ClaimedMessage,
    clock: Clock,
    provider_for: ProviderFor,
    plans: PlanFor | None,
    requeue: Requeue | None,
) -> SendOutcome:
    result = _call(engine, message, clock, provider_for, plans)
    if isinstance(result, SendOutcome):
        return result
    return _record(engine, message, result, clock, plans, requeue)


def _call(
    engine: Engine,
    message: store_claims.ClaimedMessage,
    clock: Clock,
    provider_for: ProviderFor,
    plans: PlanFor | None,
) -> SendResult | SendOutcome:
    """The provider's answer to a claimed message, or the outcome already recorded when there was none
    (no provider for the number: skipped and the number paused; the call crashed: unknown)."""
    message_id = message.id
    try:
        if isinstance(provider_for, ProviderPool):  # built from the claimed row: no query
            provider = provider_for.for_row(message.number_id, message)
        else:
            provider = provider_for(message.number_id)
    except Exception as exc:  # no token in the environment, bad URL: an admin must fix the number
        reason = clip(f"cannot reach the provider: {type(exc).__name__}: {exc}", 300)
        action = OutcomeAction.STOP_NUMBER.value
        if not record_skipped(engine, message_id, reason, clock.now(), SkipCause.PROVIDER):
            return _refused(engine, message_id, action, reason)
        _auto_pause(engine, message.number_id, reason, clock.now())
        return SendOutcome(message_id, action, "skipped", reason)
    try:
        if isinstance(provider, CloudApiProvider):
            sent = send_cloud(engine, message, provider, clock, plans)
            if isinstance(sent, NotSent):
                recorded = record_skipped(engine, message_id, sent.reason, clock.now(), sent.cause)
                return _outcome(engine, message_id, recorded, sent.cause.value, "skipped", sent.reason)
            return sent
        return provider.send_text(message.recipient, message.text, typing_seconds=message.typing_seconds)
    except Exception as exc:  # a bug below us: the request may have gone out, so never re-send
        reason = f"send crashed after the request may have left: {type(exc).__name__}"
        log.exception("message %s: provider raised", message_id)
        recorded = record_unknown(engine, message_id, reason, clock.now())
        return _outcome(engine, message_id, recorded, OutcomeAction.UNKNOWN.value, "unknown", reason)


def _outcome(
    engine: Engine, message_id: int, recorded: bool, action: str, state: str, reason: str
) -> SendOutcome:
    """What a send came to when the store `recorded` it as `state`; `_refused` when it would not."""
    if not recorded:
        return _refused(engine, message_id, action, reason)
    return SendOutcome(message_id, action, state, reason)


def _refused(engine: Engine, message_id: int, action: str, reason: str) -> SendOutcome:
    """The store would not record ``action``: the message left `sending` meanwhile (its claim was
    recovered as `unknown`, typically). Report where it stands; nothing is re-enqueued."""
    row = history.get_message(engine, message_id)
    state = row.state if row is not None else None
    why = f"the store refused to record {action} ({reason}): the message is {state or 'gone'} already"
    log.warning("message %s: %s", message_id, why)
    return SendOutcome(message_id, action, None, why[:500])


def _record(
    engine: Engine,
    message: store_claims.ClaimedMessage,
    result: SendResult,
    clock: Clock,
    plans: PlanFor | None,
    requeue: Requeue | None,
) -> SendOutcome:
    now = clock.now()
    action = result.action
    reason = result.reason or action.value
    mid = message.id
    if action is OutcomeAction.OK:
        if not record_sent(engine, mid, result.provider_message_id, now):
            return _refused(engine, mid, action.value, reason)
        reply_id = schedule_peer_reply(engine, message, now, plans)
        return SendOutcome(mid, action.value, "sent", None, reply_id)
    if action is OutcomeAction.RETRY:
        return _retry(engine, message, result, clock, plans, requeue)
    if action is OutcomeAction.SKIP_RECIPIENT:
        recorded = record_failed(engine, mid, reason, now, recipient_invalid=True)
        return _outcome(engine, mid, recorded, action.value, "failed", reason)
    if action is OutcomeAction.FAIL:
        return _outcome(engine, mid, record_failed(engine, mid, reason, now), action.value, "failed", reason)
    if action is OutcomeAction.THROTTLE:
        if result.provider_message_id:
            record_sent(engine, mid, result.provider_message_id, now)
            state = "sent"
        else:
            record_failed(engine, mid, reason, now)
            state = "failed"
        _throttle(engine, message, reason, now)
        return SendOutcome(mid, action.value, state, reason)
    if action is OutcomeAction.STOP_NUMBER:
        why = f"number stopped by the provider: {reason}"
        recorded = record_skipped(engine, mid, why, now, SkipCause.PROVIDER)
        _auto_pause(engine, message.number_id, reason, now)  # the number must stop either way
        return _outcome(engine, mid, recorded, action.value, "skipped", reason)
    recorded = record_unknown(engine, mid, reason, now)
    return _outcome(engine, mid, recorded, OutcomeAction.UNKNOWN.value, "unknown", reason)


def _retry(
    engine: Engine,
    message: store_claims.ClaimedMessage,
    result: SendResult,
    clock: Clock,
    plans: PlanFor | None,
    requeue: Requeue | None,
) -> SendOutcome:
    now = clock.now()
    reason = result.reason or "retry"
    action = OutcomeAction.RETRY.value
    if message.attempts >= MAX_ATTEMPTS:
        why = f"gave up after {message.attempts} attempts: {reason}"
        return _outcome(
            engine, message.id, record_skipped(engine, message.id, why, now), action, "skipped", why
        )
    not_before = now + retry_delay(result, message.attempts)
    plan = _plan_of(engine, message.number_id, plans)
    window_end: datetime | None = None
    if plan is not None and local_date_of(not_before, message.timezone) == message.local_date:
        window = next_window(window_spans(message.local_date, plan, message.timezone), not_before)
        if window is not None:  # in a window, or waiting for the next one of the day
            not_before, window_end = max(not_before, window[0]), window[1]
    if not in_windows(not_before, message.local_date, plan, message.timezone) or (
        plan is not None and window_end is None
    ):
        why = f"retry at {not_before.isoformat()} would fall after today's last send window: {reason}"
        return _outcome(
            engine, message.id, record_skipped(engine, message.id, why, now), action, "skipped", why
        )
    if not release_for_retry(engine, message.id, not_before, reason, now, window_end=window_end):
        return _refused(engine, message.id, action, reason)
    if requeue is not None:
        requeue(message.id, (not_before - now).total_seconds() / clock.scale)
    return SendOutcome(message.id, OutcomeAction.RETRY.value, "queued", reason)


def _throttle(engine: Engine, message: store_claims.ClaimedMessage, reason: str, now: datetime) -> None:
    day = days.get_day_plan(engine, message.number_id, message.local_date)
    if day is None:
        return
    remaining = max(day.quota - day.used, 0)
    new_quota = day.used + int(remaining * THROTTLE_KEEP)
    days.cut_quota(
        engine, message.number_id, message.local_date, new_quota, f"provider throttle: {reason}", now=now
    )
    audit.audit(
        engine,
        "worker",
        "risk_event",
        message.number_id,
        {
            "kind": "throttle",
            "reason": reason,
            "local_date": message.local_date.isoformat(),
            "quota": new_quota,
        },
        now,
    )


def _auto_pause(engine: Engine, number_id: int, reason: str, now: datetime) -> None:
    paused = pauses.pause_numbers(
        engine, reason=f"auto-paused: {reason}"[:500], actor="worker", now=now, number_ids=[number_id]
    )
    if paused:
        metrics.PAUSES.labels(actor="worker").inc()
        log.warning("number %s auto-paused: %s", number_id, reason)


def _plan_of(engine: Engine, number_id: int, plans: PlanFor | None) -> Plan | None:
    if plans is None:
        return None
    number = numbers.get_number(engine, number_id)
    if number is None:
        return None
    try:
        return plans(number.plan_path)
    except Exception:  # an edited, now broken plan must not turn a send into a crash
        log.warning("number %s: plan %s could not be loaded", number_id, number.plan_path)
        return None
