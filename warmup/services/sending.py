"""Send one outbound message: claim -> provider -> record, with each provider outcome mapped to a state.

The claim (`store.ops.claim`) re-checks pause, due time, local day and quota atomically at the last
moment and takes a quota slot; the HTTP call happens with NO transaction open; the outcome is
recorded in its own short transaction. What each `OutcomeAction` does (DESIGN "provider error actions"):

* ok -> sent; a message to a fleet peer may schedule the peer's reply (a message of the PEER's number,
  counted against the peer's quota, placed inside the peer's windows and pacing: `place_reply`);
* retry -> back to the queue with ``not_before`` = now + Retry-After (or a backoff), only if that is still
  inside today's send windows; otherwise skipped with the reason;
* skip_recipient -> failed, recipient marked invalid; fail -> failed;
* throttle -> failed (or sent, if the provider accepted it), today's remaining quota halved, risk event
  in the audit log;
* stop_number -> skipped (nothing went out) and the number auto-paused with the reason in the audit log;
* unknown -> unknown: counted against the quota, never re-sent.

Windows: every message carries the end of the send window it was planned in (`window_end`); the claim
refuses it from that instant on ("window closed"), so a late dispatch skips a message rather than send
it outside the plan's windows. A retry moves to the window its new time falls in, or is skipped.

When the store refuses to record an outcome (the message is no longer `sending`: e.g. a slow worker
whose claim was already recovered as `unknown`), the `SendOutcome` says so and nothing is re-enqueued.

Every outcome and claim refusal is counted in `warmup.services.metrics` (`record_send`), with the claim's lag
behind the scheduled time for claimed messages.
"""

from __future__ import annotations

import logging
import math
import random
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Engine

from warmup.clock import Clock
from warmup.core.plan.model import Plan
from warmup.core.spread import local_date_of, window_spans
from warmup.providers.base import OutcomeAction, Provider, SendResult
from warmup.services import metrics
from warmup.services.runtime import ProviderPool
from warmup.store import batch, ops
from warmup.store.models import MessageKind, MessageState, NumberStatus, OutboundMessage, RecipientKind

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
"""A message whose provider keeps saying "retry" is skipped after this many attempts."""

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(minutes=30)
THROTTLE_KEEP = 0.5
"""A provider throttle keeps this share of the day's remaining quota."""

ProviderFor = Callable[[int], Provider]
PlanFor = Callable[[str], Plan]
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
        ops.ClaimStatus.PAUSED,
        ops.ClaimStatus.QUOTA_REACHED,
        ops.ClaimStatus.DAY_OVER,
        ops.ClaimStatus.WINDOW_CLOSED,
    }
)
"""Claim statuses that turned the message `skipped` (counted as send outcomes in the metrics)."""


def in_windows(moment: datetime, local_date: date, plan: Plan | None, timezone: str) -> bool:
    """Whether ``moment`` falls inside a send window of ``local_date`` (or inside that day, planless)."""
    if local_date_of(moment, timezone) != local_date:
        return False
    if plan is None:
        return True
    return any(start <= moment < end for start, end in window_spans(local_date, plan, timezone))


def span_end(spans: Sequence[tuple[datetime, datetime]], moment: datetime) -> datetime | None:
    """The end of the half-open span holding ``moment``, or None when it lies in none (``spans`` sorted
    and disjoint, as `window_spans` gives them; found by bisection: planning asks once per message)."""
    at = bisect_right(spans, moment, key=lambda span: span[0]) - 1
    if at >= 0 and moment < spans[at][1]:
        return spans[at][1]
    return None


def holds_time(message: OutboundMessage) -> bool:
    """A message whose send time the pacing must respect: it went out (or may have), or still will."""
    if message.state in (MessageState.PLANNED, MessageState.QUEUED):
        return True
    return message.claimed_at is not None and message.state != MessageState.SKIPPED


def send_time(message: OutboundMessage) -> datetime:
    """When the message went out (its claim), or when it is due if it has not yet."""
    if message.state in (MessageState.PLANNED, MessageState.QUEUED) or message.claimed_at is None:
        return max(message.scheduled_at, message.not_before or message.scheduled_at)
    return message.claimed_at


