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
    return Group(FittedTable(columns, rows, title="warm-up summary"), *bans)
