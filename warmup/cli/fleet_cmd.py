"""`warmup apply FLEET.yaml [--dry-run]`: make the enrolled numbers and admins match a fleet file."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from warmup.cli.common import database_url_option
from warmup.files.problems import PlanError

MAX_SHOWN = 50


def apply(
    fleet_file: Path = typer.Argument(..., metavar="FLEET.yaml", help="The fleet file (YAML)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the changes, change nothing."),
    url: str | None = database_url_option(),
) -> None:
    """Enroll, update and retire numbers and set the admins as the fleet file says (idempotent)."""
    from warmup.cli.common import database_url
    from warmup.clock import clock_from_settings
    from warmup.services.admin import open_store
    from warmup.services.fleet import apply_changes, load_fleet, plan_changes

    try:
        fleet = load_fleet(fleet_file)
    except PlanError as exc:
        for problem in exc.problems[:MAX_SHOWN]:
            print(problem, file=sys.stderr)
        if len(exc.problems) > MAX_SHOWN:
            print(f"... and {len(exc.problems) - MAX_SHOWN} more problems", file=sys.stderr)
        print(f"{fleet_file}: nothing applied ({len(exc.problems)} problem(s))", file=sys.stderr)
        raise typer.Exit(1) from None
    engine = open_store(database_url(url))
    try:
        changes = plan_changes(engine, fleet)
        if not changes:
            print(f"{fleet_file}: no changes ({len(fleet.numbers)} number(s) up to date)")
            return
        for change in changes:
            print(("would " if dry_run else "") + change.describe())
        if dry_run:
            print(f"dry run: {len(changes)} change(s) not applied")
            return
        apply_changes(engine, changes, actor="cli:apply", now=clock_from_settings().now())
        print(f"applied {len(changes)} change(s); `warmup status` shows the fleet")
    finally:
        engine.dispose()


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    app.command("apply")(apply)
