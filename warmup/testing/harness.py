"""A whole fleet in subprocesses, for the crash tests, the chaos run and the benchmarks.

`FleetHarness` runs what an operator runs, as real processes on one shared accelerated clock
(``WARMUP_CLOCK``): the simulator (``warmup simulator``), dramatiq workers (``dramatiq workers.actors``)
and schedulers (``warmup scheduler``), against a PostgreSQL database and a Redis of the caller's
choosing (use `services.RedisServer` and `services.throwaway_database`: the run may restart Redis).

Crash helpers: `kill_worker` SIGKILLs a worker's whole process group, optionally at the moment one of
its sends is in flight (a ``sending`` row it claimed); `kill_leader` SIGKILLs the scheduler holding
the leader lock (found from the schedulers' logs); `restart_redis` kills and restarts Redis, losing
every queue. `check` compares the simulator's send log with the store (`invariants`).

The pieces live beside it: the processes in `processes`, the plan files and the numbers' configurations
in `fleet_setup`, the simulator's admin client in `sim_admin`; the run's reads and its bulk enrolment go
through the store (`warmup.store.checks`, `warmup.store.numbers.add_numbers`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis as redis_client

from warmup.clock import ENV_VAR as CLOCK_ENV
from warmup.clock import ScaledClock
from warmup.files.plans import load_plan
from warmup.store import checks, numbers
from warmup.store.db import make_engine, upgrade
from warmup.testing.fleet_setup import (
    PlanValues,
    contact_of,
    phone_of,
    simulator_numbers,
    token_of,
    token_ref_of,
    write_plan_files,
)
from warmup.testing.invariants import (
    InvariantReport,
    evaluate,
    load_messages,
    load_quotas,
    load_timezones,
)
from warmup.testing.processes import SOURCE_ROOT, Proc, spawn
from warmup.testing.services import RedisServer, free_port, workdir
from warmup.testing.sim_admin import SimulatorAdmin

__all__ = [  # also names benchmarks/ and tests/ import from here, defined in the modules imported above
    "SOURCE_ROOT",
    "FleetHarness",
    "FleetSpec",
    "Proc",
    "contact_of",
    "flush_dedicated_db",
    "phone_of",
    "running_fleet",
    "token_of",
    "token_ref_of",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEZONES = ("America/Sao_Paulo", "Europe/Berlin", "Asia/Tokyo", "UTC")
PLAN_NAME = "fleet-plan"


@dataclass(frozen=True)
class FleetSpec:
    """What to run: how many numbers, their plan, the clock and the simulator's faults."""

    numbers: int = 4
    timezones: tuple[str, ...] = DEFAULT_TIMEZONES
    volume: str = "20"  # the plan's ramp volume (a number or LOW..HIGH)
    hours: str = "08:00-20:00"
    gap: str = "2m..6m"
    max_per_hour: int = 30
    max_new_contacts: int = 10
    reply_probability: float = 0.3
    contacts: int = 40
    registered: date = date(2026, 10, 1)
    sim_start: datetime = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    scale: float = 4320.0  # one simulated day every 20 wall seconds
    seed: int = 7
    faults: Mapping[str, float | int | str] = field(default_factory=dict)  # simulator --fault KIND=VALUE
    worker_threads: int = 4
    worker_processes: int = 1  # --processes of each `dramatiq workers.actors`
    worker_args: tuple[str, ...] = ()  # more `dramatiq` options, e.g. ("--queues", "warmup")
    worker_env: Mapping[str, str] = field(default_factory=dict)  # e.g. {"dramatiq_worker_timeout": "100"}
    log_level: str = "INFO"  # of workers and the simulator
    scheduler_log_level: str = "INFO"  # INFO at least: `leader()` reads the leadership lines
    # Plan files used as they are (each under its own name), number i on plan_files[i % len]: a fleet
    # on several plans. Empty: every number on the plan written from the values above.
    plan_files: tuple[Path, ...] = ()


_LEADER_EVENT = re.compile(r"scheduler leadership (acquired|lost)")
"""What `warmup.services.leader` logs (INFO / WARNING) when it takes or loses the lock, in any log format."""


