"""Delivery: does each number send what its plan says, day after day, at several clock speeds?

Numbers on the three example plans (``plans/standard-21d.yaml``, ``cautious-new.yaml``, ``fast-aged.yaml``)
in several time zones, aged channels (the simulator's risk meter on, no bans) and no faults, run in
two modes: ``fleet`` (2 ``dramatiq workers.actors`` + 2 ``warmup scheduler`` processes on PostgreSQL and
a private Redis, `warmup.testing.harness`) and ``embedded`` (`workers.embedded.EmbeddedRunner` on SQLite
with the in-process simulator, as the demo runs). Each (mode, speed) is its own child process of this
script (the embedded runner's broker is process-wide); ``--jobs`` of them run side by side, except
that a run at `EXCLUSIVE_SPEED` or faster runs alone.

At accelerated speeds the numbers are enrolled on Sunday (a rest day), once the fleet is up and before
any zone's Monday window opens (no Monday is cut), and the run lasts until every zone has ``--days``
finished local days from Monday on; only those with a quota count (`warmup.store.accounts.day_accounts`).
x1 cannot wait for a day to end: it runs a real-time slice on synthetic copies of the plans whose one
daily window IS the slice (per zone), with a small gap and a fixed volume, and counts that day once its
window has closed.

Delivered = sent / quota (the day's decision), and sent / (quota - cut) where planning could not fit
the whole quota ("not planned", reported apart). Gap violations and the invariant flag come from
`warmup.testing.invariants.check_invariants` on the simulator's send log. The baseline is the plan
itself: the quotas, the planned quota and the windows' capacity under the pacing
(`warmup.core.plan.model.day_capacity`); the targets are absolute.

Exit status 1 when a run broke, an invariant was breached or two sends came closer than the gap; a
delivery target missed is reported in the JSON (it depends on the machine), not in the exit status.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from chaos import FAULTS
from common import CpuMeter, emit, fleet, parser, percentile
from ruamel.yaml import YAML

from warmup.clock import ENV_VAR as CLOCK_ENV
from warmup.clock import ScaledClock
from warmup.core.accounting import DayAccount
from warmup.core.localtime import local_date_of, local_day_bounds
from warmup.core.pacing import due_at
from warmup.core.plan.model import Plan, day_capacity
from warmup.files.plans import load_plan
from warmup.services.runtime import Timings
from warmup.store import tables
from warmup.store.accounts import day_accounts
from warmup.store.db import Engine, make_engine, upgrade
from warmup.store.numbers import add_numbers
from warmup.testing.fleet_setup import phone_of, simulator_numbers, token_of, token_ref_of
from warmup.testing.harness import SOURCE_ROOT, FleetHarness, FleetSpec
from warmup.testing.invariants import InvariantReport, check_invariants

PLANS_DIR = SOURCE_ROOT / "plans"
PLAN_FILES = ("standard-21d.yaml", "cautious-new.yaml", "fast-aged.yaml")
TIMEZONES = ("America/Sao_Paulo", "Europe/Berlin", "Asia/Tokyo", "UTC")
MONDAY = date(2026, 11, 23)
REGISTERED = date(2026, 10, 1)  # 7+ weeks old at the start: the meter's lifetime factor reads good
DEMO_SPEED = 86400 / 8  # the demo's default: one simulated day every 8 wall seconds
SPEEDS = (1.0, 360.0, 1440.0, DEMO_SPEED)
MODES = ("fleet", "embedded")

# x1: a slice of real time; the synthetic plans' only window is the slice itself
SLICE_START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # whole minutes in every zone used
SLICE_LEAD = timedelta(seconds=40)  # x1: boot, enroll and plan the day before the window opens
SLICE_SETTLE = timedelta(seconds=15)  # after the window closes, before counting
X1_VOLUME = 8
X1_GAP = "5s..15s"
X1_TYPING = "1s..3s"

BOOT_ALLOWANCE = {"fleet": 30.0, "embedded": 5.0}  # wall seconds to start the processes (accelerated)
EXCLUSIVE_SPEED = 5000.0  # and faster: the run has the machine to itself (a 0.1 s stall is 8+ simulated min)
FLEET_WORKERS = 2
FLEET_SCHEDULERS = 2
EMBEDDED_THREADS = 3  # the demo's default


@dataclass(frozen=True)
class RunConfig:
    """One (mode, speed) run, as the parent hands it to a child process (JSON)."""

    mode: str
    speed: float
    numbers: int
    days: int
    slice_minutes: int
    chaos: bool
    seed: int
    timezones: tuple[str, ...] = TIMEZONES


# ------------------------------------------------------------------------------------------ helpers


def human(seconds: float) -> str:
    """A duration for people: ``40 s``, ``3 min 05 s``, ``1 h 05 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def speed_key(speed: float) -> str:
    return f"x{speed:g}"


def pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


@dataclass(frozen=True)
class Timeline:
    """A run's simulated moments: the clock starts, the numbers are enrolled (once the fleet is up, and
    not before this), the first counted window opens, the run stops and is counted."""

    start: datetime
    enroll: datetime
    opens: datetime
    stop: datetime

    def wall(self, scale: float) -> float:
        return (self.stop - self.start).total_seconds() / scale


def timeline(cfg: RunConfig) -> Timeline:
    """When things happen in a run.

    The clock runs while the fleet boots: at 10,800x a 6-second boot is 18 simulated hours (and three
    runs side by side have taken 16 s). So the clock starts a boot allowance of wall time before the
    enrolment, and the numbers are enrolled on Sunday (a rest day of every example plan) a little
    before the first zone's Monday opens (08:00 local; the plans open at 08:30 or later): at least an
    hour, and 5 wall seconds (at most 11 hours) so that planning, which starts at enrolment, is done in
    time. The run stops once the latest zone's last counted day has ended and the scheduler has had
    time to close it.
    """
    scale = cfg.speed
    allowance = timedelta(seconds=BOOT_ALLOWANCE[cfg.mode] * scale)
    if scale == 1.0:
        end = SLICE_START + timedelta(minutes=cfg.slice_minutes)
        return Timeline(SLICE_START - SLICE_LEAD, SLICE_START - SLICE_LEAD, SLICE_START, end + SLICE_SETTLE)
    opens = min(_local(MONDAY, 8, z) for z in cfg.timezones)
    enroll = opens - min(max(timedelta(hours=1), timedelta(seconds=5 * scale)), timedelta(hours=11))
    last_end = max(local_day_bounds(counted_dates(cfg)[-1], z)[1] for z in cfg.timezones)
    return Timeline(enroll - allowance, enroll, opens, last_end + close_grace(scale) + timedelta(minutes=5))


