"""`warmup demo`: a small fleet warmed up for a few accelerated days against the built-in simulator.

It runs the REAL thing, not a shortcut: the embedded runner (scheduler, in-process dramatiq broker,
send actors), SQLite migrated by Alembic, the Whapi client over HTTP, and the simulator on a free
loopback port, all reading ONE accelerated `ScaledClock`. The demo only sets the fleet up, watches
the store while it runs, and at the end checks the invariants against the simulator's send log (what
really went out), not against what the store believes.

Tokens are throwaway values generated here, put in environment variables of this process
(``WARMUP_DEMO_TOKEN_<n>``) and stored in the database by reference only, as for a real fleet.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.live import Live

from warmup.cli.live import DemoNumber, day_line_text, finished_days, live_table, snapshot
from warmup.cli.summary import NumberSummary
from warmup.clock import ENV_VAR as CLOCK_ENV_VAR
from warmup.clock import Clock, ScaledClock
from warmup.core.errors import UserError
from warmup.core.localtime import local_date_of
from warmup.core.ramp import plan_volume
from warmup.files.plans import load_plan
from warmup.secrets import RedactingFilter, register_secret
from warmup.services.runtime import Timings
from warmup.simulator import ChannelSpec, SimConfig, SimulatorServer
from warmup.store import audit, history
from warmup.store.accounts import day_accounts
from warmup.store.checks import day_tallies
from warmup.store.db import Engine, make_engine, upgrade
from warmup.store.numbers import add_number, get_number
from warmup.testing.delivery import delivery_report
from warmup.testing.invariants import Check, check_invariants
from workers.embedded import EmbeddedRunner

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
SIM_START = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)

DELIVERY_TARGET = 0.95
"""The demo injects no fault: a finished sending day that delivers less than this share of its quota
fails the run, naming the day and the causes."""
"""Sunday 23:00 UTC: Monday has just begun in Europe and Asia, the Americas still rest on Sunday."""

TOKEN_ENV = "WARMUP_DEMO_TOKEN_{n}"
MAX_NUMBERS = 12
REFRESH_SECONDS = 0.25


@dataclass(frozen=True)
class Profile:
    """One kind of number the demo enrolls: which example plan, where it lives, how old it is."""

    plan_file: str
    timezone: str
    phone_format: str  # str.format with the number's index (1-based)
    age_days: int  # registered this many days before the demo starts
    meter: bool = True  # False: the channel has no paid risk meter, the local meter takes over


PROFILES: tuple[Profile, ...] = (
    Profile("standard-21d.yaml", "America/Sao_Paulo", "+55119900{:05d}", 25),
    Profile("cautious-new.yaml", "Europe/Madrid", "+346000{:05d}", 3),
    Profile("fast-aged.yaml", "Asia/Kolkata", "+91980000{:04d}", 240),
    Profile("standard-21d.yaml", "America/New_York", "+121255501{:02d}", 40, meter=False),
    Profile("cautious-new.yaml", "Asia/Tokyo", "+819000{:06d}", 9),
    Profile("fast-aged.yaml", "Europe/Madrid", "+346100{:05d}", 400),
)


@dataclass(frozen=True)
class DemoOptions:
    """What `warmup demo` was asked for (see the CLI for the defaults and their meaning)."""

    numbers: int = 5
    days: int = 7
    day_seconds: float = 8.0
    seed: int = 1
    chart: Path | None = None
    db: Path | None = None
    plans_dir: Path | None = None
    live: bool = True
    worker_threads: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.numbers <= MAX_NUMBERS:
            raise UserError(f"--numbers must be between 1 and {MAX_NUMBERS}, got {self.numbers}")
        if not 1 <= self.days <= 60:
            raise UserError(f"--days must be between 1 and 60, got {self.days}")
        if not 2.0 <= self.day_seconds <= 3600.0:
            raise UserError(f"--day-seconds must be between 2 and 3600, got {self.day_seconds:g}")

    @property
    def scale(self) -> float:
        return DAY.total_seconds() / self.day_seconds


# --------------------------------------------------------------------------------------- the fleet


def find_plans_dir(explicit: Path | None = None) -> Path:
    """The example plans: ``--plans``, else the repository's ``plans/``, else ``./plans``."""
    candidates = (
        [explicit] if explicit is not None else [Path(__file__).resolve().parents[2] / "plans", Path("plans")]
    )
    for candidate in candidates:
        if all((candidate / p.plan_file).is_file() for p in PROFILES):
            return candidate.resolve()
    names = ", ".join(sorted({p.plan_file for p in PROFILES}))
    where = str(explicit) if explicit is not None else "the repository's plans/ directory or ./plans"
    raise UserError(f"the demo needs the example plans ({names}) in {where}; run it from the repository root")


