"""Send lateness: how long after its scheduled time a message reaches the API, at a steady 100 sends/s.

1,000 numbers get messages scheduled evenly at 100/s over the run (real-time clock), round-robin, so each
number sends one message every 10 s, at its plan's pace (gap 5s..20s, up to 400 an hour): the product
refuses to send one number faster than its plan (a backlog is re-spread), so the rate comes from many
numbers. A ``warmup scheduler``
and 2 ``dramatiq workers.actors`` processes (8 threads each) send them through Redis and PostgreSQL to
the simulator; lateness = the simulator's ``accepted_at`` - the row's ``scheduled_at`` (both on the one
shared clock). Baseline, same run: the round-trip time of a plain httpx POST to the same simulator
(what the API call alone costs). Target: p99 < 2 s.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa
from common import (
    BENCH_START,
    add_messages,
    emit,
    fleet,
    parser,
    percentile,
    plan_fixed_day,
    spread_times,
    wait_all_terminal,
    wait_workers_ready,
)

from warmup.store import tables
from warmup.testing.harness import FleetHarness, FleetSpec, contact_of, token_of

RATE = 100.0
SPACING = 10.0
"""Seconds between two messages of one number (above the plan's 5 s minimum gap)."""


def request_latency(harness: FleetHarness, count: int) -> list[float]:
    """Seconds per plain httpx POST /messages/text (sequential)."""
    latencies = []
    with httpx.Client(base_url=harness.sim_url, timeout=30) as client:
        for i in range(count):
            started = time.perf_counter()
            client.post(
                "/messages/text",
                json={"to": contact_of(i).lstrip("+"), "body": f"latency probe {i}"},
                headers={"Authorization": f"Bearer {token_of(0)}"},
            ).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument(
        "--worker-timeout",
        type=int,
        default=None,
        help="dramatiq's worker timeout in ms (env dramatiq_worker_timeout): how long a worker's consumer "
        "waits for a message, which also bounds how late it moves a due delayed message (default 1000)",
    )
    args = p.parse_args()
    duration = 15.0 if args.quick else 60.0
    count = int(duration * RATE)
    spec = FleetSpec(
        numbers=int(RATE * SPACING),
        gap="5s..20s",
        max_per_hour=400,
        timezones=("UTC",),
        scale=1.0,
        sim_start=BENCH_START,
        worker_threads=8,
        log_level="WARNING",
        worker_env={"dramatiq_worker_timeout": str(args.worker_timeout)} if args.worker_timeout else {},
    )
    with fleet(spec) as harness:
        local_date = harness.now().date()
        plan_fixed_day(harness, local_date, quota=count)
        probe = request_latency(harness, 300)
        harness.start_worker()
        harness.start_worker()
        wait_workers_ready(harness, 2)
        harness.start_scheduler()
        harness.wait_for_leader()
        first = harness.now() + timedelta(seconds=2)
        add_messages(harness, local_date, spread_times(first, count, RATE), texts=("Hi, how are you?",))
        waited = wait_all_terminal(harness, timeout=duration * 4 + 60)
        accepted = {s["message_id"]: datetime.fromisoformat(s["accepted_at"]) for s in harness.sends()}
        with harness.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    tables.MESSAGES.c.provider_message_id,
                    tables.MESSAGES.c.scheduled_at,
                    tables.MESSAGES.c.claimed_at,
                ).where(tables.MESSAGES.c.state == "sent")
            ).all()
        counts = harness.state_counts()
    late = [(accepted[pmid] - at).total_seconds() for pmid, at, _ in rows if pmid in accepted]
    # where the time goes: waiting to be claimed (scheduler + broker + a free worker thread), then the send
    to_claim = [(claimed - at).total_seconds() for _, at, claimed in rows if claimed is not None]
    p50, p99 = percentile(late, 50), percentile(late, 99)
    result = {
        "quick": args.quick,
        "rate_per_second": RATE,
        "worker_timeout_ms": args.worker_timeout or 1000,
        "messages": count,
        "states": counts,
        "drain_seconds": round(waited, 2),
        "lateness_p50_s": round(p50, 3),
        "lateness_p90_s": round(percentile(late, 90), 3),
        "lateness_p99_s": round(p99, 3),
        "lateness_max_s": round(max(late), 3) if late else None,
        "claim_lateness_p50_s": round(percentile(to_claim, 50), 3),
        "claim_lateness_p99_s": round(percentile(to_claim, 99), 3),
        "baseline_request_p50_s": round(percentile(probe, 50), 4),
        "baseline_request_p99_s": round(percentile(probe, 99), 4),
        "target_p99_s": 2.0,
        "target_met": p99 < 2.0,
    }
    emit(
        "lateness",
        result,
        [
            f"{len(late)} sends at {RATE:.0f}/s: lateness p50 {p50:.3f} s, p99 {p99:.3f} s (target < 2 s)",
            f"baseline plain API call: p50 {result['baseline_request_p50_s']} s, "
            f"p99 {result['baseline_request_p99_s']} s",
        ],
    )


if __name__ == "__main__":
    main()
