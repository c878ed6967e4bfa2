"""Send path throughput: messages/s end to end vs a plain httpx loop against the same simulator.

End to end = scheduler (due query, mark queued, enqueue) -> Redis broker -> ``dramatiq workers.actors``
(claim in PostgreSQL, httpx POST to the simulator, record the outcome) until every message is terminal;
measured with 1 and then 2 worker processes (8 threads each). Baseline, same run, same simulator, same
bodies: one plain ``httpx.Client`` posting ``/messages/text`` in a loop. Target: >= 50% of the plain loop.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta

import httpx
from common import (
    BENCH_START,
    add_messages,
    emit,
    fleet,
    parser,
    plan_fixed_day,
    wait_all_terminal,
    wait_workers_ready,
)

from warmup.testing.harness import FleetHarness, FleetSpec, contact_of, token_of
from warmup.testing.invariants import check_invariants

TEXTS = ("Hello there, how are you today?", "Hey! Long time no see", "Good morning, all well?")


def plain_loop(harness: FleetHarness, count: int, ids: set[str]) -> float:
    """Messages/s of one httpx client posting the same bodies sequentially (the baseline); the provider
    ids it got go into ``ids`` (they are not the fleet's sends)."""
    numbers = len(harness.number_ids)
    with httpx.Client(base_url=harness.sim_url, timeout=30) as client:
        started = time.perf_counter()
        for i in range(count):
            response = client.post(
                "/messages/text",
                json={"to": contact_of(i % 997).lstrip("+"), "body": TEXTS[i % len(TEXTS)] + f" #{i}"},
                headers={"Authorization": f"Bearer {token_of(i % numbers)}"},
            )
            response.raise_for_status()
            ids.add(response.json()["message"]["id"])
        return count / (time.perf_counter() - started)


def end_to_end(harness: FleetHarness, count: int, timeout: float) -> dict[str, float]:
    """Insert ``count`` messages due now and time the fleet until all are terminal."""
    before = len(harness.sends())
    local_date = harness.now().date()
    add_messages(harness, local_date, [harness.now() - timedelta(seconds=1)] * count, texts=TEXTS)
    waited = wait_all_terminal(harness, timeout)
    batch = harness.sends()[before:]
    accepted = [datetime.fromisoformat(s["accepted_at"]) for s in batch]
    span = (max(accepted) - min(accepted)).total_seconds() if len(accepted) > 1 else math.nan
    return {
        "messages": count,
        "sent": len(batch),
        "seconds": round(waited, 3),
        "per_second": round(len(batch) / waited, 1),  # from the insert of the rows to the last terminal
        "steady_per_second": round((len(batch) - 1) / span, 1),  # first to last send at the simulator
    }


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    count = 300 if args.quick else 2000
    spec = FleetSpec(
        numbers=20,
        timezones=("UTC",),
        scale=1.0,
        sim_start=BENCH_START,
        worker_threads=8,
        log_level="WARNING",
    )
    with fleet(spec) as harness:
        plan_fixed_day(harness, harness.now().date(), quota=3 * count)
        plain_ids: set[str] = set()
        plain = plain_loop(harness, count, plain_ids)
        harness.start_worker()
        wait_workers_ready(harness, 1)
        harness.start_scheduler()
        time.sleep(2.0)  # let the scheduler boot and take the lead before the clock starts
        one = end_to_end(harness, count, timeout=300)
        harness.start_worker()
        wait_workers_ready(harness, 2)
        two = end_to_end(harness, count, timeout=300)
        plain_again = plain_loop(harness, count, plain_ids)
        fleet_sends = [s for s in harness.sends() if s["message_id"] not in plain_ids]
        report = check_invariants(harness.engine, fleet_sends, harness.now())
    baseline = (plain + plain_again) / 2
    result = {
        "quick": args.quick,
        "plain_httpx_per_second": round(baseline, 1),
        "plain_httpx_runs": [round(plain, 1), round(plain_again, 1)],
        "one_worker": one,
        "two_workers": two,
        "ratio_one_worker": round(one["per_second"] / baseline, 3),
        "ratio_two_workers": round(two["per_second"] / baseline, 3),
        "target_ratio": 0.5,
        "invariants_ok": report.ok,
    }
    emit(
        "send_path",
        result,
        [
            f"plain httpx loop: {baseline:.0f} msg/s",
            f"end to end, 1 worker:  {one['per_second']:.0f} msg/s ({result['ratio_one_worker']:.0%}),"
            f" steady {one['steady_per_second']:.0f} msg/s",
            f"end to end, 2 workers: {two['per_second']:.0f} msg/s ({result['ratio_two_workers']:.0%}),"
            f" steady {two['steady_per_second']:.0f} msg/s",
            f"invariants ok: {report.ok}",
        ],
    )


if __name__ == "__main__":
    main()