def place_reply(
    earliest: datetime,
    spans: Sequence[tuple[datetime, datetime]],
    taken: Sequence[datetime],
    gap_low: timedelta,
    max_per_hour: int,
) -> datetime | None:
    """The first instant >= ``earliest`` inside one of ``spans`` that is at least ``gap_low`` away from
    every ``taken`` send and keeps every 60-minute interval at ``max_per_hour`` sends or fewer; None when
    no such instant exists (pure: the peer-reply placement).

    A conflicting candidate moves forward to the next instant that could clear it (a taken send +
    gap_low, or a taken send + 1 h), so the search ends after at most two moves per taken send.
    """
    hour = timedelta(hours=1)
    times = sorted(taken)
    limit = max(max_per_hour, 1)
    for start, end in spans:
        at = max(earliest, start)
        while at < end:
            if any(abs(t - at) < gap_low for t in times) or _crowded(times, at, limit, hour):
                later = [t + gap_low for t in times if t + gap_low > at]
                later += [t + hour for t in times if t + hour > at]
                if not later:
                    break
                at = min(later)
                continue
            return at
    return None


def _crowded(times: list[datetime], at: datetime, limit: int, hour: timedelta) -> bool:
    """Whether adding ``at`` puts ``limit + 1`` sends inside some 60-minute interval."""
    index = bisect_left(times, at)
    for first in range(max(index - limit, 0), index + 1):
        last = first + limit - 1  # the group: times[first..last] plus `at`
        if last >= len(times):
            break
        low, high = min(times[first], at), max(times[last], at)
        if high - low < hour:
            return True
    return False


def send_one(
    engine: Engine,
    message_id: int,
    worker_id: str,
    clock: Clock,
    provider_for: ProviderFor,
    *,
    plans: PlanFor | None = None,
    requeue: Requeue | None = None,
) -> SendOutcome:
    """Claim, send and record one message; safe to call any number of times for the same id.

    ``plans`` loads a plan by path (retry windows, peer replies); ``requeue`` re-enqueues a message
    with a wall-clock delay (retries, early deliveries). Without them, retries are confined to the
    local day and a lost re-enqueue is found again by the scheduler's `requeue_lost`.
    """
    claimed_at = clock.now()
    claim = ops.claim(engine, message_id, worker_id, claimed_at)
    if not claim.claimed or claim.message is None:
        return _not_claimed(engine, message_id, claim, clock, requeue)
    message = claim.message
    outcome = _send_claimed(engine, message, clock, provider_for, plans, requeue)
    metrics.record_send(outcome.status, (claimed_at - message.scheduled_at).total_seconds())
    return outcome


def _not_claimed(
    engine: Engine, message_id: int, claim: ops.ClaimResult, clock: Clock, requeue: Requeue | None
) -> SendOutcome:
    """A claim that did not give us the message: an early delivery is enqueued again for its time."""
    if claim.status is ops.ClaimStatus.NOT_DUE and requeue is not None:
        _requeue_when_due(engine, message_id, clock, requeue)
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
    budget_wall: float = BATCH_BUDGET_WALL,
) -> list[SendOutcome]:
    """`send_one` for messages that fall due together, with one claim and one record for the lot
    (`warmup.store.batch`); the outcome of each id, in order. Safe to call any number of times for
    the same ids: a message claimed or finished already is not claimable again.

    Each claimed message is sent in turn; an accepted send is recorded with the others at the end, any
    other provider answer at once through the single path (`_record`), so retries, throttles and stops
    behave exactly as for one message.
    """
    ids = list(dict.fromkeys(message_ids))
    claimed_at = clock.now()
    started = time.monotonic()
    claims = batch.claim_many(engine, ids, worker_id, claimed_at)
    outcomes: dict[int, SendOutcome] = {}
    accepted: list[tuple[ops.ClaimedMessage, SendResult]] = []
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
        result = _call(engine, message, clock, provider_for)
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
        recorded = batch.record_sent_many(
            engine, [batch.Sent(m.id, r.provider_message_id) for m, r in accepted], now
        )
        for message, result in accepted:
            action = OutcomeAction.OK.value
            if message.id in recorded:
                reply_id = _schedule_peer_reply(engine, message, now, plans)
                outcomes[message.id] = SendOutcome(message.id, action, "sent", None, reply_id)
            else:
                outcomes[message.id] = _refused(engine, message.id, action, result.reason or action)
            metrics.record_send(action, (claimed_at - message.scheduled_at).total_seconds())
    return [outcomes[message_id] for message_id in ids]


def _give_back(
    engine: Engine, message: ops.ClaimedMessage, clock: Clock, requeue: Requeue | None
) -> SendOutcome:
    """Return a claim a long-running batch did not get to; it is enqueued again at once."""
    reason = "its batch ran out of time before sending it: queued again"
    if not batch.give_back(engine, message.id, reason, clock.now()):
        return _refused(engine, message.id, "given_back", reason)
    if requeue is not None:
        requeue(message.id, 0.0)
    return SendOutcome(message.id, "given_back", "queued", reason)