class FleetHarness:
    """Set up (database, plans, simulator, numbers) and run a fleet; see the module docstring.

    ``redis`` is a `RedisServer` (restartable) or a URL (then `restart_redis` is refused and the
    caller must make sure the URL's database is private to this run).
    """

    def __init__(
        self,
        spec: FleetSpec,
        database_url: str,
        redis: RedisServer | str,
        directory: Path | None = None,
        *,
        python: str = sys.executable,
    ) -> None:
        self.spec = spec
        self.database_url = database_url
        self.redis = redis
        self.dir = directory or workdir()
        self.python = python
        self.engine = make_engine(database_url)
        self.clock: ScaledClock | None = None
        self.sim_url = ""
        self.simulator: Proc | None = None
        self.sim_admin: SimulatorAdmin | None = None  # once the simulator is up
        self.workers: list[Proc] = []
        self.schedulers: list[Proc] = []
        self.number_ids: list[int] = []
        self.phones: list[str] = []
        self._counter = 0
        self._lead_seen: dict[str, tuple[int, int]] = {}  # name -> (events seen, order of last acquisition)
        self._lead_order = 0

    # --- setup ------------------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return self.redis.url if isinstance(self.redis, RedisServer) else self.redis

    @property
    def plan_path(self) -> Path:
        return self.dir / "plans" / "plan.yaml"

    def write_plan(self) -> Path:
        spec = self.spec
        plan = PlanValues(
            name=PLAN_NAME,
            volume=spec.volume,
            ramp_days=60,
            hours=spec.hours,
            gap=spec.gap,
            typing="1s..3s",
            max_per_hour=spec.max_per_hour,
            max_new_contacts=spec.max_new_contacts,
            reply_probability=spec.reply_probability,
            reply_delay="1m..10m",
        )
        contacts = ((contact_of(i), f"Contact {i}") for i in range(spec.contacts))
        return write_plan_files(self.plan_path.parent, plan, contacts)

    def setup(self, *, start_clock: bool = True, enroll: bool = True) -> FleetHarness:
        """Migrate the database, write the plan, start the simulator and enroll the numbers (or not:
        ``enroll=False`` leaves `enroll` to the caller, e.g. once the fleet has booted, so an
        accelerated clock does not plan days the fleet is not up to send)."""
        upgrade(self.engine)
        if not isinstance(self.redis, RedisServer):
            flush_dedicated_db(self.redis)
        self.write_plan()
        if start_clock:
            self.start_clock()
        self.start_simulator()
        if enroll:
            self.enroll()
        return self

    def start_clock(self, sim_start: datetime | None = None) -> ScaledClock:
        """Fix the run's shared clock: simulated ``sim_start`` is now (every process started later agrees)."""
        self.clock = ScaledClock.starting_now(sim_start or self.spec.sim_start, self.spec.scale)
        return self.clock

    def _env(self) -> dict[str, str]:
        if self.clock is None:
            raise RuntimeError("start_clock() first")
        env = dict(os.environ)
        env.update(
            {
                CLOCK_ENV: self.clock.to_setting(),
                "WARMUP_DATABASE_URL": self.database_url,
                "WARMUP_REDIS_URL": self.redis_url,
                "WARMUP_LOG_LEVEL": self.spec.log_level,
                "WARMUP_LOG_FORMAT": "console",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH", "")) if p),
            }
        )
        env.update({token_ref_of(i): token_of(i) for i in range(self.spec.numbers)})
        return env

    def _spawn(self, role: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        self._counter += 1
        return spawn(role, f"{role}-{self._counter}", argv, {**self._env(), **(env or {})}, self.dir)

    def start_simulator(self, timeout: float = 30.0) -> str:
        spec = self.spec
        channels = [
            {"token": token_of(i), "phone": phone_of(i), "registered": spec.registered.isoformat()}
            for i in range(spec.numbers)
        ]
        channels_file = self.dir / "channels.json"
        channels_file.write_text(json.dumps(channels))
        port = free_port()
        argv = [self.python, "-m", "warmup", "simulator", "--port", str(port), "--seed", str(spec.seed)]
        argv += ["--channels", str(channels_file), "--no-bans"]
        for key, value in spec.faults.items():
            argv += ["--fault", f"{key}={value}"]
        self.simulator = self._spawn("simulator", argv)
        self.sim_url = f"http://127.0.0.1:{port}"
        self.sim_admin = SimulatorAdmin(self.sim_url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sim_admin.request("GET", "/_sim/clock", timeout=1)
                return self.sim_url
            except httpx.HTTPError:
                if not self.simulator.alive or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"simulator did not start:\n{self.simulator.log_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)

    def enroll(self) -> list[int]:
        """Enroll every number of the spec (one bulk insert: fast for 10,000 numbers), on the written
        plan or, with ``spec.plan_files``, on those files in turn."""
        spec = self.spec
        stamp = datetime.now(UTC)
        configs = simulator_numbers(
            [phone_of(i) for i in range(spec.numbers)],
            base_url=self.sim_url,
            plan_name=PLAN_NAME,
            plan_path=self.plan_path,
            timezones=spec.timezones,
            registered=spec.registered,
        )
        plans = [(str(Path(path).resolve()), load_plan(path).name) for path in spec.plan_files]
        for i, config in enumerate(configs if plans else ()):
            config["plan_path"], config["plan_name"] = plans[i % len(plans)]
        ids = numbers.add_numbers(self.engine, configs, now=stamp)
        self.number_ids = ids
        self.phones = [config["phone"] for config in configs]
        return self.number_ids

    # --- processes --------------------------------------------------------------------------------

    def start_worker(self, threads: int | None = None, processes: int | None = None) -> Proc:
        """One ``dramatiq workers.actors`` (``--processes``/``--threads`` from the spec)."""
        argv = [self.python, "-m", "dramatiq", "workers.actors"]
        argv += ["--processes", str(processes or self.spec.worker_processes)]
        argv += ["--threads", str(threads or self.spec.worker_threads), *self.spec.worker_args]
        proc = self._spawn("worker", argv, self.spec.worker_env)
        self.workers.append(proc)
        return proc

    def start_scheduler(self) -> Proc:
        """One ``warmup scheduler`` (any number may run; one leads)."""
        argv = [self.python, "-m", "warmup", "scheduler"]
        proc = self._spawn("scheduler", argv, {"WARMUP_LOG_LEVEL": self.spec.scheduler_log_level})
        self.schedulers.append(proc)
        return proc

    @property
    def redis_port(self) -> int:
        port = urlsplit(self.redis_url).port
        return port if port is not None else 6379

    def wait_workers_ready(self, procs: Sequence[Proc] | None = None, timeout: float = 60.0) -> None:
        """Until every worker of ``procs`` (default: all live ones) consumes from Redis."""
        waiting = list(procs if procs is not None else self.alive_workers())
        deadline = time.monotonic() + timeout
        while waiting:
            waiting = [p for p in waiting if not p.connected_to(self.redis_port)]
            dead = [p.name for p in waiting if not p.alive]
            if dead:
                raise RuntimeError(f"workers exited while booting: {dead}\n{waiting[0].log_text()[-2000:]}")
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"workers did not boot: {[p.name for p in waiting]}")
            time.sleep(0.05)

    def alive_workers(self) -> list[Proc]:
        return [p for p in self.workers if p.alive]

    def alive_schedulers(self) -> list[Proc]:
        return [p for p in self.schedulers if p.alive]

    def leader(self) -> Proc | None:
        """The live scheduler whose log last says it acquired the leadership (and has not lost it since);
        if several do (a stale leader has not noticed yet), the one seen acquiring it most recently."""
        best: tuple[int, Proc] | None = None
        for proc in self.alive_schedulers():
            events = _LEADER_EVENT.findall(proc.log_text())
            seen, order = self._lead_seen.get(proc.name, (0, 0))
            if len(events) > seen and "acquired" in events[seen:]:
                self._lead_order += 1
                order = self._lead_order
            self._lead_seen[proc.name] = (len(events), order)
            if events and events[-1] == "acquired" and (best is None or order > best[0]):
                best = (order, proc)
        return best[1] if best else None

    def wait_for_leader(self, timeout: float = 30.0, other_than: Proc | None = None) -> Proc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not other_than:
                return leader
            time.sleep(0.1)
        raise TimeoutError("no scheduler became the leader")

    def claimed_by(self, proc: Proc) -> list[int]:
        """Ids of the ``sending`` rows claimed by processes of ``proc`` (alive, or as it was when killed)."""
        host = socket.gethostname()
        workers = [f"{host}:{pid}" for pid in (proc.pids() or proc.last_pids)]
        return checks.claimed_by(self.engine, workers)

    def claims_of(self, proc: Proc) -> int:
        """How many ``sending`` rows processes of ``proc`` hold right now."""
        return len(self.claimed_by(proc))

    def kill_worker(self, proc: Proc | None = None, *, mid_send: bool = True, timeout: float = 10.0) -> bool:
        """SIGKILL a worker (the oldest live one by default); with ``mid_send``, at a moment it holds a
        claim (waits up to ``timeout`` wall seconds for one). Returns whether a claim was in flight."""
        target = proc or self.alive_workers()[0]
        in_flight = False
        if mid_send:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.claims_of(target) > 0:
                    in_flight = True
                    break
                time.sleep(0.005)
        target.kill()
        log.info("killed %s (claim in flight: %s)", target.name, in_flight)
        return in_flight

    def kill_leader(self, timeout: float = 30.0) -> Proc:
        """SIGKILL the leading scheduler; returns it."""
        leader = self.wait_for_leader(timeout)
        leader.kill()
        log.info("killed leading scheduler %s", leader.name)
        return leader

    def restart_redis(self, down_for: float = 0.5) -> None:
        if not isinstance(self.redis, RedisServer):
            raise RuntimeError("restart_redis needs a private RedisServer")
        self.redis.restart(down_for)

    # --- simulator --------------------------------------------------------------------------------

    @property
    def admin(self) -> SimulatorAdmin:
        """The simulator's admin client (its send log, its faults)."""
        if self.sim_admin is None:
            raise RuntimeError("start_simulator() first")
        return self.sim_admin

    def sends(self) -> list[dict[str, Any]]:
        """The simulator's send log (every accepted send)."""
        return self.admin.sends()

    def set_faults(self, faults: Mapping[str, float | int | str]) -> None:
        self.admin.set_faults(faults)

    def clear_faults(self) -> None:
        self.admin.clear_faults()

    # --- time and checks --------------------------------------------------------------------------

    def now(self) -> datetime:
        if self.clock is None:
            raise RuntimeError("start_clock() first")
        return self.clock.now()

    def wait_until(self, moment: datetime, *, check: Callable[[], None] | None = None) -> None:
        """Sleep until simulated ``moment``; ``check`` runs every 0.2 s (raise to stop early)."""
        while self.now() < moment:
            if check is not None:
                check()
            time.sleep(min(0.2, max((moment - self.now()).total_seconds() / self.spec.scale, 0.01)))

    def state_counts(self) -> dict[str, int]:
        return checks.state_counts(self.engine)

    def check(self) -> InvariantReport:
        """Compare the store with the simulator's log while the fleet may still be sending.

        The store is read FIRST and the log after it: every row `sent` in that snapshot is then in the
        log, and a log entry newer than the snapshot belongs to a row the snapshot shows `sending` (a
        claim commits before its HTTP call), which `evaluate` counts as in flight, not as a duplicate.
        """
        now = self.now()
        messages = load_messages(self.engine)
        quotas = load_quotas(self.engine)
        zones = load_timezones(self.engine)
        return evaluate(messages, quotas, zones, self.sends(), now)

    def wait_settled(self, timeout: float) -> InvariantReport:
        """Check until nothing of a finished day is left non-terminal (recovery needs up to the stale
        claim bound), or ``timeout`` wall seconds pass; returns the last report."""
        deadline = time.monotonic() + timeout
        report = self.check()
        while report.stuck and time.monotonic() < deadline:
            time.sleep(1.0)
            report = self.check()
        return report

    def logs(self) -> dict[str, str]:
        procs = [*(p for p in [self.simulator] if p is not None), *self.workers, *self.schedulers]
        return {p.name: p.log_text() for p in procs}

    def close(self) -> None:
        """Stop every process (schedulers first, then workers, then the simulator)."""
        for proc in [*self.schedulers, *self.workers]:
            proc.stop(timeout=10)
        if self.simulator is not None:
            self.simulator.stop(timeout=10)
        if self.sim_admin is not None:
            self.sim_admin.close()
        self.engine.dispose()

    def __enter__(self) -> FleetHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flush_dedicated_db(url: str) -> None:
    """Empty the Redis database ``url`` names, which must be a dedicated one (not database 0)."""
    path = urlsplit(url).path.strip("/")
    if not path.isdigit() or int(path) == 0:
        example = urlsplit(url)._replace(path="/14").geturl()
        raise ValueError(f"a shared Redis needs a dedicated database number for a fleet run, e.g. {example}")
    client = redis_client.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@contextlib.contextmanager
def running_fleet(
    spec: FleetSpec, database_url: str, redis: RedisServer | str, directory: Path | None = None
) -> Iterator[FleetHarness]:
    """A set-up harness (simulator up, numbers enrolled, clock started); every process stops on exit.
    A temporary directory it made is removed after a clean run and kept (logs) after a failure."""
    harness = FleetHarness(spec, database_url, redis, directory)
    try:
        harness.setup()
        yield harness
    finally:
        harness.close()
    if directory is None:
        shutil.rmtree(harness.dir, ignore_errors=True)
