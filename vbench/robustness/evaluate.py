"""``vbench robustness``: the final weights of finished runs evaluated on the corrupted test split.

For each (corruption, severity) the corrupted split is read from the released files or generated once
(cached), then every selected run is evaluated on it with its task's evaluation; each result is kept in
the store's ``evaluations`` table (kind ``corruption``, condition ``<corruption>/<severity>``) as soon as
it is measured, so an interrupted evaluation continues where it stopped. Each result also holds the calibration
metrics of ``vbench.reporting.calibration`` on the held-out half of the images, before and after temperature
scaling with the temperature fitted on the clean split (Ovadia et al., NeurIPS 2019).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from vbench.engine.evaluate import EvaluationOutcome, finished_runs, progress_bar, select_runs
from vbench.engine.precision import resolve_device
from vbench.errors import VbenchError
from vbench.models import registry
from vbench.reporting.calibration import calibration_split, fit_temperature, held_out_calibration
from vbench.robustness.corruptions import parameter_set_for
from vbench.robustness.datasets import load_corrupted, split_fingerprint
from vbench.store.artifacts import load_weights, weights_path
from vbench.tasks.classification import ClassificationTask

KIND = "corruption"
CORRUPTION_SEED = 0  # every backbone sees the same corrupted images


def condition(name: str, severity: int) -> str:
    return f"{name}/{severity}"


@dataclass
class RobustnessOutcome(EvaluationOutcome):
    sources: set[str] = field(default_factory=set)


def evaluate_robustness(store, suite, corruptions: list[str], severities: list[int], backbones: list[str] | None = None,
                        seeds: list[int] | None = None, data_root=None, device: str = "auto", limit: int | None = None,
                        console: Console | None = None) -> RobustnessOutcome:
    if suite.task != "classification":
        raise VbenchError(f"suite {suite.name!r} is a {suite.task} suite; corruptions are evaluated on classification suites")
    parameter_set_for(suite.img_size)  # a size without corruption parameters is one error, before any work
    candidates = finished_runs(store, suite, backbones, seeds)
    task = ClassificationTask(suite, resolve_device(device), data_root=data_root, limit=limit)
    data = task.load_data()
    if task.stream is not None:
        raise VbenchError(f"suite {suite.name!r} is streamed; corrupted test splits are made from an in-memory test "
                          "split (run the suite's in-memory twin, or use an ImageNet suite and ImageNet-C)")
    runs, skipped = select_runs(store, candidates, data.identity)
    outcome = RobustnessOutcome(runs=runs, skipped=skipped)
    done = {(e.run_id, e.condition) for e in store.evaluations(KIND, [run.id for run in runs])}
    root = Path(data.description.get("root") or ".")
    clean_images, clean_labels = task.data.test_images.cpu(), task.data.test_labels.cpu()
    fingerprint = split_fingerprint(clean_images, clean_labels)
    models: dict[int, torch.nn.Module] = {}
    temperatures: dict[int, float] = {}
    calibration = calibration_split(len(clean_labels))
    console = console or Console()
    points = [(name, severity) for name in corruptions for severity in severities]
    with progress_bar(console) as progress:
        bar = progress.add_task(f"{suite.name}: corruptions", total=len(points) * len(runs))
        for name, severity in points:
            todo = [run for run in runs if (run.id, condition(name, severity)) not in done]
            progress.update(bar, description=f"{suite.name}: {name} s{severity}", advance=len(runs) - len(todo))
            outcome.kept += len(runs) - len(todo)
            if not todo:
                continue
            split = load_corrupted(suite.kind, root, clean_images, clean_labels, name, severity, seed=CORRUPTION_SEED,
                                   cache_dir=root / ".vbench-cache", clean_fingerprint=fingerprint)
            outcome.sources.add(split.source)
            images, labels = split.images.to(task.device), split.labels.to(task.device)
            for run in todo:
                if run.id not in models:
                    spec = registry.get_backbone(run.backbone)
                    model = task.build_model(spec).to(task.device)
                    models[run.id] = load_weights(weights_path(store, run.id), model)
                    temperatures[run.id] = clean_temperature(task, models[run.id], calibration)
                scores = task.evaluate_images(models[run.id], images, labels)
                shifted = held_out_calibration(scores.predictions.class_probabilities(), scores.predictions.labels,
                                               temperatures[run.id], calibration) \
                    if scores.predictions.images == len(clean_labels) else {}
                store.put_evaluation(run.id, KIND, condition(name, severity),
                                     {**scores.metrics, **shifted, "source": split.source})
                outcome.evaluated += 1
                progress.advance(bar)
    return outcome


def clean_temperature(task, model, split) -> float:
    """The temperature fitted on the fitting half of the clean test split (``vbench.reporting.calibration``)."""
    predictions = task.evaluate(model).predictions
    return fit_temperature(predictions.class_probabilities()[split.fit], predictions.labels[split.fit].astype(int))
