"""Everyday operator commands: pause, resume, audit, status, why, history, doctor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from warmup.errors import UserError


def _show(table: Table) -> None:
    Console(highlight=False).print(table)  # built per call: it reads the terminal width (COLUMNS) now


URL_HELP = "Database URL (default: WARMUP_DATABASE_URL)."


@contextmanager
def _store(url: str | None) -> Iterator[Engine]:
    from warmup.admin import open_store
    from warmup.config import get_settings

    engine = open_store(url or get_settings().database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _print_outcome(verb: str, changed: list[str], unchanged: list[tuple[str, str]]) -> None:
    for phone in changed:
        print(f"{verb} {phone}")
    for phone, state in unchanged:
        print(f"unchanged {phone} ({state})")
    if not changed and not unchanged:
        print("no number matched")


def pause(
    phone: str | None = typer.Argument(None, metavar="[PHONE]", help="The number (E.164)."),
    plan: str | None = typer.Option(None, "--plan", help="Every number on this plan."),
    all_numbers: bool = typer.Option(False, "--all", help="Every number."),
    reason: str = typer.Option("paused by an admin", "--reason", help="Why (kept in the audit log)."),
    duration: str | None = typer.Option(None, "--for", help="End the pause by itself after this (2h, 1d)."),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Stop sending now: no new message starts once this returns; today's planned ones are skipped."""
    from warmup import admin
    from warmup.clock import clock_from_settings
    from warmup.plan.values import parse_duration

    target = admin.Target(phone=phone, plan=plan, all=all_numbers)
    try:
        length = parse_duration(duration) if duration is not None else None
    except ValueError as exc:
        raise UserError(f"--for: {exc}") from None

    with _store(url) as engine:
        outcome = admin.pause(
            engine, target, reason=reason, actor="cli", now=clock_from_settings().now(), duration=length
        )
    _print_outcome("paused", outcome.changed, outcome.unchanged)


def resume(
    phone: str | None = typer.Argument(None, metavar="[PHONE]", help="The number (E.164)."),
    plan: str | None = typer.Option(None, "--plan", help="Every number on this plan."),
    all_numbers: bool = typer.Option(False, "--all", help="Every number."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit log)."),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Start again gradually: the plan's resume policy, and the rest of today re-spread (never a burst)."""
    from warmup import admin
    from warmup.clock import clock_from_settings

    target = admin.Target(phone=phone, plan=plan, all=all_numbers)
    with _store(url) as engine:
        outcome = admin.resume(engine, target, actor="cli", now=clock_from_settings().now(), reason=reason)
    _print_outcome("resumed", outcome.changed, outcome.unchanged)


def audit(
    phone: str | None = typer.Argument(None, metavar="[PHONE]", help="Only this number."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="Newest rows shown."),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """The audit log, newest first: who did what to which number, and why."""
    from warmup.admin import audit_log

    with _store(url) as engine:
        rows = audit_log(engine, phone, limit)
    table = Table(title="audit log" + (f" of {phone}" if phone else ""))
    for column in ("at (UTC)", "actor", "action", "number", "detail"):
        table.add_column(column, overflow="fold")
    for row, number_phone in rows:
        detail = json.dumps(row.detail, ensure_ascii=False, default=str) if row.detail else ""
        table.add_row(f"{row.at:%Y-%m-%d %H:%M:%S}", row.actor, row.action, number_phone or "", detail)
    _show(table)


def status(
    include_retired: bool = typer.Option(False, "--retired", help="Also list retired numbers."),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Every number's today: plan day, quota, sent, replies, last reading and state."""
    from warmup import admin
    from warmup.clock import clock_from_settings

    with _store(url) as engine:
        rows = admin.status(engine, clock_from_settings().now(), include_retired=include_retired)
    table = Table(title="fleet status (each number's own local day)")
    for column in ("number", "plan", "plan day", "day", "quota", "sent", "replies", "last reading", "state"):
        table.add_column(column, overflow="fold")
    for row in rows:
        reading = row.reading
        shown = (
            "-"
            if reading is None
            else (
                f"{reading.overall}/{reading.lifetime}/{reading.response_rate}/{reading.contacts} "
                f"{reading.source} {reading.taken_at:%m-%d %H:%M}"
            )
        )
        table.add_row(
            row.phone,
            row.plan,
            str(row.plan_day),
            str(row.local_date),
            "-" if row.quota is None else str(row.quota),
            str(row.sent),
            str(row.replies),
            shown,
            admin.describe_state(row),
        )
    _show(table)
    if not rows:
        print("no numbers enrolled: run `warmup apply FLEET.yaml`")
    else:
        print("reading = overall/lifetime/response rate/contacts (1 caution .. 3 good)")


def why(
    phone: str = typer.Argument(..., metavar="PHONE", help="The number (E.164)."),
    day: str | None = typer.Option(None, "--date", help="Local date YYYY-MM-DD (default: its today)."),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Explain a day's decision: the inputs, every rule that fired, the action and the quota."""
    from warmup import admin
    from warmup.clock import clock_from_settings

    try:
        local_date = date.fromisoformat(day) if day else None
    except ValueError:
        raise UserError(f"--date {day!r} is not a date like 2026-11-23") from None
    with _store(url) as engine:
        explanation = admin.explain(engine, phone, clock_from_settings().now(), local_date)
    for line in explanation.lines():
        print(line)


def history(
    phone: str = typer.Argument(..., metavar="PHONE", help="The number (E.164)."),
    days: int = typer.Option(60, "--days", min=1, max=3660, help="Most recent days shown."),
    chart: Path | None = typer.Option(None, "--chart", help="Also write a PNG chart here."),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Day by day: plan day, action, quota, sent, replies, reading; pauses marked."""
    from warmup import admin

    with _store(url) as engine:
        rows = admin.history(engine, phone, days)
    table = Table(title=f"history of {phone}")
    for column in ("day", "plan day", "action", "quota", "sent", "replies", "overall", "paused"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.local_date),
            str(row.plan_day),
            row.action,
            str(row.quota),
            str(row.sent),
            str(row.replies),
            "-" if row.overall is None else str(row.overall),
            "paused" if row.paused else "",
        )
    _show(table)
    if chart is not None:
        admin.history_chart(rows, phone, str(chart))
        print(f"chart written to {chart}")


def doctor(url: str | None = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """Check the database, the broker and every number's channel and risk meter; exit 1 if any is red."""
    from warmup import doctor as checks
    from warmup.clock import clock_from_settings
    from warmup.config import get_settings

    settings = get_settings()
    results = checks.run(url or settings.database_url, settings.redis_url, clock_from_settings().now())
    table = Table(title="warmup doctor")
    for column in ("item", "verdict", "detail"):
        table.add_column(column, overflow="fold")
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
