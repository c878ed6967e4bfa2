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
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from warmup.clock import ENV_VAR as CLOCK_ENV_VAR
from warmup.clock import Clock, ScaledClock
from warmup.core.errors import UserError
from warmup.core.spread import local_date_of, zone
from warmup.secrets import register_secret
from warmup.services.runtime import Timings
from warmup.simulator import ChannelSpec, SimConfig, SimulatorServer
from warmup.store import ops
from warmup.store.models import TERMINAL_STATES
from workers.embedded import EmbeddedRunner

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
SIM_START = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
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


@dataclass(frozen=True)
class DemoNumber:
    """One enrolled number of the demo fleet."""

    id: int
    phone: str
    plan_name: str
    timezone: str
    registered: date
    meter: bool


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


def fleet_profiles(count: int) -> list[tuple[Profile, str]]:
    """``count`` (profile, phone) pairs: the profiles in turn, every phone distinct."""
    return [
        (PROFILES[i % len(PROFILES)], PROFILES[i % len(PROFILES)].phone_format.format(i + 1))
        for i in range(count)
    ]


# ----------------------------------------------------------------------------------------- watching


@dataclass(frozen=True)
class NumberRow:
    """What the live view shows of one number right now."""

    phone: str
    plan: str
    local_time: str
    plan_day: int | None
    quota: int | None
    sent: int
    replies: int
    reading: str
    action: str
    state: str


@dataclass(frozen=True)
class DayLine:
    """One finished local day of one number (the plain per-day summary)."""

    phone: str
    plan: str
    local_date: date
    plan_day: int
    action: str
    quota: int
    used: int
    sent: int
    replies: int
    reading: str


def _reading_text(overall: int, lifetime: int, response_rate: int, contacts: int, source: str) -> str:
    text = f"{overall}/{lifetime}/{response_rate}/{contacts}"
    return f"{text} local" if source == "local" else text


def _day_plans(engine: Engine, number_id: int) -> list[tuple[date, int, int, int, str]]:
    """(local date, plan day, quota, used, action) of every planned day of a number, oldest first."""
    table = ops.DAY_PLANS
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(table.c.local_date, table.c.plan_day, table.c.quota, table.c.used, table.c.action)
            .where(table.c.number_id == number_id)
            .order_by(table.c.local_date)
        ).all()
    return [(row[0], int(row[1]), int(row[2]), int(row[3]), str(row[4])) for row in rows]


def _day_reading(engine: Engine, number_id: int, local_date: date) -> str:

    table = ops.READINGS
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                table.c.overall, table.c.lifetime, table.c.response_rate, table.c.contacts, table.c.source
            )
            .where(table.c.number_id == number_id, table.c.local_date == local_date)
            .order_by(table.c.taken_at.desc(), table.c.id.desc())
            .limit(1)
        ).one_or_none()
    return "-" if row is None else _reading_text(*row)


def snapshot(engine: Engine, numbers: Sequence[DemoNumber], now: datetime) -> list[NumberRow]:
    """The live view's rows, read from the store (the same rows `warmup status` would read)."""
    rows: list[NumberRow] = []
    for number in numbers:
        stored = ops.get_number(engine, number.id)
        today = local_date_of(now, number.timezone)
        day = ops.get_day_plan(engine, number.id, today)
        outcome = ops.day_outcome(engine, number.id, today)
        reading = ops.latest_reading(engine, number.id)
        state = "?" if stored is None else stored.state
        if stored is not None and stored.state != "active" and stored.paused_reason:
            state = f"{stored.state}: {stored.paused_reason}"
        rows.append(
            NumberRow(
                phone=number.phone,
                plan=number.plan_name,
                local_time=now.astimezone(zone(number.timezone)).strftime("%a %d %b %H:%M"),
                plan_day=None if day is None else day.plan_day,
                quota=None if day is None else day.quota,
                sent=outcome.sent,
                replies=outcome.replies,
                reading="-"
                if reading is None
                else _reading_text(
                    reading.overall, reading.lifetime, reading.response_rate, reading.contacts, reading.source
                ),
                action="-" if day is None else day.action,
                state=state,
            )
        )
    return rows


