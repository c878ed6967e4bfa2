"""A plan preview as people read it: the day-by-day table (rich) and a one-line summary.

The simulation itself is `warmup.services.preview`; its chart is `warmup.cli.charts.preview_chart`.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from warmup.core.domain import Action
from warmup.core.plan.values import WEEKDAYS
from warmup.services.preview import Preview, PreviewDay

ACTION_COLORS: dict[Action, str] = {
    Action.ADVANCE: "#2e7d32",
    Action.CAP: "#00838f",
    Action.THROTTLE: "#ef6c00",
    Action.STEP_BACK: "#6a1b9a",
    Action.HOLD: "#f9a825",
    Action.REST: "#9e9e9e",
    Action.PAUSE: "#c62828",
    Action.STOP: "#212121",
}


def _reading_text(day: PreviewDay) -> str:
    if day.reading is None:
        return "none"
    r = day.reading
    text = f"o{r.overall} l{r.lifetime} r{r.response_rate} c{r.contacts}"
    return text if day.fresh_reading else f"({text})"


def preview_table(preview: Preview) -> Table:
    """One row per local day: date, weekday, plan day, action, quota, plan volume, reading and why."""
    table = Table(
        title=f"{preview.plan_name} under scenario {preview.scenario.name} ({preview.timezone})",
        caption="reading: o=overall l=lifetime r=response rate c=contacts, 3 good .. 1 caution; "
        "(…) = no new reading that day; rules that fired without changing the day are not shown",
        show_lines=False,
    )
    for header, justify in (
        ("date", "left"),
        ("day", "left"),
        ("plan day", "right"),
        ("action", "left"),
        ("quota", "right"),
        ("plan vol", "right"),
        ("reading", "left"),
        ("reasons", "left"),
    ):
        # Short columns never wrap; the reasons column takes whatever width is left.
        wide = header == "reasons"
        table.add_column(
            header,
            justify=justify,  # type: ignore[arg-type]
            overflow="fold",
            no_wrap=not wide,
            ratio=1 if wide else None,
            min_width=20 if wide else None,  # 100 columns hold the table
        )
    for day in preview.days:
        decision = day.decision
        reasons = [reason.text for reason in decision.reasons if reason.rule != "ramp" and reason.binding]
        table.add_row(
            decision.local_date.isoformat(),
            WEEKDAYS[decision.local_date.weekday()],
            str(decision.plan_day),
            Text(decision.action.value, style=ACTION_COLORS[decision.action]),
            str(decision.quota),
            str(decision.plan_volume),
            _reading_text(day),
            "\n".join(reasons),
        )
    return table


def summary(preview: Preview) -> str:
    """One line: days, messages, plan day reached and how often each action decided the day."""
    counts: dict[Action, int] = {}
    for day in preview.days:
        counts[day.decision.action] = counts.get(day.decision.action, 0) + 1
    total = sum(day.decision.quota for day in preview.days)
    last = preview.days[-1].decision
    actions = ", ".join(f"{action.value} {count}" for action, count in counts.items())
    return f"{len(preview.days)} days, {total} messages, plan day {last.next_plan_day} reached; {actions}"
