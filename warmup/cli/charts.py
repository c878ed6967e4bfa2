"""The PNG charts the command line draws: a plan preview (`warmup plan preview --chart`), a number's history
(`warmup history --chart`) and the demo's quota against what was sent (`warmup demo --chart`).

matplotlib takes about half a second to import, so this module is imported only by the commands that
draw (inside their functions, like every command's own imports: see `warmup.cli.main`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib import pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from warmup.cli.preview_view import ACTION_COLORS
from warmup.cli.summary import NumberSummary
from warmup.core.accounting import DayAccount
from warmup.core.domain import Action, SkipCause
from warmup.core.errors import UserError
from warmup.core.plan.values import WEEKDAYS
from warmup.services.admin import HistoryDay
from warmup.services.preview import Preview

matplotlib.use("Agg")  # files only: no display, and the same output on every machine


def preview_chart(preview: Preview, path: str | Path) -> None:
    """Write a PNG: quota per day (bars) against the plan's own curve, risk actions marked, pauses shaded."""

    days = preview.days
    xs = list(range(len(days)))
    quotas = [day.decision.quota for day in days]
    fig, ax = plt.subplots(figsize=(max(10.0, 0.38 * len(days)), 6.0), dpi=110)
    try:
        for x, day in zip(xs, days, strict=True):
            if day.decision.action is Action.PAUSE:
                ax.axvspan(x - 0.5, x + 0.5, color=ACTION_COLORS[Action.PAUSE], alpha=0.12, linewidth=0)
            elif day.decision.action is Action.REST:
                ax.axvspan(x - 0.5, x + 0.5, color="#bdbdbd", alpha=0.25, linewidth=0)
        ax.bar(
            xs,
            quotas,
            width=0.7,
            color="#90caf9",
            edgecolor="#1565c0",
            linewidth=0.6,
            label="quota",
            zorder=2,
        )
        ax.step(
            xs,
            [day.ideal_volume for day in days],
            where="mid",
            color="#37474f",
            linestyle="--",
            linewidth=1.6,
            label="plan's own curve (no risk events)",
            zorder=3,
        )
        ax.step(
            xs,
            [day.decision.plan_volume for day in days],
            where="mid",
            color="#78909c",
            linestyle=":",
            linewidth=1.4,
            label="plan volume at the plan day reached",
            zorder=3,
        )
        top = max([*quotas, *(day.ideal_volume for day in days), 1])
        marked = (Action.CAP, Action.THROTTLE, Action.STEP_BACK, Action.HOLD, Action.PAUSE, Action.STOP)
        markers = {Action.CAP: "v", Action.THROTTLE: "o", Action.STEP_BACK: "<", Action.HOLD: "s"}
        labels = {Action.CAP: "cap (or resume climb)", Action.HOLD: "hold (or stale reading)"}
        handles: list[Any] = []
        for action in marked:
            points = [
                (x, q) for x, q, day in zip(xs, quotas, days, strict=True) if day.decision.action is action
            ]
            if not points:
                continue
            ax.scatter(
                [x for x, _ in points],
                [q + top * 0.03 for _, q in points],
                marker=markers.get(action, "X"),
                s=60,
                color=ACTION_COLORS[action],
                edgecolors="white",
                linewidths=0.8,
                zorder=4,
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    marker=markers.get(action, "X"),
                    linestyle="",
                    color=ACTION_COLORS[action],
                    label=labels.get(action, action.value.replace("_", " ")),
                )
            )
        if any(day.decision.action is Action.PAUSE for day in days):
            handles.append(Patch(color=ACTION_COLORS[Action.PAUSE], alpha=0.12, label="paused"))
        if any(day.decision.action is Action.REST for day in days):
            handles.append(Patch(color="#bdbdbd", alpha=0.25, label="rest day"))
        base_handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=[*base_handles, *handles], loc="upper left", fontsize=9, framealpha=0.9)
        ax.set_xticks(xs)
        ax.set_xticklabels(
            [f"{d.local_date:%m-%d}\n{WEEKDAYS[d.local_date.weekday()]}" for d in days],
            fontsize=7,
            rotation=0,
        )
        ax.set_xlim(-0.6, len(days) - 0.4)
        ax.set_ylim(0, top * 1.15)
        ax.set_ylabel("messages per local day")
        ax.set_title(
            f"warmup plan preview: {preview.plan_name}, scenario {preview.scenario.name} "
            f"(registered {preview.registered.isoformat()}, {preview.timezone})"
        )
        ax.grid(axis="y", alpha=0.3, zorder=0)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def history_chart(days: list[HistoryDay], phone: str, path: str) -> None:
    """A PNG of quota, sent and replies per day, paused days shaded."""

    if not days:
        raise UserError(f"{phone} has no planned day yet: nothing to chart")
    x: list[Any] = [d.local_date for d in days]  # matplotlib converts dates, its stubs say floats
    figure, axis = plt.subplots(figsize=(10, 4.5))
    try:
        axis.plot(x, [d.quota for d in days], label="quota", drawstyle="steps-mid", color="tab:blue")
        axis.plot(x, [d.sent for d in days], label="sent", marker="o", color="tab:green")
        axis.plot(x, [d.replies for d in days], label="replies", marker=".", color="tab:orange")
        for index, day in enumerate(d for d in days if d.paused):
            midnight: Any = datetime.combine(day.local_date, datetime.min.time())
            start, end = midnight - timedelta(hours=12), midnight + timedelta(hours=12)
            axis.axvspan(
                start,
                end,
                color="tab:red",
                alpha=0.15,
                label="paused" if index == 0 else None,
            )
        axis.set_title(f"warm-up history of {phone}")
        axis.set_ylabel("messages")
        axis.legend(loc="upper left")
        axis.grid(alpha=0.3)
        figure.autofmt_xdate()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise UserError(f"cannot write the chart to {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def demo_chart(summaries: Sequence[NumberSummary], path: Path) -> None:
    """Per number and local day: the quota (outline) against a stack of what the simulator says was
    sent, what was skipped, and what failed or is unknown, so every shortfall shows with its share."""

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
            sent = [sent for _, _, sent, _ in s.days]
            accounts = {a.local_date: a for a in s.accounts}
            skipped = [_skipped(accounts.get(day)) for day, _, _, _ in s.days]
            lost = [_lost(accounts.get(day)) for day, _, _, _ in s.days]
            ax.bar(xs, sent, width=0.5, color="#66bb6a", label="sent", zorder=2)
            ax.bar(xs, skipped, width=0.5, bottom=sent, color="#ffb74d", label="skipped", zorder=2)
            tops = [a + b for a, b in zip(sent, skipped, strict=True)]
            ax.bar(xs, lost, width=0.5, bottom=tops, color="#e57373", label="failed/unknown", zorder=2)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xticks(xs, labels)
            ax.set_title(f"{s.phone} · {s.plan} · {s.timezone}", fontsize=10)
            ax.set_ylabel("messages")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(loc="upper left", fontsize=8)
        fig.suptitle("warmup demo: quota vs sent, skipped and failed per local day")
        fig.text(0.01, 0.005, "* the local day was still in progress when the demo ended", fontsize=8)
        fig.tight_layout(rect=(0, 0.025, 1, 1))
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def _skipped(account: DayAccount | None) -> int:
    """The day's skips that cost it quota (a skip at a full quota cost nothing; a throttle's cut did)."""
    if account is None:
        return 0
    skipped = sum(n for cause, n in account.skipped.items() if cause != SkipCause.QUOTA.value)
    return skipped + account.quota_cut


def _lost(account: DayAccount | None) -> int:
    return 0 if account is None else account.failed + account.unknown
