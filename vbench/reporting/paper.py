"""The paper's published numbers, shipped in ``vbench/reporting/published/`` (copied from the specification)."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import pandas as pd

PAPER_DIR = Path(__file__).resolve().parent / "published"


@lru_cache(maxsize=None)
def reference_models():
    """Exact params and FLOP counts of the authors' models at 32/10, 64/10 and 64/200 (a DataFrame)."""
    # lazy: pandas, only when the published tables are read
    import pandas as pd

    return pd.read_csv(PAPER_DIR / "reference-models.csv")


@lru_cache(maxsize=None)
def paper_tables():
    """Every number published in Tables 1-7 (a DataFrame)."""
    # lazy: pandas, only when the published tables are read
    import pandas as pd

    return pd.read_csv(PAPER_DIR / "paper-tables.csv")


@lru_cache(maxsize=None)
def published_params_m() -> dict[str, float]:
    """Published # Params (M) by source name, read without pandas (``vbench list backbones`` is instant)."""
    with open(PAPER_DIR / "reference-models.csv", newline="", encoding="utf-8") as handle:
        return {row["source_name"]: float(row["paper_params_m"]) for row in csv.DictReader(handle)
                if row["paper_setting"] == "yes" and row["paper_params_m"]}


def reference_rows(spec):
    """Rows of ``reference-models.csv`` whose source name is the backbone's name or one of its aliases."""
    table = reference_models()
    names = {spec.name.lower(), *(alias.lower() for alias in spec.aliases)}
    return table[table["source_name"].str.lower().isin(names)]


def published_setting(spec) -> dict | None:
    """The published params (M) and FLOPs (M) of a backbone with the setting they were counted at."""
    rows = reference_rows(spec)
    rows = rows[rows["paper_setting"] == "yes"]
    if rows.empty:
        return None
    row = rows.iloc[0]
    return {
        "img_size": int(row["img_size"]),
        "num_classes": int(row["num_classes"]),
        "params_m": float(row["paper_params_m"]),
        "flops_m": float(row["paper_flops_m"]),
        "exact_params": int(row["params"]),
    }


# --- the tables' rows and names ---------------------------------------------------------------------
ABLATION_TABLES = (1, 2, 3)  # each LKCA model against its own ViT
BASELINE_TABLES = (4, 5)  # LKCA-T/B/L against the baselines of other families
LKCA_SUFFIX = "-LKCA"


@lru_cache(maxsize=None)  # read per row: a report of many backbones otherwise spends seconds here
def paper_accuracy_rows() -> pd.DataFrame:
    """Top-1 rows of the classification tables (1-5), in file order, with numeric params/FLOPs (shared: do
    not modify it)."""
    import pandas as pd  # lazy: pandas, only when the published tables are read

    table = paper_tables()
    rows = table[(table["metric"] == "top1") & (table["table"].astype(int) <= 5)].copy()
    rows["order"] = range(len(rows))
    rows["params"] = pd.to_numeric(rows["params"], errors="coerce")
    rows["flops"] = pd.to_numeric(rows["flops"], errors="coerce")
    return rows


@lru_cache(maxsize=None)
def paper_lookup(dataset: str | None, model: str) -> dict | None:
    rows = paper_accuracy_rows()
    match = rows[(rows["dataset"] == dataset) & (rows["model"] == model)]
    if match.empty:
        return None
    row = match.iloc[0]
    return {"acc": float(row["value"]), "params_m": float(row["params"]), "flops_m": float(row["flops"]),
            "table": int(row["table"])}


@lru_cache(maxsize=None)
def paper_order(dataset: str | None, model: str, backbone: str, table: int | None = None) -> tuple:
    """Rows in the paper's order: those of ``table`` (the one a report mirrors) first, in its order; then the other
    rows of the dataset's tables, other paper models, and the rest by backbone name."""
    rows = paper_accuracy_rows()
    if table is not None:
        in_table = rows[(rows["table"].astype(int) == table) & (rows["model"] == model)]
        if not in_table.empty:
            return (0, int(in_table["order"].min()), backbone)
    in_dataset = rows[(rows["dataset"] == dataset) & (rows["model"] == model)]
    if not in_dataset.empty:
        return (1, int(in_dataset["order"].min()), backbone)
    anywhere = rows[rows["model"] == model]
    if not anywhere.empty:
        return (2, int(anywhere["order"].min()), backbone)
    return (3, 0, backbone)


def display_name(paper_names: Iterable[str] | None, dataset: str | None, backbone: str,
                 tables: Iterable[int] | None = None) -> str:
    """The paper name a backbone goes by in ``dataset``'s table (earliest table first), else its first one."""
    return _display_name(tuple(paper_names or ()), dataset, backbone, None if tables is None else tuple(tables))


@lru_cache(maxsize=None)
def _display_name(names: tuple, dataset: str | None, backbone: str, tables: tuple | None) -> str:
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


def mirrored_table(dataset: str | None, row_names: Iterable[Iterable[str]]) -> int | None:
    """The paper table a suite's rows mirror: the dataset's baseline comparison (Table 4 or 5) when one of the
    rows is a baseline that its ablation table (1-3) lacks, else that ablation table; None for a dataset the
    paper has no table of. A row is given by its paper names."""
    rows = paper_accuracy_rows()
    rows = rows[rows["dataset"] == dataset]
    tables = {kind: sorted(int(t) for t in rows["table"].unique() if int(t) in numbers)
              for kind, numbers in (("ablation", ABLATION_TABLES), ("baseline", BASELINE_TABLES))}
    if not tables["ablation"]:
        return tables["baseline"][0] if tables["baseline"] else None
    in_ablation = set(rows[rows["table"].astype(int) == tables["ablation"][0]]["model"])
    in_baseline = set(rows[rows["table"].astype(int).isin(tables["baseline"])]["model"])
    baseline_rows = any(set(names) & in_baseline and not set(names) & in_ablation for names in row_names)
    return tables["baseline"][0] if baseline_rows and tables["baseline"] else tables["ablation"][0]


def paper_segmentation_rows() -> pd.DataFrame:
    """Tables 6-7 as one row per (model, iterations, head): aAcc, mIoU and the published size strings."""
    table = paper_tables()
    rows = table[table["dataset"] == "ade20k"]
    wide = rows.pivot_table(index=["table", "model", "iterations", "head", "params", "flops"], columns="metric",
                            values="value", aggfunc="first").reset_index()
    wide["iterations"] = wide["iterations"].astype(int)
    return wide


def table_names(dataset: str | None, rows: list[tuple[Iterable[str], str]]) -> list[str]:
    """The name each row ``(paper names, backbone)`` goes by in the table these rows mirror
    (``mirrored_table``): lkca-t is "ViT/1M-LKCA" beside its ViT (Tables 1-3) and "LKCA-T" beside the baselines
    (Tables 4-5)."""
    table = mirrored_table(dataset, [tuple(names or ()) for names, _ in rows])
    return [display_name(names, dataset, backbone, None if table is None else [table]) for names, backbone in rows]
