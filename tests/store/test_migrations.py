"""The shipped Alembic migrations: they build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

from warmup.cli import db_cmd
from warmup.store import db
from warmup.store.models import metadata

MIGRATIONS = Path(db.__file__).parent / "migrations"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(fixture)
    return url


def _diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": False}
        )
        return list(compare_metadata(context, metadata))


def test_upgrade_on_an_empty_database_matches_the_models(empty_url: str) -> None:
    engine = db.make_engine(empty_url)
    assert db.current_revision(engine) is None
    db.upgrade(engine)
    assert _diff(engine) == []
    assert db.current_revision(engine) == db.head_revision() == "0008"
    assert set(sa.inspect(engine).get_table_names()) >= set(metadata.tables)
    db.upgrade(engine)  # idempotent
    assert db.current_revision(engine) == "0008"
    engine.dispose()


def test_downgrade_to_base_and_back(empty_url: str) -> None:
    engine = db.make_engine(empty_url)
    db.upgrade(engine)
    command.downgrade(db.alembic_config(engine), "base")
    assert set(sa.inspect(engine).get_table_names()) - {"alembic_version"} == set()
    db.upgrade(engine)
    assert _diff(engine) == []
    engine.dispose()


def test_upgrade_accepts_a_url(sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    assert db.current_revision(sqlite_url) == "0008"


def test_migrations_do_not_import_the_models() -> None:
    # A migration must keep building the schema of ITS time; importing today's models would change it.
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text()
        assert "import warmup" not in source and "from warmup" not in source, path.name


def test_cli_upgrade_and_current(sqlite_url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(db_cmd.db_app, ["current", "--url", sqlite_url])
    assert result.exit_code == 0 and "behind" in result.output
    result = runner.invoke(db_cmd.db_app, ["upgrade", "--url", sqlite_url])
    assert result.exit_code == 0 and "at revision 0008" in result.output
    result = runner.invoke(db_cmd.db_app, ["current", "--url", sqlite_url])
    assert result.exit_code == 0 and "up to date" in result.output


def test_cli_error_masks_the_password() -> None:
    result = CliRunner().invoke(db_cmd.db_app, ["upgrade", "--url", "postgresql://warm:s3cr3t@127.0.0.1:1/x"])
    assert result.exit_code != 0
    assert "s3cr3t" not in str(result.exception) and "warm:***@127.0.0.1:1/x" in str(result.exception)


def test_0003_keeps_the_rows_and_checks_a_message_is_its_day_plans_numbers(empty_url: str) -> None:
    engine = db.make_engine(empty_url)
    command.upgrade(db.alembic_config(engine), "0002")
    at = "2026-11-23 12:00:00+00:00"
    with engine.begin() as conn:
        for phone in ("+5511999990001", "+5511999990002"):
            conn.execute(
                sa.text(
                    "INSERT INTO numbers (phone, provider, token_ref, plan_name, plan_path, timezone, state,"
                    " plan_day, advance_pending, last_volume, created_at, updated_at) VALUES (:phone,"
                    " 'simulator', 'T', 'p', '/p.yaml', 'UTC', 'active', 1, false, 0, :at, :at)"
                ),
                {"phone": phone, "at": at},
            )
        conn.execute(
            sa.text(
                "INSERT INTO day_plans (number_id, local_date, plan_day, next_plan_day, action, quota,"
                " plan_volume, max_new_contacts, reasons, used, cut, created_at) VALUES"
                " (1, '2026-11-23', 1, 2, 'advance', 5, 5, 2, '[]', 0, 0, :at)"
            ),
            {"at": at},
        )
    message = (
        "INSERT INTO outbound_messages (number_id, day_plan_id, local_date, recipient, kind, text,"
        " typing_seconds, scheduled_at, state, attempts, created_at) VALUES"
        " (:number, 1, '2026-11-23', '+5511977770001', 'opener', 'hi', 0, :at, 'planned', 0, :at)"
    )
    reply = message.replace("typing_seconds,", "typing_seconds, in_reply_to,").replace(
        ", 0, :at, 'p", ", 0, 1, :at, 'p"
    )
    with engine.begin() as conn:
        conn.execute(sa.text(message), {"number": 1, "at": at})
        conn.execute(sa.text(reply), {"number": 1, "at": at})  # a reply to message 1
    db.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, in_reply_to FROM outbound_messages ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(1, None), (2, 1)]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # day plan 1 is number 1's
        conn.execute(sa.text(message), {"number": 2, "at": at})
    with engine.begin() as conn:
        conn.execute(sa.text(message), {"number": 1, "at": at})
    engine.dispose()


def test_0004_gives_every_number_a_pace_and_old_days_no_pacing(empty_url: str) -> None:
    engine = db.make_engine(empty_url)
    command.upgrade(db.alembic_config(engine), "0003")
    at = "2026-12-03 12:00:00+00:00"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO numbers (phone, provider, token_ref, plan_name, plan_path, timezone, state,"
                " plan_day, advance_pending, last_volume, created_at, updated_at) VALUES ('+5511999990001',"
                " 'simulator', 'T', 'p', '/p.yaml', 'UTC', 'active', 1, false, 0, :at, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            sa.text(
                "INSERT INTO day_plans (number_id, local_date, plan_day, next_plan_day, action, quota,"
                " plan_volume, max_new_contacts, reasons, used, cut, created_at) VALUES"
                " (1, '2026-12-03', 1, 2, 'advance', 5, 5, 2, '[]', 0, 0, :at)"
            ),
            {"at": at},
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        paces = conn.execute(sa.text("SELECT number_id, busy_id, free_at FROM paces")).all()
        assert [tuple(row) for row in paces] == [(1, None, None)]
        day = conn.execute(sa.text("SELECT gap_seconds, per_hour, windows FROM day_plans")).one()
        assert tuple(day) == (0, None, None)  # planned before pacing was stored: the claim paces nothing
    engine.dispose()
