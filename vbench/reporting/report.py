"""Paper-style result tables from the run store, one section per table.

Classification, per suite: ``Model | Acc | n | # Params | Flops | Epochs | Recipe`` as in Tables 1-3,
the accuracy the mean +- std over seeds, every LKCA row with its gain over its ViT partner ("<P>-LKCA"
against "<P>") when both were trained with the same recipe, data and precision (otherwise the cell
says why there is no gain); the multi-dataset pivot of Table 4 (CIFAR-10, CIFAR-100, SVHN).
Segmentation: the Tables 6-7 layout, one row per (backbone, head, evaluated iteration). Under every
table, notes name where each recipe departs from the paper's and which data each row was trained on.
With ``compare_paper`` the published numbers sit beside the measured ones. ``vbench.reporting.render`` turns a
report into one document of any format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from vbench.recipes import recipe_differences
from vbench.reporting.numbers import fmt, millions, params_text, signed
from vbench.reporting.paper import (
    display_name,
    lkca_partner_names,
    mirrored_table,
    paper_lookup,
    paper_order,
    paper_segmentation_rows,
    table_names,
)
from vbench.reporting.results import ResultGroup, finished_results, no_runs_error
from vbench.reporting.run_details import flops_text
from vbench.reporting.stats import mean_interval, seed_difference
from vbench.suites import paper_recipe

TABLE4_DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN"}
DATASET_TITLES = {**TABLE4_DATASETS, "tiny-imagenet": "Tiny-ImageNet", "ade20k": "ADE20K", "imagenet": "ImageNet"}
HEAD_NAMES = {"upernet": "UPerNet", "fpn": "FPN"}
CLASSIFICATION_NOTE = (
    "Acc: top-1 (%) on the test split, mean ± std over n seeds; (+x.xx): gain of an LKCA model over its ViT "
    "partner trained with the same recipe and data; # Params in M; Flops in M, fvcore multiply-accumulates (the "
    "paper's counter leaves out the attention matmuls, so its Flops are lower); Recipe: the recipe's hash.")
SEGMENTATION_NOTE = (
    "aAcc/mIoU: percent on the validation split (mmseg's definitions), mean over n seeds; top-10 mIoU: the mean IoU "
    "of the 10 classes with the highest IoU; # Params: the whole segmentor, auxiliary head included; Flops: fvcore "
    "multiply-accumulates of one image at the training crop.")
TOP10 = "top-10 mIoU"


@dataclass
class ReportTable:
    key: str
    task: str
    title: str
    records: list[dict]  # numbers, for machines (csv, json)
    display: pd.DataFrame  # text cells, for people (markdown, latex, html)
    notes: list[str] = field(default_factory=list)
    suite: str | None = None
    pivot: bool = False  # a view of other sections' rows (Table 4)


@dataclass
class Report:
    sections: list[ReportTable]
    notes: list[str]
    compare_paper: bool


def build_report(store, suite: str | None = None, backbones: Iterable[str] | None = None,
                 compare_paper: bool = False, eval_only: bool = False) -> Report:
    results = finished_results(store, suite=suite, backbones=backbones, eval_only=eval_only)
    if not results.groups:
        raise no_runs_error(store, suite, backbones)
    sections: list[ReportTable] = []
    classification = [g for g in results.groups if g.task == "classification"]
    for suite_name in sorted({g.suite for g in classification}):
        suite_groups = [g for g in classification if g.suite == suite_name]
        make = imagenet_section if suite_groups[0].dataset in IMAGENET_DATASETS else classification_section
        sections.append(make(suite_groups, compare_paper))
    if len({g.dataset for g in classification if g.dataset in TABLE4_DATASETS}) >= 2:
        sections.append(table4_section(classification, compare_paper))
    segmentation = [g for g in results.groups if g.task == "segmentation"]
    for suite_name in sorted({g.suite for g in segmentation}):
        sections.append(segmentation_section(store, [g for g in segmentation if g.suite == suite_name], compare_paper))
    notes = []
    if results.hidden:
        runs = "1 finished run" if results.hidden == 1 else f"{results.hidden} finished runs"
        notes.append(f"{runs} of other recipes, data or precisions are not shown "
                     "(only runs of one experiment are averaged; `vbench runs` lists them).")
    if any(g.precision != "fp32" for g in results.groups):
        notes.append("Runs at bf16/fp16 are reported apart from fp32 runs; the paper's runs were fp32.")
    return Report(sections, notes, compare_paper)


def partner_of(group: ResultGroup, groups: list[ResultGroup]) -> ResultGroup | None:
    wanted = {name.lower() for name in lkca_partner_names(group.paper_names, group.backbone)}
    for other in groups:
        if other is not group and wanted & ({n.lower() for n in other.paper_names} | {other.backbone.lower()}):
            return other
    return None


# --- numbers and text ------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float | None]:
    series = pd.Series(values, dtype=float)
    return float(series.mean()), float(series.std(ddof=1)) if len(series) > 1 else None


def recipe_notes(groups: list[ResultGroup], reference: str = "the paper's") -> list[str]:
    """One line per recipe and per data set the rows were trained with; ``reference`` names whose recipe the
    recipes are compared with."""
    notes = []
    for recipe_hash in dict.fromkeys(g.recipe_hash for g in groups):
        group = next(g for g in groups if g.recipe_hash == recipe_hash)
        differences = recipe_differences(group.recipe, paper_recipe(group.task, group.dataset))
        steps = f"{group.steps} {group.step_unit}{'' if group.steps == 1 else 's'}"
        if "augment_impl" in group.recipe:
            steps += f", augment_impl {group.recipe['augment_impl']}"
        text = f"{reference} recipe" if not differences else f"differs from {reference}: " + ", ".join(differences)
        notes.append(f"Recipe {recipe_hash[:8]} ({steps}): {text}.")
    for data_id in dict.fromkeys(g.data_id for g in groups):
        group = next(g for g in groups if g.data_id == data_id)
        data = group.data
        if data_id is None:
            notes.append("Data unknown: these runs were recorded before vbench stored the data's identity.")
            continue
        sizes = data.get("sizes") or {}
        limit = f", --limit {data['limit']}" if data.get("limit") else ""
        where = f" from {data['root']}" if data.get("root") else ""
        notes.append(f"Data {data_id[:8]}: {sizes.get('train', '?')} train / {sizes.get('test', '?')} "
                     f"test images{where}{limit}.")
    for precision in dict.fromkeys(g.precision for g in groups if g.precision != "fp32"):
        names = ", ".join(g.backbone for g in groups if g.precision == precision)
        notes.append(f"Precision {precision}: {names} trained with {precision} autocast (the paper's runs were fp32).")
    return notes


def mfu_notes(groups: list[ResultGroup]) -> list[str]:
    """One line: each backbone's training FLOP/s and MFU (``vbench.engine.mfu``), the mean over its seeds that
    recorded them; nothing when no run did (runs from before vbench measured it)."""
    parts = []
    for group in groups:
        settings = [run.settings or {} for run in group.runs if (run.settings or {}).get("mfu") is not None]
        if settings:
            achieved = sum(s["model_flops_per_s"] for s in settings) / len(settings)
            share = sum(s["mfu"] for s in settings) / len(settings)
            parts.append(f"{group.backbone} {flops_text(achieved)}, MFU {100 * share:.1f}% ({group.precision})")
    if not parts:
        return []
    return ["Training FLOP/s and MFU (counted MACs x 2 FLOPs x 3 for forward and backward x training images/s, "
            "against the matmul peak probed on the run's machine at its precision; mean over seeds): "
            + "; ".join(parts) + "."]


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _paper_recipe_flag(group: ResultGroup) -> bool:
    return not recipe_differences(group.recipe, paper_recipe(group.task, group.dataset))


# --- classification --------------------------------------------------------------------------------
def classification_records(groups: list[ResultGroup], compare_paper: bool) -> list[dict]:
    """One record per backbone of one suite, numeric, in paper order, with the LKCA-over-ViT gains."""
    dataset = groups[0].dataset if groups else None
    table = mirrored_table(dataset, [g.paper_names for g in groups])
    names = table_names(dataset, [(g.paper_names, g.backbone) for g in groups])
    records = []
    for group, name in zip(groups, names):
        if names.count(name) > 1:
            name = f"{name} ({group.backbone})"
        accuracy = list(group.values("top1").values())
        acc_mean, acc_std = mean_std(accuracy)
        top5 = list(group.values("top5").values())
        partner = partner_of(group, groups)
        why_not = group.same_experiment(partner) if partner else None
        partner_mean = mean_std(list(partner.values("top1").values()))[0] if partner and not why_not else None
        gain_test = seed_difference(group.values("top1"), partner.values("top1")) if partner_mean is not None else None
        record = {
            "task": group.task, "suite": group.suite, "dataset": group.dataset, "model": name, "backbone": group.backbone,
            "family": group.family, "n": group.n, "seeds": group.seeds, "acc_mean": acc_mean, "acc_std": acc_std,
            "gain": acc_mean - partner_mean if partner_mean is not None else None,
            "gain_note": f"no gain: {why_not} from {partner.backbone}'s" if why_not else None,
            "partner": partner.backbone if partner else None,
            **_gain_test_fields(gain_test),
            "top5_mean": mean_std(top5)[0] if top5 else None,
            "params_m": millions(group.params), "flops_m": millions(group.flops),
            "flops_paper_counter_m": millions(group.counts.get("flops_paper_counter")),
            "epochs": group.steps, "recipe_hash": group.recipe_hash, "augment_impl": group.recipe.get("augment_impl"),
            "data_id": group.data_id, "precision": group.precision, "images_per_s": group.images_per_s,
            "run_ids": [run.id for run in group.runs],
        }
        if compare_paper:
            paper = paper_lookup(group.dataset, name)
            interval = mean_interval(accuracy)
            record.update({
                "paper_acc": paper["acc"] if paper else None,
                "acc_diff": acc_mean - paper["acc"] if paper else None,
                "paper_in_ci": interval.contains(paper["acc"]) if paper and interval else None,
                "acc_ci_low": interval.low if interval else None, "acc_ci_high": interval.high if interval else None,
                "paper_params_m": paper["params_m"] if paper else None,
                "paper_flops_m": paper["flops_m"] if paper else None,
                "paper_recipe": _paper_recipe_flag(group),
            })
        records.append(record)
    records.sort(key=lambda r: paper_order(r["dataset"], r["model"], r["backbone"], table))
    return records


def _gain_test_fields(test) -> dict:
    if test is None:
        return {"gain_test": None, "gain_ci_low": None, "gain_ci_high": None, "gain_p": None}
    return {"gain_test": test.method, "gain_ci_low": test.interval.low if test.interval else None,
            "gain_ci_high": test.interval.high if test.interval else None, "gain_p": test.p_value}


def _gain_ci_text(record: dict) -> str:
    if record["gain_ci_low"] is None:
        return "-"
    return f"[{record['gain_ci_low']:+.2f}, {record['gain_ci_high']:+.2f}], p={_p(record['gain_p'])}"


def _p(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _seed_notes(records: list[dict]) -> list[str]:
    """What the seed counts allow: no interval from one seed, little power under three."""
    gains = [r for r in records if r["gain"] is not None]
    notes = []
    if any(r["gain_test"] is None for r in gains):
        notes.append("Gains from a single seed on a side carry no interval: one seed allows none "
                     "(`vbench compare` still tests them on the per-image predictions).")
    if any(r["gain_test"] is not None and min(r["n"], _partner_n(r, records)) < 3 for r in gains):
        notes.append("Some gains rest on fewer than 3 seeds a side: their t intervals are wide and their tests weak.")
    return notes


def _partner_n(record: dict, records: list[dict]) -> int:
    return next((r["n"] for r in records if r["backbone"] == record["partner"]), 0)


def _acc_text(record: dict) -> str:
    text = fmt(record["acc_mean"])
    if record["acc_std"] is not None:
        text += f" ± {record['acc_std']:.2f}"
    if record["gain"] is not None:
        text += f" ({record['gain']:+.2f})"
    elif record.get("gain_note"):
        text += f" ({record['gain_note']})"
    return text


def classification_section(groups: list[ResultGroup], compare_paper: bool) -> ReportTable:
    records = classification_records(groups, compare_paper)
    with_intervals = any(r["gain_test"] for r in records)
    rows = []
    for record in records:
        row = {"Model": record["model"], "Acc": _acc_text(record), "n": str(record["n"])}
        if with_intervals:
            row["Gain 95% CI, p"] = _gain_ci_text(record)
        if compare_paper:
            row.update({"Paper Acc": fmt(record["paper_acc"]), "Δ Acc": signed(record["acc_diff"]),
                        "Paper in 95% CI": _yes_no(record["paper_in_ci"])})
        row["# Params"] = params_text(record["params_m"])
        if compare_paper:
            row["Paper # Params"] = fmt(record["paper_params_m"])
        row["Flops"] = fmt(record["flops_m"])
        if compare_paper:
            row["Flops (paper's counter)"] = fmt(record["flops_paper_counter_m"])
            row["Paper Flops"] = fmt(record["paper_flops_m"])
        row.update({"Epochs": str(record["epochs"]), "Recipe": record["recipe_hash"][:8]})
        if compare_paper:
            row["Paper recipe"] = "yes" if record["paper_recipe"] else "no"
        rows.append(row)
    first = groups[0]
    notes = recipe_notes(groups) + _seed_notes(records) + mfu_notes(groups) + [CLASSIFICATION_NOTE]
    if compare_paper:
        notes.append("Paper in 95% CI: whether the published accuracy lies inside the t interval of our mean (needs "
                     "2 seeds); Paper Flops are the paper's counter, set beside ours of the same counter.")
    if compare_paper and not all(r["paper_recipe"] for r in records):
        notes.insert(0, "Rows with Paper recipe 'no' were not trained with the paper's recipe: their accuracy is "
                        "not comparable with the published one.")
    return ReportTable(first.suite, "classification", _suite_title(first.suite, first.dataset), records,
                   pd.DataFrame(rows), notes, suite=first.suite)


# --- ImageNet: the table compact backbones are judged by (DeiT, MobileViT, timm's results-imagenet.csv) --------------
IMAGENET_DATASETS = ("imagenet",)
IMAGENET_KEY = "imagenet:"  # the key prefix of ImageNet sections (the leaderboard gives them a page of their own)
IMAGENET_NOTE = ("Top-1 / Top-5: accuracy (%) on the ImageNet validation split (timm's protocol: resize to img_size / "
                 "crop_pct, centre crop), mean ± std over n seeds; # Params in M; GFLOPs: fvcore multiply-accumulates "
                 "of one image at the input size; img/s: training images per second, measured at that size (mean over "
                 "seeds).")


def imagenet_section(groups: list[ResultGroup], compare_paper: bool) -> ReportTable:
    """An ImageNet suite: top-1 and top-5, params, FLOPs and throughput at the input size (224)."""
    records = classification_records(groups, compare_paper)
    sizes = {g.backbone: g.runs[0].img_size for g in groups}
    rows = []
    for record in records:
        record["img_size"] = sizes[record["backbone"]]
        top1 = fmt(record["acc_mean"]) + (f" ± {record['acc_std']:.2f}" if record["acc_std"] is not None else "")
        rows.append({"Model": record["model"], "Top-1": top1, "Top-5": fmt(record["top5_mean"]), "n": str(record["n"]),
                     "# Params": params_text(record["params_m"]),
                     "GFLOPs": fmt(record["flops_m"] / 1e3 if record["flops_m"] is not None else None, 3),
                     "img/s": fmt(record["images_per_s"], 0), "Input": str(record["img_size"]),
                     "Epochs": str(record["epochs"]), "Recipe": record["recipe_hash"][:8]})
    first = groups[0]
    notes = [*recipe_notes(groups, reference="DeiT's (the imagenet suite's)"), IMAGENET_NOTE]
    return ReportTable(IMAGENET_KEY + first.suite, "classification", _suite_title(first.suite, first.dataset), records,
                       pd.DataFrame(rows), notes, suite=first.suite)


def table4_section(groups: list[ResultGroup], compare_paper: bool) -> ReportTable:
    """The Table 4 pivot: one row per backbone, one accuracy column per CIFAR-10/CIFAR-100/SVHN suite."""
    columns = []
    for dataset, title in TABLE4_DATASETS.items():
        suites = sorted({g.suite for g in groups if g.dataset == dataset})
        columns += [(suite, title if len(suites) == 1 else f"{title} ({suite})") for suite in suites]
    by_backbone: dict[str, dict] = {}
    for suite, title in columns:
        for group in (g for g in groups if g.suite == suite):
            name = display_name(group.paper_names, group.dataset, group.backbone, tables=[4])
            record = by_backbone.setdefault(group.backbone, {
                "task": "classification", "model": name, "backbone": group.backbone,
                "params_m": millions(group.params), "flops_m": millions(group.flops)})
            acc_mean, acc_std = mean_std(list(group.values("top1").values()))
            cell = {"n": group.n, "acc_mean": acc_mean, "acc_std": acc_std, "recipe_hash": group.recipe_hash}
            if compare_paper:
                paper = paper_lookup(group.dataset, name)
                cell.update(paper_acc=paper["acc"] if paper else None,
                            acc_diff=acc_mean - paper["acc"] if paper else None)
            record[title] = cell
    records = sorted(by_backbone.values(), key=lambda r: paper_order(None, r["model"], r["backbone"], 4))
    rows = []
    for record in records:
        row = {"Model": record["model"]}
        for _, title in columns:
            cell = record.get(title)
            text = "-" if cell is None else fmt(cell["acc_mean"]) + (
                f" ± {cell['acc_std']:.2f}" if cell["acc_std"] is not None else "") + f" (n={cell['n']})"
            row[title] = text
            if compare_paper:
                row[f"{title} paper"] = fmt(cell["paper_acc"]) if cell else "-"
                row[f"{title} Δ"] = signed(cell["acc_diff"]) if cell else "-"
        row["# Params"] = params_text(record["params_m"])
        row["Flops"] = fmt(record["flops_m"])
        rows.append(row)
    notes = ["Each column is the suite's own table above; see its notes for the recipe and data of each row."]
    return ReportTable("table4", "classification", "CIFAR-10 / CIFAR-100 / SVHN (Table 4)", records, pd.DataFrame(rows),
                   notes, pivot=True)


def _suite_title(suite: str, dataset: str | None) -> str:
    title = DATASET_TITLES.get(dataset or "", dataset)
    return f"{suite} ({title})" if title and title != suite else suite


# --- segmentation ----------------------------------------------------------------------------------
def paper_style(count: float | None, unit: float, names: tuple[str, str]) -> str:
    """``count`` in ``unit`` with 2 decimals, or in the next unit (x1000) with 3 decimals from 100 up."""
    if count is None or pd.isna(count):
        return "-"
    value = count / unit
    return f"{value / 1000:.3f}{names[1]}" if value >= 100 else f"{value:.2f}{names[0]}"


def seg_params_text(count) -> str:
    return paper_style(count, 1e6, ("M", "G"))


def seg_flops_text(count) -> str:
    return paper_style(count, 1e9, ("G", "T"))


def _paper_match(paper: pd.DataFrame, names: Iterable[str], iteration: int, head: str):
    keys = {name.lower() for name in names}
    found = paper[paper["model"].str.lower().isin(keys) & (paper["iterations"] == iteration)
                  & (paper["head"].str.lower() == HEAD_NAMES.get(head, head).lower())]
    return None if found.empty else found.iloc[0]


def segmentation_records(store, groups: list[ResultGroup], compare_paper: bool) -> list[dict]:
    """One record per (backbone, head, evaluated iteration), the metrics averaged over the group's seeds."""
    steps = store.steps_of([run.id for g in groups for run in g.runs])
    paper = paper_segmentation_rows() if compare_paper else None
    records = []
    for group in groups:
        per_iteration: dict[int, list[dict]] = {}
        for run in group.runs:
            for step in steps[run.id]:
                if "mIoU" in step.metrics:
                    per_iteration.setdefault(step.step, []).append(step.metrics)
        head = group.recipe.get("head", "upernet")
        name = group.paper_names[0] if group.paper_names else group.backbone
        for iteration, rows in sorted(per_iteration.items()):
            record = {"task": "segmentation", "suite": group.suite, "dataset": group.dataset, "model": name,
                      "backbone": group.backbone, "head": head, "iteration": iteration, "n": len(rows),
                      "seeds": group.seeds, "params_m": millions(group.params), "flops_g": (group.flops or 0) / 1e9 or None,
                      "iterations": group.steps, "recipe_hash": group.recipe_hash, "data_id": group.data_id,
                      "precision": group.precision, "family": group.family, "run_ids": [run.id for run in group.runs]}
            for metric in ("aAcc", "mIoU", "mAcc", "top10_mIoU"):
                values = [r[metric] for r in rows if r.get(metric) is not None]
                record[metric] = sum(values) / len(values) if values else None
            record[TOP10] = record.pop("top10_mIoU")
            if paper is not None:
                match = _paper_match(paper, [*group.paper_names, group.backbone], iteration, head)
                record.update({"paper_aAcc": _number(match, "aAcc"), "paper_mIoU": _number(match, "mIoU"),
                               "paper_params": match["params"] if match is not None else None,
                               "paper_flops": match["flops"] if match is not None else None,
                               "paper_recipe": _paper_recipe_flag(group)})
            records.append(record)
    records.sort(key=lambda r: (r["iteration"], r["head"], r["model"]))
    return records


