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
    assert db.current_revision(engine) == db.head_revision() == "0002"
    assert set(sa.inspect(engine).get_table_names()) >= set(metadata.tables)
    db.upgrade(engine)  # idempotent
    assert db.current_revision(engine) == "0002"
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
    assert db.current_revision(sqlite_url) == "0002"


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
    assert result.exit_code == 0 and "at revision 0002" in result.output
    result = runner.invoke(db_cmd.db_app, ["current", "--url", sqlite_url])
    assert result.exit_code == 0 and "up to date" in result.output


def test_cli_error_masks_the_password() -> None:
    result = CliRunner().invoke(db_cmd.db_app, ["upgrade", "--url", "postgresql://warm:s3cr3t@127.0.0.1:1/x"])
    assert result.exit_code != 0
    assert "s3cr3t" not in str(result.exception) and "warm:***@127.0.0.1:1/x" in str(result.exception)
