"""Planning throughput: numbers planned/s and message rows written/s for growing fleets, vs a bulk insert.

For each fleet size: N numbers enrolled in a fresh PostgreSQL database, the simulator serving their
risk meters, 2 ``dramatiq workers.actors`` processes (8 threads each) and one ``warmup scheduler``. The
clock is at noon of every number's local day, so the scheduler asks for N day plans at its first tick;
we time from the leader's first tick until N day plans exist (or the time cap, then the rate so far
is projected). Baseline, same run: the same day-plan and message rows bulk-inserted (one executemany
per table) into copies of the two tables. Targets: >= 50% of the bulk insert row rate; 10,000 numbers
planned in < 10 s.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa
from common import BENCH_START, CpuMeter, emit, fleet, parser, wait_workers_ready

from warmup.store import tables
from warmup.testing.harness import FleetHarness, FleetSpec


def _count(harness: FleetHarness, table: sa.Table) -> int:
    with harness.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def bulk_insert_rate(harness: FleetHarness) -> tuple[int, float]:
    """Rows/s of a plain bulk insert of the day plans and messages the run wrote, into copies."""
    metadata = sa.MetaData()
    copies = []
    with harness.engine.begin() as conn:
        for table in (tables.DAY_PLANS, tables.MESSAGES):
            name = f"bench_copy_{table.name}"
            conn.exec_driver_sql(f'CREATE TABLE "{name}" (LIKE "{table.name}" INCLUDING DEFAULTS)')
            copies.append((table, sa.Table(name, metadata, autoload_with=conn)))
    data: list[tuple[sa.Table, list[dict[str, Any]]]] = []
    with harness.engine.connect() as conn:
        for table, copy in copies:
            rows = [dict(row._mapping) for row in conn.execute(sa.select(table))]
            data.append((copy, rows))
    total = sum(len(rows) for _, rows in data)
    started = time.perf_counter()
    with harness.engine.begin() as conn:
        for copy, rows in data:
            if rows:
                conn.execute(sa.insert(copy), rows)
    return total, total / (time.perf_counter() - started)


def wait_first_tick(harness: FleetHarness, timeout: float = 60.0) -> None:
    harness.wait_for_leader(timeout)


def run_size(numbers: int, cap: float, threads: int = 8) -> dict[str, Any]:
    load_before = os.getloadavg()[0]  # other work on the machine skews the figures
    spec = FleetSpec(
        numbers=numbers,
        timezones=("UTC", "Europe/Berlin", "America/Sao_Paulo"),
        scale=1.0,
        sim_start=BENCH_START,
        worker_threads=threads,
        log_level="WARNING",
        volume="20",
    )
    with fleet(spec) as harness:
        harness.start_worker()
        harness.start_worker()
        wait_workers_ready(harness, 2)
        harness.start_scheduler()
        wait_first_tick(harness)
        cpu = CpuMeter(harness)
        cpu.start()
        started = time.perf_counter()
        planned = 0
        while time.perf_counter() - started < cap:
            planned = _count(harness, tables.DAY_PLANS)
            if planned >= numbers:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        cpu_seconds = cpu.stop()
        for proc in harness.schedulers + harness.workers:
            proc.stop(timeout=10)
        planned = _count(harness, tables.DAY_PLANS)
        messages = _count(harness, tables.MESSAGES)
        readings = _count(harness, tables.READINGS)
        bulk_rows, bulk_rate = bulk_insert_rate(harness)
    rate = planned / elapsed
    row_rate = (planned + messages) / elapsed
    return {
        "numbers": numbers,
        "planned": planned,
        "complete": planned >= numbers,
        "seconds": round(elapsed, 2),
        "numbers_per_second": round(rate, 1),
        "projected_seconds_all": round(numbers / rate, 1) if rate else None,
        "message_rows": messages,
        "rows_per_second": round(row_rate, 1),  # day plans + messages
        "readings_written": readings,  # > planned means days planned twice (wasted work)
        "bulk_insert_rows": bulk_rows,
        "bulk_insert_rows_per_second": round(bulk_rate, 1),
        "ratio_to_bulk_insert": round(row_rate / bulk_rate, 4) if bulk_rate else None,
        "load_average_1m_before": round(load_before, 2),
        "cpu_seconds": cpu_seconds,  # while planning, by part (2 cores: at most 2 x seconds in all)
    }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--cap", type=float, default=None, help="wall seconds at most per fleet size")
    p.add_argument("--threads", type=int, default=8, help="threads per worker process (dramatiq --threads)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="fleet sizes (default 100 1000 10000)")
    args = p.parse_args()
    sizes = tuple(args.sizes) if args.sizes else (100, 300) if args.quick else (100, 1000, 10000)
    cap = args.cap or (30.0 if args.quick else 150.0)
    results = [run_size(n, cap, args.threads) for n in sizes]
    first, last = results[0], results[-1]
    growth = first["numbers_per_second"] / last["numbers_per_second"] if last["numbers_per_second"] else None
    result = {
        "quick": args.quick,
        "cap_seconds": cap,
        "worker_processes": 2,
        "threads_per_worker": args.threads,
        "sizes": results,
        "slowdown_per_number_smallest_to_largest": round(growth, 2) if growth else None,
        "target_ratio": 0.5,
        "target_seconds_10000": 10.0,
    }
    lines = [
        f"{r['numbers']:>6} numbers: {r['planned']} planned in {r['seconds']} s "
        f"= {r['numbers_per_second']}/s "
        f"({r['rows_per_second']} rows/s; bulk insert {r['bulk_insert_rows_per_second']} rows/s, "
        f"ratio {r['ratio_to_bulk_insert']}); all would take ~{r['projected_seconds_all']} s "
        f"(load average {r['load_average_1m_before']} before); CPU s: {r['cpu_seconds']}"
        for r in results
    ]
    emit("planning", result, lines)


if __name__ == "__main__":
    main()
