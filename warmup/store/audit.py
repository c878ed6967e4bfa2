"""The audit log: who did what to which number, and why (pauses, resumes, cuts, re-spreads, ...).

Operations that change a number write their row inside their own transaction (`record`), so the log
never claims something that was rolled back. Never put a secret in `detail`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlmodel import col, select

from warmup.store.db import session_scope
from warmup.store.models import AuditLog
from warmup.store.tables import AUDIT, read, stamp, write


def record(
    conn: Connection,
    actor: str,
    action: str,
    number_id: int | None,
    detail: dict[str, Any] | None,
    at: datetime,
) -> int:
    """Append one audit row in the caller's transaction; returns its id."""
    audit_id: int = conn.execute(
        sa.insert(AUDIT)
        .values(at=at, actor=actor[:128], action=action[:64], number_id=number_id, detail=detail)
        .returning(AUDIT.c.id)
    ).scalar_one()
    return audit_id


def record_many(conn: Connection, rows: list[dict[str, Any]], at: datetime) -> None:
    """Append many audit rows (keys: actor, action, number_id, detail) in the caller's transaction,
    in one statement (`warmup apply` of a 10,000-number fleet writes as many)."""
    if rows:
        conn.execute(
            sa.insert(AUDIT),
            [
                {
                    "at": at,
                    "actor": row["actor"][:128],
                    "action": row["action"][:64],
                    "number_id": row.get("number_id"),
                    "detail": row.get("detail"),
                }
                for row in rows
            ],
        )


def audit(
    engine: Engine,
    actor: str,
    action: str,
    number_id: int | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """Append one audit row (who, what, which number, details as JSON) in its own transaction."""
    with write(engine) as conn:
        return record(conn, actor, action, number_id, detail, stamp(now))


def list_audit(engine: Engine, number_id: int | None = None, limit: int = 100) -> list[AuditLog]:
    """The newest audit rows first, optionally for one number."""
    statement = select(AuditLog).order_by(col(AuditLog.at).desc(), col(AuditLog.id).desc()).limit(limit)
    if number_id is not None:
        statement = statement.where(AuditLog.number_id == number_id)
    with session_scope(engine, read_only=True) as session:
        return list(session.exec(statement).all())


def latest_detail(engine: Engine, action: str) -> Any:
    """The detail of the newest audit row of ``action`` (None when there is none): some settings live in
    the log itself, e.g. the fleet's admin phones of the last apply."""
    with read(engine) as conn:
        return conn.execute(
            sa.select(AUDIT.c.detail).where(AUDIT.c.action == action).order_by(AUDIT.c.id.desc()).limit(1)
        ).scalar_one_or_none()
