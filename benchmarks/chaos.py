"""Chaos: several accelerated days of a real fleet while workers, the leader and Redis die at random.

2 ``dramatiq workers.actors`` processes and 2 ``warmup scheduler`` processes on PostgreSQL and a private
Redis; the simulator injects 429s, 5xx, timeouts (504 after a hold) and truncated answers to sends it
performed. At random moments (seeded) a worker is SIGKILLed while one of its sends is in flight (and a
new one started), the leading scheduler is SIGKILLed (and a new copy started), and Redis is killed and
restarted empty. Afterwards the simulator's send log is checked against the store
(`warmup.testing.invariants`). The baseline is the invariant itself: stuck, over-quota number-days,
duplicates and sent-but-not-in-the-log must all be 0; the exit status is 1 otherwise.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import timedelta
from typing import Any

from common import emit, fleet, parser

from warmup.testing.harness import FleetHarness, FleetSpec

FAULTS: dict[str, float | int | str] = {
    "rate_limit": 0.05,
    "server_error": 0.04,
    "timeout": 0.02,
    "truncated": 0.01,
    "hold_seconds": 1.0,
    "retry_after": 120,
    "latency": 0.5,
    "latency_ms": "30-150",
}


def plan_events(rng: random.Random, days: int, workers: int, leaders: int) -> list[tuple[float, str]]:
    """(fraction of the run, event) in time order; every crash happens in the first 80% of the run."""
    events = [(rng.uniform(0.08, 0.8), "kill_worker") for _ in range(workers)]
    events += [(rng.uniform(0.1, 0.8), "kill_leader") for _ in range(leaders)]
    events.append((rng.uniform(0.3, 0.7), "restart_redis"))
    return sorted(events)


def perform(harness: FleetHarness, event: str, rng: random.Random) -> dict[str, Any]:
    at = harness.now().isoformat()
    if event == "kill_worker":
        victim = rng.choice(harness.alive_workers())
        in_flight = harness.kill_worker(victim, mid_send=True, timeout=5)
        harness.start_worker()
        return {"at": at, "event": event, "process": victim.name, "claim_in_flight": in_flight}
    if event == "kill_leader":
        leader = harness.kill_leader()
        harness.start_scheduler()
        successor = harness.wait_for_leader(timeout=30, other_than=leader)
        return {"at": at, "event": event, "process": leader.name, "successor": successor.name}
    harness.restart_redis(down_for=1.0)
    return {"at": at, "event": event}


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--days", type=int, default=None)
    args = p.parse_args()
    days = args.days or (2 if args.quick else 6)
    rng = random.Random(args.seed)
    spec = FleetSpec(
        numbers=4 if args.quick else 6,
        volume="20",
        gap="2m..6m",
        reply_probability=0.3,
        scale=8640.0 if args.quick else 4320.0,
        seed=args.seed,
        faults=FAULTS,
        worker_threads=4,
        log_level="WARNING",
    )
    wall_started = time.monotonic()
    events = plan_events(rng, days, workers=1 if args.quick else 3, leaders=1 if args.quick else 2)
    done: list[dict[str, Any]] = []
    with fleet(spec) as harness:
        start = harness.now()
        run = timedelta(days=days)
        for _ in range(2):
            harness.start_scheduler()
            harness.start_worker()
        harness.wait_for_leader(timeout=60)
        for fraction, event in events:
            harness.wait_until(start + run * fraction)
            done.append(perform(harness, event, rng))
        harness.wait_until(start + run + timedelta(hours=2))
        report = harness.wait_settled(timeout=120)
        unexpected = [p.name for p in [*harness.workers, *harness.schedulers] if not p.alive and not p.killed]
        state_counts = harness.state_counts()
    result = {
        "quick": args.quick,
        "seed": args.seed,
        "days": days,
        "numbers": spec.numbers,
        "wall_seconds": round(time.monotonic() - wall_started, 1),
        "planned": report.planned,
        "sent": report.sent,
        "failed": report.failed,
        "skipped": report.skipped,
        "unknown": report.unknown,
        "in_flight_today": report.in_flight,
        "stuck": report.stuck,
        "over_quota_number_days": len(report.over_quota),
        "slot_errors": len(report.slot_errors),
        "duplicates": report.duplicates,
        "sent_not_in_log": report.missing_in_log,
        "log_sends": report.log_sends,
        "log_sends_explained_by_unknown": report.explained_by_unknown,
        "states": state_counts,
        "events": done,
        "unexpected_exits": unexpected,
        "details": {
            "over_quota": report.over_quota[:20],
            "slot_errors": report.slot_errors[:20],
            "duplicates": report.duplicate_details[:20],
        },
        "ok": report.ok and not unexpected,
    }
    emit(
        "chaos",
        result,
        [
            f"{days} days, {spec.numbers} numbers, {len(done)} crashes: planned {report.planned}, sent "
            f"{report.sent}, failed {report.failed}, skipped {report.skipped}, unknown {report.unknown}",
            f"stuck {report.stuck}, over-quota number-days {len(report.over_quota)}, quota-slot errors "
            f"{len(report.slot_errors)}, duplicates "
            f"{report.duplicates}, sent-not-in-log {report.missing_in_log}",
            "OK" if result["ok"] else "FAILED",
        ],
    )
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
