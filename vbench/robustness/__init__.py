"""Robustness to the common corruptions of Hendrycks & Dietterich (ICLR 2019): corrupted test splits
(released files or generated ones) and the CE / mCE / relative mCE metrics.

Wiring (``vbench robustness``): for each finished run, load the clean test split, then per corruption
and severity ``load_corrupted(...)`` and evaluate the final weights on it; keep the accuracy per
(run, corruption, severity). ``vbench report --robustness``: ``robustness_summary`` and
``corruption_errors`` over those rows with the clean accuracies of the same runs.
"""

from vbench.robustness.corruptions import (
    CORRUPTIONS,
    PARAMETERS,
    SEVERITIES,
    corrupt,
    parameter_set_for,
    parse_corruptions,
    parse_severities,
)
from vbench.robustness.datasets import (
    CorruptedSplit,
    corrupted_split,
    load_corrupted,
    load_released,
    split_fingerprint,
)
from vbench.robustness.metrics import accuracy_table, corruption_errors, robustness_summary

__all__ = [
    "CORRUPTIONS",
    "PARAMETERS",
    "SEVERITIES",
    "CorruptedSplit",
    "accuracy_table",
    "corrupt",
    "corrupted_split",
    "corruption_errors",
    "load_corrupted",
    "load_released",
    "parameter_set_for",
    "parse_corruptions",
    "parse_severities",
    "robustness_summary",
    "split_fingerprint",
]
