"""Paper-style result tables from the run store.

Per suite: ``Model | Acc | n | # Params | Flops`` as in Tables 1-3, the accuracy the mean +- std
over seeds, every LKCA row with its gain over its ViT partner ("<P>-LKCA" against "<P>"); the
multi-dataset pivot of Table 4 (CIFAR-10, CIFAR-100, SVHN); with ``compare_paper`` the published
numbers beside the measured ones. pandas and tabulate render the text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from vbench.errors import VbenchError
from vbench.paper import paper_tables

FORMATS = ("markdown", "latex", "csv", "html", "json")
TABLE4_DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN"}
DATASET_TITLES = {**TABLE4_DATASETS, "tiny-imagenet": "Tiny-ImageNet", "ade20k": "ADE20K"}
LKCA_SUFFIX = "-LKCA"
UNITS_NOTE = (
    "Acc: top-1 (%) on the test split, mean ± std over n seeds; (+x.xx): gain of an LKCA model over its ViT "
    "partner; # Params in M; Flops in M, fvcore multiply-accumulates (the paper's counter leaves out the "
    "attention matmuls, so its Flops are lower)."
)


# --- the paper's numbers ---------------------------------------------------------------------------
def paper_accuracy_rows() -> pd.DataFrame:
    """Top-1 rows of the classification tables (1-5), in file order, with numeric params/FLOPs."""
    table = paper_tables()
    rows = table[(table["metric"] == "top1") & (table["table"].astype(int) <= 5)].copy()
    rows["order"] = range(len(rows))
    rows["params"] = pd.to_numeric(rows["params"], errors="coerce")
    rows["flops"] = pd.to_numeric(rows["flops"], errors="coerce")
    return rows


def paper_lookup(dataset: str | None, model: str) -> dict | None:
    rows = paper_accuracy_rows()
    match = rows[(rows["dataset"] == dataset) & (rows["model"] == model)]
    if match.empty:
        return None
    row = match.iloc[0]
    return {"acc": float(row["value"]), "params_m": float(row["params"]), "flops_m": float(row["flops"]),
            "table": int(row["table"])}


def _order_key(dataset: str | None, model: str, backbone: str) -> tuple:
    """Paper order of the dataset's tables (Tables 1-3 rows first, then 4/5), other paper models, then the rest."""
    rows = paper_accuracy_rows()
    in_dataset = rows[(rows["dataset"] == dataset) & (rows["model"] == model)]
    if not in_dataset.empty:
        return (0, int(in_dataset["order"].min()), backbone)
    anywhere = rows[rows["model"] == model]
    if not anywhere.empty:
        return (1, int(anywhere["order"].min()), backbone)
    return (2, 0, backbone)


def display_name(paper_names: Iterable[str] | None, dataset: str | None, backbone: str,
                 tables: Iterable[int] | None = None) -> str:
    """The paper name a backbone goes by in ``dataset``'s table (earliest table first), else its first one."""
    names = list(paper_names or ())
    if not names:
        return backbone
    rows = paper_accuracy_rows()
    rows = rows[(rows["dataset"] == dataset) & rows["model"].isin(names)]
    if tables is not None:
        rows = rows[rows["table"].astype(int).isin(list(tables))]
    return str(rows.sort_values("order").iloc[0]["model"]) if not rows.empty else names[0]


def lkca_partner_names(paper_names: Iterable[str], backbone: str) -> set[str]:
    """Names of the ViT a LKCA model is paired with: "<P>-LKCA" pairs with "<P>" (and backbone "x-lkca" with "x")."""
    partners = {name[: -len(LKCA_SUFFIX)] for name in paper_names if name.upper().endswith(LKCA_SUFFIX)}
    if backbone.lower().endswith(LKCA_SUFFIX.lower()):
        partners.add(backbone[: -len(LKCA_SUFFIX)])
    return partners


# --- measured numbers ------------------------------------------------------------------------------
def done_runs_frame(store, suite: str | None = None, backbones: Iterable[str] | None = None) -> pd.DataFrame:
    """Finished classification runs, one per (suite, backbone, seed).

    When a (suite, backbone) was run under several recipes, only the recipe of its newest finished run
    counts (seeds of different recipes must not be averaged); of repeated runs of one seed, the newest.
    """
    runs = [run.as_dict() for run in store.list_runs(suite=suite, status="done", task="classification")]
    frame = pd.DataFrame(runs)
    if frame.empty:
        return frame
    if backbones:
        frame = frame[frame["backbone"].isin(list(backbones))]
    frame = frame[frame["top1"].notna()].sort_values("id")
    latest_hash = frame.groupby(["suite", "backbone"])["recipe_hash"].transform("last")
    frame = frame[frame["recipe_hash"] == latest_hash]
    return frame.drop_duplicates(["suite", "backbone", "seed"], keep="last")


