"""``vbench report --robustness``: the corruption results of finished runs with Hendrycks' definitions.

Per suite, two tables: a summary (clean accuracy, mean corruption accuracy, mCE and relative mCE against a
reference backbone) and the accuracy per corruption. The reference is ``--reference NAME`` for every row,
or by default each LKCA model's ViT partner ("ViT/1M-LKCA" against "ViT/1M"); a row with neither has no CE.
Seeds of one experiment are averaged (``vbench.reporting.results`` groups), as everywhere in the reports.
"""

from __future__ import annotations

import pandas as pd

from vbench.errors import VbenchError
from vbench.reporting.numbers import fmt
from vbench.reporting.paper import table_names
from vbench.reporting.plot import Curve, curve_chart
from vbench.reporting.report import ReportTable, partner_of
from vbench.reporting.results import evaluations_by_run, finished_results
from vbench.robustness.corruptions import CORRUPTIONS
from vbench.robustness.evaluate import KIND
from vbench.robustness.imagenet import ALEXNET_CLEAN_ERROR, KIND_C, KIND_SETS, TEST_SETS, alexnet_corruption_errors
from vbench.robustness.metrics import robustness_summary

NOTE = ("Accuracies are top-1 (%) on the corrupted test split, the mean over the severities evaluated and the seeds "
        "of one experiment; mCA: mean corruption accuracy; with E = 100 - accuracy, CE_c = sum_s E_s,c / "
        "sum_s E_s,c(reference), mCE their mean over corruptions, relative CE_c = sum_s (E_s,c - E_clean) / "
        "sum_s (E_s,c(ref) - E_clean(ref)) (Hendrycks & Dietterich, ICLR 2019), in percent of the reference.")


def robustness_sections(store, suite: str | None = None, backbones=None, reference: str | None = None) -> list:
    groups = finished_results(store, suite=suite, backbones=backbones, task="classification").groups
    sections = _per_suite(groups, evaluations_by_run(store, groups, (KIND,)), reference, _suite_sections)
    sections += imagenet_sections(store, groups, reference)
    if not sections:
        where = f" of suite {suite!r}" if suite else ""
        raise VbenchError(f"no corruption results{where} in {store.label}; run `vbench robustness --suite ...` first")
    return sections


# --- ImageNet's test sets (vbench.robustness.imagenet) ----------------------------------------------------------
IMAGENET_NOTE = ("Top-1 (%) on each set, the mean over the seeds of one experiment; ImageNet: the clean validation "
                 "split; ImageNet-A and -R with the logits masked to their 200 classes (as timm does); ImageNet-C: mCA "
                 "the mean accuracy over its corruptions and severities, mCE and relative mCE (Hendrycks & Dietterich) "
                 "in percent of the reference.")


def imagenet_sections(store, groups: list, reference: str | None = None) -> list:
    """Per ImageNet suite with results of ImageNet's test sets: top-1 on each set with mCE, and ImageNet-C's
    accuracy per corruption."""
    return _per_suite(groups, evaluations_by_run(store, groups, (KIND_C, KIND_SETS)), reference,
                      _imagenet_suite_sections)


def _per_suite(groups: list, by_run: dict[int, list], reference: str | None, make_sections) -> list:
    """``make_sections`` of every suite, over its groups with evaluations."""
    sections = []
    for suite_name in sorted({g.suite for g in groups}):
        suite_groups = [g for g in groups if g.suite == suite_name and any(r.id in by_run for r in g.runs)]
        if suite_groups:
            sections += make_sections(suite_name, suite_groups, by_run, reference)
    return sections