def finished_days(
    engine: Engine, numbers: Sequence[DemoNumber], now: datetime, reported: set[tuple[str, date]]
) -> list[DayLine]:
    """Local days that ended by ``now`` and were not reported yet (adds them to ``reported``)."""
    lines: list[DayLine] = []
    for number in numbers:
        today = local_date_of(now, number.timezone)
        for local_date, plan_day, quota, used, action in _day_plans(engine, number.id):
            if local_date >= today or (number.phone, local_date) in reported:
                continue
            reported.add((number.phone, local_date))
            outcome = ops.day_outcome(engine, number.id, local_date)
            lines.append(
                DayLine(
                    phone=number.phone,
                    plan=number.plan_name,
                    local_date=local_date,
                    plan_day=plan_day,
                    action=action,
                    quota=quota,
                    used=used,
                    sent=outcome.sent,
                    replies=outcome.replies,
                    reading=_day_reading(engine, number.id, local_date),
                )
            )
    return sorted(lines, key=lambda line: (line.local_date, line.phone))


def day_line_text(line: DayLine) -> str:
    return (
        f"{line.local_date:%a %Y-%m-%d}  {line.phone:<15} {line.plan:<13} day {line.plan_day:<3} "
        f"{line.action:<9} quota {line.quota:>3}  sent {line.sent:>3}  replies {line.replies:>3}  "
        f"risk {line.reading}"
    )


