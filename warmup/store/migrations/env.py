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
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run `warmup db upgrade`")
run_migrations_online()
