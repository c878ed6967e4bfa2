"""Entry point of the `warmup` command: one typer app, sub-apps registered by their own modules."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from warmup.core.errors import UserError

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
    # Each command module adds its commands; imported here so `--help` lists them all.
    from warmup.cli import db_cmd, plan_cmd, preview_cmd, run_cmd, simulator_cmd

    for module in (plan_cmd, preview_cmd, db_cmd, simulator_cmd, run_cmd):
        module.register(app, plan_app)
    from warmup.cli import admin_cmd, fleet_cmd, webhook_cmd  # fleet, admin and webhook commands

    for module in (fleet_cmd, admin_cmd, webhook_cmd):
        module.register(app, plan_app)
    from warmup.cli import demo_cmd  # the first command a newcomer runs (`make demo`)

    demo_cmd.register(app, plan_app)


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
        import click

        # typer >= 0.20 vendors click: its usage errors are not click.ClickException
        if isinstance(exc, click.ClickException) or (
            isinstance(exc, typer.TyperException) and hasattr(exc, "show")
        ):
            exc.show()
            sys.exit(exc.exit_code)
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):  # settings read outside `warmup.cli.common.settings`
            names = ", ".join("WARMUP_" + "_".join(map(str, e["loc"])).upper() for e in exc.errors())
            err_console.print(f"[bold red]error:[/] invalid setting {escape(names)}", soft_wrap=True)
            sys.exit(1)
        from warmup.secrets import redact

        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(redact(str(exc)))}",
            highlight=False,
            soft_wrap=True,
        )
        err_console.print("this is a bug in warmup: please report it with the command that caused it")
        sys.exit(2)


if __name__ == "__main__":
    main()
