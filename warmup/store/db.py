"""Engines, migrations and sessions, set up so several processes can share one database safely.

SQLite is used by the embedded mode and by tests; PostgreSQL by a fleet. The SQLite setup matters:
without `BEGIN IMMEDIATE` two processes doing read-modify-write both read, then one loses its update
(or fails with "database is locked" on upgrade from a shared to a write lock). With it, a write
transaction takes the write lock first and waits (busy timeout) instead.

`Engine` is re-exported: modules above the store hold an engine but never import SQLAlchemy themselves
(only the store runs SQL).

Tests and benchmarks create and drop throwaway PostgreSQL databases through `create_database`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy import Engine as Engine  # re-exported: callers above the store import it from here
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlmodel import Session

from warmup.config import Settings
from warmup.core.errors import UserError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the write lock before failing (other processes hold it briefly)."""

READ_ONLY = "warmup_read_only"
"""Execution option: a transaction that only reads starts with a plain (deferred) BEGIN on SQLite."""

PING_IDLE_SECONDS = 1.0
"""A PostgreSQL connection that sat in the pool this long is pinged before use (see `make_engine`)."""

_CHECKED_IN_AT = "warmup_checked_in_at"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (`postgresql://`, `postgres://`)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, the only form that may appear in logs or errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL may still hold a secret: show nothing of it
        return "<unparsable database url>"


SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgres")
URL_EXAMPLES = "sqlite:///warmup.db or postgresql://USER:PASSWORD@HOST:5432/DB"


def check_database_url(url: str) -> None:
    """Refuse, before any connection, a URL that is not SQLite or PostgreSQL (the only stores supported).

    The message shows the URL only masked: a URL that does not parse may still hold a password.
    """
    try:
        backend = make_url(url).get_backend_name()
    except Exception:
        raise UserError(
            f"WARMUP_DATABASE_URL / --database-url is not a database URL: expected {URL_EXAMPLES}"
        ) from None
    if backend not in SUPPORTED_SCHEMES:
        raise UserError(
            f"unsupported database {mask_url(url)}: warmup stores its data in SQLite or PostgreSQL, "
            f"e.g. {URL_EXAMPLES}"
        )


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist yet (None for anything else).

    Reading commands must not create an empty database file where a typo pointed them.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.query.get("mode") == "memory" or str(parsed.database).startswith("file:"):
        return None
    path = Path(str(parsed.database))
    return None if path.exists() else str(path)


