"""`warmup apply FLEET.yaml [--dry-run]`: make the enrolled numbers and admins match a fleet file."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from warmup.cli.common import database_url_option
from warmup.core.errors import UserError
from warmup.files.problems import PlanError

if TYPE_CHECKING:
    from warmup.services.fleet import Fleet
    from warmup.store.db import Engine

MAX_SHOWN = 50

log = logging.getLogger(__name__)


def apply(
    fleet_file: Path = typer.Argument(..., metavar="FLEET.yaml", help="The fleet file (YAML)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the changes, change nothing."),
    url: str | None = database_url_option(),
) -> None:
    """Enroll, update and retire numbers and set the admins as the fleet file says (idempotent).

    All the changes are written in one transaction: a failure or a kill leaves the fleet as it was."""
    from warmup.cli.common import database_url
    from warmup.clock import clock_from_settings
    from warmup.services.admin import open_store
    from warmup.services.fleet import load_fleet

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
        _apply(engine, fleet, fleet_file, dry_run=dry_run, now=clock_from_settings().now)
    except UserError:
        raise  # one line already (`ApplyFailed` says the apply was rolled back)
    except Exception as exc:  # never print SQL or its parameters: one line, details at debug level
        database = hasattr(exc, "statement")  # a database error's text holds the SQL and its parameters
        log.debug("apply failed: %s", type(exc).__name__, exc_info=not database)
        print(
            f"error: {fleet_file}: apply failed with an internal error ({type(exc).__name__}); "
            "nothing was applied (its transaction was rolled back)",
            file=sys.stderr,
        )
        raise typer.Exit(2) from None
    finally:
        engine.dispose()


def _apply(
    engine: Engine, fleet: Fleet, fleet_file: Path, *, dry_run: bool, now: Callable[[], datetime]
) -> None:
    from warmup.services.fleet import apply_changes, plan_changes

    changes = plan_changes(engine, fleet)
    if not changes:
        print(f"{fleet_file}: no changes ({len(fleet.numbers)} number(s) up to date)")
        return
    for change in changes:
        print(("would " if dry_run else "") + change.describe())
    if dry_run:
        print(f"dry run: {len(changes)} change(s) not applied")
        return
    apply_changes(engine, changes, actor="cli:apply", now=now())
    print(f"applied {len(changes)} change(s); `warmup status` shows the fleet")


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    app.command("apply")(apply)
