"""Entry point of the `warmup` command: one typer app, sub-apps registered by their own modules.

The command modules import what a command needs inside the command's function, on purpose and only
here in the command line: every command starts a new process, and `warmup pause` should not pay for
loading the simulator, the worker fleet or matplotlib that other commands use.
"""

from __future__ import annotations

import sys

import click
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from warmup.cli import (
    admin_cmd,
    db_cmd,
    demo_cmd,
    fleet_cmd,
    plan_cmd,
    preview_cmd,
    run_cmd,
    simulator_cmd,
    webhook_cmd,
)
from warmup.core.errors import UserError
from warmup.secrets import redact

app = typer.Typer(
    name="warmup",
    help="Warm up WhatsApp numbers gradually: ramp plans, risk-aware throttling, a worker fleet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
plan_app = typer.Typer(help="Write, check and preview ramp plans.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")

err_console = Console(stderr=True)


def _register() -> None:
    """Each command module adds its commands, in the order `--help` lists them."""
    for module in (plan_cmd, preview_cmd, db_cmd, simulator_cmd, run_cmd, fleet_cmd, admin_cmd, webhook_cmd):
        module.register(app, plan_app)
    demo_cmd.register(app, plan_app)  # the first command a newcomer runs (`make demo`)


def main() -> None:
    """Run the CLI; a UserError becomes one clear line on stderr and a non-zero exit, never a traceback."""
    _register()
    try:
        code = app(standalone_mode=False)  # without standalone mode, typer returns typer.Exit codes
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as exc:  # soft wrap: a long message stays one line, copy-pasteable, in a pipe too
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and anything unexpected
        # typer >= 0.20 vendors click: its usage errors are not click.ClickException
        if isinstance(exc, click.ClickException) or (
            isinstance(exc, typer.TyperException) and hasattr(exc, "show")
        ):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, ValidationError):  # settings read outside `warmup.cli.common.settings`
            names = ", ".join("WARMUP_" + "_".join(map(str, e["loc"])).upper() for e in exc.errors())
            err_console.print(f"[bold red]error:[/] invalid setting {escape(names)}", soft_wrap=True)
            sys.exit(1)
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(redact(_said(exc)))}",
            highlight=False,
            soft_wrap=True,
        )
        err_console.print("this is a bug in warmup: please report it with the command that caused it")
        sys.exit(2)


def _said(exc: Exception) -> str:
    """What an unexpected error says, for one line: a database error's driver message, first line only
    (SQLAlchemy's text carries the SQL statement and its parameters, which may hold a user's data)."""
    if getattr(exc, "statement", None) is not None:  # sqlalchemy.exc.StatementError and its kin
        driver = getattr(exc, "orig", None)
        text = str(driver) if driver is not None else ""
        return (text.splitlines() or ["the database refused the statement"])[0][:300]
    return str(exc)


if __name__ == "__main__":
    main()
