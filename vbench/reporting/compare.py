"""Does backbone A really beat backbone B? Both sides' finished runs of one experiment (same suite, recipe,
data and precision), compared at two levels:

- over seeds: the mean difference of the task's primary metric with a 95% t interval, paired by seed when
  both sides have the same seeds and Welch's otherwise, and its p-value (``vbench.reporting.stats.seed_difference``);
- over test images, per pair of runs (the same seed on both sides, else paired in seed order): a bootstrap
  interval of the difference from the per-image predictions each run keeps, and for classification the
  exact McNemar test on the images where exactly one side is right;
- for classification, calibration: the ECE (15 bins) and NLL of each run on its whole test split, from the class
  probabilities its predictions keep (``vbench.reporting.calibration``), compared over seeds as the primary
  metric is (runs whose predictions predate probabilities are left out, with a note).

A single seed still gets an answer from its predictions. The result is a report (``vbench.reporting.report.Report``),
so every format of ``vbench report`` renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from vbench.errors import VbenchError
from vbench.reporting.calibration import calibration_metrics
from vbench.reporting.numbers import fmt, signed
from vbench.reporting.report import Report, ReportTable
from vbench.reporting.results import ResultGroup, all_groups
from vbench.reporting.stats import (
    bootstrap_accuracy_difference,
    bootstrap_miou_difference,
    mcnemar_exact,
    seed_difference,
)
from vbench.store.artifacts import predictions_path, stored_probabilities
from vbench.store.predictions import load_predictions, paired_correct
from vbench.tasks import get_task

N_RESAMPLES = 9999
CALIBRATION_METRICS = (("ece", "ECE (%)", 100.0), ("nll", "NLL", 1.0))  # (key, label, scale)


@dataclass
class PairResult:
    seed_a: int
    seed_b: int
    images: int | None = None
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    mcnemar_p: float | None = None
    only_a_correct: int | None = None
    only_b_correct: int | None = None
    missing: str | None = None
    ece_a: float | None = None
    ece_b: float | None = None
    nll_a: float | None = None
    nll_b: float | None = None


@dataclass
class Comparison:
    suite: str
    task: str
    metric: str
    a: ResultGroup
    b: ResultGroup
    seeds: object  # vbench.reporting.stats.SeedDifference
    pairs: list[PairResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)  # {"ece" | "nll": SeedDifference} over the runs that have it


def compare(store, suite: str, a: str, b: str, seeds: list[int] | None = None, n_resamples: int = N_RESAMPLES,
            bootstrap_seed: int = 0, suite_b: str | None = None) -> Comparison:
    """Compare backbones ``a`` and ``b`` (stored names) on ``suite``; VbenchError when either side has no
    finished runs or no two groups are the same experiment. ``suite_b``: B's runs come from this suite (one
    backbone on two suites that read the same images differently, say in memory and streamed from shards): the
    two must share recipe and precision, their data may differ, and the per-image tests check that both
    evaluated the same test images."""
    group_a, group_b = _matching_groups(store, suite, a, b, suite_b)
    group_a, group_b = _only_seeds(group_a, seeds), _only_seeds(group_b, seeds)
    info = get_task(group_a.task)
    metric = info.primary
    seed_level = seed_difference(group_a.values(metric), group_b.values(metric))
    comparison = Comparison(suite, group_a.task, metric, group_a, group_b, seed_level)
    comparison.pairs = [_compare_pair(store, run_a, run_b, group_a.task, n_resamples, bootstrap_seed)
                        for run_a, run_b in _run_pairs(group_a, group_b)]
    if group_a.task == "classification":
        comparison.calibration = _calibration_over_seeds(store, group_a, group_b, comparison.pairs)
    comparison.notes = _notes(comparison)
    return comparison


def run_calibration(store, run) -> dict | None:
    """ECE and NLL of a run's predictions on its whole test split; None when they keep no probabilities."""
    predictions = stored_probabilities(store, run)
    if predictions is None:
        return None
    return calibration_metrics(predictions.class_probabilities(), predictions.labels.astype("int64"))


