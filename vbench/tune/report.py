"""The "tuned" tables of ``vbench report``: per suite and study, each backbone's best recipe and the trials it took,
the re-runs of that recipe on fresh seeds (mean and 95% t interval), and the gain of every LKCA model over its ViT
partner under equal budgets beside the fixed-recipe gain.

Read from the run rows alone (the trials' and re-runs' ``settings.tune`` marks), so it needs no Optuna. Tuning runs
are never averaged with fixed-recipe runs: ``vbench.reporting.results`` leaves them out of the fixed-recipe groups,
and only the re-runs (never the trials) are averaged here.
"""

from __future__ import annotations

import warnings

import pandas as pd

from vbench.reporting.report import ReportTable, display_name, fmt, partner_of, signed
from vbench.reporting.results import all_groups, finished_results
from vbench.reporting.stats import mean_interval, seed_difference
from vbench.store import is_tuning, tune_marks
from vbench.tasks import get_task

COUNTED = ("done", "pruned")  # the trials that count against the budget


def tuned_sections(store, suite: str | None = None, backbones=None, study: str | None = None) -> list[ReportTable]:
    """A table per (suite, study) with tuning runs, classification suites; empty when there are none."""
    runs = [run for run in store.list_runs(suite=suite, backbones=backbones, task="classification") if is_tuning(run)]
    studies = sorted({(run.suite, tune_marks(run).get("study")) for run in runs if tune_marks(run).get("study")})
    fixed_groups = finished_results(store, suite=suite, task="classification").groups if studies else []
    reruns = all_groups(store, suite, backbones, task="classification", tuning=True)
    sections = []
    for suite_name, name in studies:
        if study is not None and name != study:
            continue
        trials = [run for run in runs if run.suite == suite_name and tune_marks(run).get("study") == name
                  and "trial" in tune_marks(run)]
        groups = _newest_per_backbone([g for g in reruns if g.suite == suite_name
                                       and tune_marks(g.newest).get("study") == name and "rerun_of" in tune_marks(g.newest)])
        fixed = [g for g in fixed_groups if g.suite == suite_name]
        with warnings.catch_warnings():  # scipy warns on seeds of equal scores: the interval is then zero-wide
            warnings.simplefilter("ignore", RuntimeWarning)
            sections.append(_section(suite_name, name, trials, groups, fixed))
    return sections


def _newest_per_backbone(groups: list) -> list:
    newest = {}
    for group in groups:  # oldest first: a later best (a study given more trials) replaces an earlier one
        newest[group.backbone] = group
    return list(newest.values())


def _best(trials: list, metric: str, higher_is_better: bool):
    done = [run for run in trials if run.status == "done" and run.metric(metric) is not None]
    if not done:
        return None
    return (max if higher_is_better else min)(done, key=lambda run: run.metric(metric))


def _section(suite: str, study: str, trials: list, groups: list, fixed: list) -> ReportTable:
    info = get_task("classification")
    metric, label = info.primary, info.primary_metric.label
    backbones = list(dict.fromkeys(run.backbone for run in sorted(trials, key=lambda r: r.id)))
    by_backbone = {group.backbone: group for group in groups}
    records = []
    for backbone in backbones:
        own = [run for run in trials if run.backbone == backbone]
        best = _best(own, metric, info.primary_metric.higher_is_better)
        group = by_backbone.get(backbone)
        values = list(group.values(metric).values()) if group else []
        interval = mean_interval(values)
        first = own[0]
        record = {
            "task": "classification", "suite": suite, "study": study, "backbone": backbone,
            "model": display_name(first.paper_names, first.dataset, backbone),
            "trials": sum(run.status in COUNTED for run in own), "pruned": sum(run.status == "pruned" for run in own),
            "failed": sum(run.status == "failed" for run in own), "epochs": first.steps,
            "best_trial": tune_marks(best).get("trial") if best else None,
            "best_trial_value": best.metric(metric) if best else None,
            "best_params": tune_marks(best).get("params") if best else None,
            "rerun_of": tune_marks(group.newest).get("rerun_of") if group else None,
            "n": group.n if group else 0, "seeds": group.seeds if group else [],
            "acc_mean": sum(values) / len(values) if values else None,
            "acc_ci_low": interval.low if interval else None, "acc_ci_high": interval.high if interval else None,
            "recipe_hash": group.recipe_hash if group else None,
            "run_ids": [run.id for run in group.runs] if group else [],
            "space_hash": tune_marks(first).get("space_hash"), "sampler": tune_marks(first).get("sampler"),
            "pruner": tune_marks(first).get("pruner"),
        }
        record.update(_tuned_gain(group, groups, metric))
        record.update(_fixed_gain(backbone, fixed, metric))
        records.append(record)
    display = pd.DataFrame([_row(record, label) for record in records])
    return ReportTable(f"{suite}/tuned/{study}", "classification", f"{suite}: tuned, equal budgets (study {study})",
                       records, display, _notes(records, study, label), suite=suite)