def database_problem(exc: BaseException, url: str) -> str:
    """The first line of a driver's message (`connection refused`, `unable to open ...`), password masked."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    try:
        password = make_url(url).password
    except Exception:
        password = None
    return first.replace(str(password), "***") if password else first


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`: SQLite tuned for several processes, PostgreSQL through psycopg 3.

    SQLite gets WAL (readers never block the writer), a 30 s busy timeout, foreign keys, and
    transactions that start with `BEGIN IMMEDIATE` unless the connection carries the `READ_ONLY`
    execution option, and pings connections before use.

    PostgreSQL keeps `Settings.db_pool_size` connections open (a worker thread returning a connection
    to a full pool closed it, and the next checkout paid a new backend: PostgreSQL forked one ~4 times
    a second while a fleet's day was planned). It pings only connections that sat idle in the pool for
    `PING_IDLE_SECONDS` or more (a ping per checkout was a round trip per statement group on the send
    path). A restarted server still costs at most one failed operation per process: SQLAlchemy
    invalidates the whole pool on the first disconnect error, and every later checkout gets a fresh
    connection.
    """
    normalized = normalize_url(url)
    is_sqlite = make_url(normalized).get_backend_name() == "sqlite"
    options: dict[str, Any] = {"pool_pre_ping": is_sqlite}
    if is_sqlite:
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    else:  # a pool smaller than the threads using it closes and reopens connections all the time
        settings = Settings()
        options["pool_size"] = settings.db_pool_size
        options["max_overflow"] = settings.db_max_overflow
    options.update(kwargs)
    engine = create_engine(normalized, **options)
    if is_sqlite:
        _setup_sqlite(engine)
    elif not options["pool_pre_ping"]:
        _ping_when_idle(engine)
    log.debug("database engine created for %s", mask_url(normalized))
    return engine


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module; we emit BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if engine.url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(
        dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        idle_since = record.info.get(_CHECKED_IN_AT)
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_SECONDS:
            return  # a new connection, or one in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces it with a fresh connection and checks out again
            raise DisconnectionError("connection lost while idle in the pool") from exc


def connect_once(engine: Engine) -> None:
    """Open (and return to the pool) one connection: the database answers, and the pool holds a warm one."""
    with engine.connect():
        pass


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def alembic_config(engine_or_url: Engine | str) -> Any:
    """An Alembic `Config` for the migrations shipped inside the package (no alembic.ini needed on disk).

    The engine (or URL) is handed to env.py through `config.attributes`, so env.py never reads settings
    and a URL with a password never passes through a config file.
    """
    from alembic.config import Config  # late on purpose: ~0.1 s to import, only schema work needs it

    script_location = resources.files("warmup.store") / "migrations"
    config = Config()
    config.set_main_option("script_location", str(script_location))
    engine = engine_or_url if isinstance(engine_or_url, Engine) else make_engine(engine_or_url)
    config.attributes["engine"] = engine
    return config


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest); safe to run on every start."""
    from alembic import command  # late on purpose: ~0.1 s to import, only schema work needs it

    config = alembic_config(engine_or_url)
    engine: Engine = config.attributes["engine"]
    try:
        command.upgrade(config, revision)
    finally:
        if not isinstance(engine_or_url, Engine):
            engine.dispose()


def current_revision(engine_or_url: Engine | str) -> str | None:
    """The revision the database is at, or None for a database never migrated."""
    # late on purpose: ~0.1 s to import, only schema work needs it
    from alembic.migration import MigrationContext

    engine = engine_or_url if isinstance(engine_or_url, Engine) else make_engine(engine_or_url)
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if not isinstance(engine_or_url, Engine):
            engine.dispose()


def head_revision() -> str | None:
    """The newest revision shipped with this version of warmup."""
    from alembic.script import ScriptDirectory  # late on purpose: ~0.1 s to import, only schema work needs it

    script_location = resources.files("warmup.store") / "migrations"
    return ScriptDirectory(str(script_location)).get_current_head()


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One ORM session = one transaction: committed on success, rolled back on any exception.

    Objects stay readable after the commit (`expire_on_commit=False`), so callers can return them.
    """
    with Session(engine, expire_on_commit=False) as session:
        if read_only:
            session.connection(execution_options={READ_ONLY: True})  # starts a deferred BEGIN
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# --- server administration: throwaway databases for tests and benchmarks ---------------------------


class DatabaseUnreachable(RuntimeError):
    """The PostgreSQL server an administration URL names did not accept a connection."""


def libpq_url(url: str) -> str:
    """The URL as libpq and psycopg take it (no SQLAlchemy ``+driver`` suffix)."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


@contextmanager
def _server(admin_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to ``admin_url`` (CREATE and DROP DATABASE refuse to run in a transaction)."""
    # A late import: only test and benchmark runs administer a server, and psycopg costs ~0.1 s to import
    # in every other process that imports the store (SQLAlchemy loads it only for a PostgreSQL engine).
    import psycopg

    try:
        conn = psycopg.connect(libpq_url(admin_url), autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        raise DatabaseUnreachable(f"PostgreSQL is not reachable: {type(exc).__name__}") from None
    with conn:
        yield conn


def database_reachable(admin_url: str) -> bool:
    """Whether the PostgreSQL server of ``admin_url`` accepts a connection (within 3 s)."""
    try:
        with _server(admin_url):
            return True
    except DatabaseUnreachable:
        return False


def create_database(admin_url: str, name: str) -> str:
    """Create the empty database ``name`` on the server of ``admin_url`` (an existing database used only
    to administer it) and return the new database's URL, in ``admin_url``'s libpq form."""
    from psycopg import sql  # see `_server`

    with _server(admin_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(libpq_url(admin_url)).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, *names: str) -> None:
    """Drop the databases ``names`` with their open connections; one already gone is no error."""
    from psycopg import sql  # see `_server`

    with _server(admin_url) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
