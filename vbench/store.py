"""The run store: every run, its per-step metrics and its later evaluations, in any SQLAlchemy database.

Rows do not depend on the task: a run holds its named final metrics (``metrics``), its step unit
(epoch or iteration) and the number of steps; each evaluated step is a ``steps`` row of named
metrics; evaluations made after training (corruptions, eval-only runs) are ``evaluations`` rows.

The location is ``--db`` or ``$VBENCH_DB`` (a file path or any SQLAlchemy URL; PostgreSQL needs
psycopg2), else ``results/vbench.db`` under the current directory. Each store has a random identity
created with its schema: checkpoints, weights and predictions live in folders named after it, so a
file of one store is never taken for another's.

Concurrency and faults: SQLite runs in WAL mode and every write is one short ``BEGIN IMMEDIATE``
transaction retried while the file is locked; creating or upgrading the schema is serialised (a
PostgreSQL advisory lock, SQLite's write lock); server stores use a pre-ping pool and retry a write
through a lost connection with backoff for ``$VBENCH_DB_RETRY_SECONDS`` (60 s). Reading commands open
stores read-only and never upgrade them: an older SQLite file is read through an upgraded copy in
memory.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

from sqlalchemy import (
    JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine, delete,
    event, inspect, select, text, update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.pool import StaticPool

from vbench.errors import VbenchError
from vbench.paths import creatable

SCHEMA_VERSION = 3  # 2: epochs.metrics; 3: task-independent runs/steps, evaluations, store identity, leases
DEFAULT_URL = "sqlite:///results/vbench.db"
RUN_STATUSES = ("running", "done", "failed", "interrupted", "queued")  # queued: submitted to a scheduler, not begun
SQLITE_BUSY_TIMEOUT_MS = 30_000
LOCK_RETRIES = 20
LEASE_SECONDS = 120  # a running run whose heartbeat is older than this has lost its holder
SCHEMA_LOCK_ID = 0x76626E6368  # PostgreSQL advisory lock serialising schema creation and upgrades

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
    data_id: Mapped[Optional[str]] = mapped_column(String(32), index=True)  # the data's identity (run key)
    data: Mapped[Optional[dict]] = mapped_column(JSON)  # root, split sizes, fingerprints, limit
    settings: Mapped[Optional[dict]] = mapped_column(JSON)  # device, precision, compile, pipeline, threads
    img_size: Mapped[Optional[int]] = mapped_column(Integer)
    num_classes: Mapped[Optional[int]] = mapped_column(Integer)
    step_unit: Mapped[Optional[str]] = mapped_column(String(16))  # epoch | iteration
    steps: Mapped[Optional[int]] = mapped_column(Integer)  # planned
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[Optional[dict]] = mapped_column(JSON)  # named final metrics (+ task details)
    params: Mapped[Optional[int]] = mapped_column(BigInteger)
    flops: Mapped[Optional[int]] = mapped_column(BigInteger)
    counts: Mapped[Optional[dict]] = mapped_column(JSON)  # further counts (flops_complete, params_without_aux, ...)
    train_images_per_s: Mapped[Optional[float]] = mapped_column(Float)
    peak_memory_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    peak_memory_kind: Mapped[Optional[str]] = mapped_column(String(64))
    wall_time_s: Mapped[Optional[float]] = mapped_column(Float)
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    ended_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(DateTime)
    owner: Mapped[Optional[str]] = mapped_column(String(255))  # host:pid:token of the process training it
    launch: Mapped[Optional[dict]] = mapped_column(JSON)  # how it was launched (scheduler job, log file)
    host: Mapped[Optional[str]] = mapped_column(String(255))
    device_name: Mapped[Optional[str]] = mapped_column(String(255))
    torch_version: Mapped[Optional[str]] = mapped_column(String(64))
    vbench_version: Mapped[Optional[str]] = mapped_column(String(64))
    error: Mapped[Optional[str]] = mapped_column(Text)

    step_rows: Mapped[list["Step"]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="Step.step")

    def as_dict(self) -> dict:
        return {column.name: getattr(self, column.name) for column in self.__table__.columns}

    def metric(self, name: str) -> float | None:
        value = (self.metrics or {}).get(name)
        return float(value) if isinstance(value, (int, float)) else None


class Step(Base):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("run_id", "step", name="uq_steps_run_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)  # the epoch or iteration after which it was evaluated
    metrics: Mapped[dict] = mapped_column(JSON)

    run: Mapped[Run] = relationship(back_populates="step_rows")


class Evaluation(Base):
    """A result measured on a finished run's weights after training (a corruption, an eval-only run)."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("run_id", "kind", "condition", name="uq_evaluations_run_kind_condition"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    condition: Mapped[str] = mapped_column(String(200))
    metrics: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[Optional[datetime]] = mapped_column(DateTime)


