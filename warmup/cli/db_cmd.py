"""`warmup db upgrade` and `warmup db current`: the schema, through the migrations shipped with warmup."""

from __future__ import annotations

from pathlib import Path

import typer

from warmup.cli.common import database_url, database_url_option
from warmup.core.errors import UserError
from warmup.store.db import (
    current_revision,
    database_problem,
    head_revision,
    mask_url,
    missing_sqlite_file,
    upgrade,
)

db_app = typer.Typer(help="Create or upgrade the database schema.", no_args_is_help=True)

URL_ALIAS = typer.Option(None, "--url", hidden=True, help="Old name of --database-url.")


@db_app.command("upgrade")
def upgrade_cmd(url: str | None = database_url_option(), old_url: str | None = URL_ALIAS) -> None:
    """Create the database if needed and apply every pending migration (safe to repeat)."""
    target = database_url(url or old_url)
    missing = missing_sqlite_file(target)
    if missing is not None and not Path(missing).parent.is_dir():
        raise UserError(f"cannot create {missing}: the directory {Path(missing).parent} does not exist")
    try:
        upgrade(target)
        revision = current_revision(target)
    except Exception as exc:  # a driver error may quote the URL: show only the masked one
        raise UserError(f"cannot upgrade {mask_url(target)}: {database_problem(exc, target)}") from None
    print(f"database {mask_url(target)} is at revision {revision} (up to date)")


@db_app.command("current")
def current_cmd(url: str | None = database_url_option(), old_url: str | None = URL_ALIAS) -> None:
    """Show the database's schema revision and whether it is up to date."""
    target = database_url(url or old_url)
    head = head_revision()
    missing = missing_sqlite_file(target)
    if missing is not None:  # reading it would create an empty file
        print(f"no database at {missing} yet: behind (newest is {head}; `warmup db upgrade` creates it)")
        return
    try:
        revision = current_revision(target)
    except Exception as exc:
        raise UserError(f"cannot read {mask_url(target)}: {database_problem(exc, target)}") from None
    if revision != head:
        print(
            f"database {mask_url(target)} is at revision {revision or 'none'}: "
            f"behind (newest is {head}; run `warmup db upgrade`)"
        )
        return
    print(f"database {mask_url(target)} is at revision {revision}: up to date")


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
