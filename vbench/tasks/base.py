"""What every task implementation gives the Runner (see ``vbench.engine.runner``).

A task is built for one suite and device. The Runner calls, in order:

- ``prepare()``: load and check the data (before anything is written), returning its ``DataInfo``;
- ``build_model(spec)``: the backbone's model for this task, the recipe's accepted keys passed on;
- ``size(model)``: params and FLOPs (and any other counts) of the built model;
- ``stages()``: the schedule: train this many iterations, then evaluate (an epoch, or up to the next
  evaluation point of an iteration-based schedule);
- ``make_optimizer(model)``: the optimiser and its per-iteration learning-rate schedule;
- ``train_batches(seed, stage)``: the stage's batches, a function of (seed, stage) only, so a run
  resumed at any stage sees what an uninterrupted one would;
- ``train_step(model, batch)``: ``(loss, {name: per-batch mean to average}, batch size)``;
- ``evaluate(model)``: ``Scores``: ``{metric name: value}`` with the task's declared metrics, and the
  per-image predictions behind them (kept for the final evaluation: comparisons test on them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

import numpy as np


@dataclass(frozen=True)
class Stage:
    index: int  # 1-based
    label: int  # what the step rows are keyed by: the epoch, or the iteration evaluated after
    first_iteration: int  # 0-based global iteration of its first step
    iterations: int


@dataclass
class Scores:
    metrics: dict[str, float]
    predictions: Any = None  # vbench.store.predictions.ClassificationPredictions | SegmentationPredictions


@dataclass(frozen=True)
class DataInfo:
    identity: str  # part of the run key
    description: dict = field(default_factory=dict)  # root, split sizes, fingerprints, limit

    @property
    def sizes(self) -> dict[str, int]:
        return self.description.get("sizes", {})


class LearningRate(Protocol):
    def step_update(self, num_updates: int) -> None: ...


class Task(Protocol):
    def prepare(self) -> DataInfo: ...
    def build_model(self, spec) -> Any: ...
    def size(self, model) -> dict: ...
    def stages(self) -> list[Stage]: ...
    def make_optimizer(self, model) -> tuple[Any, LearningRate]: ...
    def train_batches(self, seed: int, stage: Stage) -> Iterator[Any]: ...
    def train_step(self, model, batch) -> tuple[Any, dict, int]: ...
    def evaluate(self, model) -> Scores: ...


def stage_seed(seed: int, stage: int) -> int:
    """torch's global seed for one stage (dropout, drop-path): a function of (seed, stage) only."""
    return int(np.random.SeedSequence([seed, stage, 0x5EED]).generate_state(1, dtype=np.uint64)[0] % (2**63))


def model_kwargs(variant, recipe) -> dict:
    """The recipe values a backbone accepts, under timm's names."""
    offered = {"drop_path_rate": getattr(recipe, "drop_path", None)}
    return {name: value for name, value in offered.items() if name in variant.accepts and value is not None}
