"""The library API under the command line: every ``vbench`` command is a thin layer over one of these.

``run_suite`` is the evaluator's entry point (lm-evaluation-harness's ``simple_evaluate``): load the
suite, pick the backbones, check everything (data, sizes, the store's location) before anything is
written, then hand the jobs to the one ``Runner``. Nothing here imports torch at module level, so
listing backbones and suites stays fast.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Iterable

from vbench import __version__
from vbench.errors import VbenchError
from vbench.models import registry
from vbench.models.selection import select_registered, stored_names
from vbench.parse import parse_seeds  # noqa: F401  (part of the library API)
from vbench.reporting.paper import published_params_m, published_setting
from vbench.suites import Suite, builtin_suites, load_suite


# --- backbones and suites --------------------------------------------------------------------------
def load_plugins(plugins: Iterable[str] = ()) -> None:
    """Register the backbones of the built-in families, the entry points and each ``--plugin`` (file or module)."""
    registry.load_all(plugins)


def backbone_rows(patterns: str | None = None, family: str | None = None, task: str | None = None) -> list[dict]:
    """What the registry knows of each backbone, without building it: name, family, tasks, the paper's params."""
    specs = select_registered(patterns, family, task) if patterns or family else registry.list_backbones(task=task)

    published = published_params_m()
    return [spec_row(spec, published) for spec in specs]


def spec_row(spec: registry.BackboneSpec, published: dict[str, float] | None = None) -> dict:
    """One backbone's declaration as a row: name, aliases, family, tasks, paper names, the paper's params."""
    names = [spec.name, *spec.aliases]
    return {
        "name": spec.name, "aliases": list(spec.aliases), "family": spec.family, "tasks": list(spec.tasks),
        "paper_names": list(spec.paper_names), "in_paper": spec.in_paper, "summary": spec.summary,
        "paper_params_m": next((published[n] for n in names if published and n in published), None),
    }


def measure_rows(rows: list[dict], img_size: int, num_classes: int, task: str | None = None, progress=None) -> list[dict]:
    """Each row with params and fvcore FLOPs of its model (cached on disk); a model that cannot be built at
    this size keeps its row, with the reason in ``error``."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.models.measure import cached_measurement

    measured = []
    for row in rows:
        spec = registry.get_backbone(row["name"])
        chosen = task if task in spec.tasks else spec.tasks[0]
        measured.append({**row, **cached_measurement(spec, chosen, img_size, num_classes)})
        if progress:
            progress()
    return measured


def suite_rows() -> list[dict]:
    """One row per built-in suite: its task, data kind, image size, classes and schedule."""
    rows = []
    for name in builtin_suites():
        suite = load_suite(name)
        rows.append({"name": suite.name, "kind": suite.kind, "task": suite.task, "img_size": suite.img_size,
                     "num_classes": suite.num_classes, "step_unit": suite.task_info.step_unit,
                     "steps": schedule_length(suite), "description": suite.description})
    return rows


def schedule_length(suite: Suite) -> int:
    """The suite's schedule in its step unit: epochs, or iterations."""
    recipe = suite.recipe
    return recipe.epochs if suite.task_info.step_unit == "epoch" else recipe.iterations


def backbone_info(name: str, img_size: int, num_classes: int, task: str | None = None) -> dict:
    """One backbone built at ``img_size`` for ``num_classes``: its contract, counts, published numbers, layers."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.models.measure import count_flops, count_params, layer_summary

    if img_size < 1 or num_classes < 1:
        raise VbenchError(f"--img and --classes must be positive, got {img_size} and {num_classes}")
    spec = registry.get_backbone(name)
    task = task or spec.tasks[0]
    model = spec.build(img_size=img_size, num_classes=num_classes, task=task)
    flops = count_flops(model, img_size)
    return {**spec_row(spec), "origin": spec.origin, "task": task, "img_size": img_size, "num_classes": num_classes,
            "accepts": list(spec.variant(task).accepts), "feature_map": _feature_map_text(spec.variant(task)),
            "params": count_params(model), "flops": flops.total,
            "flops_complete": flops.complete, "uncounted_ops": sorted(flops.uncounted_ops),
            "paper": published_setting(spec), "layers": layer_summary(model)}


def _feature_map_text(variant) -> str | None:
    """The declared way to the last spatial feature map (vbench.models.feature_map), None when undeclared."""
    return variant.feature_map.text if variant.feature_map else None


# --- running ---------------------------------------------------------------------------------------
def plan_run(suite: str, backbones: str, seeds: str | None = None, **kwargs):
    """Check everything and build the jobs; nothing is written (``vbench.engine.plan.plan_run``)."""
    from vbench.engine import plan  # here, not at the top: keeps `vbench --help` and `list` from importing torch

    return plan.plan_run(suite, backbones, seeds, **kwargs)


def execute(planned):
    """Run a planned suite into its store (``vbench.engine.plan.execute``)."""
    from vbench.engine import plan  # here, not at the top: keeps `vbench --help` and `list` from importing torch

    return plan.execute(planned)


def run_suite(suite: str, backbones: str, seeds: str | None = None, **kwargs):
    """Train ``backbones`` on ``suite`` for every seed and record the runs (see ``plan_run`` for the arguments)."""
    return execute(plan_run(suite, backbones, seeds, **kwargs))


# --- the store -------------------------------------------------------------------------------------
def stored_backbone_names(patterns: str | None, store=None, family: str | None = None) -> list[str] | None:
    """Names as runs store them: registered names and aliases resolve, patterns expand over registered and
    stored names, ``family`` filters; anything else is kept as given (a run of a plugin that is not loaded
    now). None: no filter."""
    stored = [(run.backbone, run.family) for run in store.list_runs()] if store is not None else []
    return stored_names(patterns, stored, family)


def stored_backbone_name(store, name: str) -> str:
    """The name runs of ``name`` are stored under: a registered name or alias resolves; a name only the store
    knows (a plugin not loaded now) is kept; anything else is an unknown backbone."""
    canonical = registry.canonical_or_none(name)
    if canonical:
        return canonical
    if store.list_runs(backbones=[name]):
        return name
    return registry.resolve_name(name)  # raises with the closest names


def check_suite_name(store, suite: str | None) -> None:
    """An unknown suite is one error with the closest known names."""
    if suite is None:
        return

    known = sorted({run.suite for run in store.list_runs()} | set(builtin_suites()))
    if suite not in known:
        close = difflib.get_close_matches(suite, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        raise VbenchError(f"unknown suite {suite!r}{hint}")


def delete_run(store, run_id: int):
    """Delete a run with its steps, evaluations and files (checkpoints, weights, predictions)."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.store.artifacts import predictions_path, weights_path
    from vbench.store.checkpoint import Checkpoints

    run = store.get_run(run_id)
    if run is None:
        raise VbenchError(f"no run with id {run_id} in {store.label}; `vbench runs` lists them")
    store.delete_run(run_id)
    Checkpoints(store.artifact_dir("checkpoints"), store.store_id).delete(run_id)
    for path in (weights_path(store, run_id), predictions_path(store, run_id)):
        path.unlink(missing_ok=True)
    return run


def version_text() -> str:
    """``vbench X.Y.Z``."""
    return f"vbench {__version__}"


def dumps(value: Any) -> str:
    """JSON as the commands print it (indented; dates and paths as text)."""
    return json.dumps(value, indent=2, default=str)
