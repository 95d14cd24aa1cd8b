"""The run store's tables: runs, their evaluated steps, evaluations after training, and the store's identity.

Rows do not depend on the task: a run holds its named final metrics (``metrics``), its step unit
(epoch or iteration) and the number of steps; each evaluated step is a ``steps`` row of named
metrics; evaluations made after training (corruptions, eval-only runs) are ``evaluations`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 3  # 2: epochs.metrics; 3: task-independent runs/steps, evaluations, store identity, leases
# queued: submitted to a scheduler, not begun; pruned: ended early by an observer (a tuning trial's pruner)
RUN_STATUSES = ("running", "done", "failed", "interrupted", "queued", "pruned")


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


def is_eval_only(run: "Run") -> bool:
    """A row of `vbench eval`: weights evaluated without training (vbench.engine.evaluate)."""
    return bool((run.settings or {}).get("eval_only"))


def tune_marks(run: "Run") -> dict:
    """What `vbench tune` marked a run with: its study and trial number, or the trial it re-runs; {} otherwise."""
    return (run.settings or {}).get("tune") or {}


def is_tuning(run: "Run") -> bool:
    """A run of `vbench tune` (a trial, or a re-run of a study's best recipe; vbench.tune): reported apart from the
    fixed-recipe runs and never averaged with them, nor evaluated by the features that read finished runs."""
    return bool(tune_marks(run))
