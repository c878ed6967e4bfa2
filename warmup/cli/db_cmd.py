"""`warmup db upgrade` and `warmup db current`: the schema, through the migrations shipped with warmup."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from warmup.config import get_settings
from warmup.errors import UserError
from warmup.store.db import current_revision, head_revision, mask_url, upgrade

db_app = typer.Typer(help="Create or upgrade the database schema.", no_args_is_help=True)

URL_HELP = "Database URL (default: WARMUP_DATABASE_URL, else sqlite:///warmup.db)."


def _url(url: str | None) -> str:
    return url or get_settings().database_url


def _problem(exc: Exception, url: str) -> str:
    """The first line of the driver's message, with the URL's password masked should it appear."""
    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
    password = make_url(url).password if "://" in url else None
    return first.replace(str(password), "***") if password else first


@db_app.command("upgrade")
def upgrade_cmd(url: str | None = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """Apply every pending migration (safe to repeat: an up-to-date database is left alone)."""
    target = _url(url)
    try:
        upgrade(target)
        revision = current_revision(target)
    except Exception as exc:  # a driver error may quote the URL: show only the masked one
        raise UserError(f"cannot upgrade {mask_url(target)}: {_problem(exc, target)}") from None
    print(f"database {mask_url(target)} is at revision {revision}")


@db_app.command("current")
def current_cmd(url: str | None = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """Show the database's schema revision and whether it is up to date."""
    target = _url(url)
    try:
        revision = current_revision(target)
    except Exception as exc:
        raise UserError(f"cannot read {mask_url(target)}: {_problem(exc, target)}") from None
    head = head_revision()
    state = "up to date" if revision == head else f"behind (newest is {head}; run `warmup db upgrade`)"
    print(f"database {mask_url(target)} is at revision {revision or 'none'}: {state}")


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
