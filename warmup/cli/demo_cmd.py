"""`warmup demo`: the first command a newcomer runs (`make demo`); the work is in `warmup.cli.demo`, the
live view in `warmup.cli.live`, the summary table and chart in `warmup.cli.summary`."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console
from rich.markup import escape


def _stop_on_ctrl_c() -> threading.Event:
    """First Ctrl-C (or SIGTERM): stop cleanly and still print the summary. A second one: quit now."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def demo(
    numbers: int = typer.Option(5, "--numbers", min=1, max=12, help="How many numbers to warm up."),
    days: int = typer.Option(7, "--days", min=1, max=60, help="How many simulated days to run."),
    day_seconds: float | None = typer.Option(
        None,
        "--day-seconds",
        min=2.0,
        max=3600.0,
        help="Wall-clock seconds per simulated day (default: from the fleet's busiest planned day, 8 s at "
        "least, so every number can deliver its plan).",
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the simulator (who replies, when)."),
    chart: Path | None = typer.Option(None, "--chart", help="Also write a PNG: quota vs sent per day."),
    db: Path | None = typer.Option(
        None, "--db", help="Keep the SQLite database in this NEW file (default: a temporary directory)."
    ),
    plans: Path | None = typer.Option(
        None, "--plans", help="Directory with the example plans (default: the repository's plans/)."
    ),
    plain: bool = typer.Option(
        False, "--plain", help="No live view, one line per finished day (automatic when not a terminal)."
    ),
) -> None:
    """Watch a small fleet warm up against the built-in simulator, then check the invariants.

    Runs the real scheduler, workers, SQLite store and HTTP client against a local simulator of the
    WhatsApp API, on an accelerated clock: the default, 7 days of about 20 seconds each, takes two or
    three minutes (a day's length follows the fleet's busiest planned day unless --day-seconds says).
    Numbers on different plans and timezones message each other and a few contacts; the table shows
    each number's local time, plan day, quota, sends, replies and risk reading. At the end: a summary
    with the share of each number's quota delivered, four invariant checks against the simulator's
    send log and a delivery check (exit code 1 if one fails). Ctrl-C stops early and still prints the
    summary. Nothing touches the real WhatsApp.
    """
    # Late: the demo loads the simulator, the workers and the store; `warmup --help` should not wait.
    from warmup.cli.demo import DemoOptions, auto_day_seconds, find_plans_dir, run_demo
    from warmup.cli.summary import summary_table
    from warmup.core.accounting import percent

    console = Console(highlight=False)
    if not console.is_terminal:  # CI logs: wide lines rather than tables wrapped at 80 columns
        console = Console(highlight=False, width=max(console.width, 140))
    if day_seconds is None:
        day_seconds = auto_day_seconds(days, numbers, find_plans_dir(plans))
    options = DemoOptions(
        numbers=numbers,
        days=days,
        day_seconds=day_seconds,
        seed=seed,
        chart=chart,
        db=db,
        plans_dir=plans,
        live=console.is_terminal and not plain,
    )
    console.print(
        f"[bold]warmup demo[/]: {numbers} numbers, {days} simulated days, one day every {day_seconds:g} s "
        f"(about {days * day_seconds:.0f} s). Embedded run against the built-in simulator."
    )
    stop = _stop_on_ctrl_c()
    result = run_demo(options, console, stop)
    console.print()
    if result.interrupted:
        console.print(f"[yellow]stopped early[/] at simulated {result.sim_end:%a %d %b %H:%M} UTC")
    console.print(summary_table(result.summaries))
    if result.delivered is not None:
        delivered = percent(result.delivered)
        console.print(f"[bold]delivered[/]: {delivered} of the quota of finished sending days")
    console.print("[bold]checks[/] (simulator send log vs store, and delivery):")
    for check in result.checks:
        mark = "[green]OK  [/]" if check.ok else "[bold red]FAIL[/]"
        console.print(f"  {mark} {check.name}: {escape(check.detail)}", markup=True)
    if chart is not None:
        console.print(f"chart written to {chart}")
    if db is not None:
        console.print(f"database kept in {db}")
    if result.data_dir is not None:
        console.print(f"log and data kept for inspection in {result.data_dir}")
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    """Add `demo` to the top-level app."""
    app.command("demo")(demo)
