"""Planning a tuning command: everything checked before anything is written.

``plan_tuning`` checks the suite, the backbones, the data and the store's location as ``vbench run`` does
(``vbench.engine.plan.plan_run``, which builds and measures every backbone), the budget (``--trials``), the
search space against the suite's recipe, the sampler, the pruner and the re-run seeds, and that the studies
already stored under the group's name agree with this command (read only). Bad input is one line
(``VbenchError``) and nothing is written: the studies and their tables are created when the trials begin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from vbench.engine import distributed
from vbench.engine.plan import PlannedRun, plan_run
from vbench.engine.runner import RunOptions
from vbench.errors import VbenchError
from vbench.parse import parse_seeds
from vbench.tune.space import check_sets_apart, load_space
from vbench.tune.study import PRUNERS, SAMPLERS, StudyGroup, check_existing

DEFAULT_RERUN_SEEDS = "0,1,2"


@dataclass(frozen=True)
class TuneRequest:
    """What a tuning command (and each of its SLURM jobs) runs, with every path absolute."""

    suite: str  # a built-in suite's name or a suite file's absolute path
    group: StudyGroup
    trials: int  # the budget: finished (complete or pruned) trials per backbone
    url: str
    overrides: dict
    sets: tuple[str, ...]
    options: RunOptions
    plugins: tuple[str, ...] = ()


@dataclass
class TuningPlan:
    request: TuneRequest
    planned: PlannedRun  # the base recipe's plan: suite, data, sizes (nothing is run from it)
    stored: dict = field(default_factory=dict)  # backbone -> identity of the studies already there
    rerun_seeds: list[int] | None = None  # --rerun-best: the seeds of the re-runs

    @property
    def group(self) -> StudyGroup:
        return self.request.group


def plan_tuning(suite: str, backbones: str | None, trials: int, *, space: str | None = None, sampler: str = "tpe",
                pruner: str = "median", seed: int = 0, study: str | None = None, db: str | None = None,
                overrides: dict | None = None, sets: Iterable[str] = (), options: RunOptions | None = None,
                rerun_best: bool = False, seeds: str | None = None, family: str | None = None, plugins: Iterable[str] = (),
                console=None) -> TuningPlan:
    """Check a tuning command; raises VbenchError (one line) on bad input and writes nothing."""
    if trials < 1:
        raise VbenchError(f"--trials must be at least 1, got {trials}: it is the budget of every backbone")
    if sampler not in SAMPLERS:
        raise VbenchError(f"unknown --sampler {sampler!r}; choose {' or '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise VbenchError(f"unknown --pruner {pruner!r}; choose one of {', '.join(PRUNERS)}")
    if seed < 0:
        raise VbenchError(f"--seed must not be negative, got {seed}")
    if study is not None and (not study.strip() or "/" in study):
        raise VbenchError(f"--study {study!r} is not a usable name: give a non-empty name without '/'")
    if distributed.requested().active:
        raise VbenchError("vbench tune runs its trials one after the other: run it as one process, not under torchrun")
    options = options or RunOptions()
    if options.force:
        raise VbenchError("vbench tune never reruns a finished trial; --force does not apply")
    sets, overrides = list(sets), {key: value for key, value in (overrides or {}).items() if value is not None}
    if seeds is not None and not rerun_best:
        raise VbenchError("--seeds are the seeds of the re-runs: add --rerun-best (the trials train with --seed)")
    rerun_seeds = parse_seeds(seeds or DEFAULT_RERUN_SEEDS, 0) if rerun_best else None
    planned = plan_run(suite, backbones, str(seed), db=db, overrides=overrides, sets=sets, options=options,
                       console=console, family=family)
    broken = [job for job in planned.jobs if job.error]
    if broken:
        raise VbenchError(f"{broken[0].spec.name} cannot run on suite {planned.suite.name!r} ({broken[0].error}); "
                          "every backbone of a study gets the same budget: leave it out")
    search = load_space(space, planned.suite)
    check_sets_apart(search, sets, {key: value for key, value in overrides.items() if key != "data_root"})
    info, runner = planned.suite.task_info, planned.runner
    group = StudyGroup(
        name=study or planned.suite.name, suite=planned.suite.name, backbones=tuple(j.spec.name for j in planned.jobs),
        space=search, sampler=sampler, pruner=pruner, seed=seed, recipe={**planned.suite.recipe.to_dict(), "seed": seed},
        recipe_hash=planned.suite.recipe.key_hash(), data_id=runner.data.identity, precision=runner.precision.name,
        metric=info.primary, direction="maximize" if info.primary_metric.higher_is_better else "minimize")
    stored = check_existing(group, planned.url)
    request = TuneRequest(_absolute_suite(suite), group, trials, planned.url, overrides, tuple(sets), runner.options,
                          tuple(str(Path(p).resolve()) if Path(p).exists() else p for p in plugins))
    return TuningPlan(request, planned, stored, rerun_seeds)


def _absolute_suite(suite: str) -> str:
    """A suite file is named by its absolute path (a SLURM job may start in another folder)."""
    path = Path(suite).expanduser()
    return str(path.resolve()) if path.is_file() else suite
