"""Where a run store lives and how it is reached: URLs (``--db``, ``$VBENCH_DB``, a file path or any SQLAlchemy
URL), SQLite engines (WAL, busy timeout, writers that take the lock up front, read-only and in-memory copies),
and the translation of database faults (locked, disconnected, damaged) into retries or one-line errors."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy import (
    create_engine,
    event,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
)
from sqlalchemy.pool import StaticPool

from vbench.errors import VbenchError, first_line
from vbench.paths import creatable

DEFAULT_URL = "sqlite:///results/vbench.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
LOCK_RETRIES = 20
T = TypeVar("T")


# --- locations -------------------------------------------------------------------------------------
def resolve_url(db: str | None = None) -> str:
    """``--db`` or ``$VBENCH_DB`` (a SQLAlchemy URL or a file path), else ``sqlite:///results/vbench.db``."""
    if db is not None and not db.strip():
        raise VbenchError("--db is empty; give a file path or a SQLAlchemy URL (default: $VBENCH_DB, else "
                          "results/vbench.db)")
    value = db or os.environ.get("VBENCH_DB") or DEFAULT_URL
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    return value


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL (relative paths resolve against the cwd), None for other backends."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def with_available_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3; the ``postgres`` extra installs psycopg2."""
    parsed = make_url(url)
    if parsed.drivername != "postgresql":
        return url

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def display_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def check_url(db: str | None, write: bool = True) -> str:
    """The resolved URL, after checking it without creating anything (VbenchError when it cannot work)."""
    url = resolve_url(db)
    try:
        path = sqlite_file(url)
    except ArgumentError as exc:
        raise VbenchError(f"database URL {url!r} is not a SQLAlchemy URL ({exc}); give a file path or e.g. "
                          "postgresql://user@host/db") from None
    if path is None:
        return url
    if path.exists():
        if not path.is_file():
            raise VbenchError(f"database path {str(path)!r} is not a file; give a database file with --db")
        needed = os.R_OK | os.W_OK if write else os.R_OK
        if not os.access(path, needed):
            raise VbenchError(f"database file {str(path)!r} cannot be {'written' if write else 'read'}; "
                              "give a usable --db path")
        return url
    if not write:
        raise VbenchError(f"no run store at {str(path)!r}; run `vbench run` first or give the right --db / $VBENCH_DB")
    can_create, ancestor = creatable(path)
    if not can_create:
        raise VbenchError(f"database path {str(path)!r} cannot be created ({str(ancestor)!r} is not a writable "
                          "directory); give a writable --db path")
    return url


# --- fault translation -----------------------------------------------------------------------------
def reason(exc: BaseException) -> str:
    return first_line(getattr(exc, "orig", None) or exc)


def is_locked(exc: BaseException) -> bool:
    text_ = reason(exc).lower()
    return "locked" in text_ or "busy" in text_


def is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text_ = reason(exc).lower()
    return any(word in text_ for word in (
        "server closed the connection", "connection refused", "terminating connection", "could not connect",
        "connection already closed", "ssl connection has been closed", "the database system is starting up",
        "the database system is shutting down", "no connection to the server"))


def is_corrupt(exc: BaseException) -> bool:
    text_ = reason(exc).lower()
    return "malformed" in text_ or "file is not a database" in text_ or "disk image" in text_


class StoreCorrupt(VbenchError):
    pass


def corrupt_error(url: str, exc: BaseException) -> StoreCorrupt:
    path = sqlite_file(url)
    where = str(path) if path else display_url(url)
    hint = f'; recover what is left with: sqlite3 {where} ".recover" | sqlite3 recovered.db' if path else ""
    return StoreCorrupt(f"the run store {where} is damaged ({reason(exc)}){hint}")


# --- SQLite connections ----------------------------------------------------------------------------
def configure_sqlite(engine: Engine, read_only: bool) -> None:
    """WAL + busy timeout + foreign keys on every connection; writers take the lock up front.

    pysqlite's own transaction handling begins lazily and upgrades read locks to write locks, which
    fails at once (no busy wait) when two writers race; the SQLAlchemy docs' recipe is to disable
    it and emit BEGIN ourselves, IMMEDIATE for writes so the busy timeout applies.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not read_only:
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        immediate = connection.get_execution_options().get("vbench_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _use_wal(cursor) -> None:
    """Switch a new file to WAL (the mode is kept in the file). The switch needs the file to itself and
    SQLite answers "database is locked" at once, without the busy wait, while other processes open it for
    the first time: retried here for as long as the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def read_only_sqlite_engine(path: Path) -> Engine:
    """A read-only connection: ``mode=ro``, and ``immutable`` where the folder cannot be written (a
    read-only mount cannot hold WAL's shared-memory file)."""
    writable = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
    engine = create_engine(f"sqlite:///file:{path}?mode=ro{'' if writable else '&immutable=1'}&uri=true")
    configure_sqlite(engine, read_only=True)
    return engine


def memory_copy_engine(path: Path) -> Engine:
    """An in-memory copy of a SQLite file, to read an older schema through an upgrade that is never written."""
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        source.backup(memory)
    finally:
        source.close()
    engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
    configure_sqlite(engine, read_only=True)
    return engine


def with_connection(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.connect() as connection:
        result = work(connection)
        if connection.in_transaction():
            connection.rollback()
        return result