class StoreInfo(Base):
    __tablename__ = "store_info"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


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
    data_id: str | None = None
    precision: str = "fp32"  # a bf16 run is another experiment than the fp32 run of the same recipe


def run_precision(run: "Run") -> str:
    return (run.settings or {}).get("precision", "fp32")


# --- locations -------------------------------------------------------------------------------------
def resolve_url(db: str | None = None) -> str:
    """``--db`` or ``$VBENCH_DB`` (a SQLAlchemy URL or a file path), else ``sqlite:///results/vbench.db``."""
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


def _with_available_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3; the ``postgres`` extra installs psycopg2."""
    parsed = make_url(url)
    if parsed.drivername != "postgresql":
        return url
    import importlib.util

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
def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _is_locked(exc: BaseException) -> bool:
    text_ = _reason(exc).lower()
    return "locked" in text_ or "busy" in text_


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text_ = _reason(exc).lower()
    return any(word in text_ for word in (
        "server closed the connection", "connection refused", "terminating connection", "could not connect",
        "connection already closed", "ssl connection has been closed", "the database system is starting up",
        "the database system is shutting down", "no connection to the server"))


def _is_corrupt(exc: BaseException) -> bool:
    text_ = _reason(exc).lower()
    return "malformed" in text_ or "file is not a database" in text_ or "disk image" in text_


class StoreCorrupt(VbenchError):
    pass


def _corrupt_error(url: str, exc: BaseException) -> StoreCorrupt:
    path = sqlite_file(url)
    where = str(path) if path else display_url(url)
    hint = f'; recover what is left with: sqlite3 {where} ".recover" | sqlite3 recovered.db' if path else ""
    return StoreCorrupt(f"the run store {where} is damaged ({_reason(exc)}){hint}")


# --- SQLite connections ----------------------------------------------------------------------------
def _configure_sqlite(engine: Engine, read_only: bool) -> None:
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


def _read_only_sqlite_engine(path: Path) -> Engine:
    """A read-only connection: ``mode=ro``, and ``immutable`` where the folder cannot be written (a
    read-only mount cannot hold WAL's shared-memory file)."""
    writable = os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)
    engine = create_engine(f"sqlite:///file:{path}?mode=ro{'' if writable else '&immutable=1'}&uri=true")
    _configure_sqlite(engine, read_only=True)
    return engine


def _memory_copy_engine(path: Path) -> Engine:
    """An in-memory copy of a SQLite file, to read an older schema through an upgrade that is never written."""
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        source.backup(memory)
    finally:
        source.close()
    engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
    _configure_sqlite(engine, read_only=True)
    return engine


