"""Finished runs gathered into result groups: the seeds of one experiment.

A group is the finished runs of one (suite, backbone, recipe, data, precision), the newest run of each
seed; only such runs are ever averaged. Where a backbone was run under several recipes or data (or at
another precision), the newest group is shown and the others are counted as hidden, so a report never
mixes them silently. Reports, plots, the leaderboard and comparisons all read groups from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from vbench.errors import VbenchError
from vbench.models import registry
from vbench.store import is_eval_only, is_tuning, run_precision
from vbench.tasks import get_task


@dataclass
class ResultGroup:
    task: str
    suite: str
    dataset: str | None
    backbone: str
    family: str | None
    paper_names: tuple[str, ...]
    recipe_hash: str
    recipe: dict
    data_id: str | None
    data: dict
    precision: str
    step_unit: str
    steps: int | None
    runs: list = field(default_factory=list)  # Run rows, one per seed, ordered by seed

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def newest(self):
        return max(self.runs, key=lambda run: run.id)

    @property
    def variant(self) -> str | None:
        """What else tells two groups of one backbone apart in a table (a segmentation head)."""
        return self.recipe.get("head")

    def values(self, metric: str) -> dict[int, float]:
        return {run.seed: run.metric(metric) for run in self.runs if run.metric(metric) is not None}

    @property
    def params(self) -> int | None:
        return self.newest.params

    @property
    def flops(self) -> int | None:
        return self.newest.flops

    @property
    def counts(self) -> dict:
        return self.newest.counts or {}

    @property
    def images_per_s(self) -> float | None:
        rates = [run.train_images_per_s for run in self.runs if run.train_images_per_s]
        return sum(rates) / len(rates) if rates else None

    def same_experiment(self, other: "ResultGroup") -> str | None:
        """None when the two groups can be compared, else why not."""
        if other.recipe_hash != self.recipe_hash:
            return "recipe differs"
        if other.data_id != self.data_id:
            return "data differs"
        if other.precision != self.precision:
            return "precision differs"
        return None


@dataclass
class Results:
    groups: list[ResultGroup]
    hidden: int  # finished runs of older recipes, data or precisions that are not shown


def _group_key(run) -> tuple:
    precision = run_precision(run)
    return (run.suite, run.backbone, run.recipe_hash, run.data_id, precision)


def all_groups(store, suite: str | None = None, backbones: Iterable[str] | None = None,
               task: str | None = None, eval_only: bool = False, tuning: bool = False) -> list[ResultGroup]:
    """Every group of finished runs, oldest newest run first: fixed-recipe training runs only, unless ``eval_only``
    asks for the eval-only rows alone or ``tuning`` for the runs of `vbench tune` alone."""
    runs = store.list_runs(suite=suite, backbones=list(backbones) if backbones else None, status="done", task=task)
    runs = [run for run in runs if is_eval_only(run) == eval_only and is_tuning(run) == tuning]
    grouped: dict[tuple, list] = {}
    for run in runs:  # ordered by id, so a later run of a seed replaces an earlier one
        grouped.setdefault(_group_key(run), []).append(run)
    return sorted((_group(rows) for rows in grouped.values()), key=lambda g: g.newest.id)


def finished_results(store, suite: str | None = None, backbones: Iterable[str] | None = None,
                     task: str | None = None, eval_only: bool = False) -> Results:
    """The groups of finished runs to show: per (suite, backbone, variant) the group with the newest run."""
    groups = all_groups(store, suite, backbones, task, eval_only)
    shown: dict[tuple, ResultGroup] = {}
    for group in groups:
        shown[(group.suite, group.backbone, group.variant)] = group
    total = sum(group.n for group in groups)
    kept = list(shown.values())
    return Results(kept, total - sum(group.n for group in kept))


def evaluations_by_run(store, groups: list, kinds: tuple[str, ...]) -> dict[int, list]:
    """The stored evaluations of these kinds of the groups' runs, by run id."""
    evaluations = store.evaluations(kinds[0] if len(kinds) == 1 else None, [run.id for g in groups for run in g.runs])
    by_run: dict[int, list] = {}
    for evaluation in evaluations:
        if evaluation.kind in kinds:
            by_run.setdefault(evaluation.run_id, []).append(evaluation)
    return by_run


def _group(rows: list) -> ResultGroup:
    by_seed = {run.seed: run for run in rows}
    first = rows[-1]
    names = first.paper_names if isinstance(first.paper_names, list) else registry_paper_names(first.backbone)
    return ResultGroup(
        task=first.task, suite=first.suite, dataset=first.dataset, backbone=first.backbone, family=first.family,
        paper_names=tuple(names), recipe_hash=first.recipe_hash, recipe=_stored_recipe(first),
        data_id=first.data_id, data=dict(first.data or {}), precision=run_precision(first),
        step_unit=first.step_unit or "epoch", steps=first.steps, runs=[by_seed[s] for s in sorted(by_seed)])


def _stored_recipe(run) -> dict:
    recipe = dict(run.recipe or {})
    try:
        return get_task(run.task).recipe.stored(recipe)
    except VbenchError:  # a task that is not installed now
        return recipe


def registry_paper_names(backbone: str) -> list[str]:
    """Paper names of a run stored without them, from the registry when the backbone is still known."""
    try:
        return list(registry.get_backbone(backbone).paper_names)
    except VbenchError:
        return []


def no_runs_error(store, suite: str | None, backbones: Iterable[str] | None) -> VbenchError:
    where = f" for suite {suite!r}" if suite else ""
    picked = f" and backbones {', '.join(backbones)}" if backbones else ""
    return VbenchError(f"no finished runs{where}{picked} in {store.label}; run `vbench run --suite ... --backbones ...` first")
