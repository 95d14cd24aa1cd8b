"""``vbench run --dry-run``: what a run would do, after every override, without training or writing anything
(lm-evaluation-harness's ``--show_config``, mmsegmentation's ``print_config``).

It reads the ``PlannedRun`` of ``vbench.engine.plan.plan_run`` (everything validated, models built and measured)
and the run store, read-only when it exists, to say which jobs are already done.
"""

from __future__ import annotations

from dataclasses import dataclass

from vbench.errors import VbenchError
from vbench.recipes import flatten
from vbench.store import open_store, sqlite_file
from vbench.suites import load_suite, paper_recipe


@dataclass
class RecipeLine:
    key: str
    value: object
    suite_value: object  # the suite file's value (before --epochs, --set, ...)
    paper_value: object  # the paper's recipe for this dataset; None when the task has none

    @property
    def changed(self) -> bool:
        return self.value != self.suite_value

    @property
    def off_paper(self) -> bool:
        return self.paper_value is not None and self.value != self.paper_value


def recipe_lines(planned) -> list[RecipeLine]:
    """Every recipe key (nested tables dotted) with its value, the suite file's and the paper's."""
    suite = planned.suite
    as_filed = load_suite(suite.path).recipe.to_dict()
    paper = paper_recipe(suite.task, suite.kind)
    mine, filed, theirs = flatten(suite.recipe.to_dict()), flatten(as_filed), flatten(paper) if paper else {}
    return [RecipeLine(key, mine[key], filed.get(key), theirs.get(key) if paper else None) for key in mine]


@dataclass
class JobLine:
    backbone: str
    seed: int
    params: int | None
    flops: int | None
    state: str  # "to run", "done (run 3): skipped", "resume run 4", "cannot run: ..."


def job_lines(planned) -> list[JobLine]:
    runner = planned.runner
    existing = _existing_runs(planned)
    lines = []
    for job in planned.jobs:
        size = job.size or {}
        lines.append(JobLine(job.spec.name, job.seed, size.get("params"), size.get("flops"),
                             _state(job, existing.get(runner.key(job), []), runner.options.force)))
    return lines


def _state(job, runs: list, force: bool) -> str:
    if job.error:
        return f"cannot run: {job.error}"
    done = [run for run in runs if run.status == "done"]
    if done and not force:
        return f"done (run {done[0].id}): skipped"
    if done:
        return f"done (run {done[0].id}): trained again (--force)"
    unfinished = [run for run in runs if run.status != "done"]
    if unfinished:
        return f"{unfinished[0].status} (run {unfinished[0].id}): resumed"
    return "to run"


def _existing_runs(planned) -> dict:
    """Runs of the planned keys in the store, newest first; nothing when the store does not exist yet."""
    path = sqlite_file(planned.url)
    if path is not None and not path.exists():
        return {}
    try:
        store = open_store(planned.url, write=False)
    except VbenchError:  # no schema yet: nothing is done
        return {}
    try:
        runner = planned.runner
        return {runner.key(job): store.find_runs(runner.key(job)) for job in planned.jobs if not job.error}
    finally:
        store.close()