@dataclass
class ModelResult:
    suite: str
    dataset: str | None
    backbone: str
    paper_names: tuple[str, ...]
    n: int
    acc_mean: float
    acc_std: float | None
    top5_mean: float | None
    params: int | None
    flops: int | None
    seeds: tuple[int, ...]
    augment_impl: str | None = None  # whose AutoAugment / Random Erasing the runs used (recipe key)


def recipe_augment_impl(recipe) -> str | None:
    """The ``augment_impl`` of a stored run's recipe: runs stored before the key existed ran torchvision's
    ops; None when the run stored no recipe."""
    return recipe.get("augment_impl", "torchvision") if isinstance(recipe, dict) else None


def aggregate(frame: pd.DataFrame) -> list[ModelResult]:
    results = []
    for (suite, backbone), group in frame.groupby(["suite", "backbone"], sort=False):
        accs = group["top1"].astype(float)
        top5 = group["top5"].dropna().astype(float)
        first = group.iloc[-1]
        names = first["paper_names"] if isinstance(first["paper_names"], list) else _registry_paper_names(backbone)
        results.append(ModelResult(
            suite=suite, dataset=first.get("dataset"), backbone=backbone, paper_names=tuple(names),
            n=len(accs), acc_mean=float(accs.mean()), acc_std=float(accs.std(ddof=1)) if len(accs) > 1 else None,
            top5_mean=float(top5.mean()) if len(top5) else None,
            params=_int_or_none(first.get("params")), flops=_int_or_none(first.get("flops")),
            seeds=tuple(int(s) for s in group["seed"]), augment_impl=recipe_augment_impl(first.get("recipe")),
        ))
    return results


