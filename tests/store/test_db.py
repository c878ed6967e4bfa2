"""warmup.store.db: URLs, the SQLite setup for several processes, UTC datetimes, sessions."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import StatementError

from warmup.store import db
from warmup.store.models import AuditLog


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg2://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///warmup.db", "sqlite:///warmup.db"),
    ],
)
def test_normalize_url_uses_psycopg3(url: str, expected: str) -> None:
    assert db.normalize_url(url) == expected


def test_mask_url_never_shows_the_password() -> None:
    masked = db.mask_url("postgresql://warm:s3cr3t@db.internal:5432/warmup")
    assert "s3cr3t" not in masked and masked == "postgresql://warm:***@db.internal:5432/warmup"
    assert db.mask_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "s3cr3t" not in db.mask_url("::not a url s3cr3t")


def test_sqlite_is_set_up_for_several_processes(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    engine.dispose()


def _counter_engine(sqlite_url: str) -> Engine:
    engine = db.make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
    return engine


def test_sqlite_write_transactions_take_the_lock_at_begin(sqlite_url: str) -> None:
    engine = _counter_engine(sqlite_url)
    finished = threading.Event()

    def second_writer() -> None:
        with engine.begin() as conn:  # BEGIN IMMEDIATE: waits here while the first writer holds the lock
            conn.exec_driver_sql("SELECT value FROM counter").scalar()
        finished.set()

    with engine.begin() as first:
        first.exec_driver_sql("SELECT value FROM counter").scalar()
        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(0.4)
        assert not finished.is_set()
        with engine.connect() as reader:  # a read-only transaction is not blocked by the writer
            reader.execution_options(**{db.READ_ONLY: True})
            with reader.begin():
                assert reader.exec_driver_sql("SELECT value FROM counter").scalar() == 0
    thread.join(timeout=10)
    assert finished.is_set()
    engine.dispose()


def test_sqlite_read_modify_write_loses_no_update(sqlite_url: str) -> None:
    engine = _counter_engine(sqlite_url)

    def bump(times: int) -> None:
        for _ in range(times):
            with engine.begin() as conn:
                value = conn.exec_driver_sql("SELECT value FROM counter WHERE id = 1").scalar_one()
                conn.exec_driver_sql(f"UPDATE counter SET value = {value + 1} WHERE id = 1")

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT value FROM counter").scalar() == 150
    engine.dispose()


def test_postgres_accepts_a_plain_postgresql_url(pg_url: str) -> None:
    assert pg_url.startswith("postgresql://")
    engine = db.make_engine(pg_url)
    assert engine.dialect.driver == "psycopg"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_datetimes_come_back_aware_utc(engine: Engine) -> None:
    sao_paulo = timezone(timedelta(hours=-3))
    written = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=sao_paulo)
    with db.session_scope(engine) as session:
        session.add(AuditLog(at=written, actor="t", action="x"))
    with db.session_scope(engine, read_only=True) as session:
        row = session.get(AuditLog, 1)
    assert row is not None
    assert row.at == written and row.at.tzinfo is not None and row.at.utcoffset() == timedelta(0)
    assert row.at.hour == 12


def test_naive_datetimes_are_refused_by_the_column_type(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), db.session_scope(engine) as session:
        session.add(AuditLog(at=datetime(2026, 11, 23, 9, 30), actor="t", action="x"))
    with db.session_scope(engine, read_only=True) as session:
        assert session.get(AuditLog, 1) is None


def test_session_scope_commits_or_rolls_back(engine: Engine) -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    with pytest.raises(RuntimeError), db.session_scope(engine) as session:
        session.add(AuditLog(at=now, actor="t", action="rolled back"))
        session.flush()
        raise RuntimeError("boom")
    with db.session_scope(engine) as session:
        session.add(AuditLog(at=now, actor="t", action="kept"))
    with engine.connect() as conn:
        actions = conn.execute(sa.text("SELECT action FROM audit_log")).scalars().all()
    assert actions == ["kept"]


def test_make_engine_logs_only_the_masked_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="warmup.store.db")
    engine = db.make_engine("postgresql://warm:s3cr3t@127.0.0.1:1/x")
    engine.dispose()
    assert "warm:***@" in caplog.text and "s3cr3t" not in caplog.text


def _drop_server_side(url: str) -> None:
    """What a PostgreSQL restart does to pooled connections: the server ends every other session."""
    admin = db.make_engine(url)
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        conn.commit()
    admin.dispose()


def test_postgres_recovers_from_lost_connections_without_a_ping_per_checkout(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.2)
    engine = db.make_engine(pg_url)
    pings: list[int] = []
    real_ping = engine.dialect.do_ping

    def counted_ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)

    def select_one() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT 1")).scalar_one())

    assert [select_one() for _ in range(5)] == [1] * 5
    assert pings == []  # a connection used a moment ago is not pinged
    _drop_server_side(pg_url)
    time.sleep(0.3)
    assert select_one() == 1  # idle long enough: pinged, found dead, replaced before use
    assert len(pings) == 1
    _drop_server_side(pg_url)
    outcomes = []
    for _ in range(3):  # used a moment ago: the first use fails and invalidates the pool, no more
        try:
            outcomes.append(select_one())
        except sa.exc.DBAPIError as exc:
            assert exc.connection_invalidated
            outcomes.append(0)
    assert outcomes in ([0, 1, 1], [1, 1, 1])
    engine.dispose()
