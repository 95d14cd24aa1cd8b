"""The library API under the command line: every ``vbench`` command is a thin layer over one of these.

``run_suite`` is the evaluator's entry point (lm-evaluation-harness's ``simple_evaluate``): load the
suite, pick the backbones, check everything (data, sizes, the store's location) before anything is
written, then hand the jobs to the one ``Runner``. Nothing here imports torch at module level, so
listing backbones and suites stays fast.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vbench import __version__, registry
from vbench.errors import VbenchError
from vbench.suites import Suite, builtin_suites, load_suite


# --- backbones and suites --------------------------------------------------------------------------
def load_plugins(plugins: Iterable[str] = ()) -> None:
    registry.load_all(plugins)


def backbone_rows(patterns: str | None = None, family: str | None = None, task: str | None = None) -> list[dict]:
    """What the registry knows of each backbone, without building it: name, family, tasks, the paper's params."""
    from vbench.selection import select_registered

    specs = select_registered(patterns, family, task) if patterns or family else registry.list_backbones(task=task)
    from vbench.paper import published_params_m

    published = published_params_m()
    return [spec_row(spec, published) for spec in specs]


def spec_row(spec: registry.BackboneSpec, published: dict[str, float] | None = None) -> dict:
    names = [spec.name, *spec.aliases]
    return {
        "name": spec.name, "aliases": list(spec.aliases), "family": spec.family, "tasks": list(spec.tasks),
        "paper_names": list(spec.paper_names), "in_paper": spec.in_paper, "summary": spec.summary,
        "paper_params_m": next((published[n] for n in names if published and n in published), None),
    }


def measure_rows(rows: list[dict], img_size: int, num_classes: int, task: str | None = None, progress=None) -> list[dict]:
    """Each row with params and fvcore FLOPs of its model (cached on disk); a model that cannot be built at
    this size keeps its row, with the reason in ``error``."""
    from vbench.measure import cached_measurement

    measured = []
    for row in rows:
        spec = registry.get_backbone(row["name"])
        chosen = task if task in spec.tasks else spec.tasks[0]
        measured.append({**row, **cached_measurement(spec, chosen, img_size, num_classes)})
        if progress:
            progress()
    return measured


def suite_rows() -> list[dict]:
    rows = []
    for name in builtin_suites():
        suite = load_suite(name)
        rows.append({"name": suite.name, "kind": suite.kind, "task": suite.task, "img_size": suite.img_size,
                     "num_classes": suite.num_classes, "step_unit": suite.task_info.step_unit,
                     "steps": schedule_length(suite), "description": suite.description})
    return rows


def schedule_length(suite: Suite) -> int:
    recipe = suite.recipe
    return recipe.epochs if suite.task_info.step_unit == "epoch" else recipe.iterations


def backbone_info(name: str, img_size: int, num_classes: int, task: str | None = None) -> dict:
    from vbench.measure import count_flops, count_params, layer_summary
    from vbench.paper import published_setting

    if img_size < 1 or num_classes < 1:
        raise VbenchError(f"--img and --classes must be positive, got {img_size} and {num_classes}")
    spec = registry.get_backbone(name)
    task = task or spec.tasks[0]
    model = spec.build(img_size=img_size, num_classes=num_classes, task=task)
    flops = count_flops(model, img_size)
    return {**spec_row(spec), "origin": spec.origin, "task": task, "img_size": img_size, "num_classes": num_classes,
            "accepts": list(spec.variant(task).accepts), "params": count_params(model), "flops": flops.total,
            "flops_complete": flops.complete, "uncounted_ops": sorted(flops.uncounted_ops),
            "paper": published_setting(spec), "layers": layer_summary(model)}


# --- running ---------------------------------------------------------------------------------------
def parse_seeds(text: str | None, default: int) -> list[int]:
    if text is None or not text.strip():
        return [default]
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise VbenchError(f"--seeds {text!r} is not a comma-separated list of integers (for example --seeds 0,1,2)") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise VbenchError(f"--seeds {text!r} must list distinct non-negative integers (for example --seeds 0,1,2)")
    return seeds


@dataclass
class PlannedRun:
    """Everything checked, nothing written yet."""

    suite: Suite
    runner: Any
    jobs: list
    url: str
    seeds: list[int]


