"""Corruption robustness metrics with the definitions of Hendrycks & Dietterich (ICLR 2019).

With E the top-1 error (100 - accuracy, in %) of backbone f on corruption c at severity s:
- corruption error        CE_c^f          = sum_s E_{s,c}^f / sum_s E_{s,c}^ref
- mean corruption error   mCE^f           = mean_c CE_c^f
- relative CE             relative CE_c^f = sum_s (E_{s,c}^f - E_clean^f) / sum_s (E_{s,c}^ref - E_clean^ref)
- relative mCE                            = mean_c relative CE_c^f
CE and relative CE are given in percent (the reference backbone scores 100), as in the paper's tables.
The sums run over the severities evaluated for f, which the reference must also have. Several runs
(seeds) of one backbone are averaged per (corruption, severity) before the errors are formed.

Nothing here is in pandas or scipy as such, so the few sums are written out.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from vbench.errors import VbenchError
from vbench.robustness.corruptions import CORRUPTIONS

REQUIRED_COLUMNS = ("backbone", "corruption", "severity", "accuracy")


def _mean_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise VbenchError(f"corruption results lack the column(s) {', '.join(missing)}")
    return frame.groupby(["backbone", "corruption", "severity"], as_index=False)["accuracy"].mean()


def _clean_accuracy(clean: Mapping[str, float] | pd.DataFrame) -> dict[str, float]:
    """Clean accuracy per backbone, from a mapping or a frame (backbone, accuracy), runs averaged."""
    if isinstance(clean, pd.DataFrame):
        return clean.groupby("backbone")["accuracy"].mean().to_dict()
    return {name: float(value) for name, value in clean.items()}


def corruption_errors(
    frame: pd.DataFrame, clean: Mapping[str, float] | pd.DataFrame, reference: str
) -> pd.DataFrame:
    """One row per (backbone, corruption): accuracy (mean over severities), error_sum, ce, relative_ce."""
    accuracy = _mean_accuracy(frame)
    clean_accuracy = _clean_accuracy(clean)
    backbones = sorted(accuracy["backbone"].unique())
    if reference not in backbones:
        raise VbenchError(
            f"reference backbone {reference!r} has no corruption results; choose one of: {', '.join(backbones) or 'none'}"
        )
    for name in backbones:
        if name not in clean_accuracy:
            raise VbenchError(f"backbone {name!r} has corruption results but no clean accuracy")
    error = accuracy.assign(error=100.0 - accuracy["accuracy"])
    reference_error = error[error["backbone"] == reference].set_index(["corruption", "severity"])["error"]

    rows = []
    for (name, corruption), group in error.groupby(["backbone", "corruption"], sort=True):
        keys = [(corruption, severity) for severity in group["severity"]]
        missing = [severity for key, severity in zip(keys, group["severity"]) if key not in reference_error.index]
        if missing:
            raise VbenchError(
                f"reference backbone {reference!r} has no result for {corruption} at severity "
                f"{', '.join(map(str, missing))}, which {name!r} has; evaluate it at the same severities"
            )
        reference_errors = reference_error.loc[keys].to_numpy()
        errors = group["error"].to_numpy()
        clean_error, reference_clean_error = 100.0 - clean_accuracy[name], 100.0 - clean_accuracy[reference]
        rows.append({
            "backbone": name,
            "corruption": corruption,
            "severities": len(errors),
            "accuracy": float(group["accuracy"].mean()),
            "error_sum": float(errors.sum()),
            "ce": 100.0 * _ratio(errors.sum(), reference_errors.sum()),
            "relative_ce": 100.0 * _ratio((errors - clean_error).sum(), (reference_errors - reference_clean_error).sum()),
        })
    return pd.DataFrame(rows)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator != 0 else float("nan")


def robustness_summary(
    frame: pd.DataFrame, clean: Mapping[str, float] | pd.DataFrame, reference: str
) -> pd.DataFrame:
    """One row per backbone: clean_accuracy, mean_corruption_accuracy (over every corruption and
    severity evaluated), mce, relative_mce and the number of corruptions they average."""
    per_corruption = corruption_errors(frame, clean, reference)
    accuracy = _mean_accuracy(frame)
    clean_accuracy = _clean_accuracy(clean)
    rows = []
    for name, group in per_corruption.groupby("backbone", sort=True):
        rows.append({
            "backbone": name,
            "reference": reference,
            "clean_accuracy": clean_accuracy[name],
            "mean_corruption_accuracy": float(accuracy.loc[accuracy["backbone"] == name, "accuracy"].mean()),
            "mce": float(np.mean(group["ce"])),
            "relative_mce": float(np.mean(group["relative_ce"])),
            "corruptions": len(group),
        })
    return pd.DataFrame(rows)


def accuracy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per corruption (mean over severities and runs): one row per backbone, one column per corruption."""
    accuracy = _mean_accuracy(frame)
    table = accuracy.groupby(["backbone", "corruption"])["accuracy"].mean().unstack("corruption")
    ordered = [name for name in CORRUPTIONS if name in table.columns]
    return table[ordered + [name for name in table.columns if name not in ordered]]
