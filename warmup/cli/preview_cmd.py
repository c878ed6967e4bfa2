"""`warmup plan preview`: replay a plan's ramp under a risk scenario before any number uses it."""

from __future__ import annotations

import random
from datetime import date, datetime
from pathlib import Path

import typer
from rich.console import Console

from warmup.errors import UserError


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option} expects a date like 2026-11-23, got {value!r}") from None


def preview(
    plan_file: Path = typer.Argument(..., metavar="PLAN", help="the plan YAML file"),
    days: int = typer.Option(30, "--days", min=1, max=366, help="how many local days to preview"),
    start: str | None = typer.Option(None, "--start", help="first local date, YYYY-MM-DD (default: today)"),
    registered: str | None = typer.Option(
        None, "--registered", help="the number's registration date, for its lifetime (default: --start)"
    ),
    timezone: str = typer.Option("UTC", "--timezone", help="the number's IANA timezone"),
    scenario: str = typer.Option(
        "good", "--scenario", help="risk readings per day: good, mixed, bad or a scenario YAML file"
    ),
    seed: int = typer.Option(1, "--seed", help="seed of the random parts of a scenario (mixed)"),
    chart: Path | None = typer.Option(None, "--chart", help="also write a PNG chart to this file"),
) -> None:
    """Preview the ramp day by day: quota, plan day, action and the reasons, under a risk scenario."""
    from warmup.plan.loader import load_plan
    from warmup.preview import preview_table, resolve_scenario, simulate, summary, write_chart, zone_for

    zone = zone_for(timezone)
    first = _parse_date(start, "--start") or datetime.now(zone).date()
    born = _parse_date(registered, "--registered")
    plan = load_plan(plan_file)
    chosen = resolve_scenario(scenario, days, random.Random(seed))
    result = simulate(plan, chosen, start=first, days=days, registered=born, timezone=timezone)
    console = Console()
    console.print(preview_table(result))
    console.print(summary(result), highlight=False)
    if chart is not None:
        try:
            write_chart(result, chart)
        except OSError as exc:
            raise UserError(f"cannot write the chart to {chart}: {exc.strerror or exc}") from None
        console.print(f"chart written to {chart}", highlight=False)


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    """Add `plan preview` to the `plan` sub-app."""
    plan_app.command("preview")(preview)