def _local(day: date, hour: int, zone: str) -> datetime:
    return datetime.combine(day, dtime(hour), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def counted_dates(cfg: RunConfig) -> list[date]:
    """The local dates that count: Monday and the days after it (x1: the slice's day, per zone)."""
    return [MONDAY + timedelta(days=k) for k in range(cfg.days)]


def close_grace(scale: float) -> timedelta:
    """How long after a local midnight the scheduler may take to close the day (as the demo allows)."""
    return timedelta(hours=1) + 3 * timedelta(seconds=Timings.for_scale(scale).tick_wall * scale)


def x1_plans(directory: Path, zones: Sequence[str], minutes: int) -> list[Path]:
    """Copies of the example plans whose one daily window is the x1 slice in each zone's local time,
    with a small gap and a fixed volume: ``lcm(plans, zones)`` files, so number i (plan i % 3, zone
    i % len(zones)) gets file i % len(files)."""
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    files = []
    for k in range(math.lcm(len(PLAN_FILES), len(zones))):
        source = PLANS_DIR / PLAN_FILES[k % len(PLAN_FILES)]
        zone = zones[k % len(zones)]
        doc = yaml.load(source.read_text(encoding="utf-8"))
        opens = SLICE_START.astimezone(ZoneInfo(zone))
        closes = opens + timedelta(minutes=minutes)
        assert opens.date() == closes.date(), f"the x1 slice crosses midnight in {zone}"
        doc["name"] = f"{doc['name']}-x1-{k}"
        doc["schedule"] = {"windows": [{"days": "daily", "hours": f"{opens:%H:%M}-{closes:%H:%M}"}]}
        doc["ramp"] = {"steps": [{"days": "1-60", "volume": X1_VOLUME}], "after": "hold"}
        doc["pacing"].update(gap=X1_GAP, typing=X1_TYPING)
        doc["content"] = str((source.parent / doc["content"]).resolve())
        if doc.get("audience", {}).get("contacts"):
            doc["audience"]["contacts"] = str((source.parent / doc["audience"]["contacts"]).resolve())
        path = directory / f"x1-{k}.yaml"
        with path.open("w", encoding="utf-8") as out:
            yaml.dump(doc, out)
        load_plan(path)  # fail here, not in a worker, if the copy is not a valid plan
        files.append(path)
    return files


def plan_files(cfg: RunConfig, directory: Path) -> list[Path]:
    if cfg.speed == 1.0:
        return x1_plans(directory, cfg.timezones, cfg.slice_minutes)
    return [PLANS_DIR / name for name in PLAN_FILES]


# ------------------------------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class Enrolled:
    """What the run knows about number ``id``: its plan (parsed) and zone."""

    id: int
    phone: str
    plan: Plan
    zone: str

    @property
    def plan_name(self) -> str:
        """The example plan's name (an x1 copy's too)."""
        return self.plan.name.split("-x1-")[0]


def counted_days(
    accounts: Sequence[DayAccount], enrolled: Mapping[int, Enrolled], cfg: RunConfig, now: datetime
) -> tuple[list[DayAccount], int]:
    """The days that count (finished, quota > 0; from Monday on) and how many such days had no quota."""
    counted, zero = [], 0
    wanted = set(counted_dates(cfg))
    for day in accounts:
        number = enrolled[day.number_id]
        if cfg.speed == 1.0:
            over = day.local_date == local_date_of(SLICE_START, number.zone)  # its only window has closed
        else:
            over = day.local_date in wanted and day.local_date < local_date_of(now, number.zone)
        if not over:
            continue
        if day.quota > 0:
            counted.append(day)
        else:
            zero += 1
    return counted, zero


def lateness(engine: Engine, days: Sequence[DayAccount]) -> list[float]:
    """Simulated seconds from each sent message's due time to its record, on the counted days."""
    wanted = {(d.number_id, d.local_date) for d in days}
    m = tables.MESSAGES
    query = sa.select(m.c.number_id, m.c.local_date, m.c.scheduled_at, m.c.not_before, m.c.finished_at).where(
        m.c.state == "sent"
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    late = []
    for row in rows:
        if (row.number_id, row.local_date) in wanted and row.finished_at is not None:
            due = due_at(_aware(row.scheduled_at), _aware(row.not_before) if row.not_before else None)
            late.append((_aware(row.finished_at) - due).total_seconds())
    return late


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def unexplained(day: DayAccount) -> int:
    """Messages short of the quota that no cause accounts for (should be 0)."""
    return max(day.missing - sum(count for _, count in day.shortfall()), 0)


def summarise(
    cfg: RunConfig,
    engine: Engine,
    enrolled: Mapping[int, Enrolled],
    report: InvariantReport,
    bound: datetime,
) -> dict[str, Any]:
    """The figures of one run from the store (day accounts) and the invariant report."""
    days, zero_quota = counted_days(day_accounts(engine), enrolled, cfg, bound)
    quota = sum(d.quota for d in days)
    planned = sum(d.quota - d.cut for d in days)
    sent = sum(d.sent for d in days)
    shares = [100.0 * d.sent / d.quota for d in days]
    planned_shares = [100.0 * d.sent / (d.quota - d.cut) for d in days if d.quota - d.cut > 0]
    skipped: Counter[str] = Counter()
    for d in days:
        skipped.update(d.skipped)
    late = lateness(engine, days)
    by_plan: dict[str, dict[str, Any]] = {}
    for name in sorted({enrolled[d.number_id].plan_name for d in days}):
        mine = [d for d in days if enrolled[d.number_id].plan_name == name]
        by_plan[name] = {
            "number_days": len(mine),
            "quota": sum(d.quota for d in mine),
            "sent": sum(d.sent for d in mine),
            "delivered_pct_min": round(min(100.0 * d.sent / d.quota for d in mine), 2),
            "delivered_pct_total": pct(sum(d.sent for d in mine), sum(d.quota for d in mine)),
        }
    short = sorted((d for d in days if d.sent < 0.99 * d.quota), key=lambda d: d.sent / d.quota)
    capacity = sum(day_capacity(enrolled[d.number_id].plan, d.local_date.weekday())[0] for d in days)
    return {
        "number_days": len(days),
        "finished_days_without_quota": zero_quota,
        "delivered_pct_of_quota": {
            "min": round(min(shares), 2) if shares else None,
            "mean": round(sum(shares) / len(shares), 2) if shares else None,
            "total": pct(sent, quota),
        },
        "delivered_pct_of_planned_quota": {
            "min": round(min(planned_shares), 2) if planned_shares else None,
            "mean": round(sum(planned_shares) / len(planned_shares), 2) if planned_shares else None,
            "total": pct(sent, planned),
        },
        "quota": quota,
        "not_planned": sum(d.cut for d in days),  # quota planning could not fit into the windows
        "days_with_cut": sum(1 for d in days if d.cut),
        "cut_reasons": sorted({d.cut_reason for d in days if d.cut and d.cut_reason})[:5],
        "quota_cut_by_throttle": sum(d.quota_cut for d in days),
        "sent": sent,
        "skipped_by_cause": dict(sorted(skipped.items())),
        "failed": sum(d.failed for d in days),
        "unknown": sum(d.unknown for d in days),
        "unknown_that_went_out_whole_run": report.explained_by_unknown,  # in the simulator's log
        "pending_on_finished_days": sum(d.pending for d in days),
        "unexplained_shortfall": {
            "days": sum(1 for d in days if unexplained(d)),
            "messages": sum(unexplained(d) for d in days),
        },
        "gap_violations": len(report.gap_violations),
        "gap_violation_examples": report.gap_violations[:5],
        "tightest_gap_ratio": round(report.tightest, 3) if report.tightest is not None else None,
        "invariants_ok": report.ok,
        "invariants": {
            "stuck": report.stuck,
            "over_quota_number_days": len(report.over_quota),
            "slot_errors": len(report.slot_errors),
            "duplicates": report.duplicates,
            "sent_not_in_log": report.missing_in_log,
            "examples": [*report.stuck_details[:3], *report.over_quota[:3], *report.duplicate_details[:3]],
        },
        "sent_after_due_sim_seconds": {
            "p50": round(percentile(late, 50), 1) if late else None,
            "p99": round(percentile(late, 99), 1) if late else None,
            "max": round(max(late), 1) if late else None,
        },
        "sent_after_due_wall_seconds_p99": round(percentile(late, 99) / cfg.speed, 3) if late else None,
        "day_actions": dict(Counter(d.action for d in days)),
        "by_plan": by_plan,
        "baseline": {
            "quota": quota,
            "planned_quota": planned,
            "window_capacity": capacity,
        },
        "short_days": [
            {
                "phone": enrolled[d.number_id].phone,
                "plan": enrolled[d.number_id].plan_name,
                "zone": enrolled[d.number_id].zone,
                "date": d.local_date.isoformat(),
                "action": d.action,
                "quota": d.quota,
                "cut": d.cut,
                "sent": d.sent,
                "why": d.shortfall_text(top=4),
            }
            for d in short[:15]
        ],
    }


# ------------------------------------------------------------------------------------------ the modes


def enrolled_of(ids: Sequence[int], files: Sequence[Path], zones: Sequence[str]) -> dict[int, Enrolled]:
    plans = [load_plan(path) for path in files]
    return {
        number_id: Enrolled(number_id, phone_of(i), plans[i % len(plans)], zones[i % len(zones)])
        for i, number_id in enumerate(ids)
    }


def run_fleet(cfg: RunConfig, work: Path) -> dict[str, Any]:
    times = timeline(cfg)
    files = plan_files(cfg, work)
    spec = FleetSpec(
        numbers=cfg.numbers,
        timezones=cfg.timezones,
        registered=REGISTERED,
        sim_start=times.start,
        scale=cfg.speed,
        seed=cfg.seed,
        faults=FAULTS if cfg.chaos else {},
        worker_threads=4,
        log_level="WARNING",
        plan_files=tuple(files),
    )
    with fleet(spec, enroll=False) as harness:
        booted = time.monotonic()
        for _ in range(max(FLEET_WORKERS, FLEET_SCHEDULERS)):
            if len(harness.schedulers) < FLEET_SCHEDULERS:
                harness.start_scheduler()
            if len(harness.workers) < FLEET_WORKERS:
                harness.start_worker()
        harness.wait_for_leader(timeout=60)
        harness.wait_workers_ready(timeout=60)
        boot = time.monotonic() - booted
        harness.wait_until(times.enroll)
        harness.enroll()
        enrolled_at = harness.now()
        cpu = CpuMeter(harness)
        cpu.start()
        harness.wait_until(times.stop, check=lambda: _alive(harness))
        cpu.stop()
        now = harness.now()  # before stopping: at 10,800x the seconds a stop takes are hours
        for proc in [*harness.schedulers, *harness.workers]:
            proc.stop(timeout=15)  # let sends in flight finish; then nothing moves while we read
        sends = harness.sends()
        report = check_invariants(harness.engine, sends, now, grace=close_grace(cfg.speed), stopped=True)
        enrolled = enrolled_of(harness.number_ids, files, cfg.timezones)
        figures = summarise(cfg, harness.engine, enrolled, report, now - close_grace(cfg.speed))
    return {**booted_figures(boot, enrolled_at, times), "cpu_seconds": cpu.used, **figures}


def booted_figures(boot: float, enrolled_at: datetime, times: Timeline) -> dict[str, Any]:
    """How long the fleet took to come up, and whether its numbers were enrolled late (the boot took
    longer than its allowance) or even after the first counted window had opened (then the first days
    include a planning cut)."""
    return {
        "boot_wall_seconds": round(boot, 1),
        "enrolled_at": enrolled_at.isoformat(timespec="seconds"),
        "enrolled_late_sim_seconds": round(max((enrolled_at - times.enroll).total_seconds(), 0.0)),
        "enrolled_after_first_window_opened": enrolled_at > times.opens,
    }


def _alive(harness: FleetHarness) -> None:
    dead = [p.name for p in [*harness.workers, *harness.schedulers] if not p.alive]
    if dead:
        raise RuntimeError(f"fleet processes exited: {dead}\n{harness.logs()[dead[0]][-2000:]}")


def run_embedded(cfg: RunConfig, work: Path) -> dict[str, Any]:
    from warmup.simulator import ChannelSpec, SimConfig, SimulatorServer, Thresholds, parse_fault_args
    from workers.embedded import EmbeddedRunner

    times = timeline(cfg)
    files = plan_files(cfg, work)
    url = f"sqlite:///{work / 'delivery.db'}"
    engine = make_engine(url)
    upgrade(engine)
    faults, channel_faults = parse_fault_args([f"{k}={v}" for k, v in (FAULTS if cfg.chaos else {}).items()])
    channels = tuple(
        ChannelSpec(token=token_of(i), phone=phone_of(i), registered=REGISTERED) for i in range(cfg.numbers)
    )
    for i in range(cfg.numbers):
        os.environ[token_ref_of(i)] = token_of(i)
    clock = ScaledClock.starting_now(times.start, cfg.speed)
    os.environ[CLOCK_ENV] = clock.to_setting()
    config = SimConfig(
        seed=cfg.seed,
        channels=channels,
        thresholds=replace(Thresholds(), bans=False),
        faults=faults,
        channel_faults=channel_faults,
    )
    sim = SimulatorServer(config, clock=clock)
    runner: EmbeddedRunner | None = None
    try:
        base_url = sim.start()
        booted = time.monotonic()
        runner = EmbeddedRunner(url, clock, worker_threads=EMBEDDED_THREADS, migrate=False).start()
        boot = time.monotonic() - booted
        configs = simulator_numbers(
            [phone_of(i) for i in range(cfg.numbers)],
            base_url=base_url,
            plan_name="?",
            plan_path=files[0],
            timezones=cfg.timezones,
            registered=REGISTERED,
        )
        plans = [(str(path.resolve()), load_plan(path).name) for path in files]
        for i, number in enumerate(configs):
            number["plan_path"], number["plan_name"] = plans[i % len(plans)]
        while clock.now() < times.enroll:
            time.sleep(0.01)
        enrolled_at = clock.now()
        ids = add_numbers(engine, configs, now=enrolled_at)
        cpu = time.process_time()
        while clock.now() < times.stop:
            if not runner.running:
                raise RuntimeError("the embedded runner stopped unexpectedly")
            time.sleep(min(0.2, max((times.stop - clock.now()).total_seconds() / cfg.speed, 0.01)))
        cpu = time.process_time() - cpu
        now = clock.now()
        runner.stop()
        runner = None
        with sim.lock:
            sends = [record.to_json() for record in sim.model.sends()]
        report = check_invariants(engine, sends, now, grace=close_grace(cfg.speed), stopped=True)
        enrolled = enrolled_of(ids, files, cfg.timezones)
        figures = summarise(cfg, engine, enrolled, report, now - close_grace(cfg.speed))
    finally:
        if runner is not None:
            runner.stop()
        sim.stop()
        engine.dispose()
    cpu_seconds = {"embedded process (runner and simulator)": round(cpu, 2)}
    return {**booted_figures(boot, enrolled_at, times), "cpu_seconds": cpu_seconds, **figures}


def run_child(cfg: RunConfig) -> dict[str, Any]:
    """One (mode, speed) run in this process; its figures."""
    work = Path(tempfile.mkdtemp(prefix=f"warmup-delivery-{cfg.mode}-"))
    started = time.monotonic()
    try:
        figures = run_fleet(cfg, work) if cfg.mode == "fleet" else run_embedded(cfg, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    times = timeline(cfg)
    return {
        "mode": cfg.mode,
        "speed": cfg.speed,
        "sim_start": times.start.isoformat(),
        "sim_enroll": times.enroll.isoformat(),
        "sim_stop": times.stop.isoformat(),
        "counted_local_dates": (
            "the slice's date in each zone"
            if cfg.speed == 1.0
            else f"{MONDAY.isoformat()} .. {counted_dates(cfg)[-1].isoformat()}"
        ),
        "simulated_hours": round((times.stop - times.start).total_seconds() / 3600, 2),
        "plans": (
            f"synthetic copies of the example plans: one daily window = the {cfg.slice_minutes} min slice "
            f"(per zone), volume {X1_VOLUME}, gap {X1_GAP}, typing {X1_TYPING}"
            if cfg.speed == 1.0
            else "the example plans as they are"
        ),
        "wall_seconds": round(time.monotonic() - started, 1),
        **figures,
    }


# ------------------------------------------------------------------------------------------ the parent


def expected_wall(cfg: RunConfig) -> float:
    return timeline(cfg).wall(cfg.speed)


def run_all(configs: Sequence[RunConfig], jobs: int) -> dict[tuple[str, float], dict[str, Any]]:
    """Each config in a child process, ``jobs`` at a time, the longest first (x360 takes longest and
    loads the machine least), except that a run at `EXCLUSIVE_SPEED` or faster runs alone (last);
    their results (or errors)."""
    results: dict[tuple[str, float], dict[str, Any]] = {}
    waiting = sorted(configs, key=lambda c: (c.speed >= EXCLUSIVE_SPEED, -expected_wall(c)))
    running: list[tuple[RunConfig, subprocess.Popen[str], Any, float]] = []
    logs = Path(tempfile.mkdtemp(prefix="warmup-delivery-logs-"))
    while waiting or running:
        while waiting and len(running) < jobs:
            alone = waiting[0].speed >= EXCLUSIVE_SPEED
            if running and (alone or running[0][0].speed >= EXCLUSIVE_SPEED):
                break
            cfg = waiting.pop(0)
            log = (logs / f"{cfg.mode}-{speed_key(cfg.speed)}.log").open("w+", encoding="utf-8")
            argv = [sys.executable, __file__, "--child", json.dumps(asdict(cfg))]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
            running.append((cfg, proc, log, time.monotonic()))
            print(f"{cfg.mode} {speed_key(cfg.speed)}: started", file=sys.stderr)
        time.sleep(0.5)
        for entry in list(running):
            cfg, proc, log, began = entry
            if proc.poll() is None:
                continue
            running.remove(entry)
            out = proc.stdout.read() if proc.stdout else ""
            log.seek(0)
            errors = log.read()
            log.close()
            key = (cfg.mode, cfg.speed)
            try:
                results[key] = json.loads(out.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                results[key] = {"mode": cfg.mode, "speed": cfg.speed, "error": errors[-3000:] or out[-3000:]}
            took = human(time.monotonic() - began)
            print(f"{cfg.mode} {speed_key(cfg.speed)}: done in {took}", file=sys.stderr)
    shutil.rmtree(logs, ignore_errors=True)
    return results


def line(mode: str, result: Mapping[str, Any]) -> str:
    key = speed_key(float(result["speed"]))
    if "error" in result:
        return f"{mode} {key}: FAILED: {str(result['error']).strip().splitlines()[-1:]}"
    quota, planned = result["delivered_pct_of_quota"], result["delivered_pct_of_planned_quota"]
    skipped = ", ".join(f"{c} {n}" for c, n in result["skipped_by_cause"].items()) or "none"
    invariants = "ok" if result["invariants_ok"] else "BROKEN"
    return (
        f"{mode} {key}: {result['number_days']} number-days, delivered {quota['total']}% of quota "
        f"(min {quota['min']}%, mean {quota['mean']}%), {planned['total']}% of planned; not planned "
        f"{result['not_planned']}; skipped {skipped}; failed {result['failed']}, "
        f"unknown {result['unknown']}; gap violations {result['gap_violations']}; invariants {invariants}; "
        f"{human(result['wall_seconds'])}"
    )


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--modes", nargs="+", choices=MODES, default=None)
    p.add_argument(
        "--speeds", nargs="+", type=float, default=None, help="clock speeds, e.g. 1 360 1440 10800"
    )
    p.add_argument("--days", type=int, default=None, help="finished local days per number (accelerated)")
    p.add_argument("--numbers", type=int, default=None)
    p.add_argument("--slice-minutes", type=int, default=None, help="the x1 real-time slice")
    p.add_argument("--chaos", action="store_true", help="simulator faults at chaos.py's rates (no kills)")
    p.add_argument("--jobs", type=int, default=3, help="runs side by side (1: one after another)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--child", help=argparse.SUPPRESS)  # one (mode, speed) run, its config as JSON
    args = p.parse_args()
    if args.child:
        raw = json.loads(args.child)
        cfg = RunConfig(**{**raw, "timezones": tuple(raw["timezones"])})
        print(json.dumps(run_child(cfg), default=str))
        return
    speeds = args.speeds or ((1440.0, DEMO_SPEED) if args.quick else SPEEDS)
    modes = args.modes or list(MODES)
    numbers = args.numbers or (6 if args.quick else 12)
    slice_minutes = args.slice_minutes or (2 if args.quick else 3)

    def days_at(speed: float) -> int:
        if args.days:
            return int(args.days)
        if args.quick:
            return 2 if speed >= EXCLUSIVE_SPEED else 1
        return 3 if speed >= 1000 else 2  # x360: 2 days take 9 min

    configs = [
        RunConfig(mode, speed, numbers, days_at(speed), slice_minutes, args.chaos, args.seed)
        for speed in sorted(speeds)
        for mode in modes
    ]
    if args.speeds and any(speed < 60 and speed != 1 for speed in speeds):
        p.error("--speeds: 1 (a real-time slice) or 60 and more (whole simulated days)")
    began = time.monotonic()
    results = run_all(configs, max(1, args.jobs))
    runs: dict[str, dict[str, Any]] = {mode: {} for mode in modes}
    for cfg in configs:
        runs[cfg.mode][speed_key(cfg.speed)] = {"days": cfg.days, **results[(cfg.mode, cfg.speed)]}
    broken = [f"{m} {s}" for m in runs for s, r in runs[m].items() if "error" in r]
    fine = [r for m in runs for r in runs[m].values() if "error" not in r]
    target_run = runs.get("fleet", {}).get(speed_key(1440.0))
    target_min = (
        None if not target_run or "error" in target_run else target_run["delivered_pct_of_quota"]["min"]
    )
    gaps = sum(r["gap_violations"] for r in fine)
    targets = {
        "fleet_x1440_delivered_pct_of_quota_min": {
            "target": ">= 99 on every sending day",
            "value": target_min,
            "met": None if target_min is None else target_min >= 99.0,
        },
        "gap_violations_everywhere": {"target": "0", "value": gaps, "met": gaps == 0 and not broken},
    }
    result = {
        "quick": args.quick,
        "chaos": args.chaos,
        "faults": FAULTS if args.chaos else {},
        "seed": args.seed,
        "numbers": numbers,
        "plans": list(PLAN_FILES),
        "timezones": list(TIMEZONES),
        "jobs": args.jobs,
        "baseline": (
            "the plan itself, per run: quota (the days' decisions), planned_quota (quota minus what "
            "planning could not fit) and window_capacity (the most sends the days' windows hold under "
            "the pacing, day_capacity); targets are absolute"
        ),
        "runs": runs,
        "targets": targets,
        "broken_runs": broken,
        "wall_seconds": round(time.monotonic() - began, 1),
    }
    ok = not broken and gaps == 0 and all(r["invariants_ok"] for r in fine)
    summary = [line(cfg.mode, results[(cfg.mode, cfg.speed)]) for cfg in configs]
    target = (
        "not run"
        if target_min is None
        else f"min {target_min}% of quota on a day (target >= 99%): "
        + ("met" if target_min >= 99.0 else "NOT met")
    )
    summary.append(f"fleet x1440: {target}; gap violations {gaps}; total {human(time.monotonic() - began)}")
    summary.append("OK" if ok else "FAILED")
    emit("delivery", result, summary)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
