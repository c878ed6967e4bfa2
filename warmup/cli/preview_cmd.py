"""`warmup plan preview`: replay a plan's ramp under a risk scenario before any number uses it."""

from __future__ import annotations

import random
from datetime import date, datetime
from pathlib import Path

import typer

from warmup.cli.common import console, writable_file
from warmup.core.errors import UserError


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option} expects a date like 2026-11-23, got {value!r}") from None


def preview(
    plan_file: Path = typer.Argument(..., metavar="PLAN", help="The plan file (YAML)."),
    days: int = typer.Option(30, "--days", min=1, max=366, help="How many local days to preview."),
    start: str | None = typer.Option(None, "--start", help="First local date, YYYY-MM-DD (default: today)."),
    registered: str | None = typer.Option(
        None,
        "--registered",
        help="The number's registration date, YYYY-MM-DD, for its lifetime (default: --start).",
    ),
    timezone: str = typer.Option(
        "UTC", "--timezone", help="The number's IANA time zone, e.g. America/Sao_Paulo."
    ),
    scenario: str = typer.Option(
        "good", "--scenario", help="Risk readings per day: good, mixed, bad, or a scenario file (YAML)."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the random parts of a scenario (mixed)."),
    chart: Path | None = typer.Option(None, "--chart", help="Also write a PNG chart to this file."),
) -> None:
    """Preview the ramp day by day: quota, plan day, action and the reasons, under a risk scenario."""
    from warmup.cli.preview_view import preview_table, summary
    from warmup.files.plans import load_plan
    from warmup.services.preview import resolve_scenario, simulate, zone_for

    zone = zone_for(timezone)
    first = _parse_date(start, "--start") or datetime.now(zone).date()
    born = _parse_date(registered, "--registered")
    if born is not None and born > first:
        raise UserError(
            f"--registered {born} is after the first previewed day {first}: a number is "
            "registered before it sends (or leave --registered out)"
        )
    if chart is not None:
        writable_file(chart, "the chart")
    plan = load_plan(plan_file)
    chosen = resolve_scenario(scenario, days, random.Random(seed))
    result = simulate(plan, chosen, start=first, days=days, registered=born, timezone=timezone)
    out = console()
    out.print(preview_table(result))
    out.print(summary(result))
    if chart is not None:
        try:
            from warmup.cli.charts import preview_chart  # matplotlib: only when a chart is asked for

            preview_chart(result, chart)
        except OSError as exc:
            raise UserError(f"cannot write the chart to {chart}: {exc.strerror or exc}") from None
        out.print(f"chart written to {chart}")


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    """Add `plan preview` to the `plan` sub-app."""
    plan_app.command("preview")(preview)
