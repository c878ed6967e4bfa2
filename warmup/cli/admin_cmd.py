"""Everyday operator commands: pause, resume, audit, status, why, history, doctor."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from warmup.cli.common import console, database_url, database_url_option, settings, writable_file
from warmup.cli.tables import RISK_LEGEND, Cell, Column, FittedTable, abbreviations, risk_cell
from warmup.core.accounting import percent
from warmup.core.errors import UserError
from warmup.store.db import Engine

if TYPE_CHECKING:
    from warmup.services.admin import StatusRow


def _show(table: RenderableType) -> None:
    console().print(table)  # built per call: it reads the terminal width (COLUMNS) now


@contextmanager
def _store(url: str | None) -> Iterator[Engine]:
    from warmup.services.admin import open_store

    engine = open_store(database_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


def _print_outcome(verb: str, changed: list[str], unchanged: list[tuple[str, str]], suffix: str = "") -> None:
    for phone in changed:
        print(f"{verb} {phone}{suffix}")
    for phone, state in unchanged:
        print(f"unchanged {phone} ({state})")
    if not changed and not unchanged:
        print("no number is enrolled: nothing to do")


def pause(
    phone: str | None = typer.Argument(None, metavar="[PHONE]", help="The number (E.164)."),
    plan: str | None = typer.Option(None, "--plan", help="Every number on this plan."),
    all_numbers: bool = typer.Option(False, "--all", help="Every number."),
    reason: str = typer.Option("paused by an admin", "--reason", help="Why (kept in the audit log)."),
    duration: str | None = typer.Option(None, "--for", help="End the pause by itself after this (2h, 1d)."),
    url: str | None = database_url_option(),
) -> None:
    """Stop sending now: no new message starts once this returns; today's planned ones are skipped."""
    from warmup.clock import clock_from_settings
    from warmup.core.plan.values import human_duration, parse_duration
    from warmup.services import admin

    target = admin.Target(phone=phone, plan=plan, all=all_numbers)
    try:
        length = parse_duration(duration) if duration is not None else None
    except ValueError as exc:
        raise UserError(f"--for: {exc}") from None

    now = clock_from_settings().now()
    with _store(url) as engine:
        outcome = admin.pause(engine, target, reason=reason, actor="cli", now=now, duration=length)
    until = (
        f" until {now + length:%Y-%m-%d %H:%M} UTC ({human_duration(length)})" if length is not None else ""
    )
    _print_outcome("paused", outcome.changed, outcome.unchanged, until)
    if outcome.changed:
        print("resume with `warmup resume` and the same target" + (" (or wait)" if length else ""))


def resume(
    phone: str | None = typer.Argument(None, metavar="[PHONE]", help="The number (E.164)."),
    plan: str | None = typer.Option(None, "--plan", help="Every number on this plan."),
    all_numbers: bool = typer.Option(False, "--all", help="Every number."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit log)."),
    url: str | None = database_url_option(),
) -> None:
    """Start again gradually: the plan's resume policy, and the rest of today re-spread (never a burst)."""
    from warmup.clock import clock_from_settings
    from warmup.services import admin

    target = admin.Target(phone=phone, plan=plan, all=all_numbers)
    with _store(url) as engine:
        outcome = admin.resume(engine, target, actor="cli", now=clock_from_settings().now(), reason=reason)
    _print_outcome("resumed", outcome.changed, outcome.unchanged)


