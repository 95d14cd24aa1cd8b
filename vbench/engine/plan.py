"""Planning and running a suite: everything checked before anything is written, then the one Runner.

``plan_run`` loads the suite, picks the backbones, checks the data, sizes and the store's location, and
builds and measures each backbone once; ``execute`` hands the jobs to the Runner and the store. ``vbench
run``, SLURM jobs and ``vbench.api.run_suite`` all come through here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vbench.engine.runner import Runner, RunOptions
from vbench.errors import VbenchError
from vbench.models.selection import select_registered
from vbench.parse import parse_seeds
from vbench.store import check_url, open_store
from vbench.suites import Suite, load_suite


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
    options = absolute_data_root(options or RunOptions())
    url = check_url(db)
    the_suite = load_suite(suite, overrides={**(overrides or {}), "data_root": options.data_root}, sets=sets)
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
    if not options.data_root:
        return options
    return dataclasses.replace(options, data_root=str(Path(options.data_root).expanduser().resolve()))


def execute(planned: PlannedRun) -> RunResult:
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
