"""Unanswered plan_day requests back off (found by benchmarks/planning.py): re-sent every
`Timings.replan_wall` forever, a fleet that plans slower than N days per replan_wall flooded the broker
(3,000 numbers, 2 workers: the Redis queue grew 5.9k -> 13.5k messages in 30 s).
`Scheduler._plan_started_days` now doubles the wait after each re-request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from warmup.clock import ManualClock
from warmup.services.runtime import ProviderPool, Runtime, Timings
from warmup.services.scheduler import Scheduler
from warmup.store import numbers

REPLAN = 0.1


@dataclass
class Recorder:
    plans: list[tuple[int, date]] = field(default_factory=list)

    def plan_day(self, number_id: int, local_date: date) -> None:
        self.plans.append((number_id, local_date))

    def send_message(self, message_id: int) -> None:
        return None

    def ingest_replies(self, number_id: int) -> None:
        return None


def test_unanswered_plan_requests_back_off(engine: Engine) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    numbers.add_number(
        engine,
        phone="+5511999990001",
        provider="simulator",
        token_ref="SIM_TOKEN_0",
        plan_name="p",
        plan_path="/nonexistent/plan.yaml",
        timezone="UTC",
        base_url="http://127.0.0.1:9",
        now=clock.now(),
    )
    timings = Timings(
        tick_wall=0.01,
        stale_after=timedelta(minutes=10),
        lost_after=timedelta(minutes=5),
        ingest_every=timedelta(hours=1),
        replan_wall=REPLAN,
        lock_ttl_wall=1.0,
    )
    runtime = Runtime(engine=engine, clock=clock, provider_for=ProviderPool(engine), timings=timings)
    recorder = Recorder()
    scheduler = Scheduler(runtime, dispatch=recorder, poll_replies=False)
    started = time.monotonic()
    while time.monotonic() - started < 16 * REPLAN:  # no worker ever answers
        scheduler.tick(clock.now())
        time.sleep(REPLAN / 5)
    # one request, then re-requests backing off (after 1, 2, 4, 8 x replan_wall): at most 5 in
    # 16 x replan_wall; without the backoff the first tick after each replan_wall re-sent it (about 15 times)
    assert recorder.plans, "the scheduler never asked for the day to be planned"
    assert len(recorder.plans) <= 5, recorder.plans
