"""The paper's published numbers, shipped in ``vbench/reporting/published/`` (copied from the specification)."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

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
