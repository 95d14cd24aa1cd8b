"""The run store: every training run and its per-epoch metrics, in any SQLAlchemy database.

Default ``sqlite:///results/vbench.db`` relative to the current directory, overridden by
``$VBENCH_DB`` or an explicit URL (PostgreSQL works through the ``postgres`` extra). SQLite files
are opened in WAL mode with a busy timeout, and every write is one short ``BEGIN IMMEDIATE``
transaction retried while the file is locked, so several ``vbench run`` processes can share one
file without losing a row.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from vbench.errors import VbenchError

SCHEMA_VERSION = 2  # 2: epochs.metrics (task-specific per-evaluation metrics)
DEFAULT_URL = "sqlite:///results/vbench.db"
RUN_STATUSES = ("running", "done", "failed", "interrupted")
SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_RETRIES = 20
SCHEMA_LOCK_KEY = 0x76626E6368  # any constant shared by every vbench process ("vbnch")

T = TypeVar("T")


def utcnow() -> datetime:
    """Naive UTC timestamp (SQLite drops time zones, so every backend stores naive UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(32), default="classification")
    suite: Mapped[str] = mapped_column(String(200), index=True)
    dataset: Mapped[Optional[str]] = mapped_column(String(64))
    backbone: Mapped[str] = mapped_column(String(200), index=True)
    family: Mapped[Optional[str]] = mapped_column(String(100))
    paper_names: Mapped[Optional[list]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    recipe: Mapped[Optional[dict]] = mapped_column(JSON)
    recipe_hash: Mapped[str] = mapped_column(String(64), index=True)
    settings: Mapped[Optional[dict]] = mapped_column(JSON)  # device, amp, compile, pipeline
    img_size: Mapped[Optional[int]] = mapped_column(Integer)
    num_classes: Mapped[Optional[int]] = mapped_column(Integer)
    epochs: Mapped[Optional[int]] = mapped_column(Integer)  # planned
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    top1: Mapped[Optional[float]] = mapped_column(Float)
    top5: Mapped[Optional[float]] = mapped_column(Float)
    metrics: Mapped[Optional[dict]] = mapped_column(JSON)  # task-specific extras (segmentation: mIoU, aAcc, ...)
    params: Mapped[Optional[int]] = mapped_column(BigInteger)
    flops: Mapped[Optional[int]] = mapped_column(BigInteger)
    train_images_per_s: Mapped[Optional[float]] = mapped_column(Float)
    peak_memory_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    peak_memory_kind: Mapped[Optional[str]] = mapped_column(String(64))
    wall_time_s: Mapped[Optional[float]] = mapped_column(Float)
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    ended_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    host: Mapped[Optional[str]] = mapped_column(String(255))
    device_name: Mapped[Optional[str]] = mapped_column(String(255))
    torch_version: Mapped[Optional[str]] = mapped_column(String(64))
    vbench_version: Mapped[Optional[str]] = mapped_column(String(64))
    error: Mapped[Optional[str]] = mapped_column(Text)

    epoch_rows: Mapped[list["Epoch"]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="Epoch.epoch"
    )

    def as_dict(self) -> dict:
        return {column.name: getattr(self, column.name) for column in self.__table__.columns}


class Epoch(Base):
    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("run_id", "epoch", name="uq_epochs_run_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[Optional[float]] = mapped_column(Float)
    train_acc: Mapped[Optional[float]] = mapped_column(Float)
    lr: Mapped[Optional[float]] = mapped_column(Float)
    images_per_s: Mapped[Optional[float]] = mapped_column(Float)
    top1: Mapped[Optional[float]] = mapped_column(Float)
    top5: Mapped[Optional[float]] = mapped_column(Float)
    time_s: Mapped[Optional[float]] = mapped_column(Float)
    metrics: Mapped[Optional[dict]] = mapped_column(JSON)  # task-specific (segmentation: aAcc, mIoU, mAcc)

    run: Mapped[Run] = relationship(back_populates="epoch_rows")

    def as_dict(self) -> dict:
        return {column.name: getattr(self, column.name) for column in self.__table__.columns}


EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "lr", "images_per_s", "top1", "top5", "time_s", "metrics")


class SchemaInfo(Base):
    __tablename__ = "schema_info"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


@dataclass(frozen=True)
class RunKey:
    """What makes two runs the same experiment: a finished one is not repeated."""

    suite: str
    backbone: str
    seed: int
    recipe_hash: str


def resolve_url(url: str | None) -> str:
    return url or os.environ.get("VBENCH_DB") or DEFAULT_URL


def _with_available_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3; the ``postgres`` extra installs psycopg2."""
    parsed = make_url(url)
    if parsed.drivername != "postgresql":
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def _sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL (relative paths resolve against the cwd), None for memory/other backends."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def check_url(url: str | None) -> str:
    """Validate a store URL without creating anything; returns the resolved URL or raises VbenchError."""
    url = resolve_url(url)
    try:
        path = _sqlite_file(url)
    except ArgumentError as exc:
        raise VbenchError(f"database URL {url!r} is not a SQLAlchemy URL ({exc}); give e.g. sqlite:///results/vbench.db") from None
    if path is None:
        return url
    if path.exists():
        if not path.is_file():
            raise VbenchError(f"database path {str(path)!r} is not a file; give a writable --db path")
        if not os.access(path, os.R_OK | os.W_OK):
            raise VbenchError(f"database file {str(path)!r} cannot be written; give a writable --db path")
        return url
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise VbenchError(
            f"database path {str(path)!r} cannot be created ({str(ancestor)!r} is not a writable directory); "
            "give a writable --db path"
        )
    return url


def _is_locked(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return "locked" in text or "busy" in text


def _configure_sqlite(engine: Engine) -> None:
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
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        immediate = connection.get_execution_options().get("vbench_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Store:
    """A handle on one run database; every method is one short transaction."""

    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._read_sessions = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(engine.execution_options(vbench_write=True), expire_on_commit=False)

    # --- plumbing -------------------------------------------------------------------------------
    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one write transaction, retrying while another process holds the lock."""
        for attempt in range(WRITE_RETRIES):
            try:
                with self._write_sessions() as session, session.begin():
                    return work(session)
            except OperationalError as exc:
                if not _is_locked(exc) or attempt == WRITE_RETRIES - 1:
                    raise
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """PostgreSQL: hold an advisory lock while creating the schema.

        Two concurrent CREATE TABLEs of one name do not wait for each other there: the loser fails on
        a catalog unique index (IntegrityError, not the "already exists" the retry below knows), so
        parallel sweep jobs opening a fresh database would crash.
        """
        if self.engine.dialect.name != "postgresql":
            yield
            return
        with self.engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})")
            try:
                yield
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({SCHEMA_LOCK_KEY})")
                connection.commit()

    def create_schema(self) -> None:
        with self._schema_lock():
            self._create_schema()

    def _create_schema(self) -> None:
        # Two processes may create the schema at once: the loser's CREATE TABLE fails, and the retry
        # then finds the tables there.
        for attempt in range(WRITE_RETRIES):
            try:
                Base.metadata.create_all(self.engine.execution_options(vbench_write=True))
                break
            except OperationalError as exc:
                if attempt == WRITE_RETRIES - 1 or not ("already exists" in str(exc) or _is_locked(exc)):
                    raise
                time.sleep(0.05 * (attempt + 1))
        self._upgrade_schema()
        try:
            self._write(lambda s: None if s.get(SchemaInfo, SCHEMA_VERSION) else s.add(SchemaInfo(version=SCHEMA_VERSION)))
        except IntegrityError:
            pass  # the other process wrote it first

    def _upgrade_schema(self) -> None:
        """Version 1 stores lack ``epochs.metrics``: add the nullable column (create_all adds no columns)."""
        from sqlalchemy import inspect as inspect_db

        columns = {column["name"] for column in inspect_db(self.engine).get_columns("epochs")}
        if "metrics" in columns:
            return
        column_type = Epoch.__table__.c.metrics.type.compile(dialect=self.engine.dialect)
        try:
            with self.engine.execution_options(vbench_write=True).begin() as connection:
                connection.exec_driver_sql(f"ALTER TABLE epochs ADD COLUMN metrics {column_type}")
        except SQLAlchemyError as exc:
            if not any(word in str(exc).lower() for word in ("duplicate", "already exists")):   # another process added it first
                raise

    def schema_version(self) -> int | None:
        with self._read() as session:
            return session.scalar(select(SchemaInfo.version).order_by(SchemaInfo.version.desc()))

    @property
    def checkpoint_dir(self) -> Path:
        """``checkpoints/`` beside a SQLite file, else ``results/checkpoints`` under the cwd."""
        path = _sqlite_file(self.url) if self.is_sqlite else None
        return path.parent / "checkpoints" if path is not None else Path.cwd() / "results" / "checkpoints"

    def close(self) -> None:
        self.engine.dispose()

    # --- runs ----------------------------------------------------------------------------------
    def start_run(self, **fields: Any) -> int:
        fields.setdefault("status", "running")
        fields.setdefault("started_at", utcnow())

        def work(session: Session) -> int:
            run = Run(**fields)
            session.add(run)
            session.flush()
            return run.id

        return self._write(work)

    def update_run(self, run_id: int, **fields: Any) -> None:
        def work(session: Session) -> None:
            run = session.get(Run, run_id)
            if run is None:
                raise VbenchError(f"run {run_id} is not in the store {self.url}")
            for name, value in fields.items():
                setattr(run, name, value)

        self._write(work)

    def finish_run(self, run_id: int, status: str, **fields: Any) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self.update_run(run_id, status=status, ended_at=utcnow(), **fields)

    def get_run(self, run_id: int) -> Run | None:
        with self._read() as session:
            return session.get(Run, run_id)

    def find_runs(self, key: RunKey, statuses: tuple[str, ...] = RUN_STATUSES) -> list[Run]:
        """Runs of ``key`` with one of ``statuses``, newest first."""
        with self._read() as session:
            query = (
                select(Run)
                .where(Run.suite == key.suite, Run.backbone == key.backbone, Run.seed == key.seed,
                       Run.recipe_hash == key.recipe_hash, Run.status.in_(statuses))
                .order_by(Run.id.desc())
            )
            return list(session.scalars(query))

    def list_runs(self, suite: str | None = None, backbone: str | None = None, status: str | None = None,
                  task: str | None = None) -> list[Run]:
        with self._read() as session:
            query = select(Run).order_by(Run.id)
            if suite:
                query = query.where(Run.suite == suite)
            if backbone:
                query = query.where(Run.backbone == backbone)
            if status:
                query = query.where(Run.status == status)
            if task:
                query = query.where(Run.task == task)
            return list(session.scalars(query))

    def delete_run(self, run_id: int) -> None:
        def work(session: Session) -> None:
            run = session.get(Run, run_id)
            if run is None:
                raise VbenchError(f"no run with id {run_id} in {self.url}; `vbench runs` lists them")
            session.execute(delete(Epoch).where(Epoch.run_id == run_id))
            session.delete(run)

        self._write(work)

    # --- epochs --------------------------------------------------------------------------------
    def add_epoch(self, run_id: int, metrics: dict, **run_fields: Any) -> None:
        """Insert (or replace) one epoch row and update the run row in the same transaction."""

        def work(session: Session) -> None:
            session.execute(delete(Epoch).where(Epoch.run_id == run_id, Epoch.epoch == metrics["epoch"]))
            session.add(Epoch(run_id=run_id, **{k: metrics.get(k) for k in EPOCH_FIELDS}))
            run = session.get(Run, run_id)
            for name, value in run_fields.items():
                setattr(run, name, value)

        self._write(work)

    def replace_epochs(self, run_id: int, epoch_rows: list[dict], **run_fields: Any) -> None:
        """Make the epoch rows of a run exactly ``epoch_rows`` (used when resuming from a checkpoint)."""

        def work(session: Session) -> None:
            session.execute(delete(Epoch).where(Epoch.run_id == run_id))
            session.add_all(Epoch(run_id=run_id, **{k: m.get(k) for k in EPOCH_FIELDS}) for m in epoch_rows)
            run = session.get(Run, run_id)
            for name, value in run_fields.items():
                setattr(run, name, value)

        self._write(work)

    def epochs(self, run_id: int) -> list[Epoch]:
        with self._read() as session:
            return list(session.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))

    def count_epochs(self) -> int:
        with self._read() as session:
            return len(session.scalars(select(Epoch.id)).all())


def open_store(url: str | None = None, create: bool = True) -> Store:
    """Open the run store at ``url``, ``$VBENCH_DB`` or ``sqlite:///results/vbench.db``.

    ``create``: make the database (and its directory) when missing; readers pass False so that
    asking for a report of a mistyped path does not leave an empty database behind. A location
    that cannot be created or written raises VbenchError before anything is written.
    """
    url = check_url(url)
    path = _sqlite_file(url)
    if not create and path is not None and not path.exists():
        raise VbenchError(f"no run store at {str(path)!r}; run `vbench run` first or give the right --db / $VBENCH_DB")
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(_with_available_driver(url))
    except (OSError, NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise VbenchError(f"cannot open the run store {url!r}: {exc}; give a writable --db path or a valid URL") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    store = Store(engine, url)
    try:
        store.create_schema()
        version = store.schema_version()
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise VbenchError(f"cannot open the run store {url!r}: {reason}; give a writable --db path or a reachable database") from None
    if version is not None and version > SCHEMA_VERSION:
        engine.dispose()
        raise VbenchError(
            f"the run store {url!r} has schema version {version}, newer than this vbench ({SCHEMA_VERSION}); upgrade vbench"
        )
    return store