SECONDS_PER_MESSAGE = 0.08
"""Wall seconds of a simulated day per message the fleet's busiest day asks for, when `--day-seconds`
is not given: an embedded run sends a message in a few milliseconds of wall time, but a number's next
send waits for the last one to END plus its plan's gap, so the faster the clock the more simulated time
each send costs; measured on two shared cores, this keeps every finished sending day at or above the
demo's delivery target (see README "Performance")."""

MIN_DAY_SECONDS, MAX_DAY_SECONDS = 8.0, 90.0


def auto_day_seconds(days: int, numbers: int, plans_dir: Path) -> float:
    """The length of a simulated day that lets this fleet deliver its plans: proportional to the most
    messages its plans ask for on one day of the run (plan volumes, before any risk rule), 8 s at least."""
    plans = {p.plan_file: load_plan(plans_dir / p.plan_file) for p, _ in fleet_profiles(numbers)}
    busiest = max(
        sum(plan_volume(plans[p.plan_file], day) or 0 for p, _ in fleet_profiles(numbers))
        for day in range(1, days + 1)
    )
    return round(min(max(busiest * SECONDS_PER_MESSAGE, MIN_DAY_SECONDS), MAX_DAY_SECONDS))


def fleet_profiles(count: int) -> list[tuple[Profile, str]]:
    """``count`` (profile, phone) pairs: the profiles in turn, every phone distinct."""
    return [
        (PROFILES[i % len(PROFILES)], PROFILES[i % len(PROFILES)].phone_format.format(i + 1))
        for i in range(count)
    ]


# ------------------------------------------------------------------------------------------- result


@dataclass
class DemoResult:
    """What a demo run produced: per-number summaries, the invariant checks, and how it ended."""

    summaries: list[NumberSummary]
    checks: list[Check]
    interrupted: bool
    sim_end: datetime
    delivered: float | None = None  # sent over quota of every finished sending day
    data_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


# -------------------------------------------------------------------------------------------- a run


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Send this process's log records to ``path`` (tokens redacted) instead of the terminal."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


