"""What the demo shows when it is over: the warm-up summary table (one row per number, its whole run) and
the optional chart of each number's quota against what was sent, per local day. Sends are counted
from the simulator's log, the ground truth of what went out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

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


def write_chart(summaries: Sequence[NumberSummary], path: Path) -> None:
    """Per number: the day's quota against what the simulator says was sent, per local day."""
    import matplotlib  # heavy (about a second to import): loaded only when a chart is asked for

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