# --- the store -------------------------------------------------------------------------------------
class Store:
    """A handle on one run database; every method is one short transaction."""

    def __init__(self, engine: Engine, url: str, read_only: bool = False):
        self.engine = engine
        self.url = url
        self.read_only = read_only
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.retry_seconds = float(os.environ.get("VBENCH_DB_RETRY_SECONDS", "60"))
        self._read_sessions = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(engine.execution_options(vbench_write=True), expire_on_commit=False)
        self.store_id: str | None = None

    # --- plumbing -------------------------------------------------------------------------------
    def _retrying(self, work: Callable[[], T]) -> T:
        """Run ``work``, retrying while a SQLite file is locked or a server connection is lost."""
        deadline = time.monotonic() + self.retry_seconds
        attempt = 0
        while True:
            try:
                return work()
            except (OperationalError, DBAPIError) as exc:
                if _is_corrupt(exc):
                    raise _corrupt_error(self.url, exc) from None
                retry = (_is_locked(exc) and attempt < LOCK_RETRIES) or \
                        (_is_disconnect(exc) and time.monotonic() < deadline)
                if not retry:
                    raise
                attempt += 1
                time.sleep(min(2.0, 0.05 * 2 ** min(attempt, 6)) * (0.5 + random.random()))

    def _write(self, work: Callable[[Session], T]) -> T:
        if self.read_only:
            raise VbenchError(f"the run store {self.label} is open for reading only")

        def once() -> T:
            with self._write_sessions() as session, session.begin():
                return work(session)

        return self._retrying(once)

    def _read(self, work: Callable[[Session], T]) -> T:
        def once() -> T:
            with self._read_sessions() as session, session.begin():
                return work(session)

        return self._retrying(once)

    @property
    def label(self) -> str:
        path = sqlite_file(self.url) if self.is_sqlite else None
        return str(path) if path else display_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    # --- schema ---------------------------------------------------------------------------------
    def schema_version(self) -> int | None:
        def work(connection: Connection) -> int | None:
            if not inspect(connection).has_table("schema_info"):
                return None
            return connection.scalar(select(SchemaInfo.version).order_by(SchemaInfo.version.desc()))

        return _with_connection(self.engine, work)

    def _load_identity(self) -> None:
        self.store_id = self._read(lambda s: s.scalar(select(StoreInfo.value).where(StoreInfo.key == "store_id")))

    @property
    def artifact_root(self) -> Path:
        """Where checkpoints, weights and predictions go: beside a SQLite file, else ``results/`` under the cwd
        (``$VBENCH_ARTIFACTS`` overrides both, e.g. a shared folder for cluster jobs)."""
        env = os.environ.get("VBENCH_ARTIFACTS")
        if env:
            return Path(env).expanduser().resolve()
        path = sqlite_file(self.url) if self.is_sqlite else None
        return path.parent if path is not None else Path.cwd() / "results"

    def artifact_dir(self, kind: str) -> Path:
        """``<artifact root>/<kind>/<store id>``: files of this store only."""
        return self.artifact_root / kind / (self.store_id or "unknown-store")

    # --- runs -----------------------------------------------------------------------------------
    def start_run(self, **fields: Any) -> int:
        fields.setdefault("status", "running")
        fields.setdefault("started_at", utcnow())

        def work(session: Session) -> int:
            run = Run(**fields)
            session.add(run)
            session.flush()
            return run.id

        return self._write(work)

    def claim_run(self, key: RunKey, fields: dict, owner: str, force: bool = False) -> tuple[str, Run | None]:
        """Atomically decide what this process does with ``key``: ``("done", run)`` (finished, skip),
        ``("busy", run)`` (another live process holds it), ``("resume", run)`` (an unfinished row,
        now ours) or ``("new", run)`` (a new row, ours)."""

        def work(session: Session) -> tuple[str, Run | None]:
            self._lock_key(session, key)
            rows = _key_rows(session, key)
            now = utcnow()
            done = [r for r in rows if r.status == "done"]
            if done and not force:
                return "done", done[0]
            live = [r for r in rows if r.status == "running" and r.owner not in (None, owner)
                    and holder_alive(r.owner, r.heartbeat_at, now)]
            if live:
                return "busy", live[0]
            unfinished = [] if force else [r for r in rows if r.status != "done"]
            claimed = {**fields, "status": "running", "owner": owner, "heartbeat_at": now, "error": None,
                       "ended_at": None}
            if unfinished:
                run = unfinished[0]
                for name, value in claimed.items():
                    setattr(run, name, value)
                run.started_at = run.started_at or now  # a queued row begins now
                return "resume", run
            run = Run(**claimed, started_at=now)
            session.add(run)
            session.flush()
            return "new", run

        return self._write(work)

    def queue_run(self, key: RunKey, fields: dict, launch: dict) -> int:
        """Record a run submitted to a scheduler as ``queued``, with its ``launch`` (job id, log file); the
        job claims the row when it starts (``claim_run`` resumes any unfinished row). An unfinished row of
        the key is reused; one the job has claimed already, or that is done, is left as it is."""

        def work(session: Session) -> int:
            self._lock_key(session, key)
            rows = _key_rows(session, key)
            now = utcnow()
            kept = [r for r in rows if r.status == "done" or r.status == "running" and (
                (r.launch or {}).get("job_id") == launch.get("job_id")
                or r.owner is not None and holder_alive(r.owner, r.heartbeat_at, now))]
            if kept:
                return kept[0].id
            if rows:
                run = rows[0]
                for name, value in {"status": "queued", "launch": launch, "owner": None, "heartbeat_at": None,
                                    "error": None, "ended_at": None}.items():
                    setattr(run, name, value)
                return run.id
            run = Run(**{**fields, "status": "queued", "launch": launch})
            session.add(run)
            session.flush()
            return run.id

        return self._write(work)

    def _lock_key(self, session: Session, key: RunKey) -> None:
        """PostgreSQL: one claim per key at a time (SQLite's BEGIN IMMEDIATE already serialises writers)."""
        if self.engine.dialect.name == "postgresql":
            digest = int(hashlib.sha256(repr(key).encode()).hexdigest()[:15], 16)
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": digest})

    def heartbeat(self, run_id: int, owner: str) -> bool:
        """Renew the lease; False when the run is no longer ours."""

        def work(session: Session) -> bool:
            result = session.execute(update(Run).where(Run.id == run_id, Run.owner == owner)
                                     .values(heartbeat_at=utcnow()))
            return result.rowcount == 1

        return self._write(work)

    def update_run(self, run_id: int, **fields: Any) -> None:
        def work(session: Session) -> None:
            run = session.get(Run, run_id)
            if run is None:
                raise VbenchError(f"run {run_id} is not in the store {self.label}")
            for name, value in fields.items():
                setattr(run, name, value)

        self._write(work)

    def finish_run(self, run_id: int, status: str, **fields: Any) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self.update_run(run_id, status=status, ended_at=utcnow(), owner=None, **fields)

    def get_run(self, run_id: int) -> Run | None:
        return self._read(lambda s: s.get(Run, run_id))

    def find_runs(self, key: RunKey, statuses: tuple[str, ...] = RUN_STATUSES) -> list[Run]:
        """Runs of ``key`` with one of ``statuses``, newest first."""
        return self._read(lambda s: [run for run in _key_rows(s, key) if run.status in statuses])

    def list_runs(self, suite: str | None = None, backbones: list[str] | None = None, status: str | None = None,
                  task: str | None = None) -> list[Run]:
        query = select(Run).order_by(Run.id)
        if suite:
            query = query.where(Run.suite == suite)
        if backbones:
            query = query.where(Run.backbone.in_(backbones))
        if status:
            query = query.where(Run.status == status)
        if task:
            query = query.where(Run.task == task)
        return self._read(lambda s: list(s.scalars(query)))

    def delete_run(self, run_id: int) -> None:
        def work(session: Session) -> None:
            run = session.get(Run, run_id)
            if run is None:
                raise VbenchError(f"no run with id {run_id} in {self.label}; `vbench runs` lists them")
            session.execute(delete(Step).where(Step.run_id == run_id))
            session.execute(delete(Evaluation).where(Evaluation.run_id == run_id))
            session.delete(run)

        self._write(work)

    # --- steps ----------------------------------------------------------------------------------
    def add_step(self, run_id: int, step: int, metrics: dict, **run_fields: Any) -> None:
        """Insert (or replace) one step row and update the run row in the same transaction."""

        def work(session: Session) -> None:
            session.execute(delete(Step).where(Step.run_id == run_id, Step.step == step))
            session.add(Step(run_id=run_id, step=step, metrics=metrics))
            run = session.get(Run, run_id)
            for name, value in run_fields.items():
                setattr(run, name, value)

        self._write(work)

    def replace_steps(self, run_id: int, rows: list[tuple[int, dict]], **run_fields: Any) -> None:
        """Make the step rows of a run exactly ``rows`` (resuming from a checkpoint)."""

        def work(session: Session) -> None:
            session.execute(delete(Step).where(Step.run_id == run_id))
            session.add_all(Step(run_id=run_id, step=step, metrics=metrics) for step, metrics in rows)
            run = session.get(Run, run_id)
            for name, value in run_fields.items():
                setattr(run, name, value)

        self._write(work)

    def steps(self, run_id: int) -> list[Step]:
        return self._read(lambda s: list(s.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.step))))

    def steps_of(self, run_ids: list[int]) -> dict[int, list[Step]]:
        query = select(Step).where(Step.run_id.in_(run_ids)).order_by(Step.run_id, Step.step)
        grouped: dict[int, list[Step]] = {run_id: [] for run_id in run_ids}
        for row in self._read(lambda s: list(s.scalars(query))):
            grouped[row.run_id].append(row)
        return grouped

    def steps_json(self, suite: str | None = None, backbones: list[str] | None = None) -> dict[int, list[tuple]]:
        """``(step, metrics as JSON text)`` rows per run id of the runs ``list_runs(suite, backbones)`` selects, in
        one query that builds no objects and decodes nothing (a leaderboard of 10,000 runs reads 100,000s)."""
        from sqlalchemy import cast

        query = (select(Step.run_id, Step.step, cast(Step.metrics, Text)).join(Run, Run.id == Step.run_id)
                 .order_by(Step.run_id, Step.step))
        if suite:
            query = query.where(Run.suite == suite)
        if backbones:
            query = query.where(Run.backbone.in_(backbones))
        grouped: dict[int, list[tuple]] = {}
        for run_id, step, metrics in self._read(lambda s: s.execute(query).all()):
            grouped.setdefault(run_id, []).append((step, metrics))
        return grouped

    # --- evaluations ----------------------------------------------------------------------------
    def put_evaluation(self, run_id: int, kind: str, condition: str, metrics: dict) -> None:
        def work(session: Session) -> None:
            session.execute(delete(Evaluation).where(Evaluation.run_id == run_id, Evaluation.kind == kind,
                                                     Evaluation.condition == condition))
            session.add(Evaluation(run_id=run_id, kind=kind, condition=condition, metrics=metrics,
                                   created_at=utcnow()))

        self._write(work)

    def evaluations(self, kind: str, run_ids: list[int] | None = None) -> list[Evaluation]:
        query = select(Evaluation).where(Evaluation.kind == kind).order_by(Evaluation.run_id, Evaluation.id)
        if run_ids is not None:
            query = query.where(Evaluation.run_id.in_(run_ids))
        return self._read(lambda s: list(s.scalars(query)))

    # --- checks ---------------------------------------------------------------------------------
    def integrity_problems(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check`` (empty when sound); a server store is asked for its row counts."""

        def work(connection: Connection) -> list[str]:
            if self.is_sqlite:
                rows = [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check")]
                return [] if rows == ["ok"] else rows
            connection.execute(select(Run.id).limit(1))
            return []

        try:
            return _with_connection(self.engine, work)
        except DBAPIError as exc:
            return [_reason(exc)]


def holder_alive(owner: str, heartbeat_at: datetime | None, now: datetime) -> bool:
    """Whether the process named ``owner`` (host:pid:token) still holds its run: on this host, whether that
    process exists; elsewhere, whether its heartbeat is younger than the lease."""
    import socket

    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat_at is not None and now - heartbeat_at < timedelta(seconds=LEASE_SECONDS)


def _key_rows(session: Session, key: RunKey) -> list[Run]:
    """The key's runs, newest first; the precision lives in the settings JSON, so it is compared here rather
    than in SQL (the JSON operators differ between SQLite and PostgreSQL)."""
    data = Run.data_id.is_(None) if key.data_id is None else Run.data_id == key.data_id
    query = select(Run).where(Run.suite == key.suite, Run.backbone == key.backbone, Run.seed == key.seed,
                              Run.recipe_hash == key.recipe_hash, data).order_by(Run.id.desc())
    return [run for run in session.scalars(query) if run_precision(run) == key.precision]


def _with_connection(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.connect() as connection:
        result = work(connection)
        if connection.in_transaction():
            connection.rollback()
        return result


# --- opening, creating and upgrading ---------------------------------------------------------------
def open_store(db: str | None = None, write: bool = True) -> Store:
    """The run store at ``db``, ``$VBENCH_DB`` or ``results/vbench.db``.

    ``write=True`` (``vbench run``): create the database and its schema when missing, upgrade an older
    schema in place. ``write=False`` (reading commands): read access is enough, nothing is ever
    written, and an older SQLite schema is read through an upgraded copy in memory.
    """
    url = check_url(db, write=write)
    path = sqlite_file(url)
    try:
        if write and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if path is not None and not write:
            engine = _read_only_sqlite_engine(path)
        else:
            engine = create_engine(_with_available_driver(url), pool_pre_ping=path is None)
            if engine.dialect.name == "sqlite":
                _configure_sqlite(engine, read_only=False)
    except (OSError, NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise VbenchError(f"cannot open the run store {display_url(url)}: {exc}; give a usable --db") from None
    store = Store(engine, url, read_only=not write)
    try:
        _prepare(store, write, path)
        store._load_identity()
    except VbenchError:
        store.close()
        raise
    except (SQLAlchemyError, sqlite3.DatabaseError) as exc:
        store.close()
        if _is_corrupt(exc):
            raise _corrupt_error(url, exc) from None
        raise VbenchError(f"cannot open the run store {display_url(url)}: {_reason(exc)}; give a writable --db "
                          "path or a reachable database") from None
    return store


def _prepare(store: Store, write: bool, path: Path | None) -> None:
    version = store.schema_version()
    if version is not None and version > SCHEMA_VERSION:
        raise VbenchError(f"the run store {store.label} has schema version {version}, newer than this vbench "
                          f"({SCHEMA_VERSION}); upgrade vbench")
    if version == SCHEMA_VERSION:
        return
    if write:
        _create_or_upgrade(store.engine)
    elif version is None:
        raise VbenchError(f"the run store {store.label} holds no vbench schema; run `vbench run` first or give "
                          "the right --db")
    elif path is not None:  # an older file: read an upgraded copy, leave the file as it is
        store.engine.dispose()
        store.engine = _memory_copy_engine(path)
        store._read_sessions = sessionmaker(store.engine, expire_on_commit=False)
        _create_or_upgrade(store.engine)
    else:
        raise VbenchError(f"the run store {store.label} has schema version {version}; this vbench reads "
                          f"{SCHEMA_VERSION}: run `vbench db upgrade --db ...` (older vbench versions cannot "
                          "open it afterwards)")


def _create_or_upgrade(engine: Engine) -> None:
    """Create the schema of an empty database or upgrade an older one, one process at a time."""

    def once() -> None:
        with engine.execution_options(vbench_write=True).connect() as connection:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK_ID})
                _migrate(connection)

    for attempt in range(LOCK_RETRIES):
        try:
            return once()
        except (OperationalError, IntegrityError) as exc:
            if attempt == LOCK_RETRIES - 1 or not (_is_locked(exc) or "already exists" in _reason(exc)
                                                    or isinstance(exc, IntegrityError)):
                raise
            time.sleep(0.05 * (attempt + 1))


def _migrate(connection: Connection) -> None:
    """Bring ``connection``'s database to SCHEMA_VERSION inside the caller's transaction."""
    inspector = inspect(connection)
    version = None
    if inspector.has_table("schema_info"):
        version = connection.scalar(select(SchemaInfo.version).order_by(SchemaInfo.version.desc()))
    if version is not None and version >= SCHEMA_VERSION:
        return
    if not inspector.has_table("runs"):
        Base.metadata.create_all(connection)
    else:
        if "metrics" not in {c["name"] for c in inspector.get_columns("epochs")}:  # schema 1
            connection.exec_driver_sql(f"ALTER TABLE epochs ADD COLUMN metrics {_json_type(connection)}")
        _upgrade_2_to_3(connection)
    connection.execute(SchemaInfo.__table__.insert(), [{"version": SCHEMA_VERSION}])
    connection.execute(StoreInfo.__table__.insert(), [
        {"key": "store_id", "value": uuid.uuid4().hex[:16]}, {"key": "created_at", "value": utcnow().isoformat()}])


def _json_type(connection: Connection) -> str:
    return Run.__table__.c.metrics.type.compile(dialect=connection.dialect)


V2_RUN_COLUMNS_GONE = ("top1", "top5", "epochs", "epochs_done")
V2_EPOCH_FIELDS = ("train_loss", "train_acc", "lr", "images_per_s", "top1", "top5", "time_s")


def _upgrade_2_to_3(connection: Connection) -> None:
    """Schema 2 held top-1/top-5 in columns of their own and per-epoch rows in ``epochs``: move both into
    named metrics, add the new columns and tables, and give old ``-seg`` backbone names their canonical one."""
    from vbench import registry

    existing = {c["name"] for c in inspect(connection).get_columns("runs")}
    for column in Run.__table__.columns:
        if column.name not in existing:
            kind = column.type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {column.name} {kind}")
    for table in (Step.__table__, Evaluation.__table__, StoreInfo.__table__):
        table.create(connection, checkfirst=True)
    old_runs = connection.execute(text("SELECT id, task, backbone, top1, top5, epochs, epochs_done, metrics FROM runs"))
    for row in old_runs.mappings().all():
        metrics = dict(_json(row["metrics"]) or {})
        if row["task"] != "segmentation":
            metrics.update({k: row[k] for k in ("top1", "top5") if row[k] is not None})
        canonical = registry.canonical_or_none(row["backbone"]) or row["backbone"]
        connection.execute(update(Run).where(Run.id == row["id"]).values(
            metrics=metrics, steps=row["epochs"], steps_done=row["epochs_done"] or 0, backbone=canonical,
            step_unit="iteration" if row["task"] == "segmentation" else "epoch"))
    old_epochs = connection.execute(text(f"SELECT run_id, epoch, {', '.join(V2_EPOCH_FIELDS)}, metrics FROM epochs"))
    rows = [{"run_id": r["run_id"], "step": r["epoch"],
             "metrics": {**{k: r[k] for k in V2_EPOCH_FIELDS if r[k] is not None}, **(_json(r["metrics"]) or {})}}
            for r in old_epochs.mappings().all()]
    if rows:
        connection.execute(Step.__table__.insert(), rows)
    connection.exec_driver_sql("DROP TABLE epochs")
    for column in V2_RUN_COLUMNS_GONE:
        connection.exec_driver_sql(f"ALTER TABLE runs DROP COLUMN {column}")


def _json(value: Any) -> Any:
    import json

    return json.loads(value) if isinstance(value, str) else value


@contextmanager
def opened(db: str | None = None, write: bool = False) -> Iterator[Store]:
    store = open_store(db, write=write)
    try:
        yield store
    finally:
        store.close()
