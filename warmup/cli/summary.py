"""What the demo shows when it is over: the warm-up summary table (one row per number, its whole run) and
the optional chart of each number's quota against what was sent, per local day. Sends are counted
from the simulator's log, the ground truth of what went out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from rich.console import Group
from rich.text import Text

from warmup.cli.tables import Cell, Column, FittedTable, Value, abbreviations
from warmup.core.accounting import DayAccount, percent


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
    accounts: list[DayAccount] = field(default_factory=list)  # its finished sending days

    @property
    def delivered(self) -> float | None:
        """Sent over quota of its finished sending days."""
        quota = sum(a.quota for a in self.accounts)
        return sum(a.sent for a in self.accounts) / quota if quota else None

    @property
    def shortfall(self) -> str:
        """What kept its finished days short of their quota, summed over the run (top causes)."""
        total: dict[str, int] = {}
        for account in self.accounts:
            for label, count in account.shortfall():
                total[label] = total.get(label, 0) + count
        top = sorted(total.items(), key=lambda item: (-item[1], item[0]))[:3]
        return ", ".join(f"{label} {count}" for label, count in top)

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


def summary_table(summaries: Sequence[NumberSummary]) -> Group:
    """One row per number: its whole run, sends counted from the simulator's log; below it, the reason
    of each ban. As wide as the console allows (`FittedTable`): in 80 columns the time zone goes first."""
    plans = abbreviations((s.plan for s in summaries), 9)
    columns = [
        Column("phone"),
        Column("plan", shorten=2),
        Column("timezone", shorten=1, drop=4),
        Column("local days", "right", short_header="days", shorten=3),
        Column("sent", "right"),
        Column("deliv.", "right"),
        Column("replies", "right", short_header="repl.", shorten=3),
        Column("pauses", "right"),
        Column("busiest day", short_header="busiest", shorten=3),
        Column("state"),
    ]
    rows: list[list[Value]] = [
        [
            s.phone,
            Cell(s.plan, plans[s.plan]),
            Cell(s.timezone, s.timezone.rsplit("/", 1)[-1]),
            str(len(s.days)),
            str(s.total_sent),
            percent(s.delivered),
            str(s.replies),
            str(s.pauses),
            s.busiest,
            Text("banned", style="bold red") if s.banned else Text(s.state),
        ]
        for s in summaries
    ]
    bans = [
        Text(f"{s.phone} was banned: {s.banned} (its state in warmup: {s.state})", style="bold red")
        for s in summaries
        if s.banned
    ]
    short = [
        Text(f"{s.phone} fell short of its quota ({percent(s.delivered)}): {s.shortfall}", style="yellow")
        for s in summaries
        if s.accounts and any(a.missing for a in s.accounts)
    ]
    return Group(FittedTable(columns, rows, title="warm-up summary"), *short, *bans)