def _calibration_over_seeds(store, a: ResultGroup, b: ResultGroup, pairs: list[PairResult]) -> dict:
    measured = {side: {run.seed: run_calibration(store, run) for run in group.runs} for side, group in (("a", a), ("b", b))}
    by_seed = {side: {seed: m for seed, m in found.items() if m is not None} for side, found in measured.items()}
    for pair in pairs:
        for side, seed in (("a", pair.seed_a), ("b", pair.seed_b)):
            found = by_seed[side].get(seed)
            for key, _, _ in CALIBRATION_METRICS:
                setattr(pair, f"{key}_{side}", found[key] if found else None)
    if not by_seed["a"] or not by_seed["b"]:
        return {}
    return {key: seed_difference({s: m[key] * scale for s, m in by_seed["a"].items()},
                                 {s: m[key] * scale for s, m in by_seed["b"].items()})
            for key, _, scale in CALIBRATION_METRICS}


def _matching_groups(store, suite: str, a: str, b: str, suite_b: str | None = None) -> tuple[ResultGroup, ResultGroup]:
    sides = {}
    for side, name, where in (("a", a, suite), ("b", b, suite_b or suite)):
        sides[side] = [g for g in all_groups(store, suite=where, backbones=[name]) if g.backbone == name]
        if not sides[side]:
            raise VbenchError(f"no finished runs of {name!r} on suite {where!r} in {store.label}; run it first "
                              "(`vbench runs` lists what is there)")
    across = suite_b is not None and suite_b != suite
    pairs = [(x, y) for x in sides["a"] for y in sides["b"] if _comparable(x, y, across) is None]
    if not pairs:
        newest_a, newest_b = sides["a"][-1], sides["b"][-1]
        where = f"{suite!r} and {suite_b!r}" if across else repr(suite)
        raise VbenchError(f"{a} and {b} have no finished runs of one experiment on {where} "
                          f"({_comparable(newest_a, newest_b, across)}); train both with the same recipe and data")
    return max(pairs, key=lambda pair: max(pair[0].newest.id, pair[1].newest.id))


def _comparable(a: ResultGroup, b: ResultGroup, across_suites: bool) -> str | None:
    """None when two groups can be compared, else why not; across two suites the data may differ (that is the
    point) but not the number of test images."""
    why = a.same_experiment(b)
    if across_suites and why == "data differs":
        sizes = [(group.data or {}).get("sizes", {}).get("test") for group in (a, b)]
        return None if sizes[0] == sizes[1] else f"{sizes[0]} and {sizes[1]} test images"
    return why


def _only_seeds(group: ResultGroup, seeds: list[int] | None) -> ResultGroup:
    if not seeds:
        return group
    kept = [run for run in group.runs if run.seed in seeds]
    if not kept:
        raise VbenchError(f"{group.backbone} has no finished runs of seeds {', '.join(map(str, seeds))} on "
                          f"{group.suite!r}; it has seeds {', '.join(map(str, group.seeds))}")
    return ResultGroup(**{**group.__dict__, "runs": kept})


def _run_pairs(a: ResultGroup, b: ResultGroup) -> list[tuple]:
    """The same seed on both sides; without a common seed, the runs in seed order."""
    common = sorted(set(a.seeds) & set(b.seeds))
    if common:
        by_a, by_b = {r.seed: r for r in a.runs}, {r.seed: r for r in b.runs}
        return [(by_a[seed], by_b[seed]) for seed in common]
    return list(zip(a.runs, b.runs))