def _send_claimed(
    engine: Engine,
    message: ops.ClaimedMessage,
    clock: Clock,
    provider_for: ProviderFor,
    plans: PlanFor | None,
    requeue: Requeue | None,
) -> SendOutcome:
    result = _call(engine, message, clock, provider_for)
    if isinstance(result, SendOutcome):
        return result
    return _record(engine, message, result, clock, plans, requeue)


def _call(
    engine: Engine, message: ops.ClaimedMessage, clock: Clock, provider_for: ProviderFor
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
        reason = f"cannot reach the provider: {type(exc).__name__}: {exc}"[:300]
        action = OutcomeAction.STOP_NUMBER.value
        if not ops.record_skipped(engine, message_id, reason, clock.now()):
            return _refused(engine, message_id, action, reason)
        _auto_pause(engine, message.number_id, reason, clock.now())
        return SendOutcome(message_id, action, "skipped", reason)
    try:
        return provider.send_text(message.recipient, message.text, typing_seconds=message.typing_seconds)
    except Exception as exc:  # a bug below us: the request may have gone out, so never re-send
        reason = f"send crashed after the request may have left: {type(exc).__name__}"
        log.exception("message %s: provider raised", message_id)
        recorded = ops.record_unknown(engine, message_id, reason, clock.now())
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
    row = ops.get_message(engine, message_id)
    state = row.state if row is not None else None
    why = f"the store refused to record {action} ({reason}): the message is {state or 'gone'} already"
    log.warning("message %s: %s", message_id, why)
    return SendOutcome(message_id, action, None, why[:500])


def _record(
    engine: Engine,
    message: ops.ClaimedMessage,
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
        if not ops.record_sent(engine, mid, result.provider_message_id, now):
            return _refused(engine, mid, action.value, reason)
        reply_id = _schedule_peer_reply(engine, message, now, plans)
        return SendOutcome(mid, action.value, "sent", None, reply_id)
    if action is OutcomeAction.RETRY:
        return _retry(engine, message, result, clock, plans, requeue)
    if action is OutcomeAction.SKIP_RECIPIENT:
        recorded = ops.record_failed(engine, mid, reason, now, recipient_invalid=True)
        return _outcome(engine, mid, recorded, action.value, "failed", reason)
    if action is OutcomeAction.FAIL:
        return _outcome(
            engine, mid, ops.record_failed(engine, mid, reason, now), action.value, "failed", reason
        )
    if action is OutcomeAction.THROTTLE:
        if result.provider_message_id:
            ops.record_sent(engine, mid, result.provider_message_id, now)
            state = "sent"
        else:
            ops.record_failed(engine, mid, reason, now)
            state = "failed"
        _throttle(engine, message, reason, now)
        return SendOutcome(mid, action.value, state, reason)
    if action is OutcomeAction.STOP_NUMBER:
        recorded = ops.record_skipped(engine, mid, f"number stopped by the provider: {reason}", now)
        _auto_pause(engine, message.number_id, reason, now)  # the number must stop either way
        return _outcome(engine, mid, recorded, action.value, "skipped", reason)
    recorded = ops.record_unknown(engine, mid, reason, now)
    return _outcome(engine, mid, recorded, OutcomeAction.UNKNOWN.value, "unknown", reason)


def _retry(
    engine: Engine,
    message: ops.ClaimedMessage,
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
            engine, message.id, ops.record_skipped(engine, message.id, why, now), action, "skipped", why
        )
    not_before = now + retry_delay(result, message.attempts)
    plan = _plan_of(engine, message.number_id, plans)
    window_end: datetime | None = None
    if plan is not None and local_date_of(not_before, message.timezone) == message.local_date:
        window_end = span_end(window_spans(message.local_date, plan, message.timezone), not_before)
    if not in_windows(not_before, message.local_date, plan, message.timezone) or (
        plan is not None and window_end is None
    ):
        why = f"retry at {not_before.isoformat()} would fall outside today's send windows: {reason}"
        return _outcome(
            engine, message.id, ops.record_skipped(engine, message.id, why, now), action, "skipped", why
        )
    if not ops.release_for_retry(engine, message.id, not_before, reason, now, window_end=window_end):
        return _refused(engine, message.id, action, reason)
    if requeue is not None:
        requeue(message.id, (not_before - now).total_seconds() / clock.scale)
    return SendOutcome(message.id, OutcomeAction.RETRY.value, "queued", reason)


def _requeue_when_due(engine: Engine, message_id: int, clock: Clock, requeue: Requeue) -> None:
    """A message delivered before its time (an early delayed delivery): enqueue it again for then."""
    row = ops.get_message(engine, message_id)
    if row is None:
        return
    due = max(row.scheduled_at, row.not_before) if row.not_before is not None else row.scheduled_at
    requeue(message_id, max((due - clock.now()).total_seconds(), 0.0) / clock.scale)


def _throttle(engine: Engine, message: ops.ClaimedMessage, reason: str, now: datetime) -> None:
    day = ops.get_day_plan(engine, message.number_id, message.local_date)
    if day is None:
        return
    remaining = max(day.quota - day.used, 0)
    new_quota = day.used + int(remaining * THROTTLE_KEEP)
    ops.cut_quota(
        engine, message.number_id, message.local_date, new_quota, f"provider throttle: {reason}", now=now
    )
    ops.audit(
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
    paused = ops.pause_numbers(
        engine, reason=f"auto-paused: {reason}"[:500], actor="worker", now=now, number_ids=[number_id]
    )
    if paused:
        metrics.PAUSES.labels(actor="worker").inc()
        log.warning("number %s auto-paused: %s", number_id, reason)


def _plan_of(engine: Engine, number_id: int, plans: PlanFor | None) -> Plan | None:
    if plans is None:
        return None
    number = ops.get_number(engine, number_id)
    if number is None:
        return None
    try:
        return plans(number.plan_path)
    except Exception:  # an edited, now broken plan must not turn a send into a crash
        log.warning("number %s: plan %s could not be loaded", number_id, number.plan_path)
        return None


def _schedule_peer_reply(
    engine: Engine, message: ops.ClaimedMessage, now: datetime, plans: PlanFor | None
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
    opener to make room (`ops.add_sends`); with no opener left to give way there is no reply.
    """
    if plans is None or message.kind == MessageKind.PEER_REPLY:
        return None  # replies are not answered, or a conversation would never end
    if message.recipient_is_number is False:
        return None  # the claim found no fleet number with that phone: skip the lookup
    peer = ops.get_number(engine, phone=message.recipient)
    if peer is None or peer.id is None or peer.state != NumberStatus.ACTIVE:
        return None
    try:
        peer_plan = plans(peer.plan_path)
        settings = peer_plan.audience.peers
        if settings is None:
            sender = ops.get_number(engine, message.number_id)
            settings = plans(sender.plan_path).audience.peers if sender is not None else None
    except Exception:
        log.warning("peer %s: plan could not be loaded, no reply", peer.id)
        return None
    if settings is None:
        return None
    rng = random.Random(f"warmup:peer-reply:{message.id}")
    if rng.random() >= settings.reply_probability:
        return None
    low, high = settings.reply_delay.low.total_seconds(), settings.reply_delay.high.total_seconds()
    earliest = now + timedelta(seconds=rng.uniform(low, high))
    local_date = local_date_of(now, peer.timezone)
    if ops.get_day_plan(engine, peer.id, local_date) is None:
        return None  # the peer's day is not planned (yet): no reply rather than an unplanned send
    spans = window_spans(local_date, peer_plan, peer.timezone)
    taken = [send_time(m) for m in ops.list_messages(engine, peer.id, local_date) if holds_time(m)]
    pacing = peer_plan.pacing
    at = place_reply(earliest, spans, taken, max(pacing.gap.low, timedelta(seconds=1)), pacing.max_per_hour)
    if at is None:
        why = "no time left in the peer's send windows today that keeps its pacing"
        log.info("message %s: no reply from peer %s: %s", message.id, peer.id, why)
        ops.audit(
            engine,
            "worker",
            "peer_reply_skipped",
            peer.id,
            {"in_reply_to": message.id, "local_date": local_date.isoformat(), "reason": why},
            now,
        )
        return None
    from warmup.services.planning import texts_of

    recipient = next((r for r in ops.list_recipients(engine, peer.id) if r.phone == message.phone), None)
    choices = [t for t in texts_of(peer_plan, "reply") if recipient is None or t != recipient.last_text]
    if not choices:
        return None
    ops.upsert_recipient(engine, peer.id, message.phone, RecipientKind.PEER.value, now=now)
    send = ops.PlannedSend(
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
    ids = ops.add_sends(engine, peer.id, local_date, [send], now=now)
    if not ids:  # the store wrote the `peer_reply_skipped` audit row in the same transaction
        log.info(
            "message %s: no reply from peer %s: its day is full and no opener could give way",
            message.id,
            peer.id,
        )
    return ids[0] if ids else None
