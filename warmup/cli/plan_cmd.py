"""`warmup plan validate` and `warmup plan schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from warmup.core.plan.schema import plan_json_schema
from warmup.files.plans import load_plan
from warmup.files.problems import PlanError

MAX_SHOWN = 50
"""Problems listed per file; past that a file is not a plan with typos but the wrong file."""


def validate(
    plans: list[Path] = typer.Argument(
        ..., metavar="PLAN", help="Plan files (YAML) to check; several allowed."
    ),
) -> None:
    """Check plan files and the message pools and contacts they name; list every problem found."""
    bad = 0
    for path in plans:
        try:
            plan = load_plan(path)
        except PlanError as exc:
            bad += 1
            for problem in exc.problems[:MAX_SHOWN]:
                print(problem, file=sys.stderr)
            if len(exc.problems) > MAX_SHOWN:
                print(f"{path}: ... and {len(exc.problems) - MAX_SHOWN} more problems", file=sys.stderr)
            continue
        days = plan.last_plan_day
        print(f"OK {path} ({plan.name}, {days} day{'s' if days != 1 else ''})")
    if bad:
        print(
            f"{bad} of {len(plans)} plan file{'s' if len(plans) != 1 else ''} with problems", file=sys.stderr
        )
        raise typer.Exit(1)


def schema() -> None:
    """Print the JSON Schema of plan files (for editors: see README, "Writing a plan")."""
    print(json.dumps(plan_json_schema(), indent=2))


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    """Add the plan commands to the `plan` sub-app."""
    plan_app.command("validate")(validate)
    plan_app.command("schema")(schema)
