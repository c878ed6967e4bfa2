"""`warmup plan validate` and `warmup plan schema` (placeholder until the plan loader lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    """Add the plan commands to the `plan` sub-app."""