def audit(
    phone: str | None = typer.Argument(None, metavar="[PHONE]", help="Only this number."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="Newest rows shown."),
    url: str | None = database_url_option(),
) -> None:
    """The audit log, newest first: who did what to which number, and why."""
    from warmup.services.admin import audit_log, describe_detail

    with _store(url) as engine:
        rows = audit_log(engine, phone, limit)
    table = Table(title="audit log" + (f" of {phone}" if phone else ""))
    table.add_column("at (UTC)", no_wrap=True)
    table.add_column("actor", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("number", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=1, min_width=20)
    for row, number_phone in rows:
        table.add_row(
            f"{row.at:%Y-%m-%d %H:%M}", row.actor, row.action, number_phone or "", describe_detail(row.detail)
        )
    _show(table)
    if not rows:
        print("the audit log is empty")


def status(
    include_retired: bool = typer.Option(False, "--retired", help="Also list retired numbers."),
    url: str | None = database_url_option(),
) -> None:
    """Every number's today: plan day, quota, sent, replies, last reading and state; each Meta
    portfolio's use of its messaging limit."""
    from warmup.clock import clock_from_settings
    from warmup.services import admin

    with _store(url) as engine:
        now = clock_from_settings().now()
        rows = admin.status(engine, now, include_retired=include_retired)
        portfolios = admin.portfolio_uses(engine, now)
    if not rows:
        print(
            "no numbers enrolled: run `warmup apply FLEET.yaml`"
            + ("" if include_retired else " (`--retired` also lists retired ones)")
        )
        return
    _show(status_table(rows))
    if any(row.quota is None for row in rows):
        print("quota -: today is not planned yet")
    print(RISK_LEGEND)
    for row in rows:
        if row.state != "active":
            print(f"{row.phone}: {admin.describe_state(row)}")
    for use in portfolios:  # the messaging limit its Cloud API numbers share
        print(f"portfolio {use.describe()}")


def status_table(rows: Sequence[StatusRow]) -> FittedTable:
    """`warmup status` as wide as the terminal allows: full names and dates where there is room,
    `stand-21d` and `Tue 24` in 80 columns, never a cut phone (see `FittedTable`)."""
    plans = abbreviations((row.plan for row in rows), 9)
    columns = [
        Column("number"),
        Column("plan", shorten=2),
        Column("local date", short_header="date", shorten=1),
        Column("plan day", "right", short_header="day", shorten=3),
        Column("quota", "right"),
        Column("sent", "right"),
        Column("deliv.", "right", drop=7),
        Column("replies", "right", short_header="repl.", shorten=5, drop=6),
        Column("risk", shorten=4),
        Column("state"),
    ]
    return FittedTable(
        columns,
        (
            [
                row.phone,
                Cell(row.plan, plans[row.plan]),
                Cell(f"{row.local_date:%a %d %b}", f"{row.local_date:%a %d}"),
                str(row.plan_day),
                "-" if row.quota is None else str(row.quota),
                str(row.sent),
                percent(row.sent / row.quota if row.quota else None),
                str(row.replies),
                risk_cell(row.reading),
                Text(row.state, style="" if row.state == "active" else "bold red"),
            ]
            for row in rows
        ),
        title="fleet status (each number's own local day)",
    )


def why(
    phone: str = typer.Argument(..., metavar="PHONE", help="The number (E.164)."),
    day: str | None = typer.Option(None, "--date", help="Local date YYYY-MM-DD (default: its today)."),
    url: str | None = database_url_option(),
) -> None:
    """Explain a day's decision: the inputs, every rule that fired, the action and the quota."""
    from warmup.clock import clock_from_settings
    from warmup.services import admin

    try:
        local_date = date.fromisoformat(day) if day else None
    except ValueError:
        raise UserError(f"--date {day!r} is not a date like 2026-11-23") from None
    with _store(url) as engine:
        explanation = admin.explain(engine, phone, clock_from_settings().now(), local_date)
    width = console().width
    for line in explanation.lines():  # wrapped between words, a rule's text indented under its name
        indent = "      " if line.startswith("  - ") else "  "
        print(
            textwrap.fill(
                line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
            )
        )


def history(
    phone: str = typer.Argument(..., metavar="PHONE", help="The number (E.164)."),
    days: int = typer.Option(60, "--days", min=1, max=3660, help="Most recent days shown."),
    chart: Path | None = typer.Option(None, "--chart", help="Also write a PNG chart here."),
    url: str | None = database_url_option(),
) -> None:
    """Day by day: plan day, action, quota, sent, replies, reading; pauses marked."""
    from warmup.services import admin

    if chart is not None:
        writable_file(chart, "the chart")
    with _store(url) as engine:
        rows = admin.history(engine, phone, days)
        shown_phone = admin.number_by_phone(engine, phone).phone
    table = Table(title=f"history of {shown_phone}")
    columns = (
        "day",
        "plan day",
        "action",
        "advanced",
        "quota",
        "sent",
        "deliv.",
        "replies",
        "overall",
        "paused",
    )
    for column in columns:
        numeric = column in ("plan day", "quota", "sent", "deliv.", "replies", "overall")
        table.add_column(column, no_wrap=True, justify="right" if numeric else "left")
    short: list[str] = []
    for row in rows:
        account = row.account
        advanced = (
            "-" if account is None or account.advanced is None else ("yes" if account.advanced else "no")
        )
        table.add_row(
            str(row.local_date),
            str(row.plan_day),
            row.action,
            advanced,
            str(row.quota),
            str(row.sent),
            percent(account.delivered) if account is not None else "-",
            str(row.replies),
            "-" if row.overall is None else str(row.overall),
            "paused" if row.paused else "",
        )
        if account is not None and account.missing and not account.pending:
            short.append(f"{row.local_date}: not sent {account.missing}: {account.shortfall_text()}")
    if not rows:
        print(f"{shown_phone} has no planned day yet: is `warmup run` (or `warmup scheduler`) running?")
    else:
        _show(table)
        for line in short:
            print(line)
    if chart is not None:
        from warmup.cli.charts import history_chart  # matplotlib: only when a chart is asked for

        history_chart(rows, shown_phone, str(chart))
        print(f"chart written to {chart}")


def doctor(url: str | None = database_url_option()) -> None:
    """Check the database, the broker and every number's channel and risk meter; exit 1 if any is red."""
    from warmup.clock import clock_from_settings
    from warmup.services import doctor as checks

    loaded = settings()
    results = checks.run(url or loaded.database_url, loaded.redis_url, clock_from_settings().now())
    table = Table(title="warmup doctor")
    table.add_column("item", overflow="fold", ratio=2)
    table.add_column("verdict", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=3)
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for check in results:
        table.add_row(check.item, f"[{colours[check.verdict.value]}]{check.verdict.value}[/]", check.detail)
    _show(table)
    if not checks.healthy(results):
        raise typer.Exit(1)


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("audit")(audit)
    app.command("status")(status)
    app.command("why")(why)
    app.command("history")(history)
    app.command("doctor")(doctor)
