"""The runs an analysis evaluates: a suite's finished classification runs, trained on the data loaded now, and
their models with the final weights, or with the weights they started from (``init``: the model built after
``torch.manual_seed(run.seed)``, as the Runner builds it, so each run's initial weights exactly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from rich.console import Console

from vbench.backbones.large_kernel_attention import LKA, LSKA
from vbench.backbones.lkca import LKCA
from vbench.engine import evaluate
from vbench.engine.evaluate import progress_bar
from vbench.engine.precision import resolve_device
from vbench.errors import VbenchError
from vbench.models import registry
from vbench.store.artifacts import load_weights, weights_path
from vbench.tasks.classification import ClassificationTask

TRAINED, INIT = "trained", "init"


@dataclass
class Selection:
    """The runs to evaluate, the task that loaded their test split, and a line per run left out."""

    task: ClassificationTask
    runs: list
    skipped: list[str] = field(default_factory=list)


def finished_runs(store, suite, backbones: list[str] | None, seeds: list[int] | None, what: str) -> list:
    """The suite's finished classification runs (of ``backbones`` and ``seeds`` where given, tuning trials left
    out); none is one error."""
    if suite.task != "classification":
        raise VbenchError(f"suite {suite.name!r} is a {suite.task} suite; {what} is measured on classification suites")
    return evaluate.finished_runs(store, suite, backbones, seeds, purpose=f"measure {what} on")


def select_runs(store, suite, runs: list, data_root=None, device: str = "auto", limit: int | None = None,
                need_weights: bool = True, in_memory: str | None = None) -> Selection:
    """Load the suite's test split; keep the runs trained on it that kept their final weights (unless
    ``need_weights`` is False), with a line for each run left out. ``in_memory``: what needs the test split's
    images in memory (a streamed suite is then one error)."""
    task = ClassificationTask(suite, resolve_device(device), data_root=data_root, limit=limit)
    data = task.load_data()
    if in_memory and task.stream is not None:
        raise VbenchError(f"suite {suite.name!r} is streamed; {in_memory} needs its test split in memory (run the "
                          "suite's in-memory twin)")
    chosen, skipped = evaluate.select_runs(store, runs, data.identity, need_weights=need_weights)
    return Selection(task, chosen, skipped)


def run_model(store, task: ClassificationTask, run, condition: str = TRAINED) -> torch.nn.Module:
    """The run's model in eval mode on the task's device: its final weights, or (``init``) its initial ones."""
    spec = registry.get_backbone(run.backbone)
    if condition == INIT:
        torch.manual_seed(run.seed)  # the Runner's rule: the model is built right after seeding with the run's seed
        model = task.build_model(spec)
    else:
        model = load_weights(weights_path(store, run.id), task.build_model(spec))
    return model.to(task.device).eval()


def large_kernel_size(model: torch.nn.Module) -> int | None:
    """The kernel size of a model's large-kernel token mixers: LKCA's (2s-1) x (2s-1) kernel, the receptive
    field of LKA's or LSKA's local + dilated depthwise convolutions; None for a model without them."""
    for module in model.modules():
        if isinstance(module, LKCA):
            return int(module.kernel.shape[-1])
        if isinstance(module, LKA):
            return _receptive_field(module.conv0.kernel_size[0], module.conv_spatial.kernel_size[0],
                                    module.conv_spatial.dilation[0])
        if isinstance(module, LSKA):
            return _receptive_field(module.conv0h.kernel_size[1], module.conv_spatial_h.kernel_size[1],
                                    module.conv_spatial_h.dilation[1])
    return None


def _receptive_field(local: int, dilated: int, dilation: int) -> int:
    return local + (dilated - 1) * dilation


def measure_runs(store, outcome, kind: str, condition: str, title: str, measure: Callable[[object], dict],
                 console: Console | None = None, images: int | None = None):
    """``measure(run)`` for every run of ``outcome``, each result stored as it is measured, with a bar. With
    ``images``, a run's stored result of that many images is kept (counted in ``outcome.kept``) instead."""
    stored = {} if images is None else {e.run_id: e.metrics for e in store.evaluations(kind, [r.id for r in outcome.runs])
                                       if e.condition == condition}
    with progress_bar(console or Console(), remaining=False) as progress:
        bar = progress.add_task(title, total=len(outcome.runs))
        for run in outcome.runs:
            metrics = stored.get(run.id)
            if metrics is not None and metrics.get("images") == images:
                outcome.kept += 1
            else:
                metrics = measure(run)
                store.put_evaluation(run.id, kind, condition, metrics)
                outcome.evaluated += 1
            outcome.results.append((run, metrics))
            progress.advance(bar)
    return outcome