def _compare_pair(store, run_a, run_b, task: str, n_resamples: int, seed: int) -> PairResult:
    pair = PairResult(run_a.seed, run_b.seed)
    paths = [predictions_path(store, run.id) for run in (run_a, run_b)]
    missing = [f"run {run.id}" for run, path in zip((run_a, run_b), paths) if not path.is_file()]
    if missing:
        pair.missing = f"{' and '.join(missing)} kept no per-image predictions"
        return pair
    predictions_a, predictions_b = (load_predictions(path, probabilities=False) for path in paths)
    if task == "segmentation":
        _segmentation_pair(pair, predictions_a, predictions_b, n_resamples, seed)
    else:
        _classification_pair(pair, predictions_a, predictions_b, n_resamples, seed)
    return pair


def _classification_pair(pair: PairResult, a, b, n_resamples: int, seed: int) -> None:
    correct_a, correct_b = paired_correct(a, b)
    test = mcnemar_exact(correct_a, correct_b)
    interval = bootstrap_accuracy_difference(correct_a, correct_b, n_resamples=n_resamples, seed=seed)
    pair.images, pair.difference = test.images, 100.0 * interval.difference
    pair.low, pair.high = 100.0 * interval.interval.low, 100.0 * interval.interval.high
    pair.mcnemar_p, pair.only_a_correct, pair.only_b_correct = test.p_value, test.only_a_correct, test.only_b_correct


def _segmentation_pair(pair: PairResult, a, b, n_resamples: int, seed: int) -> None:
    interval = bootstrap_miou_difference(a.intersection, a.union, b.intersection, b.union, n_resamples=n_resamples,
                                         seed=seed)
    pair.images, pair.difference = interval.images, interval.difference
    pair.low, pair.high = interval.interval.low, interval.interval.high


def _notes(comparison: Comparison) -> list[str]:
    seeds = comparison.seeds
    notes = []
    if seeds.method is None:
        notes.append(f"No interval over seeds: {seeds.reason}.")
    elif min(len(seeds.seeds_a), len(seeds.seeds_b)) < 3:
        notes.append("Fewer than 3 seeds on a side: the t interval is wide and the test has little power.")
    if comparison.pairs and not set(comparison.a.seeds) & set(comparison.b.seeds):
        notes.append("The two sides share no seed: per-image tests pair their runs in seed order.")
    notes += [f"Seeds {p.seed_a}/{p.seed_b}: {p.missing}." for p in comparison.pairs if p.missing]
    if comparison.task == "classification" and not comparison.calibration:
        notes.append("No calibration: the runs' predictions keep no class probabilities (kept since predictions "
                     "format 2).")
    if comparison.a.suite != comparison.b.suite:
        notes.append(f"A's runs are of suite {comparison.a.suite} (data {comparison.a.data_id}), B's of suite "
                     f"{comparison.b.suite} (data {comparison.b.data_id}): same recipe and precision, the per-image "
                     "tests on the same test images.")
    if comparison.task == "segmentation":
        notes.append("Per image: a bootstrap interval of the mIoU difference (counts summed per resample); McNemar's "
                     "test needs per-image correctness, which segmentation does not have.")
    return notes


