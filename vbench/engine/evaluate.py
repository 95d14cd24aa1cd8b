"""``vbench eval``: evaluate weights without training (timm's validate.py, mmsegmentation's tools/test.py).

The weights come from a file (``--checkpoint``: a Runner checkpoint or any torch file holding a state dict
under ``model`` / ``state_dict``, or a safetensors file; read by timm's ``load_state_dict``) or from a run
of the store (``--run ID``: its final weights, else its last checkpoint; the run's recipe is used).

What is recorded: one run row with status ``done``, no steps, the evaluated metrics, and
``settings["eval_only"] = True`` with ``settings["source"]`` (the file, or ``run N``). Its recipe hash
is ``eval-<hash of recipe and source>``, so it is never the run key of a training run (a later ``vbench
run`` still trains), and training reports leave it out (``vbench.reporting.results.finished_results``); ``vbench
report --eval-only`` shows eval-only rows alone. The per-image predictions are kept as a run's are.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from timm.models import load_state_dict

from vbench.engine.plan import absolute_data_root
from vbench.engine.rows import run_row, run_settings
from vbench.engine.runner import Runner, RunOptions
from vbench.errors import VbenchError, one_line
from vbench.models import registry
from vbench.paths import atomic_write, check_output
from vbench.store import check_url, is_tuning, opened, utcnow
from vbench.store.artifacts import predictions_path, weights_path
from vbench.store.checkpoint import Checkpoints
from vbench.store.predictions import save_predictions
from vbench.suites import load_suite


@dataclass
class EvalSource:
    label: str  # "run 3" or the file's absolute path
    weights: Path
    run: object = None  # the source run row, when --run
    digest: str = ""  # sha256 of the weights file (first 16 hex digits)


@dataclass
class EvalResult:
    suite: object
    backbone: str
    run_id: int
    source: EvalSource
    metrics: dict
    size: dict
    data: object
    store_label: str
    seconds: float
    record: dict = field(default_factory=dict)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def source_of_run(store, run_id: int) -> EvalSource:
    run = store.get_run(run_id)
    if run is None:
        raise VbenchError(f"no run with id {run_id} in {store.label}; `vbench runs` lists them")
    for path in (weights_path(store, run_id), Checkpoints(store.artifact_dir("checkpoints"), store.store_id).path(run_id)):
        if path.is_file():
            return EvalSource(f"run {run_id}", path, run, _digest(path))
    raise VbenchError(f"run {run_id} has neither final weights nor a checkpoint in {store.label} (deleted, or "
                      "--no-checkpoints and unfinished); give --checkpoint FILE")


def source_of_file(checkpoint: str) -> EvalSource:
    path = Path(checkpoint).expanduser().resolve()
    if not path.is_file():
        raise VbenchError(f"--checkpoint {checkpoint!r} is not a file")
    return EvalSource(str(path), path, None, _digest(path))


def load_into(model, source: EvalSource, backbone: str) -> None:
    """Strictly: keys that are missing, unexpected or of another shape are one error naming the first few."""
    try:  # timm's reader of safetensors and torch files, torch files with weights_only: no code from the file runs
        state = load_state_dict(str(source.weights), use_ema=False, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - not a torch or safetensors file, or pickled objects
        raise VbenchError(f"cannot read the weights {source.weights}: {one_line(exc, 160)}") from None
    expected = model.state_dict()
    problems = {
        "missing": [key for key in expected if key not in state],
        "unexpected": [key for key in state if key not in expected],
        "of another shape": [key for key in state if key in expected and tuple(getattr(state[key], "shape", ()))
                             != tuple(expected[key].shape)],
    }
    found = [f"{len(keys)} keys {kind} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
             for kind, keys in problems.items() if keys]
    if found:
        raise VbenchError(f"the weights {source.weights} do not fit backbone {backbone!r}: {'; '.join(found)}")
    model.load_state_dict(state, strict=True)


def evaluate_weights(suite: str | None, backbones: str | None, *, checkpoint: str | None = None,
                     run_id: int | None = None, db: str | None = None, sets: Iterable[str] = (), options=None,
                     console=None, results_file: str | None = None) -> EvalResult:
    """Evaluate one backbone's weights on ``suite``'s test split and record an eval-only run (see the module)."""
    if (checkpoint is None) == (run_id is None):
        raise VbenchError("give --checkpoint FILE or --run ID (the weights to evaluate), one of them")

    options = absolute_data_root(options or RunOptions())
    if options.limit is not None and options.limit < 1:
        raise VbenchError(f"--limit must be at least 1, got {options.limit}")
    url = check_url(db)
    if run_id is not None:
        with opened(db) as store:
            source = source_of_run(store, run_id)
        suite = suite or source.run.suite
        backbones = backbones or source.run.backbone
    else:
        source = source_of_file(checkpoint)
    if not suite or not backbones:
        raise VbenchError("--checkpoint needs --suite and --backbones (the model the weights belong to)")
    if results_file is not None:
        check_output(results_file, "--results-file")
    the_suite = load_suite(suite, overrides={"data_root": options.data_root}, sets=sets)
    if source.run is not None and source.run.recipe:
        the_suite = the_suite.with_recipe(**{**source.run.recipe, **_set_keys(the_suite, sets)})
    specs = registry.select_backbones(backbones, task=the_suite.task)
    if len(specs) != 1:
        raise VbenchError(f"--backbones must name one backbone for the weights, got {len(specs)}: "
                          f"{', '.join(s.name for s in specs)}")
    spec = specs[0]
    runner = Runner(_evaluation_suite(the_suite), options, console)
    data = runner.prepare()

    torch.manual_seed(0)
    model = runner.task.build_model(spec)
    size = runner.task.size(model)
    load_into(model, source, spec.name)
    started = time.perf_counter()
    model = model.to(runner.device)
    with runner.precision.autocast():
        evaluation = runner.task.evaluate(model)
    seconds = time.perf_counter() - started
    with opened(url, write=True) as store:
        run_id_new = _record(store, runner, the_suite, spec, source, evaluation, size, data, seconds)
        label = store.label
    result = EvalResult(the_suite, spec.name, run_id_new, source, dict(evaluation.metrics), size, data, label, seconds)
    result.record = results_record(result)
    if results_file is not None:
        write_json(results_file, result.record)
    return result


def _evaluation_suite(suite):
    """The suite the task is built with: a training batch of one image, since the classification task checks
    that one training batch fits the data and evaluation trains nothing (the recipe recorded is the suite's)."""
    training_only = {key: 1 for key in ("batch_size", "repeats") if key in suite.recipe.to_dict()}
    return suite.with_recipe(**training_only) if suite.task == "classification" else suite


def _set_keys(suite, sets: Iterable[str]) -> dict:
    """The recipe keys given with --set, so that they win over the source run's recipe."""
    changed = {}
    for assignment in sets:
        key = assignment.partition("=")[0].strip().removeprefix("recipe.")
        if key in suite.recipe.to_dict():
            changed[key] = suite.recipe.to_dict()[key]
    return changed


def _record(store, runner, suite, spec, source: EvalSource, evaluation, size: dict, data, seconds: float) -> int:
    info = runner.info
    recipe_hash = "eval-" + hashlib.sha256(f"{suite.recipe.key_hash()}:{source.digest}".encode()).hexdigest()[:16]
    metrics = {m.name: evaluation.metrics[m.name] for m in info.metrics if m.name in evaluation.metrics}
    settings = {**run_settings(runner.device, runner.precision.name, False, runner.options.pipeline, 1),
                "eval_only": True, "source": source.label, "source_sha256": source.digest}
    seed = source.run.seed if source.run is not None else 0
    row = run_row(suite, spec, seed, data, settings, size, runner.device, steps=0, recipe=suite.recipe.to_dict(),
                  recipe_hash=recipe_hash)
    now = utcnow()
    run_id = store.start_run(**{**row, "status": "done", "metrics": metrics, "wall_time_s": seconds,
                                "started_at": now, "ended_at": now})
    if evaluation.predictions is not None:
        evaluation.predictions.meta.update(run_id=run_id, task=info.name, suite=suite.name, backbone=spec.name,
                                           source=source.label)
        save_predictions(predictions_path(store, run_id), evaluation.predictions)
    return run_id


def results_record(result: EvalResult) -> dict:
    """What --results-file holds (timm's validate.py writes the same kind of object)."""
    return {"run_id": result.run_id, "suite": result.suite.name, "task": result.suite.task, "backbone": result.backbone,
            "source": result.source.label, "source_sha256": result.source.digest, "eval_only": True,
            "metrics": result.metrics, "params": result.size.get("params"), "flops": result.size.get("flops"),
            "img_size": result.suite.img_size, "num_classes": result.suite.num_classes,
            "data_id": result.data.identity, "images": result.data.sizes.get("test"),
            "recipe_hash": result.suite.recipe.key_hash(), "seconds": result.seconds, "store": result.store_label}


def write_json(path: str, value: dict) -> None:
    atomic_write(Path(path).expanduser(), json.dumps(value, indent=2, default=str) + "\n")



# --- the final weights of finished runs (vbench robustness, vbench deploy) ---------------------------------------
@dataclass
class EvaluationOutcome:
    """What a command over finished runs did: results measured now, results kept from an earlier command, the runs
    it went over and a line for each run it left out."""

    evaluated: int = 0
    kept: int = 0
    runs: list = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def progress_bar(console: Console, remaining: bool = True) -> Progress:
    """The bar of a command over finished runs (off when the console is not a terminal)."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, *([TimeRemainingColumn()] if remaining else []), console=console,
                    disable=not console.is_terminal)


def finished_runs(store, suite, backbones: list[str] | None, seeds: list[int] | None, purpose: str = "evaluate") -> list:
    """The finished classification runs of ``suite`` (of these backbones and seeds); none is one error."""
    runs = [run for run in store.list_runs(suite=suite.name, backbones=backbones, status="done", task="classification")
            if (seeds is None or run.seed in seeds) and not is_tuning(run)]  # a tuning trial is no result to report
    if not runs:
        raise VbenchError(f"no finished runs of suite {suite.name!r} in {store.label} to {purpose}; train some first "
                          "(`vbench run --suite ...`)")
    return runs


def select_runs(store, runs: list, data_id: str, purpose: str = "evaluated",
                need_weights: bool = True) -> tuple[list, list[str]]:
    """The runs trained on this data that kept their final weights (unless ``need_weights`` is False), and a line
    for each run left out."""
    chosen, skipped = [], []
    for run in runs:
        if run.data_id != data_id:
            skipped.append(f"run {run.id} ({run.backbone} seed {run.seed}) was trained on other data; skipped")
        elif need_weights and not weights_path(store, run.id).is_file():
            skipped.append(f"run {run.id} ({run.backbone} seed {run.seed}) kept no final weights; skipped")
        else:
            chosen.append(run)
    if not chosen:
        raise VbenchError(f"none of the {len(runs)} finished runs can be {purpose} here: {skipped[0]}")
    return chosen, skipped
