"""The dispatcher the scheduler is given in a run: it hands work to the dramatiq actors of this process's
broker (Redis in a fleet, the in-process broker when embedded).

It lives with the actors, not in the library: `warmup.services.scheduler.Scheduler` takes any object with
the `Dispatch` methods, so `warmup/` never imports `workers/` (the import contract in pyproject.toml).
"""

from __future__ import annotations

from datetime import date

from workers.actors import ingest_replies, plan_day, plan_days, send_message, send_messages


class ActorDispatch:
    """Hands work to the dramatiq actors of this process's broker (Redis or in-process)."""

    def plan_day(self, number_id: int, local_date: date) -> None:
        plan_day.send(number_id, local_date.isoformat())

    def plan_days(self, number_ids: list[int], local_date: date) -> None:
        plan_days.send(number_ids, local_date.isoformat())

    def send_message(self, message_id: int) -> None:
        send_message.send(message_id)

    def send_message_later(self, message_id: int, wall_seconds: float) -> None:
        send_message.send_with_options(args=(message_id,), delay=max(round(wall_seconds * 1000), 0))

    def send_messages(self, message_ids: list[int], wall_seconds: float) -> None:
        delay = max(round(wall_seconds * 1000), 0)
        send_messages.send_with_options(args=(message_ids,), delay=delay or None)

    def ingest_replies(self, number_id: int) -> None:
        ingest_replies.send(number_id)
