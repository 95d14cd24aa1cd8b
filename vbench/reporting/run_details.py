"""One run in full (``vbench runs show``) and runs written out as files (``vbench runs export``).

``export`` writes, per run, what timm's train.py leaves in its output folder: ``args.yaml`` (the
arguments: suite, backbone, seed, the whole recipe, the settings), ``summary.csv`` (one row per epoch, or
per evaluated iteration: ``epoch``, ``train_*``, ``eval_*``, ``lr``, as timm's ``update_summary``
writes it) and ``results.json`` (the run row: final metrics, sizes, data identity, environment, files).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable

import yaml

from vbench.errors import VbenchError
from vbench.paths import atomic_write, check_output
from vbench.reporting.confusion import class_errors
from vbench.store.artifacts import run_files
from vbench.store.predictions import ClassificationPredictions, load_predictions
from vbench.tasks import get_task

RUN_FIELDS_OF_ARGS = ("task", "suite", "dataset", "backbone", "family", "seed", "img_size", "num_classes")
ENVIRONMENT_FIELDS = ("host", "device_name", "torch_version", "vbench_version")


def flops_text(value: float | None) -> str:
    """FLOP/s with an SI prefix: ``12.3 GFLOP/s``."""
    if value is None:
        return "-"
    for unit, scale in (("PFLOP/s", 1e15), ("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOP/s"


def mfu_text(settings: dict | None) -> str | None:
    """How close training came to the machine's limit (``vbench.engine.mfu``), from a run's settings:
    ``12.3 GFLOP/s, MFU 3.1% of 410 GFLOP/s (bf16 matmul peak)``; None when the run has no MFU."""
    settings = settings or {}
    if settings.get("mfu") is None:
        return None
    return (f"{flops_text(settings.get('model_flops_per_s'))}, MFU {100 * settings['mfu']:.1f}% of "
            f"{flops_text(settings.get('matmul_peak_flops_per_s'))} ({settings.get('precision', '?')} matmul peak)")


def get_run(store, run_id: int):
    run = store.get_run(run_id)
    if run is None:
        raise VbenchError(f"no run with id {run_id} in {store.label}; `vbench runs` lists them")
    return run


def metric_names(run) -> list[str]:
    """The task's declared metrics (evaluated), best known first; runs of an unknown task keep their own."""
    try:
        return [metric.name for metric in get_task(run.task).metrics]
    except VbenchError:
        return sorted(run.metrics or {})


def step_rows(store, run) -> list[dict]:
    """One dict per evaluated step: the step, then training means (``train_*``), evaluation (``eval_*``) and the rest."""
    evaluated = set(metric_names(run))
    rows = []
    for step in store.steps(run.id):
        row = {"epoch" if run.step_unit == "epoch" else "iteration": step.step}
        metrics = step.metrics or {}
        row.update({name: value for name, value in metrics.items() if name.startswith("train_")})
        row.update({f"eval_{name}": value for name, value in metrics.items() if name in evaluated})
        row.update({name: value for name, value in metrics.items()
                    if not name.startswith("train_") and name not in evaluated})
        rows.append(row)
    return rows


def jsonable(value):
    return json.loads(json.dumps(value, default=str))


def run_record(store, run) -> dict:
    """Everything stored about a run, JSON-ready: the row, its per-step metrics (``history``), its evaluations,
    its files and, for a classification run that kept its predictions, its per-class errors (``per_class``)."""
    evaluations = [{"kind": e.kind, "condition": e.condition, "metrics": e.metrics}
                   for e in sorted(store.evaluations(run_ids=[run.id]), key=lambda e: (e.kind, e.id))]
    files = run_files(store, run.id)
    record = {**run.as_dict(), "history": step_rows(store, run), "evaluations": evaluations,
              "files": {kind: str(path) for kind, path in files.items()}}
    if "predictions" in files:
        try:
            predictions = load_predictions(files["predictions"], probabilities=False)
        except VbenchError as exc:  # a damaged file: the rest of the record is still worth showing
            record["per_class"] = {"error": str(exc)}
        else:
            if isinstance(predictions, ClassificationPredictions):
                record["per_class"] = class_errors(predictions, run.num_classes).as_record()
    return jsonable(record)


def run_args(run) -> dict:
    """The arguments of a run, as timm's args.yaml holds its argparse namespace."""
    args = {name: getattr(run, name) for name in RUN_FIELDS_OF_ARGS}
    args["recipe"] = run.recipe or {}
    args["recipe_hash"] = run.recipe_hash
    args["data_id"] = run.data_id
    args["data_root"] = (run.data or {}).get("root")
    args["limit"] = (run.data or {}).get("limit")
    args["settings"] = run.settings or {}
    return jsonable(args)


def summary_csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(name for row in rows for name in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def export_runs(store, runs: Iterable, output: str | Path) -> list[Path]:
    """``<output>/run-<id>/{args.yaml, summary.csv, results.json}`` for every run; the folders written."""
    runs = list(runs)
    output = check_output(output, "--output", folder=True)
    for run in runs:  # every folder checked before any is written
        check_output(output / f"run-{run.id}", "--output", folder=True)
    output.mkdir(parents=True, exist_ok=True)
    folders = []
    for run in runs:
        folder = output / f"run-{run.id}"
        folder.mkdir(exist_ok=True)
        atomic_write(folder / "args.yaml", yaml.safe_dump(run_args(run), sort_keys=False))
        atomic_write(folder / "summary.csv", summary_csv(step_rows(store, run)))
        atomic_write(folder / "results.json", json.dumps(run_record(store, run), indent=2) + "\n")
        folders.append(folder)
    return folders


def sparkline(values: list[float]) -> str:
    """Unicode block characters, one per value, scaled between the smallest and the largest (eight lines of
    code are not worth a dependency)."""
    blocks = "▁▂▃▄▅▆▇█"
    numbers = [v for v in values if isinstance(v, (int, float))]
    if not numbers:
        return ""
    low, high = min(numbers), max(numbers)
    span = (high - low) or 1.0
    return "".join(blocks[round((v - low) / span * (len(blocks) - 1))] if isinstance(v, (int, float)) else " "
                   for v in values)
