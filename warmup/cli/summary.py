"""What the demo shows when it is over: the warm-up summary table (one row per number, its whole run) and
the optional chart of each number's quota against what was sent, per local day. Sends are counted
from the simulator's log, the ground truth of what went out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from rich.table import Table
from rich.text import Text


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
