"""The actors: thin wrappers that take row ids and ISO dates, load rows and call the library.

Delivery is at least once (a redelivered or duplicated message is normal): every actor is idempotent
and the DATABASE guarantees "never twice" (unique day plans, atomic claims), never the broker.

Importing this module binds the actors to the broker of this process: the one ``setup_broker`` set,
or, in a ``dramatiq workers.actors`` worker process, the Redis broker from ``WARMUP_REDIS_URL``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import dramatiq

from warmup.services.planning import plan_number_day, plan_number_days
from warmup.services.replies import ingest_replies as ingest
from warmup.services.runtime import get_runtime
from warmup.services.sending import send_batch, send_one
from workers.broker import current_broker

QUEUE = "warmup"
_OPTIONS: dict[str, Any] = {
    "queue_name": QUEUE,
    "max_retries": 3,
    "min_backoff": 500,
    "max_backoff": 10_000,
    "time_limit": 120_000,
}

ACTORS: list[dramatiq.Actor[Any, Any]] = []


def bind(broker: dramatiq.Broker) -> None:
    """Re-declare every actor on ``broker`` (a new embedded run, or a switch from embedded to Redis)."""
    for actor in ACTORS:
        actor.broker = broker
        broker.declare_actor(actor)


# The broker must exist before the first @dramatiq.actor below runs: actors bind at decoration.
_broker = current_broker()


@dramatiq.actor(broker=_broker, **_OPTIONS)
def plan_day(number_id: int, local_date: str) -> None:
    """Plan one number's local day (idempotent: a second run for the same day changes nothing)."""
    plan_number_day(get_runtime(), number_id, date.fromisoformat(local_date))


@dramatiq.actor(broker=_broker, **_OPTIONS)
def plan_days(number_ids: list[int], local_date: str) -> None:
    """Plan a batch of numbers' same local day (idempotent: days already planned are skipped)."""
    plan_number_days(get_runtime(), [int(n) for n in number_ids], date.fromisoformat(local_date))


@dramatiq.actor(broker=_broker, **_OPTIONS)
def send_message(message_id: int) -> None:
    """Claim, send and record one outbound message (a claim already taken makes this a no-op)."""
    runtime = get_runtime()
    send_one(
        runtime.engine,
        message_id,
        runtime.worker_id,
        runtime.clock,
        runtime.provider_for,
        plans=runtime.plans,
        requeue=_send_later,
        hand_over=_send_later,
    )


@dramatiq.actor(broker=_broker, **_OPTIONS)
def send_messages(message_ids: list[int]) -> None:
    """Claim, send and record messages that fell due together, one claim and one record for the lot
    (messages claimed or finished already are skipped, so a redelivery is harmless)."""

    runtime = get_runtime()
    send_batch(
        runtime.engine,
        [int(m) for m in message_ids],
        runtime.worker_id,
        runtime.clock,
        runtime.provider_for,
        plans=runtime.plans,
        requeue=_send_later,
        hand_over=_send_later,
    )


def _send_later(message_id: int, wall_seconds: float) -> None:
    """Enqueue a send after a delay in wall time (a retry, a message delivered too early, or a number's
    next overdue message once its send in flight ended)."""
    send_message.send_with_options(args=(message_id,), delay=max(int(wall_seconds * 1000), 0))


@dramatiq.actor(broker=_broker, **_OPTIONS)
def ingest_replies(number_id: int) -> None:
    """Poll the provider for replies and delivery statuses of one number and store them once."""
    ingest(get_runtime(), number_id)


ACTORS.extend([plan_day, plan_days, send_message, send_messages, ingest_replies])