@dataclass
class RunResult:
    suite: Suite
    outcomes: list
    store_label: str
    artifact_root: Path
    data: Any = None
    jobs: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(o.status == "failed" for o in self.outcomes)


def plan_run(suite: str, backbones: str, seeds: str | None = None, *, db: str | None = None,
             overrides: dict | None = None, sets: Iterable[str] = (), options=None, console=None,
             family: str | None = None) -> PlannedRun:
    """Load and check the suite, the backbones, the data and the store's location; build and measure each
    backbone once. Raises VbenchError on bad input; writes nothing."""
    from vbench.runner import RunOptions, Runner
    from vbench.store import check_url

    options = absolute_data_root(options or RunOptions())
    url = check_url(db)
    the_suite = load_suite(suite, overrides={**(overrides or {}), "data_root": options.data_root}, sets=sets)
    from vbench.selection import select_registered

    specs = select_registered(backbones, family, the_suite.task)
    if not specs:
        raise VbenchError("--backbones is empty; give comma-separated names or patterns (see `vbench list backbones`)")
    seed_list = parse_seeds(seeds, the_suite.recipe.seed)
    if options.limit is not None and options.limit < 1:
        raise VbenchError(f"--limit must be at least 1, got {options.limit}")
    runner = Runner(the_suite, options, console)
    runner.prepare()
    jobs = runner.plan(specs, seed_list)
    if all(job.error for job in jobs):
        reasons = "; ".join(dict.fromkeys(f"{job.spec.name}: {job.error}" for job in jobs))
        raise VbenchError(f"no backbone can run on suite {the_suite.name!r}: {reasons}")
    return PlannedRun(the_suite, runner, jobs, url, seed_list)


def absolute_data_root(options):
    """Runs record where their data came from: a relative --data-root is made absolute."""
    import dataclasses

    if not options.data_root:
        return options
    return dataclasses.replace(options, data_root=str(Path(options.data_root).expanduser().resolve()))


def execute(planned: PlannedRun) -> RunResult:
    from vbench.store import open_store

    if not planned.runner.dist.is_main:  # the other ranks of a torch.distributed run never open the store
        outcomes = planned.runner.run(None, planned.jobs)
        return RunResult(planned.suite, outcomes, "", Path(), planned.runner.data, planned.jobs)
    store = open_store(planned.url, write=True)
    try:
        outcomes = planned.runner.run(store, planned.jobs)
        return RunResult(planned.suite, outcomes, store.label, store.artifact_root, planned.runner.data, planned.jobs)
    finally:
        store.close()


def run_suite(suite: str, backbones: str, seeds: str | None = None, **kwargs) -> RunResult:
    """Train ``backbones`` on ``suite`` for every seed and record the runs (see ``plan_run`` for the arguments)."""
    return execute(plan_run(suite, backbones, seeds, **kwargs))


# --- the store -------------------------------------------------------------------------------------
def stored_backbone_names(patterns: str | None, store=None, family: str | None = None) -> list[str] | None:
    """Names as runs store them: registered names and aliases resolve, patterns expand over registered and
    stored names, ``family`` filters; anything else is kept as given (a run of a plugin that is not loaded
    now). None: no filter."""
    from vbench.selection import stored_names

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
    import difflib

    known = sorted({run.suite for run in store.list_runs()} | set(builtin_suites()))
    if suite not in known:
        close = difflib.get_close_matches(suite, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        raise VbenchError(f"unknown suite {suite!r}{hint}")


def delete_run(store, run_id: int):
    """Delete a run with its steps, evaluations and files (checkpoints, weights, predictions)."""
    from vbench.artifacts import predictions_path, weights_path
    from vbench.checkpoint import Checkpoints

    run = store.get_run(run_id)
    if run is None:
        raise VbenchError(f"no run with id {run_id} in {store.label}; `vbench runs` lists them")
    store.delete_run(run_id)
    Checkpoints(store.artifact_dir("checkpoints"), store.store_id).delete(run_id)
    for path in (weights_path(store, run_id), predictions_path(store, run_id)):
        path.unlink(missing_ok=True)
    return run


def measurement_cache_path() -> Path:
    base = os.environ.get("VBENCH_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "vbench")
    return Path(base).expanduser() / "measurements.json"


def version_text() -> str:
    return f"vbench {__version__}"


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