def _imagenet_suite_sections(suite_name: str, groups: list, by_run: dict[int, list], reference: str | None) -> list:
    names = _table_names(groups)
    c_rows = [{"backbone": g.backbone, "corruption": e.condition.split("/")[0], "severity": int(e.condition.split("/")[1]),
               "accuracy": e.metrics["top1"]} for g in groups for run in g.runs for e in by_run.get(run.id, [])
              if e.kind == KIND_C]
    frame = pd.DataFrame(c_rows, columns=["backbone", "corruption", "severity", "accuracy"])
    clean = {g.backbone: sum(g.values("top1").values()) / g.n for g in groups}
    if reference and reference not in set(frame["backbone"]):
        raise VbenchError(f"reference backbone {reference!r} has no ImageNet-C results on {suite_name!r}; choose one of "
                          f"{', '.join(sorted(set(frame['backbone']))) or 'none'}, or leave --reference out for AlexNet's")
    records = []
    for group in groups:
        sets = {}
        for run in group.runs:
            for evaluation in by_run.get(run.id, []):
                if evaluation.kind == KIND_SETS:
                    sets.setdefault(evaluation.condition, []).append(evaluation.metrics["top1"])
        own = frame[frame["backbone"] == group.backbone]
        record = {"task": "classification", "suite": suite_name, "model": names[group.backbone],
                  "backbone": group.backbone, "n": group.n, "clean_accuracy": clean[group.backbone],
                  **{s.name: (sum(sets[s.name]) / len(sets[s.name]) if s.name in sets else None) for s in TEST_SETS},
                  "mean_corruption_accuracy": float(own["accuracy"].mean()) if not own.empty else None,
                  "recipe_hash": group.recipe_hash,
                  **_mce(own, frame, clean, group.backbone, reference),
                  **{name: float(own[own["corruption"] == name]["accuracy"].mean()) if (own["corruption"] == name).any()
                     else None for name in CORRUPTIONS}}
        records.append(record)
    display = pd.DataFrame([{
        "Model": r["model"], "n": str(r["n"]), "ImageNet": fmt(r["clean_accuracy"]),
        **{s.title: fmt(r[s.name]) for s in TEST_SETS}, "ImageNet-C mCA": fmt(r["mean_corruption_accuracy"]),
        "mCE": fmt(r["mce"]), "rel. mCE": fmt(r["relative_mce"]), "Reference": r["reference"] or "-",
    } for r in records])
    notes = [IMAGENET_NOTE]
    if any(r["reference"] == ALEXNET for r in records):
        notes.append("mCE against AlexNet uses its published errors (Hendrycks' means over severities 1-5, clean error "
                     f"{ALEXNET_CLEAN_ERROR}); it counts the corruptions evaluated at all five severities.")
    sections = [ReportTable(f"{suite_name}/imagenet-sets", "classification", f"{suite_name}: ImageNet test sets",
                            records, display, notes, suite=suite_name)]
    if not frame.empty:
        accuracy = pd.DataFrame([{"Model": r["model"], **{name: fmt(r[name]) for name in CORRUPTIONS}} for r in records])
        sections.append(ReportTable(f"{suite_name}/imagenet-c", "classification",
                                    f"{suite_name}: ImageNet-C accuracy per corruption", records, accuracy, [],
                                    suite=suite_name, pivot=True))
    return sections


ALEXNET = "AlexNet (published)"


def _mce(own: pd.DataFrame, frame: pd.DataFrame, clean: dict, backbone: str, reference: str | None) -> dict:
    none = {"mce": None, "relative_mce": None, "reference": None}
    if own.empty:
        return none
    if reference:
        pair = frame[frame["backbone"].isin([backbone, reference])]
        summary = robustness_summary(pair, clean, reference).set_index("backbone").loc[backbone]
        return {"mce": float(summary["mce"]), "relative_mce": float(summary["relative_mce"]), "reference": reference}
    errors: dict[str, dict[int, float]] = {}
    for row in own.groupby(["corruption", "severity"], as_index=False)["accuracy"].mean().itertuples():
        errors.setdefault(row.corruption, {})[row.severity] = 100.0 - row.accuracy
    rows = alexnet_corruption_errors(errors, 100.0 - clean[backbone])
    if not rows:
        return none
    return {"mce": sum(r["ce"] for r in rows.values()) / len(rows),
            "relative_mce": sum(r["relative_ce"] for r in rows.values()) / len(rows), "reference": ALEXNET}


def _frame(groups: list, by_run: dict[int, list]) -> tuple[pd.DataFrame, dict[str, float], set[str], list[int]]:
    rows, clean, sources, severities = [], {}, set(), set()
    for group in groups:
        clean[group.backbone] = sum(group.values("top1").values()) / group.n
        for run in group.runs:
            for evaluation in by_run.get(run.id, []):
                corruption, severity = evaluation.condition.split("/")
                rows.append({"backbone": group.backbone, "corruption": corruption, "severity": int(severity),
                             "accuracy": evaluation.metrics["top1"]})
                sources.add(evaluation.metrics.get("source", "?"))
                severities.add(int(severity))
    return pd.DataFrame(rows), clean, sources, sorted(severities)


def _reference_of(group, groups: list, reference: str | None) -> str | None:
    if reference:
        return reference
    partner = partner_of(group, groups)
    return partner.backbone if partner is not None and group.same_experiment(partner) is None else None


