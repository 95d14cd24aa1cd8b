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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from sqlalchemy import (
    Text,
    cast,
    create_engine,
    delete,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from vbench.errors import VbenchError
from vbench.store.connection import (
    LOCK_RETRIES,
    check_url,
    configure_sqlite,
    corrupt_error,
    display_url,
    is_corrupt,
    is_disconnect,
    is_locked,
    memory_copy_engine,
    read_only_sqlite_engine,
    reason,
    sqlite_file,
    with_available_driver,
    with_connection,
)
from vbench.store.leases import holder_alive
from vbench.store.migrate import create_or_upgrade
from vbench.store.schema import (
    RUN_STATUSES,
    SCHEMA_VERSION,
    Evaluation,
    Run,
    RunKey,
    SchemaInfo,
    Step,
    StoreInfo,
    run_precision,
    utcnow,
)

T = TypeVar("T")


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
                if is_corrupt(exc):
                    raise corrupt_error(self.url, exc) from None
                retry = (is_locked(exc) and attempt < LOCK_RETRIES) or \
                        (is_disconnect(exc) and time.monotonic() < deadline)
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

        return with_connection(self.engine, work)

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
            rows = key_rows(session, key)
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
            rows = key_rows(session, key)
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
        return self._read(lambda s: [run for run in key_rows(s, key) if run.status in statuses])

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

    def evaluations(self, kind: str | None = None, run_ids: list[int] | None = None) -> list[Evaluation]:
        """Evaluations of ``kind`` (every kind when None) of the runs ``run_ids`` (every run when None)."""
        query = select(Evaluation).order_by(Evaluation.run_id, Evaluation.id)
        if kind is not None:
            query = query.where(Evaluation.kind == kind)
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
            return with_connection(self.engine, work)
        except DBAPIError as exc:
            return [reason(exc)]


def key_rows(session: Session, key: RunKey) -> list[Run]:
    """The key's runs, newest first; the precision lives in the settings JSON, so it is compared here rather
    than in SQL (the JSON operators differ between SQLite and PostgreSQL)."""
    data = Run.data_id.is_(None) if key.data_id is None else Run.data_id == key.data_id
    query = select(Run).where(Run.suite == key.suite, Run.backbone == key.backbone, Run.seed == key.seed,
                              Run.recipe_hash == key.recipe_hash, data).order_by(Run.id.desc())
    return [run for run in session.scalars(query) if run_precision(run) == key.precision]


# --- opening, creating and upgrading ---------------------------------------------------------------
def open_store(db: str | None = None, write: bool = True, create: bool = True) -> Store:
    """The run store at ``db``, ``$VBENCH_DB`` or ``results/vbench.db``.

    ``write=True`` (``vbench run``): create the database and its schema when missing (unless ``create`` is
    False: ``vbench db upgrade`` needs an existing store), upgrade an older schema in place. ``write=False``
    (reading commands): read access is enough, nothing is ever written, and an older SQLite schema is read
    through an upgraded copy in memory.
    """
    url = check_url(db, write=write and create)
    path = sqlite_file(url)
    try:
        if write and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if path is not None and not write:
            engine = read_only_sqlite_engine(path)
        else:
            engine = create_engine(with_available_driver(url), pool_pre_ping=path is None)
            if engine.dialect.name == "sqlite":
                configure_sqlite(engine, read_only=False)
    except (OSError, NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise VbenchError(f"cannot open the run store {display_url(url)}: {exc}; give a usable --db") from None
    store = Store(engine, url, read_only=not write)
    try:
        _prepare(store, write, path, create)
        store._load_identity()
    except VbenchError:
        store.close()
        raise
    except (SQLAlchemyError, sqlite3.DatabaseError) as exc:
        store.close()
        if is_corrupt(exc):
            raise corrupt_error(url, exc) from None
        raise VbenchError(f"cannot open the run store {display_url(url)}: {reason(exc)}; give a writable --db "
                          "path or a reachable database") from None
    return store


def _prepare(store: Store, write: bool, path: Path | None, create: bool = True) -> None:
    version = store.schema_version()
    if version is None and not create:
        raise VbenchError(f"the run store {store.label} holds no vbench schema; give the --db of an existing store")
    if version is not None and version > SCHEMA_VERSION:
        raise VbenchError(f"the run store {store.label} has schema version {version}, newer than this vbench "
                          f"({SCHEMA_VERSION}); upgrade vbench")
    if version == SCHEMA_VERSION:
        return
    if write:
        create_or_upgrade(store.engine)
    elif version is None:
        raise VbenchError(f"the run store {store.label} holds no vbench schema; run `vbench run` first or give "
                          "the right --db")
    elif path is not None:  # an older file: read an upgraded copy, leave the file as it is
        store.engine.dispose()
        store.engine = memory_copy_engine(path)
        store._read_sessions = sessionmaker(store.engine, expire_on_commit=False)
        create_or_upgrade(store.engine)
    else:
        raise VbenchError(f"the run store {store.label} has schema version {version}; this vbench reads "
                          f"{SCHEMA_VERSION}: run `vbench db upgrade --db ...` (older vbench versions cannot "
                          "open it afterwards)")


@contextmanager
def opened(db: str | None = None, write: bool = False, create: bool = True) -> Iterator[Store]:
    store = open_store(db, write=write, create=create)
    try:
        yield store
    finally:
        store.close()