class Demo:
    """One demo run: `start`, `watch` until the last day is over or Ctrl-C, `stop`, `collect`, `close`."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.plans_dir = find_plans_dir(options.plans_dir)
        if options.db is not None and options.db.exists():
            raise UserError(
                f"{options.db} already exists: the demo starts from an empty database, name a new file"
            )
        if options.db is not None and not options.db.parent.is_dir():
            raise UserError(f"directory {options.db.parent} does not exist (for --db {options.db})")
        self.data_dir = Path(tempfile.mkdtemp(prefix="warmup-demo-"))
        self.db_path = options.db.resolve() if options.db is not None else self.data_dir / "demo.db"
        self.log_path = self.data_dir / "demo.log"
        self.url = f"sqlite:///{self.db_path}"
        self.numbers: list[DemoNumber] = []
        self.clock: ScaledClock | None = None
        self.end = SIM_START + options.days * DAY
        self._engine: Engine | None = None
        self._sim: SimulatorServer | None = None
        self._runner: EmbeddedRunner | None = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def engine(self) -> Engine:
        assert self._engine is not None
        return self._engine

    def start(self) -> None:
        engine = make_engine(self.url)
        upgrade(engine)
        self._engine = engine
        chosen = fleet_profiles(self.options.numbers)
        plans = {p.plan_file: load_plan(self.plans_dir / p.plan_file) for p, _ in chosen}
        tokens = [secrets.token_hex(16) for _ in chosen]
        for token in tokens:
            register_secret(token)  # masked in every log line from now on
        channels = tuple(
            ChannelSpec(
                token=token,
                phone=phone,
                registered=SIM_START.date() - timedelta(days=profile.age_days),
                meter=profile.meter,
                name=f"demo {i + 1}",
            )
            for i, ((profile, phone), token) in enumerate(zip(chosen, tokens, strict=True))
        )
        # The clock starts last, so setup time does not eat into the first simulated day.
        clock = ScaledClock.starting_now(SIM_START, self.options.scale)
        self.clock = clock
        self._set_env(CLOCK_ENV_VAR, clock.to_setting())  # any child process would agree on the time
        sim = SimulatorServer(SimConfig(seed=self.options.seed, channels=channels), clock=clock)
        base_url = sim.start()
        self._sim = sim
        for i, ((profile, phone), token) in enumerate(zip(chosen, tokens, strict=True)):
            ref = TOKEN_ENV.format(n=i + 1)
            self._set_env(ref, token)
            plan_path = self.plans_dir / profile.plan_file
            registered = SIM_START.date() - timedelta(days=profile.age_days)
            number_id = add_number(
                engine,
                phone=phone,
                provider="simulator",
                token_ref=ref,
                plan_name=plans[profile.plan_file].name,
                plan_path=str(plan_path),
                timezone=profile.timezone,
                registered=registered,
                base_url=base_url,
                now=clock.now(),
            )
            self.numbers.append(
                DemoNumber(
                    number_id,
                    phone,
                    plans[profile.plan_file].name,
                    profile.timezone,
                    registered,
                    profile.meter,
                )
            )
        runner = EmbeddedRunner(self.url, clock, worker_threads=self.options.worker_threads, migrate=False)
        self._runner = runner
        runner.start()

    def _set_env(self, name: str, value: str) -> None:
        """Set a variable of this process, remembering what to restore at `close`."""
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    @property
    def runner_alive(self) -> bool:
        return self._runner is not None and self._runner.running

    def sent_so_far(self) -> int:
        """How many sends the simulator accepted so far (its log, not the store)."""
        if self._sim is None:
            return 0
        with self._sim.lock:
            return len(self._sim.model.sends())

    def header(self, now: datetime) -> str:
        day = min(int((now - SIM_START) / DAY) + 1, self.options.days)
        return (
            f"simulated {now:%a %d %b %H:%M} UTC · demo day {day}/{self.options.days} · "
            f"1 day = {self.options.day_seconds:g} s · {self.sent_so_far()} sent · Ctrl-C stops early"
        )

    def watch(self, stop: threading.Event) -> bool:
        """Show the fleet until the last simulated day is over or ``stop`` is set; True if interrupted."""
        assert self.clock is not None
        clock: Clock = self.clock
        reported: set[tuple[str, date]] = set()
        live = Live(console=self.console, auto_refresh=False, transient=False) if self.options.live else None
        with live if live is not None else nullcontext():
            while not stop.is_set():
                now = clock.now()
                if now >= self.end:
                    break
                if not self.runner_alive:
                    raise UserError(f"the embedded runner stopped unexpectedly; see the log {self.log_path}")
                for line in finished_days(self.engine, self.numbers, now, reported):
                    self.console.print(day_line_text(line), highlight=False, markup=False)
                if live is not None:
                    live.update(
                        live_table(snapshot(self.engine, self.numbers, now), self.header(now)), refresh=True
                    )
                stop.wait(REFRESH_SECONDS)
        return stop.is_set()

    def stop(self) -> None:
        """Stop the workers (letting sends in flight finish); the simulator stays up for the checks."""
        if self._runner is not None:
            self._runner.stop()
            self._runner = None

    def collect(self, interrupted: bool) -> DemoResult:
        """Summaries and invariant checks from the store and the simulator's send log."""
        assert self.clock is not None and self._sim is not None
        now = self.clock.now()
        with self._sim.lock:
            sends = [record.to_json() for record in self._sim.model.sends()]
            states = {n.phone: self._sim.model.channel_state(n.phone, now) for n in self.numbers}
        # A day is "finished" for the check once the scheduler has had a few ticks to close it.
        tick = Timings.for_scale(self.clock.scale).tick_wall * self.clock.scale
        grace = timedelta(hours=1) + 3 * timedelta(seconds=tick)
        report = check_invariants(self.engine, sends, now, grace=grace, stopped=True)
        today = {n.id: local_date_of(now - grace, n.timezone) for n in self.numbers}
        accounts = day_accounts(self.engine, [n.id for n in self.numbers])
        first = {n.id: local_date_of(SIM_START, n.timezone) for n in self.numbers}
        phones = {n.id: n.phone for n in self.numbers}
        delivery = delivery_report(accounts, phones, today, DELIVERY_TARGET, first)
        finished = {(d.number_id, d.local_date): d for d in delivery.days}

        summaries: list[NumberSummary] = []
        for number in self.numbers:
            stored = get_number(self.engine, number.id)
            state = states[number.phone]
            summary = NumberSummary(
                number.phone,
                number.plan_name,
                number.timezone,
                banned=str(state.get("ban_reason") or "banned") if state.get("banned") else None,
                state="?" if stored is None else stored.state,
                today=local_date_of(now, number.timezone),
            )
            for day in day_tallies(self.engine, number.id):
                sent = report.sends_per_day.get((number.phone, day.local_date), 0)  # the log is the truth
                summary.days.append((day.local_date, day.quota, sent, day.action))
                summary.replies += history.day_outcome(self.engine, number.id, day.local_date).replies
                if (number.id, day.local_date) in finished:
                    summary.accounts.append(finished[(number.id, day.local_date)])
            summary.pauses = sum(
                1 for row in audit.list_audit(self.engine, number.id, limit=1000) if row.action == "pause"
            )
            summaries.append(summary)
        return DemoResult(
            summaries, [*report.checks(), delivery.check()], interrupted, now, delivered=delivery.total
        )

    def close(self, keep: bool) -> Path | None:
        """Stop everything, forget the tokens; the data directory is kept (and returned) if ``keep``."""
        self.stop()
        if self._sim is not None:
            self._sim.stop()
            self._sim = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        if keep:
            return self.data_dir
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return None


def run_demo(options: DemoOptions, console: Console, stop: threading.Event | None = None) -> DemoResult:
    """Run the demo to the end (or until ``stop`` is set) and return its summary and checks.

    The data directory (database unless ``--db``, and the log) is removed after a clean run and kept,
    with its path in the result, when a check failed or something broke.
    """
    stop = stop or threading.Event()
    demo = Demo(options, console)
    keep = True
    try:
        with _log_to(demo.log_path):
            demo.start()
            interrupted = demo.watch(stop)
            demo.stop()
            result = demo.collect(interrupted)
            if options.chart is not None:
                try:
                    from warmup.cli.charts import demo_chart  # matplotlib: only with --chart

                    demo_chart(result.summaries, options.chart)
                except OSError as exc:
                    raise UserError(
                        f"cannot write the chart to {options.chart}: {exc.strerror or exc}"
                    ) from None
            keep = not result.ok
    finally:
        kept = demo.close(keep)
    result.data_dir = kept
    return result
