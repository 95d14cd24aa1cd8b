"""Creating the schema of an empty database and upgrading an older one in place, one process at a time (a
PostgreSQL advisory lock, SQLite's write lock)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sqlalchemy import (
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import (
    IntegrityError,
    OperationalError,
)

from vbench.models import registry
from vbench.store.connection import is_locked, reason
from vbench.store.schema import SCHEMA_VERSION, Base, Evaluation, Run, SchemaInfo, Step, StoreInfo, utcnow

SCHEMA_LOCK_ID = 0x76626E6368  # PostgreSQL advisory lock serialising schema creation and upgrades
LOCK_RETRIES = 20


def create_or_upgrade(engine: Engine) -> None:
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
            if attempt == LOCK_RETRIES - 1 or not (is_locked(exc) or "already exists" in reason(exc)
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
    return json.loads(value) if isinstance(value, str) else value


