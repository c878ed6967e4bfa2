"""Memory: peak RSS of the scheduler and of one worker as the fleet grows (1,000 and 10,000 numbers).

For each size: N numbers enrolled, one ``warmup scheduler`` and one ``dramatiq workers.actors``
(1 process, 8 threads) run for a fixed wall time (the scheduler asks for N day plans and N reply polls,
the worker plans and sends as many as it can); psutil samples the resident memory of each process
tree every 0.25 s. Baseline, same run: the RSS of a bare interpreter that imports the same modules.
Expectation: flat as the fleet grows (peak at 10,000 close to peak at 1,000).
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import psutil
import sqlalchemy as sa
from common import BENCH_START, emit, fleet, parser, wait_workers_ready

from warmup.store import tables
from warmup.testing.harness import SOURCE_ROOT, FleetSpec, Proc

MIB = 2**20
IMPORTS = (
    "import warmup.services.scheduler, warmup.services.planning, warmup.services.sending,"
    " warmup.store.claims, workers.broker, dramatiq, time"
)


def baseline_rss() -> int:
    """RSS of an interpreter that imported what the fleet processes import, and did nothing else."""
    proc = subprocess.Popen(  # our own interpreter, fixed code
        [sys.executable, "-c", IMPORTS + "; time.sleep(30)"],
        cwd=SOURCE_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(4.0)
        return int(psutil.Process(proc.pid).memory_info().rss)
    finally:
        proc.kill()
        proc.wait()


def sample(procs: dict[str, Proc], seconds: float) -> dict[str, int]:
    peaks = dict.fromkeys(procs, 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            peaks[name] = max(peaks[name], proc.rss_bytes() if name == "scheduler" else _worker_rss(proc))
        time.sleep(0.25)
    return peaks


def _worker_rss(proc: Proc) -> int:
    """The largest process of a dramatiq worker tree (the one running the actors)."""
    best = 0
    for pid in proc.pids():
        try:
            best = max(best, psutil.Process(pid).memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return best


def run_size(numbers: int, seconds: float) -> dict[str, Any]:
    spec = FleetSpec(
        numbers=numbers,
        timezones=("UTC", "Europe/Berlin", "America/Sao_Paulo"),
        scale=1.0,
        sim_start=BENCH_START,
        worker_threads=8,
        log_level="WARNING",
    )
    with fleet(spec) as harness:
        worker = harness.start_worker()
        wait_workers_ready(harness, 1)
        worker_boot = _worker_rss(worker)
        scheduler = harness.start_scheduler()
        peaks = sample({"scheduler": scheduler, "worker": worker}, seconds)
        with harness.engine.connect() as conn:
            planned = int(conn.execute(sa.select(sa.func.count()).select_from(tables.DAY_PLANS)).scalar_one())
        sent = harness.state_counts().get("sent", 0)
    slope = (peaks["worker"] - worker_boot) / MIB / max(planned, 1)
    return {
        "numbers": numbers,
        "seconds": seconds,
        "planned_during_run": planned,
        "sent_during_run": sent,
        "scheduler_peak_rss_mib": round(peaks["scheduler"] / MIB, 1),
        "worker_boot_rss_mib": round(worker_boot / MIB, 1),
        "worker_peak_rss_mib": round(peaks["worker"] / MIB, 1),
        # worker growth per day planned (it also built provider clients for reply polls of other numbers)
        "worker_mib_per_planned_number": round(slope, 3),
        # the worker once it has touched every number (each keeps what it cost), by that slope
        "worker_projected_rss_mib_all_numbers": round(worker_boot / MIB + slope * numbers, 1),
    }


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    sizes = (200, 1000) if args.quick else (1000, 10000)
    seconds = 15.0 if args.quick else 60.0
    base = baseline_rss()
    results = [run_size(n, seconds) for n in sizes]
    small, large = results
    result = {
        "quick": args.quick,
        "baseline_import_rss_mib": round(base / MIB, 1),
        "sizes": results,
        "scheduler_growth": round(large["scheduler_peak_rss_mib"] / small["scheduler_peak_rss_mib"], 2),
        "worker_growth": round(large["worker_peak_rss_mib"] / small["worker_peak_rss_mib"], 2),
    }
    lines = [f"baseline (imports only): {result['baseline_import_rss_mib']} MiB"] + [
        f"{r['numbers']:>6} numbers: scheduler peak {r['scheduler_peak_rss_mib']} MiB, worker peak "
        f"{r['worker_peak_rss_mib']} MiB (boot {r['worker_boot_rss_mib']}), {r['planned_during_run']} days "
        f"planned in {r['seconds']:.0f} s; {r['worker_mib_per_planned_number']} MiB per day planned -> "
        f"~{r['worker_projected_rss_mib_all_numbers']} MiB once all are"
        for r in results
    ]
    lines.append(
        f"growth {sizes[0]} -> {sizes[1]}: scheduler x{result['scheduler_growth']}, "
        f"worker x{result['worker_growth']}"
    )
    emit("memory", result, lines)


if __name__ == "__main__":
    main()
