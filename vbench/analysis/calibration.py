"""``vbench calibration``: how far each finished run's confidence can be trusted on its clean test split: ECE (15
bins), NLL and Brier score before and after temperature scaling, fitted on a fixed, seeded half of the test split
and reported on the other half (``vbench.reporting.calibration`` holds the metrics and says how).

The class probabilities come from the per-image predictions every run keeps; a run whose predictions predate
them (format 1) is evaluated again from its final weights on the test split it was trained with. Each result is
kept in the store's ``evaluations`` table (kind ``calibration``, condition ``clean``); from the predictions it
costs no model, so every call measures again. ``vbench robustness`` adds the same metrics to every corruption and
severity, with the temperature fitted on the clean split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.console import Console

from vbench.analysis.runs import TRAINED, finished_runs, measure_runs, run_model, select_runs
from vbench.engine.evaluate import EvaluationOutcome
from vbench.errors import VbenchError
from vbench.reporting.calibration import ECE_BINS, FIT_SHARE, SPLIT_SEED, temperature_scaled
from vbench.store.artifacts import stored_probabilities
from vbench.store.predictions import ClassificationPredictions

KIND = "calibration"
CONDITION = "clean"


@dataclass
class CalibrationOutcome(EvaluationOutcome):
    from_weights: int = 0
    results: list = field(default_factory=list)  # (run, metrics)


def measure(predictions: ClassificationPredictions) -> dict:
    """The calibration metrics of one run's predictions (see ``vbench.reporting.calibration``)."""
    labels = predictions.labels.astype(np.int64)
    if len(labels) < 2:
        raise VbenchError(f"{len(labels)} test image cannot be split into a fitting half and a held-out half")
    metrics = temperature_scaled(predictions.class_probabilities(), labels)
    exact = predictions.probabilities is not None
    return {**metrics, "bins": ECE_BINS, "fit_share": FIT_SHARE, "split_seed": SPLIT_SEED, "images": len(labels),
            "probabilities": "whole" if exact else "top-k and true class"}


def evaluate_calibration(store, suite, backbones: list[str] | None = None, seeds: list[int] | None = None,
                         data_root=None, device: str = "auto", limit: int | None = None,
                         console: Console | None = None) -> CalibrationOutcome:
    candidates = finished_runs(store, suite, backbones, seeds, "calibration")
    outcome = CalibrationOutcome()
    kept = {run.id: stored_probabilities(store, run) for run in candidates}
    missing = [run for run in candidates if kept[run.id] is None]
    selection = None
    if missing:
        try:
            selection = select_runs(store, suite, missing, data_root, device, limit)
            outcome.skipped = selection.skipped
        except VbenchError as exc:  # the others can still be measured from their predictions
            if len(missing) == len(candidates):
                raise
            outcome.skipped = [f"run {run.id} ({run.backbone} seed {run.seed}) keeps no class probabilities and "
                               f"cannot be evaluated again ({exc}); skipped" for run in missing]
    outcome.runs = [run for run in candidates if kept[run.id] is not None or (selection and run in selection.runs)]

    def measure_run(run) -> dict:
        predictions, source = kept[run.id], "predictions"
        if predictions is None:
            predictions = selection.task.evaluate(run_model(store, selection.task, run, TRAINED)).predictions
            source = "weights"
            outcome.from_weights += 1
        return {**measure(predictions), "source": source}

    return measure_runs(store, outcome, KIND, CONDITION, f"{suite.name}: calibration", measure_run, console)
