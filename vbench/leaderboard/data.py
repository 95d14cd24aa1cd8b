"""What the site shows, read from the store once: every run of the selection (any status), their step rows,
the finished result groups and the paper-layout report built from them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, NamedTuple

from vbench.reporting.report import Report, build_report
from vbench.reporting.results import ResultGroup, Results, finished_results


class StepRow(NamedTuple):
    step: int
    metrics: dict


class LoadedStore:
    """The store's runs and step rows of one selection, read once; answers the reads of ``finished_results``
    and ``build_report`` (``list_runs``, ``steps_of``, ``label``) from memory. Those read the run list once
    per use, and on a store of 10,000 runs each read costs about a second. Step rows stay JSON text until
    asked for: the run pages embed them as they are."""

    def __init__(self, store, suite: str | None, backbones: list[str] | None):
        self.store = store
        self.label = store.label
        self.runs = store.list_runs(suite=suite, backbones=backbones)
        self.steps_json = store.steps_json(suite=suite, backbones=backbones)

    def list_runs(self, suite: str | None = None, backbones: list[str] | None = None, status: str | None = None,
                  task: str | None = None) -> list:
        wanted = set(backbones) if backbones else None
        return [run for run in self.runs
                if (not suite or run.suite == suite) and (wanted is None or run.backbone in wanted)
                and (not status or run.status == status) and (not task or run.task == task)]

    def steps_of(self, run_ids: Iterable[int]) -> dict[int, list[StepRow]]:
        return {run_id: [StepRow(step, json.loads(text) if text else {})
                         for step, text in self.steps_json.get(run_id, [])] for run_id in run_ids}


@dataclass
class SiteData:
    store: object  # the open Store (artifact paths, label)
    suite: str | None
    backbones: list[str] | None
    runs: list  # every run of the selection, by id
    steps_json: dict[int, list[tuple[int, str]]]  # run id -> (step, metrics as JSON text)
    results: Results  # the finished groups shown
    report: Report | None  # None when nothing has finished
    generated_at: str

    @property
    def label(self) -> str:
        return self.store.label

    def group_of_run(self) -> dict[int, ResultGroup]:
        """The shown group each finished run belongs to (runs of hidden groups are absent)."""
        return {run.id: group for group in self.results.groups for run in group.runs}


def gather(store, suite: str | None = None, backbones: list[str] | None = None) -> SiteData:
    loaded = LoadedStore(store, suite, backbones)
    results = finished_results(loaded, suite=suite, backbones=backbones)
    report = build_report(loaded, suite=suite, backbones=backbones, compare_paper=True) if results.groups else None
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return SiteData(store, suite, backbones, loaded.runs, loaded.steps_json, results, report, generated)
