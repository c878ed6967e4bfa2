"""`warmup plan preview` (placeholder until the ramp engine lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    """Add `plan preview` to the `plan` sub-app."""
