"""What every command shares: the `--database-url` option, settings read safely, consoles, file checks.

One definition so the option has the same name and help everywhere a database is used, and so a bad
environment variable (`WARMUP_LOG_LEVEL=LOUD`) is one clear line instead of a pydantic dump.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from warmup.config import Settings
from warmup.core.errors import UserError

DATABASE_URL_HELP = (
    "Database URL, e.g. sqlite:///warmup.db or postgresql://USER@HOST/DB "
    "(default: $WARMUP_DATABASE_URL, else sqlite:///warmup.db in the current directory)."
)
NON_TTY_WIDTH = 100
"""Width of tables when the output is a pipe or a file and COLUMNS is not set (rich would use 80)."""


def database_url_option() -> Any:
    """The `--database-url` option of every command that opens the database."""
    return typer.Option(None, "--database-url", metavar="URL", help=DATABASE_URL_HELP, show_default=False)


def settings() -> Settings:
    """The settings from the environment; an invalid variable becomes a `UserError` naming it."""
    from pydantic import ValidationError

    try:
        loaded = Settings()
    except ValidationError as exc:
        hints = {"log_format": "use console or json"}
        problems = "; ".join(
            f"WARMUP_{'_'.join(map(str, error['loc'])).upper()}={error.get('input')!r}: "
            + hints.get(str(error["loc"][0]) if error["loc"] else "", error["msg"])
            for error in exc.errors()
        )
        raise UserError(f"invalid setting {problems}") from None
    import logging

    if not isinstance(logging.getLevelName(loaded.log_level.upper()), int):
        raise UserError(
            f"invalid setting WARMUP_LOG_LEVEL={loaded.log_level!r}: use DEBUG, INFO, WARNING or ERROR"
        )
    return loaded


def database_url(option: str | None) -> str:
    """The URL a command uses: `--database-url`, else the settings; checked for a supported scheme."""
    # A late import: SQLAlchemy loads only for the commands that use a database.
    from warmup.store.db import check_database_url

    url = option or settings().database_url
    check_database_url(url)
    return url


def console() -> Console:
    """A console for tables: the terminal's width, or `NON_TTY_WIDTH` when piped without COLUMNS."""
    out = Console(highlight=False)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out = Console(highlight=False, width=NON_TTY_WIDTH)
    return out


def writable_file(path: Path, what: str) -> None:
    """Fail before any work when `path` cannot be written (its folder is missing, or it is a folder)."""
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory: give a file name, e.g. {path / 'chart.png'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {what} {path}: the directory {parent} does not exist")