def _tuned_gain(group, groups: list, metric: str) -> dict:
    """LKCA over its ViT partner, both re-run after the same budget (each with its own best recipe)."""
    empty = {"partner": None, "gain": None, "gain_ci_low": None, "gain_ci_high": None, "gain_p": None}
    partner = partner_of(group, groups) if group else None
    if partner is None or (partner.data_id, partner.precision) != (group.data_id, group.precision):
        return empty
    test = seed_difference(group.values(metric), partner.values(metric))
    return {"partner": partner.backbone, "gain": test.difference,
            "gain_ci_low": test.interval.low if test.interval else None,
            "gain_ci_high": test.interval.high if test.interval else None, "gain_p": test.p_value}


def _fixed_gain(backbone: str, fixed: list, metric: str) -> dict:
    """The same pair trained with the suite's fixed recipe (the fixed-recipe table's gain), where both were run."""
    group = next((g for g in fixed if g.backbone == backbone), None)
    partner = partner_of(group, fixed) if group else None
    if partner is None or group.same_experiment(partner) is not None:
        return {"fixed_gain": None, "fixed_n": None}
    mine, theirs = list(group.values(metric).values()), list(partner.values(metric).values())
    return {"fixed_gain": sum(mine) / len(mine) - sum(theirs) / len(theirs), "fixed_n": min(group.n, partner.n),
            "fixed_recipe_hash": group.recipe_hash}


def _row(record: dict, label: str) -> dict:
    params = record["best_params"] or {}
    best = "-" if record["best_trial"] is None else f"{record['best_trial']} ({label} {fmt(record['best_trial_value'])})"
    rerun = fmt(record["acc_mean"])
    if record["acc_ci_low"] is not None:
        rerun += f" [{record['acc_ci_low']:.2f}, {record['acc_ci_high']:.2f}]"
    gain = signed(record["gain"])
    if record["gain_ci_low"] is not None:
        gain += f" [{record['gain_ci_low']:+.2f}, {record['gain_ci_high']:+.2f}]"
    fixed = signed(record["fixed_gain"]) + (f" (n={record['fixed_n']})" if record["fixed_gain"] is not None else "")
    return {"Model": record["model"], "Trials": f"{record['trials']} ({record['pruned']} pruned)", "Best trial": best,
            "Best recipe": recipe_text(params) or "-",
            f"Re-run {label} [95% CI]": rerun, "n": str(record["n"]), "Gain, equal budgets": gain,
            "Gain, fixed recipe": fixed, "Recipe": (record["recipe_hash"] or "-")[:8]}


def recipe_text(params: dict) -> str:
    """A trial's values as ``lr 0.00123, optimizer adamw``."""
    return ", ".join(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in params.items())


def _notes(records: list[dict], study: str, label: str) -> list[str]:
    first = records[0] if records else {}
    notes = [f"Study {study}: every backbone got the same budget: {first.get('trials')} finished trials of "
             f"{first.get('epochs')} epochs over one search space (hash {first.get('space_hash')}), sampler "
             f"{first.get('sampler')}, pruner {first.get('pruner')}; pruned trials count against the budget.",
             f"Re-run {label}: the best trial's recipe trained again on the seeds n, as normal runs of their own recipe "
             "hash: mean [95% t interval]. Gain, equal budgets: an LKCA model over its ViT partner, each with its own "
             "best recipe (paired t interval over seeds); Gain, fixed recipe: the same pair under the suite's recipe "
             "(the fixed-recipe table), over n seeds.",
             "Trials are judged on the test split, the per-epoch metric every run records: a best trial's own "
             f"{label} is optimistic; the re-runs on fresh seeds guard against a lucky seed, not against choosing on "
             "the test split."]
    if any(r["n"] == 0 for r in records):
        notes.append("A row without re-runs: give the tuning command again with --rerun-best --seeds 0,1,2.")
    return notes
