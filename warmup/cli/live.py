"""What the demo shows while it runs: a live table of the fleet (one row per number) in a terminal, and
one plain line per finished local day otherwise (CI logs, pipes). Both are read from the store, as
`warmup status` would read them, never from the simulator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text

from warmup.core.domain import Reading
from warmup.core.localtime import local_date_of, zone
from warmup.store import days, history, readings
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


def reading_text(reading: Reading | None) -> str:
    """The four risk factors as ``overall/lifetime/response/contacts``, marked when the meter is ours."""
    if reading is None:
        return "-"
    text = f"{reading.overall}/{reading.lifetime}/{reading.response_rate}/{reading.contacts}"
    return f"{text} local" if reading.source == "local" else text


def snapshot(engine: Engine, numbers: Sequence[DemoNumber], now: datetime) -> list[NumberRow]:
    """The live view's rows, read from the store (the same rows `warmup status` would read)."""
    rows: list[NumberRow] = []
    for number in numbers:
        stored = get_number(engine, number.id)
        today = local_date_of(now, number.timezone)
        day = days.get_day_plan(engine, number.id, today)
        outcome = history.day_outcome(engine, number.id, today)
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
                reading=reading_text(readings.latest_reading(engine, number.id)),
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
        for day in day_tallies(engine, number.id):
            if day.local_date >= today or (number.phone, day.local_date) in reported:
                continue
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
                    reading=reading_text(reading_of_day(engine, number.id, day.local_date)),
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