def _int_or_none(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _registry_paper_names(backbone: str) -> list[str]:
    """Paper names of a run stored without them, from the registry when the backbone is still known."""
    from vbench import registry

    try:
        return list(registry.get_backbone(backbone).paper_names)
    except VbenchError:
        return []


# --- tables ----------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def _acc_text(result: ModelResult, gain: float | None) -> str:
    text = _fmt(result.acc_mean)
    if result.acc_std is not None:
        text += f" ± {result.acc_std:.2f}"
    if gain is not None:
        text += f" ({gain:+.2f})"
    return text


def suite_records(results: list[ModelResult], compare_paper: bool) -> list[dict]:
    """One record per model of one suite, numeric, in paper order, with the LKCA-over-ViT gains."""
    records = []
    for result in results:
        name = display_name(result.paper_names, result.dataset, result.backbone)
        records.append({"result": result, "model": name})
    _disambiguate(records)
    for record in records:
        result = record.pop("result")
        partner = _partner(result, results)
        paper = paper_lookup(result.dataset, record["model"]) if compare_paper else None
        record.update({
            "suite": result.suite, "dataset": result.dataset, "backbone": result.backbone,
            "n": result.n, "acc_mean": result.acc_mean, "acc_std": result.acc_std,
            "gain": result.acc_mean - partner.acc_mean if partner else None,
            "partner": partner.backbone if partner else None,
            "top5_mean": result.top5_mean,
            "params_m": result.params / 1e6 if result.params is not None else None,
            "flops_m": result.flops / 1e6 if result.flops is not None else None,
            "seeds": list(result.seeds),
            "augment_impl": result.augment_impl,
        })
        if compare_paper:
            record.update({
                "paper_acc": paper["acc"] if paper else None,
                "acc_diff": result.acc_mean - paper["acc"] if paper else None,
                "paper_params_m": paper["params_m"] if paper else None,
                "paper_flops_m": paper["flops_m"] if paper else None,
            })
    records.sort(key=lambda r: _order_key(r["dataset"], r["model"], r["backbone"]))
    return records


def _disambiguate(records: list[dict]) -> None:
    """Two backbones showing the same paper name get their backbone name added."""
    counts = pd.Series([r["model"] for r in records]).value_counts()
    for record in records:
        if counts[record["model"]] > 1:
            record["model"] = f"{record['model']} ({record['result'].backbone})"


def _partner(result: ModelResult, results: list[ModelResult]) -> ModelResult | None:
    wanted = {name.lower() for name in lkca_partner_names(result.paper_names, result.backbone)}
    if not wanted:
        return None
    for other in results:
        if other is result:
            continue
        names = {name.lower() for name in other.paper_names} | {other.backbone.lower()}
        if names & wanted:
            return other
    return None


def suite_display_frame(records: list[dict], compare_paper: bool) -> pd.DataFrame:
    rows = []
    for record in records:
        row = {"Model": record["model"], "Acc": _acc_text(_as_result(record), record["gain"]), "n": str(record["n"])}
        if compare_paper:
            row["Paper Acc"] = _fmt(record["paper_acc"])
            row["Δ Acc"] = _signed(record["acc_diff"])
        row["# Params"] = _fmt(record["params_m"])
        if compare_paper:
            row["Paper # Params"] = _fmt(record["paper_params_m"])
        row["Flops"] = _fmt(record["flops_m"])
        if compare_paper:
            row["Paper Flops"] = _fmt(record["paper_flops_m"])
        rows.append(row)
    return pd.DataFrame(rows)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _as_result(record: dict) -> ModelResult:
    return ModelResult(record["suite"], record["dataset"], record["backbone"], (), record["n"], record["acc_mean"],
                       record["acc_std"], None, None, None, ())


def table4_records(results: list[ModelResult], compare_paper: bool) -> tuple[list[dict], list[tuple[str, str]]]:
    """The Table 4 pivot: one row per backbone, one accuracy column per CIFAR-10/CIFAR-100/SVHN suite.

    Returns the records and the (suite, column title) pairs, in Table 4's column order.
    """
    columns = []
    for dataset, title in TABLE4_DATASETS.items():
        suites = sorted({r.suite for r in results if r.dataset == dataset})
        for suite in suites:
            columns.append((suite, title if len(suites) == 1 else f"{title} ({suite})"))
    by_backbone: dict[str, dict] = {}
    for suite, title in columns:
        for result in (r for r in results if r.suite == suite):
            name = display_name(result.paper_names, result.dataset, result.backbone, tables=[4])
            record = by_backbone.setdefault(result.backbone, {
                "model": name, "backbone": result.backbone,
                "params_m": result.params / 1e6 if result.params is not None else None,
                "flops_m": result.flops / 1e6 if result.flops is not None else None,
            })
            record[title] = {"n": result.n, "acc_mean": result.acc_mean, "acc_std": result.acc_std}
            if compare_paper:
                paper = paper_lookup(result.dataset, name)
                record[title]["paper_acc"] = paper["acc"] if paper else None
                record[title]["acc_diff"] = result.acc_mean - paper["acc"] if paper else None
    records = list(by_backbone.values())
    records.sort(key=lambda r: _table4_order(r["model"], r["backbone"]))
    return records, columns


def _table4_order(model: str, backbone: str) -> tuple:
    rows = paper_accuracy_rows()
    in_table4 = rows[(rows["table"].astype(int) == 4) & (rows["model"] == model)]
    if not in_table4.empty:
        return (0, int(in_table4["order"].min()), backbone)
    return (1,) + _order_key(None, model, backbone)[1:]


def table4_display_frame(records: list[dict], columns: list[tuple[str, str]], compare_paper: bool) -> pd.DataFrame:
    rows = []
    for record in records:
        row = {"Model": record["model"]}
        for _, title in columns:
            cell = record.get(title)
            if cell is None:
                row[title] = "-"
                if compare_paper:
                    row[f"{title} paper"] = row[f"{title} Δ"] = "-"
                continue
            text = _fmt(cell["acc_mean"]) + (f" ± {cell['acc_std']:.2f}" if cell["acc_std"] is not None else "")
            row[title] = f"{text} (n={cell['n']})"
            if compare_paper:
                row[f"{title} paper"] = _fmt(cell["paper_acc"])
                row[f"{title} Δ"] = _signed(cell["acc_diff"])
        row["# Params"] = _fmt(record["params_m"])
        row["Flops"] = _fmt(record["flops_m"])
        rows.append(row)
    return pd.DataFrame(rows)


# --- rendering -------------------------------------------------------------------------------------
@dataclass
class Report:
    suites: list[tuple[str, str | None, list[dict]]]  # (suite, dataset, records)
    table4: tuple[list[dict], list[tuple[str, str]]] | None
    compare_paper: bool


def build_report(store, suite: str | None = None, backbones: Iterable[str] | None = None,
                 compare_paper: bool = False) -> Report:
    frame = done_runs_frame(store, suite=suite, backbones=backbones)
    if frame.empty:
        where = f" for suite {suite!r}" if suite else ""
        picked = f" and backbones {', '.join(backbones)}" if backbones else ""
        raise VbenchError(f"no finished runs{where}{picked} in {store.url}; run `vbench run --suite ... --backbones ...` first")
    results = aggregate(frame)
    suites = []
    for suite_name in sorted({r.suite for r in results}):
        suite_results = [r for r in results if r.suite == suite_name]
        suites.append((suite_name, suite_results[0].dataset, suite_records(suite_results, compare_paper)))
    table4 = None
    if len({r.dataset for r in results if r.dataset in TABLE4_DATASETS}) >= 2:
        table4 = table4_records(results, compare_paper)
    return Report(suites=suites, table4=table4, compare_paper=compare_paper)


def _suite_title(suite: str, dataset: str | None) -> str:
    title = DATASET_TITLES.get(dataset or "", dataset)
    return f"{suite} ({title})" if title and title != suite else suite


def _augment_note(records: list[dict]) -> str:
    impls = sorted({record["augment_impl"] for record in records} - {None})
    return f", augment_impl {' + '.join(impls)}" if impls else ""


def _right_aligned(frame: pd.DataFrame) -> list[str]:
    return ["left" if column == "Model" else "right" for column in frame.columns]


def render(report: Report, fmt: str) -> str:
    if fmt not in FORMATS:
        raise VbenchError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return {"markdown": _markdown, "latex": _latex, "csv": _csv, "html": _html, "json": _json}[fmt](report)


def _sections(report: Report) -> list[tuple[str, pd.DataFrame]]:
    sections = [(_suite_title(suite, dataset) + _augment_note(records), suite_display_frame(records, report.compare_paper))
                for suite, dataset, records in report.suites]
    if report.table4 is not None:
        records, columns = report.table4
        sections.append(("CIFAR-10 / CIFAR-100 / SVHN (Table 4)", table4_display_frame(records, columns, report.compare_paper)))
    return sections


def _markdown(report: Report) -> str:
    parts = []
    for title, frame in _sections(report):
        parts.append(f"## {title}\n\n{frame.to_markdown(index=False, colalign=_right_aligned(frame), disable_numparse=True)}\n")
    parts.append(f"{UNITS_NOTE}\n")
    return "\n".join(parts)


def _latex(report: Report) -> str:
    parts = []
    for title, frame in _sections(report):
        column_format = "".join("l" if a == "left" else "r" for a in _right_aligned(frame))
        text = frame.to_latex(index=False, escape=True, column_format=column_format, caption=title)
        parts.append(text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$"))
    parts.append(f"% {UNITS_NOTE}\n")
    return "\n".join(parts)


def _html(report: Report) -> str:
    body = "\n".join(f"<h2>{title}</h2>\n{frame.to_html(index=False, border=0)}" for title, frame in _sections(report))
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vbench report</title></head><body>\n"
        f"{body}\n<p>{UNITS_NOTE}</p>\n</body></html>\n"
    )


def long_records(report: Report) -> list[dict]:
    """Every suite's rows as flat numeric records (CSV and JSON)."""
    rows = []
    for _, _, records in report.suites:
        for record in records:
            rows.append({key: value for key, value in record.items() if key != "seeds"} | {
                "seeds": " ".join(str(s) for s in record["seeds"])})
    return rows


CSV_COLUMNS = ["suite", "dataset", "model", "backbone", "n", "seeds", "acc_mean", "acc_std", "gain", "partner",
               "top5_mean", "params_m", "flops_m"]
PAPER_COLUMNS = ["paper_acc", "acc_diff", "paper_params_m", "paper_flops_m"]


def _csv(report: Report) -> str:
    columns = CSV_COLUMNS + (PAPER_COLUMNS if report.compare_paper else [])
    frame = pd.DataFrame(long_records(report), columns=columns)
    return frame.to_csv(index=False, float_format="%.4f")


def _json(report: Report) -> str:
    payload = {"suites": [], "table4": None, "note": UNITS_NOTE}
    for suite, dataset, records in report.suites:
        payload["suites"].append({"suite": suite, "dataset": dataset, "rows": records})
    if report.table4 is not None:
        records, columns = report.table4
        payload["table4"] = {"columns": [title for _, title in columns], "rows": records}
    return json.dumps(_rounded(payload), indent=2) + "\n"


def _rounded(value, digits: int = 6):
    """Plain JSON types, floats rounded so that 94.25 - 94.11 prints as 0.14."""
    if isinstance(value, dict):
        return {key: _rounded(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item, digits) for item in value]
    if hasattr(value, "item"):
        value = value.item()
    return round(value, digits) if isinstance(value, float) else value
