"""Send path throughput: messages/s end to end vs a plain httpx loop against the same simulator.

End to end = scheduler (due query, mark queued, enqueue in batches of messages that fall due together)
-> Redis broker -> ``dramatiq workers.actors`` (claim in PostgreSQL, httpx POST to the simulator,
record the outcome) from the messages' due time until every message is terminal;
measured with 1 and then 2 worker processes (8 threads each). Each number sends ONE message per run
and each run has numbers of its own: the product refuses to send one number's messages back to back
(a backlog is re-spread at the plan's pace), so a fleet's throughput comes from many numbers at once.
Baseline, same run, same simulator, same bodies: one plain ``httpx.Client`` posting ``/messages/text``
in a loop. Target: >= 50% of the plain loop.
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


LEAD = 2.0
"""Wall seconds ahead of their due time the batch is written: inside the scheduler's look-ahead (two
ticks), so the dispatcher hands the messages over for their due time, as it does for planned days."""


def end_to_end(harness: FleetHarness, numbers: list[int], timeout: float) -> dict[str, float]:
    """Insert one message for each of ``numbers``, all due ``LEAD`` s from now, and time the fleet until
    all are terminal.

    The rate counts from the due time (when the dispatcher is to hand them over) to the last terminal
    message; ``from_insert_per_second`` counts from the insert instead (it includes the wait for the
    due time); ``steady_per_second`` is first to last send as the simulator saw them.
    """
    before = len(harness.sends())
    local_date = harness.now().date()
    due = harness.now() + timedelta(seconds=LEAD * harness.spec.scale)
    inserted = time.perf_counter()
    count = len(numbers)
    add_messages(harness, local_date, [due] * count, texts=TEXTS, numbers=numbers)
    due_wall = inserted + (due - harness.now()).total_seconds() / harness.spec.scale
    waited = wait_all_terminal(harness, timeout)
    finished = inserted + waited
    batch = harness.sends()[before:]
    accepted = [datetime.fromisoformat(s["accepted_at"]) for s in batch]
    span = (max(accepted) - min(accepted)).total_seconds() if len(accepted) > 1 else math.nan
    seconds = max(finished - due_wall, 1e-9)
    return {
        "messages": count,
        "sent": len(batch),
        "seconds": round(seconds, 3),
        "per_second": round(len(batch) / seconds, 1),  # from the due time to the last terminal
        "from_insert_per_second": round(len(batch) / waited, 1),
        "steady_per_second": round((len(batch) - 1) / span, 1),  # first to last send at the simulator
    }


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    count = 300 if args.quick else 2000
    spec = FleetSpec(
        numbers=2 * count,  # one message per number and run
        timezones=("UTC",),
        scale=1.0,
        sim_start=BENCH_START,
        worker_threads=8,
        log_level="WARNING",
    )
    with fleet(spec) as harness:
        plan_fixed_day(harness, harness.now().date(), quota=3)
        plain_ids: set[str] = set()
        plain = plain_loop(harness, count, plain_ids)
        harness.start_worker()
        wait_workers_ready(harness, 1)
        harness.start_scheduler()
        time.sleep(2.0)  # let the scheduler boot and take the lead before the clock starts
        one = end_to_end(harness, harness.number_ids[:count], timeout=300)
        harness.start_worker()
        wait_workers_ready(harness, 2)
        two = end_to_end(harness, harness.number_ids[count:], timeout=300)
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