def live_table(rows: Sequence[NumberRow], header: str) -> Group:
    """The live view: one row per number, under a one-line header."""
    table = Table(expand=False, header_style="bold")
    for name, justify in (
        ("phone", "left"),
        ("plan", "left"),
        ("local time", "left"),
        ("plan day", "right"),
        ("quota", "right"),
        ("sent", "right"),
        ("replies", "right"),
        ("risk o/l/r/c", "left"),
        ("action", "left"),
        ("state", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        state = Text(row.state[:48], style="green" if row.state == "active" else "bold red")
        table.add_row(
            row.phone,
            row.plan,
            row.local_time,
            "-" if row.plan_day is None else str(row.plan_day),
            "-" if row.quota is None else str(row.quota),
            str(row.sent),
            str(row.replies),
            row.reading,
            row.action,
            state,
        )
    return Group(Text(header, style="bold"), table)


# ----------------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class SendRow:
    """One send the simulator accepted (its log is the ground truth of what went out)."""

    channel: str
    message_id: str
    accepted_at: datetime


@dataclass(frozen=True)
class MessageRow:
    """One outbound message as the store has it."""

    id: int
    phone: str
    local_date: date
    state: str
    provider_message_id: str | None


@dataclass(frozen=True)
class Check:
    """One invariant and whether the run kept it."""

    name: str
    ok: bool
    detail: str


def check_invariants(
    sends: Sequence[SendRow],
    messages: Sequence[MessageRow],
    days: Mapping[tuple[str, date], tuple[int, int]],
    timezones: Mapping[str, str],
    settled: Mapping[str, date],
) -> list[Check]:
    """The three invariants a run must keep, from the simulator's log and the store.

    ``days`` maps (phone, local date) to (quota, used) of its day plan; ``settled`` gives, per phone,
    the first local date that may still have work in flight: every message of an earlier day must be
    terminal. A send the simulator logged is attributed to the local day of its stored message (the
    day whose quota it took), or, if no stored message knows it, to the local day it arrived on.
    """
    by_provider_id: dict[str, list[MessageRow]] = defaultdict(list)
    for message in messages:
        if message.provider_message_id:
            by_provider_id[message.provider_message_id].append(message)

    # 1. quota: sends per number and local day (ground truth) and slots taken (store) within the quota
    per_day: Counter[tuple[str, date]] = Counter()
    for send in sends:
        owners = by_provider_id.get(send.message_id)
        day = owners[0].local_date if owners else local_date_of(send.accepted_at, timezones[send.channel])
        per_day[(send.channel, day)] += 1
    over = [
        f"{phone} sent {count} on {day} with quota {days[(phone, day)][0] if (phone, day) in days else '-'}"
        for (phone, day), count in sorted(per_day.items())
        if (phone, day) not in days or count > days[(phone, day)][0]
    ]
    over += [
        f"{phone} used {used} slots of quota {quota} on {day}"
        for (phone, day), (quota, used) in sorted(days.items())
        if used > quota
    ]
    peak = max(
        (count / days[key][0] for key, count in per_day.items() if key in days and days[key][0]), default=0.0
    )
    quota_check = Check(
        "no number exceeded its local-day quota",
        not over,
        "; ".join(over[:5])
        or f"{len(per_day)} number-days checked against the send log, busiest at {peak:.0%} of its quota",
    )

    # 2. no message sent twice: each logged send is one stored message, each stored `sent` one logged send
    log_ids = Counter(send.message_id for send in sends)
    problems = [f"the simulator logged message id {mid} {n} times" for mid, n in log_ids.items() if n > 1]
    problems += [
        f"messages {', '.join(str(m.id) for m in rows)} share the provider id {mid}"
        for mid, rows in by_provider_id.items()
        if len(rows) > 1
    ]
    orphans = [send for send in sends if send.message_id not in by_provider_id]
    unknown = sum(1 for m in messages if m.state == "unknown" and not m.provider_message_id)
    if len(orphans) > unknown:
        problems.append(
            f"{len(orphans)} sends in the simulator's log match no stored message "
            f"(only {unknown} messages are in state unknown)"
        )
    phantom = [m for m in messages if m.state == "sent" and m.provider_message_id not in log_ids]
    if phantom:
        problems.append(f"{len(phantom)} messages are stored as sent but the simulator never accepted them")
    twice_check = Check(
        "no message sent twice",
        not problems,
        "; ".join(problems[:5])
        or f"{len(sends)} sends in the simulator's log, each one stored message, none repeated",
    )

    # 3. nothing stuck: every message of a finished day is terminal; nothing is left `sending`
    stuck = [
        m
        for m in messages
        if m.state == "sending" or (m.local_date < settled[m.phone] and m.state not in TERMINAL_STATES)
    ]
    finished = Counter(m.state for m in messages if m.local_date < settled[m.phone])
    breakdown = ", ".join(f"{finished[state]} {state}" for state in ("sent", "failed", "skipped", "unknown"))
    stuck_check = Check(
        "no message stuck non-terminal",
        not stuck,
        "; ".join(f"message {m.id} of {m.phone} on {m.local_date} is {m.state}" for m in stuck[:5])
        or f"all {finished.total()} messages of finished local days are terminal ({breakdown})",
    )
    return [quota_check, twice_check, stuck_check]


# ------------------------------------------------------------------------------------------ summary


@dataclass
class NumberSummary:
    """The whole run of one number, for the final table and the chart."""

    phone: str
    plan: str
    timezone: str
    days: list[tuple[date, int, int, str]] = field(default_factory=list)  # (local date, quota, sent, action)
    today: date | None = None  # the local day in progress when the run ended
    replies: int = 0
    pauses: int = 0
    banned: str | None = None
    state: str = "active"

    @property
    def total_sent(self) -> int:
        return sum(sent for _, _, sent, _ in self.days)

    @property
    def busiest(self) -> str:
        """Sent vs quota on the day that sent the most."""
        if not self.days:
            return "-"
        _, quota, sent, _ = max(self.days, key=lambda day: (day[2], day[1]))
        return f"{sent}/{quota}"


@dataclass
class DemoResult:
    """What a demo run produced: per-number summaries, the invariant checks, and how it ended."""

    summaries: list[NumberSummary]
    checks: list[Check]
    interrupted: bool
    sim_end: datetime
    data_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def summary_table(summaries: Sequence[NumberSummary]) -> Table:
    """One row per number: its whole run, sends counted from the simulator's log."""
    table = Table(title="warm-up summary", header_style="bold")
    numeric = ("local days", "sent", "replies", "pauses")
    for name in ("phone", "plan", "timezone", *numeric, "busiest day", "ban", "state"):
        table.add_column(name, justify="right" if name in numeric else "left")
    for s in summaries:
        table.add_row(
            s.phone,
            s.plan,
            s.timezone,
            str(len(s.days)),
            str(s.total_sent),
            str(s.replies),
            str(s.pauses),
            s.busiest,
            Text(s.banned or "-", style="bold red" if s.banned else ""),
            s.state[:40],
        )
    return table


def write_chart(summaries: Sequence[NumberSummary], path: Path) -> None:
    """Per number: the day's quota against what the simulator says was sent, per local day."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    count = max(len(summaries), 1)
    fig, axes = plt.subplots(count, 1, figsize=(9.0, 2.4 * count + 0.6), dpi=100, squeeze=False)
    try:
        for ax, s in zip(axes[:, 0], summaries, strict=False):
            labels = [f"{day:%a %d}" + ("*" if day == s.today else "") for day, _, _, _ in s.days]
            xs = list(range(len(s.days)))
            ax.bar(
                xs,
                [quota for _, quota, _, _ in s.days],
                width=0.8,
                fill=False,
                edgecolor="#1565c0",
                linewidth=1.4,
                label="quota",
                zorder=3,
            )
            ax.bar(xs, [sent for _, _, sent, _ in s.days], width=0.5, color="#66bb6a", label="sent", zorder=2)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xticks(xs, labels)
            ax.set_title(f"{s.phone} · {s.plan} · {s.timezone}", fontsize=10)
            ax.set_ylabel("messages")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(loc="upper left", fontsize=8)
        fig.suptitle("warmup demo: quota vs sent per local day")
        fig.text(0.01, 0.005, "* the local day was still in progress when the demo ended", fontsize=8)
        fig.tight_layout(rect=(0, 0.025, 1, 1))
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


# -------------------------------------------------------------------------------------------- a run


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Send this process's log records to ``path`` (tokens redacted) instead of the terminal."""
    from warmup.secrets import RedactingFilter

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
        from warmup.files.loader import load_plan
        from warmup.store.db import make_engine, upgrade

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
            number_id = ops.add_number(
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
        by_phone = {n.phone: n for n in self.numbers}
        with self._sim.lock:
            records = list(self._sim.model.sends())
            states = {n.phone: self._sim.model.channel_state(n.phone, now) for n in self.numbers}
        sends = [SendRow(r.channel, r.message_id, r.accepted_at) for r in records]
        messages, days = self._store_rows()
        # A day is "finished" for the check once the scheduler has had a few ticks to close it.
        tick = Timings.for_scale(self.clock.scale).tick_wall * self.clock.scale
        grace = timedelta(hours=1) + 3 * timedelta(seconds=tick)
        settled = {n.phone: local_date_of(now - grace, n.timezone) for n in self.numbers}
        checks = check_invariants(sends, messages, days, {n.phone: n.timezone for n in self.numbers}, settled)

        summaries: list[NumberSummary] = []
        sent_per_day = Counter(
            (m.phone, m.local_date) for m in messages if m.provider_message_id and m.state == "sent"
        )
        stored_ids = {m.provider_message_id for m in messages if m.provider_message_id}
        for send in sends:  # a send the store does not know still counts: the log is the truth
            if send.message_id not in stored_ids:
                sent_per_day[
                    (send.channel, local_date_of(send.accepted_at, by_phone[send.channel].timezone))
                ] += 1
        for number in self.numbers:
            stored = ops.get_number(self.engine, number.id)
            state = states[number.phone]
            summary = NumberSummary(
                number.phone,
                number.plan_name,
                number.timezone,
                banned=str(state.get("ban_reason") or "banned") if state.get("banned") else None,
                state="?" if stored is None else stored.state,
                today=local_date_of(now, number.timezone),
            )
            for local_date, _plan_day, quota, _used, action in _day_plans(self.engine, number.id):
                sent = sent_per_day.get((number.phone, local_date), 0)
                summary.days.append((local_date, quota, sent, action))
                summary.replies += ops.day_outcome(self.engine, number.id, local_date).replies
            summary.pauses = sum(
                1 for row in ops.list_audit(self.engine, number.id, limit=1000) if row.action == "pause"
            )
            summaries.append(summary)
        return DemoResult(summaries, checks, interrupted, now)

    def _store_rows(self) -> tuple[list[MessageRow], dict[tuple[str, date], tuple[int, int]]]:

        phones = {n.id: n.phone for n in self.numbers}
        with self.engine.connect() as conn:
            m = ops.MESSAGES
            messages = [
                MessageRow(row.id, phones[row.number_id], row.local_date, row.state, row.provider_message_id)
                for row in conn.execute(
                    sa.select(m.c.id, m.c.number_id, m.c.local_date, m.c.state, m.c.provider_message_id)
                ).all()
            ]
            d = ops.DAY_PLANS
            days = {
                (phones[row.number_id], row.local_date): (row.quota, row.used)
                for row in conn.execute(sa.select(d.c.number_id, d.c.local_date, d.c.quota, d.c.used)).all()
            }
        return messages, days

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
                    write_chart(result.summaries, options.chart)
                except OSError as exc:
                    raise UserError(
                        f"cannot write the chart to {options.chart}: {exc.strerror or exc}"
                    ) from None
            keep = not result.ok
    finally:
        kept = demo.close(keep)
    result.data_dir = kept
    return result