# --- as a report -----------------------------------------------------------------------------------
def comparison_report(comparison: Comparison):
    """Two sections: the difference over seeds, and the per-image tests of each pair of runs."""
    a, b, seeds = comparison.a, comparison.b, comparison.seeds
    label = get_task(comparison.task).metric(comparison.metric).label
    summary = {
        "task": comparison.task, "suite": comparison.suite, "metric": comparison.metric, "a": a.backbone,
        "b": b.backbone, "seeds_a": list(seeds.seeds_a), "seeds_b": list(seeds.seeds_b), "mean_a": seeds.mean_a,
        "mean_b": seeds.mean_b, "difference": seeds.difference, "method": seeds.method,
        "ci_low": seeds.interval.low if seeds.interval else None,
        "ci_high": seeds.interval.high if seeds.interval else None, "p_value": seeds.p_value,
        "recipe_hash": a.recipe_hash, "data_id": a.data_id,
    }
    display = pd.DataFrame([{
        "A": a.backbone, "B": b.backbone, f"{label} A": fmt(seeds.mean_a), f"{label} B": fmt(seeds.mean_b),
        "A - B": signed(seeds.difference), "95% CI": _interval_text(summary["ci_low"], summary["ci_high"]),
        "p": _p_text(seeds.p_value), "test": seeds.method or "-", "seeds": f"{len(seeds.seeds_a)} / {len(seeds.seeds_b)}",
    }])
    pair_records = [{"task": comparison.task, "suite": comparison.suite, "a": a.backbone, "b": b.backbone,
                     **pair.__dict__} for pair in comparison.pairs]
    pair_display = pd.DataFrame([{
        "seeds": f"{p.seed_a} / {p.seed_b}", "images": str(p.images or "-"), "A - B": signed(p.difference),
        "bootstrap 95% CI": _interval_text(p.low, p.high), "McNemar p": _p_text(p.mcnemar_p),
        "only A right / only B right": f"{p.only_a_correct} / {p.only_b_correct}" if p.only_a_correct is not None else "-",
    } for p in comparison.pairs])
    title = f"{a.backbone} against {b.backbone} on {comparison.suite}"
    if b.suite != a.suite:
        title = f"{a.backbone} on {a.suite} against {b.backbone} on {b.suite}"
    calibration = _calibration_section(comparison, title)
    sections = [
        ReportTable("seeds", comparison.task, f"{title}: over seeds", [summary], display,
                [f"{label} in percent; A - B is the mean over A's seeds minus the mean over B's; the 95% interval is "
                 "t-based, paired by seed when both sides have the same seeds and Welch's otherwise."],
                suite=comparison.suite),
        ReportTable("images", comparison.task, f"{title}: over test images, per pair of runs", pair_records, pair_display,
                [f"Bootstrap: {N_RESAMPLES} paired resamples of the test images (percentile interval, seed 0)."],
                suite=comparison.suite),
    ]
    return Report(sections + ([calibration] if calibration else []), comparison.notes, compare_paper=False)


def _calibration_section(comparison: Comparison, title: str) -> ReportTable | None:
    """ECE and NLL of A and B over seeds (lower is better), as the primary metric is compared."""
    if not comparison.calibration:
        return None
    records, rows = [], []
    for key, label, _ in CALIBRATION_METRICS:
        seeds = comparison.calibration[key]
        low, high = (seeds.interval.low, seeds.interval.high) if seeds.interval else (None, None)
        records.append({"task": comparison.task, "suite": comparison.suite, "metric": key, "a": comparison.a.backbone,
                        "b": comparison.b.backbone, "seeds_a": list(seeds.seeds_a), "seeds_b": list(seeds.seeds_b),
                        "mean_a": seeds.mean_a, "mean_b": seeds.mean_b, "difference": seeds.difference,
                        "method": seeds.method, "ci_low": low, "ci_high": high, "p_value": seeds.p_value})
        rows.append({"metric": label, "A": fmt(seeds.mean_a, 3), "B": fmt(seeds.mean_b, 3),
                     "A - B": f"{seeds.difference:+.3f}", "95% CI": _interval_text(low, high),
                     "p": _p_text(seeds.p_value), "test": seeds.method or "-",
                     "seeds": f"{len(seeds.seeds_a)} / {len(seeds.seeds_b)}"})
    note = ("Calibration on the whole test split, from the class probabilities the runs' predictions keep: ECE (%, 15 "
            "equal-width bins) and NLL (nats), lower is better; no temperature scaling (`vbench calibration` fits it). "
            "The interval is t-based over seeds, as above.")
    return ReportTable("calibration", comparison.task, f"{title}: calibration over seeds", records,
                       pd.DataFrame(rows), [note], suite=comparison.suite)


def _interval_text(low: float | None, high: float | None) -> str:
    return "-" if low is None else f"[{low:+.2f}, {high:+.2f}]"


def _p_text(p: float | None) -> str:
    if p is None or p != p:
        return "-"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"
