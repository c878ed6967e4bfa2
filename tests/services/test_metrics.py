"""Prometheus metrics: process counters and fleet gauges read from a real store at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from warmup.core.domain import Action, Decision, Reading
from warmup.core.localtime import local_date_of
from warmup.services import metrics
from warmup.store import claims, days, history, numbers, pauses, readings
from warmup.store.db import make_engine
from warmup.store.sends import PlannedSend

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: bytes, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_counters_count_in_process() -> None:
    before = value(metrics.exposition(), "warmup_sends_total", outcome="retry") or 0.0
    metrics.record_send("retry", lag_seconds=42.0)
    metrics.record_send("retry")
    text = metrics.exposition()
    assert value(text, "warmup_sends_total", outcome="retry") == before + 2
    assert (value(text, "warmup_send_lag_seconds_bucket", le="60.0") or 0) >= 1


def test_fleet_gauges_come_from_the_database(engine: Engine) -> None:
    phone = "+5511999990001"
    number_id = numbers.add_number(
        engine,
        phone=phone,
        provider="whapi",
        token_ref="TOK",
        plan_name="p",
        plan_path="/p.yaml",
        timezone="America/Sao_Paulo",
        now=NOW,
    )
    day = local_date_of(NOW, "America/Sao_Paulo")
    sends = [PlannedSend("+5511977770001", "hi", NOW - timedelta(seconds=s)) for s in (90, 30)]
    days.plan_day(engine, number_id, Decision(day, 3, 4, Action.ADVANCE, 5, 5, 5), sends, now=NOW)
    (first, _) = history.list_messages(engine, number_id, day)
    assert claims.claim(engine, first.id or 0, "w", NOW).claimed
    readings.save_reading(engine, number_id, day, Reading(2, 3, 1, 2, NOW, "whapi"))

    text = metrics.exposition(engine, lambda: NOW)
    assert value(text, "warmup_store_up") == 1.0
    assert value(text, "warmup_quota", phone=phone) == 5.0
    assert value(text, "warmup_quota_used", phone=phone) == 1.0
    assert value(text, "warmup_plan_day", phone=phone) == 3.0
    assert value(text, "warmup_number_state", phone=phone, state="active") == 1.0
    assert value(text, "warmup_number_state", phone=phone, state="paused") == 0.0
    assert value(text, "warmup_reading_factor", phone=phone, factor="response_rate") == 1.0
    assert value(text, "warmup_queue_lag_seconds") == 30.0  # the oldest still-unsent due message

    pauses.pause_numbers(engine, reason="r", actor="t", now=NOW, phones=[phone])
    text = metrics.exposition(engine, lambda: NOW)
    assert value(text, "warmup_number_state", phone=phone, state="paused") == 1.0
    assert value(text, "warmup_queue_lag_seconds") == 0.0  # paused: its messages were skipped


def test_a_missing_database_reports_down_instead_of_failing(tmp_path: Path) -> None:
    broken = make_engine(f"sqlite:///{tmp_path}/nothing.db")
    try:
        text = metrics.exposition(broken, lambda: NOW)
    finally:
        broken.dispose()
    assert value(text, "warmup_store_up") == 0.0
    assert value(text, "warmup_quota", phone="+1") is None