def _suite_sections(suite_name: str, groups: list, by_run: dict[int, list], reference: str | None) -> list:
    frame, clean, sources, severities = _frame(groups, by_run)
    if reference and reference not in set(frame["backbone"]):
        raise VbenchError(f"reference backbone {reference!r} has no corruption results on {suite_name!r}; choose one "
                          f"of {', '.join(sorted(set(frame['backbone'])))}")
    names = _table_names(groups)
    records = []
    for group in groups:
        own = frame[frame["backbone"] == group.backbone]
        ref = _reference_of(group, groups, reference)
        summary = None
        if ref is not None and ref in clean and not frame[frame["backbone"] == ref].empty:
            pair = frame[frame["backbone"].isin([group.backbone, ref])]
            summary = robustness_summary(pair, clean, ref).set_index("backbone").loc[group.backbone]
        per_corruption = own.groupby("corruption")["accuracy"].mean()
        records.append({
            "task": "classification", "suite": suite_name, "model": names[group.backbone], "backbone": group.backbone,
            "n": group.n, "clean_accuracy": clean[group.backbone],
            "mean_corruption_accuracy": float(own["accuracy"].mean()),
            "mce": float(summary["mce"]) if summary is not None else None,
            "relative_mce": float(summary["relative_mce"]) if summary is not None else None,
            "reference": ref if summary is not None else None, "recipe_hash": group.recipe_hash,
            **{name: float(per_corruption[name]) if name in per_corruption else None for name in CORRUPTIONS},
        })
    display = pd.DataFrame([{
        "Model": r["model"], "n": str(r["n"]), "Clean": fmt(r["clean_accuracy"]), "mCA": fmt(r["mean_corruption_accuracy"]),
        "mCE": fmt(r["mce"]), "rel. mCE": fmt(r["relative_mce"]),
        "Reference": names.get(r["reference"], r["reference"]) if r["reference"] else "-",
    } for r in records])
    accuracy = pd.DataFrame([{"Model": r["model"], **{name: fmt(r[name]) for name in CORRUPTIONS}} for r in records])
    notes = [NOTE, f"Severities {', '.join(map(str, severities))}; images {' and '.join(sorted(sources))} "
                   "(released files where they are under the data root, else generated)."]
    if any(r["reference"] is None for r in records):
        notes.append("Rows without a reference have no CE: the default reference is an LKCA model's ViT partner "
                     "trained with the same recipe; pass --reference NAME to use one backbone for every row.")
    title = f"{suite_name}: robustness to corruptions"
    return [ReportTable(f"{suite_name}/robustness", "classification", title, records, display, notes, suite=suite_name),
            ReportTable(f"{suite_name}/corruptions", "classification", f"{suite_name}: accuracy per corruption", records,
                    accuracy, [], suite=suite_name, pivot=True)]


def severity_charts(store, suite: str | None = None) -> list:
    """Per suite with corruption results, top-1 against severity per backbone (the mean over corruptions and
    seeds; severity 0 is the clean accuracy), as ``vbench plot`` draws curves: ``<suite>_acc_vs_severity``."""
    try:
        sections = robustness_sections(store, suite)
    except VbenchError:
        return []
    runs = {run.id: run for run in store.list_runs(status="done", task="classification")}
    evaluations = store.evaluations(KIND, list(runs))
    made = []
    for section in (s for s in sections if s.key.endswith("/robustness")):
        curves = []
        for record in section.records:
            per_severity: dict[int, list[float]] = {}
            for evaluation in evaluations:
                run = runs[evaluation.run_id]
                if (run.suite, run.backbone, run.recipe_hash) == (section.suite, record["backbone"], record["recipe_hash"]):
                    per_severity.setdefault(int(evaluation.condition.split("/")[1]), []).append(evaluation.metrics["top1"])
            severities = sorted(per_severity)
            curves.append(Curve(f"{record['model']} (n={record['n']})", [0, *severities],
                                [record["clean_accuracy"], *(sum(per_severity[s]) / len(per_severity[s]) for s in severities)]))
        made.append(curve_chart(section.suite, curves, "acc", "severity", "top-1 accuracy (%), mean over corruptions"))
    return made


def _table_names(groups: list) -> dict[str, str]:
    """Each backbone's name in the paper table its rows mirror."""
    return dict(zip((g.backbone for g in groups), table_names(groups[0].dataset, [(g.paper_names, g.backbone) for g in groups])))
