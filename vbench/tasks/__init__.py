"""Tasks as plug-ins: what a suite trains for, declared without importing torch.

A task declares its recipe class, the dataset kinds its suites may use, its step unit (epoch or
iteration) and its metrics (which one is primary, and whether higher is better). Its implementation
(model building, batches, train step, evaluation; see ``vbench.tasks.base.Task``) is a class named
``"module:Class"``, imported only when something is trained or evaluated. The one ``Runner``
(``vbench.engine.runner``) drives every task. More tasks plug in with ``register_task`` or through the
``vbench.tasks`` entry-point group.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from vbench.errors import VbenchError
from vbench.recipes import ClassificationRecipe, Recipe, SegmentationRecipe
from vbench.registry import Registry

ENTRY_POINT_GROUP = "vbench.tasks"


@dataclass(frozen=True)
class Metric:
    name: str  # its key in the stored metrics
    label: str  # its column title
    higher_is_better: bool = True


@dataclass(frozen=True)
class TaskInfo:
    name: str
    recipe: type[Recipe]
    kinds: tuple[str, ...]
    step_unit: str  # epoch | iteration
    metrics: tuple[Metric, ...]
    primary: str
    implementation: str  # "module:Class"

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    @property
    def primary_metric(self) -> Metric:
        return self.metric(self.primary)

    def load(self):
        """The implementation class (imports torch)."""
        module, _, name = self.implementation.partition(":")
        return getattr(importlib.import_module(module), name)


CLASSIFICATION = TaskInfo(
    name="classification", recipe=ClassificationRecipe,
    kinds=("cifar10", "cifar100", "svhn", "tiny-imagenet", "image-folder", "imagenet", "smoke", "digits"),
    step_unit="epoch",
    metrics=(Metric("top1", "top-1"), Metric("top5", "top-5")),
    primary="top1", implementation="vbench.tasks.classification:ClassificationTask",
)
SEGMENTATION = TaskInfo(
    name="segmentation", recipe=SegmentationRecipe, kinds=("ade20k",), step_unit="iteration",
    metrics=(Metric("mIoU", "mIoU"), Metric("aAcc", "aAcc"), Metric("mAcc", "mAcc")),
    primary="mIoU", implementation="vbench.tasks.segmentation:SegmentationTask",
)

def _check(info: TaskInfo) -> TaskInfo:
    if info.primary not in {m.name for m in info.metrics}:
        raise VbenchError(f"task {info.name!r}: primary metric {info.primary!r} is not among its metrics")
    return info


TASKS: Registry[TaskInfo] = Registry("task", group=ENTRY_POINT_GROUP, adopt=lambda info: register_task(info))


def register_task(info: TaskInfo) -> TaskInfo:
    held = TASKS.holder(info.name)
    if held is not None:
        if TASKS.find(held) != info:
            raise VbenchError(f"task {info.name!r} is already registered")
        return info
    return TASKS.add(info.name, _check(info))


register_task(CLASSIFICATION)
register_task(SEGMENTATION)


def task_names() -> list[str]:
    return TASKS.names()


def get_task(name: str) -> TaskInfo:
    return TASKS.get(name)


def task_of_kind(kind: str) -> TaskInfo | None:
    return next((t for t in TASKS.values() if kind in t.kinds), None)