def _number(match, key: str) -> float | None:
    return None if match is None or pd.isna(match[key]) else float(match[key])


def segmentation_section(store, groups: list[ResultGroup], compare_paper: bool) -> ReportTable:
    records = segmentation_records(store, groups, compare_paper)
    rows = []
    for record in records:
        row = {"Backbone": record["model"], "Iteration": str(record["iteration"]),
               "Algorithm": HEAD_NAMES.get(record["head"], record["head"]), "aAcc(%)": fmt(record["aAcc"]),
               "mIoU(%)": fmt(record["mIoU"]), "top-10 mIoU(%)": fmt(record[TOP10]), "n": str(record["n"]),
               "# Params": seg_params_text(record["params_m"] * 1e6 if record["params_m"] else None),
               "Flops": seg_flops_text(record["flops_g"] * 1e9 if record["flops_g"] else None),
               "Recipe": record["recipe_hash"][:8]}
        if compare_paper:
            row.update({"Paper aAcc(%)": fmt(record["paper_aAcc"]), "Paper mIoU(%)": fmt(record["paper_mIoU"]),
                        "Δ mIoU (top-10)": signed(record[TOP10] - record["paper_mIoU"]
                                                  if record[TOP10] is not None and record["paper_mIoU"] is not None
                                                  else None),
                        "Paper # Params": record["paper_params"] or "-", "Paper Flops": record["paper_flops"] or "-",
                        "Paper recipe": "yes" if record["paper_recipe"] else "no"})
        rows.append(row)
    first = groups[0]
    title = f"{first.suite} ({DATASET_TITLES.get(first.dataset or '', first.dataset)}, Tables 6-7)"
    notes = recipe_notes(groups) + mfu_notes(groups) + [SEGMENTATION_NOTE]
    if compare_paper:
        notes.append("The paper reports \"mIoU in 10 high-score categories\" (its section 4.2): its mIoU is set "
                     "against our top-10 mIoU, the mean IoU of the 10 classes with the highest IoU.")
    return ReportTable(first.suite, "segmentation", title, records, pd.DataFrame(rows), notes, suite=first.suite)
