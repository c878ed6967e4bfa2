"""What the demo shows while it runs: a live table of the fleet (one row per number) in a terminal, and
one plain line per finished local day otherwise (CI logs, pipes). Both are read from the store, as
`warmup status` would read them, never from the simulator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.text import Text

from warmup.cli.tables import RISK_LEGEND, Cell, Column, FittedTable, abbreviate, abbreviations, risk_cell
from warmup.core.accounting import DayAccount, percent
from warmup.core.domain import Reading
from warmup.core.localtime import local_date_of, local_day_bounds, zone
from warmup.store import days, history, readings
from warmup.store.accounts import day_accounts
from warmup.store.checks import day_tallies
from warmup.store.db import Engine
from warmup.store.numbers import get_number
from warmup.store.readings import reading_of_day


@dataclass(frozen=True)
class DemoNumber:
    """One enrolled number of the demo fleet."""

    id: int
    phone: str
    plan_name: str
    timezone: str
    registered: date
    meter: bool


@dataclass(frozen=True)
class NumberRow:
    """What the live view shows of one number right now."""

    phone: str
    plan: str
    local_time: datetime  # in the number's time zone
    plan_day: int | None
    quota: int | None
    sent: int
    replies: int
    reading: Reading | None
    action: str
    state: str
    reason: str | None = None  # why the number is not active (its pause reason)


ADVANCE_KNOWN_WITHIN = timedelta(hours=3)
"""A finished day's line waits this long into the next local day for that day to be planned, which
tells whether the plan day advanced."""


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
    reading: Reading | None
    account: DayAccount | None = None  # what became of the quota (delivered, skipped by cause)

    @property
    def advanced(self) -> str:
        """Whether the plan day moved on after this day, apart from the day's action (an `advance`
        decision only moves the ramp on if the day went well)."""
        if self.account is None or self.account.advanced is None:
            return "next ?"
        return "advanced" if self.account.advanced else "stayed"

    @property
    def delivered(self) -> str:
        return percent(self.account.delivered) if self.account is not None else "-"

    @property
    def shortfall(self) -> str:
        """``not sent 11: skipped: windows ended 11`` when the day is short of its quota, else empty."""
        if self.account is None or not self.account.missing:
            return ""
        return f"not sent {self.account.missing}: {self.account.shortfall_text()}"


def snapshot(engine: Engine, numbers: Sequence[DemoNumber], now: datetime) -> list[NumberRow]:
    """The live view's rows, read from the store (the same rows `warmup status` would read)."""
    rows: list[NumberRow] = []
    for number in numbers:
        stored = get_number(engine, number.id)
        today = local_date_of(now, number.timezone)
        day = days.get_day_plan(engine, number.id, today)
        outcome = history.day_outcome(engine, number.id, today)
        rows.append(
            NumberRow(
                phone=number.phone,
                plan=number.plan_name,
                local_time=now.astimezone(zone(number.timezone)),
                plan_day=None if day is None else day.plan_day,
                quota=None if day is None else day.quota,
                sent=outcome.sent,
                replies=outcome.replies,
                reading=readings.latest_reading(engine, number.id),
                action="-" if day is None else day.action,
                state="?" if stored is None else stored.state,
                reason=None if stored is None or stored.state == "active" else stored.paused_reason,
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
        accounts = {a.local_date: a for a in day_accounts(engine, [number.id])}
        for day in day_tallies(engine, number.id):
            if day.local_date >= today or (number.phone, day.local_date) in reported:
                continue
            unknown = accounts[day.local_date].advanced is None
            if unknown and now - local_day_bounds(today, number.timezone)[0] < ADVANCE_KNOWN_WITHIN:
                continue  # today is not planned yet: whether yesterday advanced the plan is not known
            reported.add((number.phone, day.local_date))
            outcome = history.day_outcome(engine, number.id, day.local_date)
            lines.append(
                DayLine(
                    phone=number.phone,
                    plan=number.plan_name,
                    local_date=day.local_date,
                    plan_day=day.plan_day,
                    action=day.action,
                    quota=day.quota,
                    used=day.used,
                    sent=outcome.sent,
                    replies=outcome.replies,
                    reading=reading_of_day(engine, number.id, day.local_date),
                    account=accounts.get(day.local_date),
                )
            )
    return sorted(lines, key=lambda line: (line.local_date, line.phone))


def day_line_text(line: DayLine) -> DayLineText:
    """The plain line of a finished day, as much of it as the console's width holds."""
    return DayLineText(line)


class DayLineText:
    """One finished day on one line: every detail where there is room, the essentials in 80 columns.

    A renderable rather than a string, so the line is chosen for the width it is printed at (CI logs are
    wide, a terminal with ``--plain`` may have 80 columns) and never wraps in the middle of a word.
    """

    def __init__(self, line: DayLine) -> None:
        self.line = line

    def forms(self) -> list[str]:
        """The line from the widest form to the narrowest (which fits 80 columns)."""
        x = self.line
        risk = risk_cell(x.reading)
        return [
            f"{x.local_date:%a %Y-%m-%d}  {x.phone:<15} {x.plan:<13} day {x.plan_day:<3} {x.action:<9} "
            f"{x.advanced:<8}  quota {x.quota:>3}  sent {x.sent:>3} {x.delivered:>4}  "
            f"replies {x.replies:>3}  risk {risk.text}",
            f"{x.local_date:%a %d %b}  {x.phone:<15} {abbreviate(x.plan, 9):<9}  day {x.plan_day:<3} "
            f"{x.action:<9} {x.advanced:<8} sent {x.sent:>3}/{x.quota:<3} {x.delivered:>4}  "
            f"{x.replies:>3} repl.  risk {risk.short}",
            f"{x.local_date:%a %d}  {x.phone:<15} day {x.plan_day:<3} {x.action:<8} {x.advanced:<8} "
            f"{x.sent:>3}/{x.quota:<3} {x.delivered:>4}  {x.replies:>3} repl.",
        ]

    def text(self, width: int) -> str:
        """The widest form that fits ``width`` (the narrowest when none does)."""
        forms = self.forms()
        return next((form for form in forms if cell_len(form) <= width), forms[-1])

    def __str__(self) -> str:
        return self.forms()[0]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(self.text(options.max_width))
        if self.line.shortfall:  # why the day fell short, on a line of its own (wrapped between words)
            yield Text(f"    {self.line.shortfall}", style="yellow")


def live_table(rows: Sequence[NumberRow], header: str) -> Group:
    """The live view: a one-line header, one row per number (as wide as the console allows, see
    `FittedTable`), the risk legend, and why each number that is not active stopped."""
    plans = abbreviations((row.plan for row in rows), 9)
    columns = [
        Column("phone"),
        Column("plan", shorten=2),
        Column("local time", short_header="local", shorten=1),
        Column("plan day", "right", short_header="day", shorten=3),
        Column("quota", "right"),
        Column("sent", "right"),
        Column("replies", "right", short_header="repl.", shorten=6, drop=7),
        Column("risk", shorten=4),
        Column("action", drop=5),
        Column("state"),
    ]
    table = FittedTable(
        columns,
        (
            [
                row.phone,
                Cell(row.plan, plans[row.plan]),
                Cell(f"{row.local_time:%a %d %b %H:%M}", f"{row.local_time:%a %H:%M}"),
                "-" if row.plan_day is None else str(row.plan_day),
                "-" if row.quota is None else str(row.quota),
                str(row.sent),
                str(row.replies),
                risk_cell(row.reading),
                row.action,
                Text(row.state, style="green" if row.state == "active" else "bold red"),
            ]
            for row in rows
        ),
    )
    notes = [
        Text(f"{row.phone} {row.state}: {row.reason}", style="red") for row in rows if row.reason is not None
    ]
    return Group(Text(header, style="bold"), table, Text(RISK_LEGEND, style="dim"), *notes)
