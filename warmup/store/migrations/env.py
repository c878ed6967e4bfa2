"""Alembic environment: the engine comes from `warmup.store.db.alembic_config` (never from a file).

Run through `warmup db upgrade` or `warmup.store.db.upgrade(...)`. SQLite needs batch mode to alter
tables, so it is switched on for SQLite only.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Engine

from warmup.store import models

config = context.config
target_metadata = models.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our UTC type as plain `sa.DateTime(timezone=True)`: migrations must not import models."""
    if type_ == "type" and isinstance(obj, models.UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        raise RuntimeError("run migrations through warmup.store.db.upgrade(), which provides the engine")
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        driver = connection.connection.dbapi_connection
        if sqlite and driver is not None:
            # A batch rebuild drops and renames tables other rows refer to (a reply's `in_reply_to`):
            # SQLite checks keys row by row unless told not to, which only works outside a transaction
            # (the driver connection is in autocommit mode). Every key is checked before the commit.
            driver.execute("PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
                compare_type=True,
                render_item=render_item,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration left rows whose keys point nowhere: {broken[:5]}")
        finally:
            if sqlite and driver is not None:
                if connection.in_transaction():
                    connection.rollback()  # whatever is left open (the migration's own is committed)
                driver.execute("PRAGMA foreign_keys=ON")
                if driver.execute("PRAGMA foreign_keys").fetchone() != (1,):
                    connection.invalidate()  # never hand a connection that ignores keys back to the pool


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run `warmup db upgrade`")
run_migrations_online()
