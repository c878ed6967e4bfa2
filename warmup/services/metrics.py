"""Prometheus metrics: counters the runtime increments, and gauges read from the database at scrape time.

Two kinds, because a fleet runs many processes:

* Event counters (`SENDS`, `READINGS`, `METER_FAILURES`, `PLANNING_FAILURES`, `PAUSES`, `INBOUND`,
  `WEBHOOK_REQUESTS`, `SEND_LAG`) live in the process that counts them; each process that sends or
  receives serves its own `/metrics`.
* Fleet gauges (`StoreCollector`) are computed from the database on every scrape, so any one process
  (the webhook app, `warmup metrics`) shows the whole fleet truthfully: quota and slots used per number,
  state, the last reading's factors, and the queue lag (how late the oldest due message is).

Everything is registered on `REGISTRY` (not prometheus' global one), so tests and embedded runs can build
apps freely without duplicate-registration errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from warmup.core.localtime import local_date_of
from warmup.store import days, numbers, queue, readings
from warmup.store.db import Engine
from warmup.store.models import NumberStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry(auto_describe=True)

SENDS = Counter(
    "warmup_sends_total",
    "Send attempts by outcome (ok, retry, skip_recipient, fail, throttle, stop_number, unknown, or a "
    "claim refusal: paused, quota_reached, day_over)",
    ["outcome"],
    registry=REGISTRY,
)
READINGS = Counter(
    "warmup_readings_total",
    "Risk readings taken, by source (whapi, simulator, local, ...)",
    ["source"],
    registry=REGISTRY,
)
METER_FAILURES = Counter(
    "warmup_meter_failures_total",
    "Failed reads of a provider's risk meter, by provider (whapi, simulator, cloud_api) and status: "
    "no_access (401/402/403), 4xx, 5xx, network (no answer), bad_answer (a 2xx that is not a reading), "
    "no_client (not asked: no token, a bad setting or our own error)",
    ["provider", "status"],
    registry=REGISTRY,
)
PLANNING_FAILURES = Counter(
    "warmup_planning_failures_total",
    "Numbers whose day could not be planned (the others of their batch were), by stage: decide (the "
    "plan, its files or the decision failed) or store (the database refused the day)",
    ["stage"],
    registry=REGISTRY,
)
PAUSES = Counter(
    "warmup_pauses_total",
    "Numbers paused, by who paused them (cli, chat, worker, decide)",
    ["actor"],
    registry=REGISTRY,
)
INBOUND = Counter(
    "warmup_inbound_total", "Inbound events stored, by kind (message, status)", ["kind"], registry=REGISTRY
)
LEADERSHIP = Counter(
    "warmup_leadership_changes_total",
    "Scheduler leadership changes of this process: acquired, or lost (taken over, expired, or the lock's "
    "Redis unreachable for longer than the lock's TTL)",
    ["event"],
    registry=REGISTRY,
)
DEAD_THREADS = Counter(
    "warmup_dead_threads_total",
    "Internal threads of a worker process found dead (the process then exits to be restarted), by kind: "
    "consumer (a queue's consumer, delayed messages included) or worker",
    ["kind"],
    registry=REGISTRY,
)
WEBHOOK_REQUESTS = Counter(
    "warmup_webhook_requests_total",
    "Webhook requests by provider and HTTP status",
    ["provider", "status"],
    registry=REGISTRY,
)
SEND_LAG = Histogram(
    "warmup_send_lag_seconds",
    "Simulated seconds between a message's scheduled time and its claim",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)


def record_send(outcome: str, lag_seconds: float | None = None) -> None:
    """Count one send outcome (and how late the claim was), for the send worker to call."""
    SENDS.labels(outcome=outcome).inc()
    if lag_seconds is not None:
        SEND_LAG.observe(max(lag_seconds, 0.0))


class StoreCollector(Collector):
    """Fleet gauges from the database at scrape time (a failing database yields `warmup_store_up 0`)."""

    def __init__(self, engine: Engine, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine = engine
        self.now = now

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("warmup_store_up", "1 when the database answered this scrape")
        try:
            families = self._families(self.now())
        except Exception:  # a scrape must never fail because the database is away
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _families(self, now: datetime) -> list[Metric]:
        quota = GaugeMetricFamily("warmup_quota", "Today's quota per number (local day)", labels=["phone"])
        used = GaugeMetricFamily("warmup_quota_used", "Quota slots used today per number", labels=["phone"])
        state = GaugeMetricFamily(
            "warmup_number_state", "1 for the number's current state", labels=["phone", "state"]
        )
        plan_day = GaugeMetricFamily("warmup_plan_day", "Ramp position per number", labels=["phone"])
        factor = GaugeMetricFamily(
            "warmup_reading_factor", "Last risk reading per factor (1..3)", labels=["phone", "factor"]
        )
        for number in numbers.list_numbers(self.engine):
            if number.id is None:
                continue
            for value in NumberStatus:
                state.add_metric([number.phone, value.value], 1.0 if number.state == value else 0.0)
            if number.state == NumberStatus.RETIRED:
                continue
            plan_day.add_metric([number.phone], float(number.plan_day))
            day = days.get_day_plan(self.engine, number.id, local_date_of(now, number.timezone))
            if day is not None:
                quota.add_metric([number.phone], float(day.quota))
                used.add_metric([number.phone], float(day.used))
            reading = readings.latest_reading(self.engine, number.id)
            if reading is not None:
                for name in ("overall", "lifetime", "response_rate", "contacts"):
                    factor.add_metric([number.phone, name], float(reading.factor(name)))
        lag = GaugeMetricFamily(
            "warmup_queue_lag_seconds", "How late the oldest due, unsent message is (0 when none)"
        )
        lag.add_metric([], self._queue_lag(now))
        return [quota, used, state, plan_day, factor, lag]

    def _queue_lag(self, now: datetime) -> float:
        oldest = queue.oldest_due(self.engine, now)
        if oldest is None:
            return 0.0
        return max((now - oldest).total_seconds(), 0.0)


def exposition(engine: Engine | None = None, now: Callable[[], datetime] | None = None) -> bytes:
    """The text exposition of this process's counters plus, with `engine`, the fleet gauges."""
    if engine is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Forward())
    registry.register(StoreCollector(engine, now) if now is not None else StoreCollector(engine))
    return generate_latest(registry)


class _Forward(Collector):
    """The process counters, re-exposed inside a per-scrape registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
