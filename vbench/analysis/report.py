"""``vbench report --erf / --shape-bias / --calibration`` and the charts of ``vbench erf`` and ``vbench plot``.

Every table is per suite, one row per backbone (and condition), over the seeds of the experiment the report shows
(``vbench.reporting.results`` groups: the newest recipe, data and precision of each backbone), the mean over those
seeds. The charts: the ERF heatmaps of a suite side by side, drawn as RepLKNet draws them, and shape bias against
the kernel size of the LKA, LSKA and LKCA families.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vbench.analysis.calibration import KIND as CALIBRATION
from vbench.analysis.erf import KIND as ERF
from vbench.analysis.erf import THRESHOLDS, scaled, threshold_key
from vbench.analysis.shape_bias import KIND as SHAPE_BIAS
from vbench.errors import VbenchError
from vbench.paths import atomic_path
from vbench.reporting.plot import DPI, EXTENSIONS, Chart
from vbench.reporting.report import ReportTable, display_name, fmt
from vbench.reporting.results import evaluations_by_run, finished_results

CORRUPTION = "corruption"  # the kind of vbench.robustness's rows (a package of the same layer: not imported)
KERNEL_FAMILIES = ("lka", "lska", "lkca")  # the large-kernel mixers of the kernel study
ERF_NOTE = ("ERF (RepLKNet's method): the absolute input gradient of the central point of the last feature map (its "
            "channels through a ReLU, summed), summed over the input channels and averaged over the first test "
            "images; log10(x + 1) scaled to a maximum of 1. t = x%: the share of the image (%) inside the smallest "
            "centred square holding more than x% of it; larger means a wider effective receptive field. Mean over "
            "the seeds; weights: the final ones (trained) or each run's initial ones (init).")
SHAPE_NOTE = ("Shape bias (Geirhos et al., ICLR 2019) = shape decisions / (shape + texture decisions) on cue-conflict "
              "images: top-1 = the shape's class is a shape decision, the texture's class a texture decision. Hybrid "
              "images: low frequencies (Gaussian blur of sigma px) of one test image plus the high frequencies of an "
              "image of another class (Oliva et al., SIGGRAPH 2006), counted only where the model is right on both "
              "source images; stimuli: model-vs-human's cue-conflict set. Mean over the seeds.")
CALIBRATION_NOTE = ("On the held-out half of the test split (a fixed, seeded half; the other half fits the "
                    "temperature T of temperature scaling, Guo et al., ICML 2017): ECE (%, 15 equal-width bins), NLL "
                    "(nats) and Brier score before and after scaling (TS). Mean over the seeds.")
SHIFT_NOTE = ("Under corruption (Ovadia et al., NeurIPS 2019): the same held-out images corrupted, the temperature the "
              "one fitted on the clean split; mean over the corruptions evaluated and the seeds.")


@dataclass
class Measured:
    """A result group with its runs' evaluations of one kind, by condition: ``{condition: [metrics, ...]}``."""

    group: object
    name: str
    by_condition: dict


def measured_groups(store, kind: str, suite: str | None = None, backbones=None) -> list[Measured]:
    groups = finished_results(store, suite=suite, backbones=backbones, task="classification").groups
    by_run = evaluations_by_run(store, groups, (kind,))
    found = []
    for group in groups:
        conditions: dict[str, list] = {}
        for run in group.runs:
            for evaluation in by_run.get(run.id, []):
                conditions.setdefault(evaluation.condition, []).append(evaluation.metrics)
        if conditions:
            found.append(Measured(group, display_name(group.paper_names, group.dataset, group.backbone), conditions))
    return found


def pyplot():
    # lazy: matplotlib, only when a chart is drawn
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib, only when a chart is drawn
    import matplotlib.pyplot as plt

    return plt


def _mean(values) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float))]
    return float(np.mean(numbers)) if numbers else None


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _none_found(what: str, command: str, suite: str | None, store) -> VbenchError:
    where = f" of suite {suite!r}" if suite else ""
    return VbenchError(f"no {what}{where} in {store.label}; run `vbench {command} --suite ...` first")


# --- ERF ---------------------------------------------------------------------------------------------------
def erf_sections(store, suite: str | None = None, backbones=None, measured: list[Measured] | None = None
                 ) -> list[ReportTable]:
    """The ERF table per suite; ``measured``: ``measured_groups(store, ERF, suite, backbones)`` when already read."""
    measured = measured_groups(store, ERF, suite, backbones) if measured is None else measured
    if not measured:
        raise _none_found("ERF results", "erf", suite, store)
    sections = []
    for suite_name in sorted({m.group.suite for m in measured}):
        records = []
        for entry in (m for m in measured if m.group.suite == suite_name):
            for condition, rows in sorted(entry.by_condition.items(), key=lambda item: item[0] != "trained"):
                records.append({
                    "task": "classification", "suite": suite_name, "model": entry.name,
                    "backbone": entry.group.backbone, "family": entry.group.family, "weights": condition,
                    "n": len(rows), "map": "x".join(map(str, rows[0]["map_size"])), "images": rows[0]["images"],
                    "kernel_size": rows[0].get("kernel_size"), "feature_map": rows[0].get("feature_map"),
                    **{threshold_key(t): _percent(_mean(r.get(threshold_key(t)) for r in rows)) for t in THRESHOLDS},
                    "recipe_hash": entry.group.recipe_hash})
        display = pd.DataFrame([{
            "Model": r["model"], "n": str(r["n"]), "weights": r["weights"], "map": r["map"], "images": str(r["images"]),
            **{f"t={round(t * 100)}%": fmt(r[threshold_key(t)], 1) for t in THRESHOLDS}} for r in records])
        sections.append(ReportTable(f"{suite_name}/erf", "classification", f"{suite_name}: effective receptive fields",
                                    records, display, [ERF_NOTE], suite=suite_name))
    return sections


def erf_matrices(measured: list[Measured], suite: str, condition: str = "trained") -> list[tuple[str, int, np.ndarray]]:
    """(model name, seeds, mean ERF matrix over the seeds) per backbone of ``suite`` measured under ``condition``,
    from ``measured_groups(store, ERF, ...)``."""
    found = []
    for entry in (m for m in measured if m.group.suite == suite):
        rows = entry.by_condition.get(condition, [])
        matrices = [np.asarray(r["matrix"], dtype=np.float64) for r in rows if r.get("matrix")]
        if matrices and len({m.shape for m in matrices}) == 1:
            found.append((entry.name, len(matrices), np.mean(matrices, axis=0)))
    return found


def erf_heatmap_chart(suite: str, condition: str, matrices: list) -> Chart:
    """The scaled ERF matrices side by side, RepLKNet's colours (RdYlGn) from 0 to 1."""
    plt = pyplot()
    columns = min(len(matrices), 4)
    rows = -(-len(matrices) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows + 0.6), dpi=DPI,
                                layout="constrained", squeeze=False)
    image = None
    for axis, (name, seeds, matrix) in zip(axes.flat, matrices):
        image = axis.imshow(scaled(matrix), cmap="RdYlGn", vmin=0.0, vmax=1.0, interpolation="nearest")
        axis.set_title(f"{name} (n={seeds})", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in list(axes.flat)[len(matrices):]:
        axis.set_visible(False)
    figure.colorbar(image, ax=axes, location="top", shrink=0.6, label="log10(contribution + 1), scaled to 1")
    figure.suptitle(f"{suite}: effective receptive fields ({condition} weights)", fontsize=11)
    return Chart(f"{suite}_erf_{condition}", figure)


def erf_charts(store, suite: str | None = None, condition: str | None = None) -> list[Chart]:
    """Per suite (and condition) with ERF results, its heatmaps side by side: ``<suite>_erf_<condition>``."""
    made = []
    measured = measured_groups(store, ERF, suite)
    if not measured:
        return made
    for section in erf_sections(store, suite, measured=measured):
        for wanted in [condition] if condition else sorted({r["weights"] for r in section.records}):
            matrices = erf_matrices(measured, section.suite, wanted)
            if matrices:
                made.append(erf_heatmap_chart(section.suite, wanted, matrices))
    return made


# --- shape bias --------------------------------------------------------------------------------------------
def shape_bias_records(store, suite: str | None = None, backbones=None) -> list[dict]:
    measured = measured_groups(store, SHAPE_BIAS, suite, backbones)
    if not measured:
        raise _none_found("shape-bias results", "shape-bias", suite, store)
    records = []
    for entry in measured:
        for condition, rows in sorted(entry.by_condition.items()):
            records.append({
                "task": "classification", "suite": entry.group.suite, "model": entry.name,
                "backbone": entry.group.backbone, "family": entry.group.family, "cue_conflict": condition,
                "n": len(rows), "kernel_size": rows[0].get("kernel_size"), "shape_bias": _mean(r.get("shape_bias") for r in rows),
                "shape": _mean(r["shape"] for r in rows), "texture": _mean(r["texture"] for r in rows),
                "counted": _mean(r["counted"] for r in rows), "images": rows[0]["images"],
                "cue_decisions": _percent(_mean(r.get("cue_decisions") for r in rows)),
                "recipe_hash": entry.group.recipe_hash})
    return records


def shape_bias_sections(store, suite: str | None = None, backbones=None) -> list[ReportTable]:
    records = shape_bias_records(store, suite, backbones)
    sections = []
    for suite_name in sorted({r["suite"] for r in records}):
        rows = [r for r in records if r["suite"] == suite_name]
        display = pd.DataFrame([{
            "Model": r["model"], "n": str(r["n"]), "cue conflict": r["cue_conflict"],
            "kernel": str(r["kernel_size"]) if r["kernel_size"] else "-", "shape bias": fmt(r["shape_bias"], 3),
            "shape": fmt(r["shape"], 1), "texture": fmt(r["texture"], 1),
            "counted": f"{r['counted']:.0f} of {r['images']}", "cue decisions (%)": fmt(r["cue_decisions"], 1)}
            for r in rows])
        sections.append(ReportTable(f"{suite_name}/shape-bias", "classification", f"{suite_name}: shape bias", rows,
                                    display, [SHAPE_NOTE], suite=suite_name))
    return sections


def kernel_points(records: list[dict]) -> dict[str, list[tuple[int, float, str]]]:
    """(kernel size, shape bias, model) per family of the kernel study, for the records that have both."""
    points: dict[str, list] = {}
    for r in records:
        if r["family"] in KERNEL_FAMILIES and r["kernel_size"] and r["shape_bias"] is not None:
            points.setdefault(r["family"], []).append((r["kernel_size"], r["shape_bias"], r["model"]))
    return {family: sorted(found) for family, found in points.items()}


def shape_bias_charts(store, suite: str | None = None) -> list[Chart]:
    """Per suite, shape bias against kernel size for the LKA, LSKA and LKCA families: ``<suite>_shape_bias_vs_kernel``."""
    try:
        records = shape_bias_records(store, suite)
    except VbenchError:
        return []
    made = []
    for suite_name in sorted({r["suite"] for r in records}):
        points = kernel_points([r for r in records if r["suite"] == suite_name])
        if not points:
            continue
        figure, axis = pyplot().subplots(figsize=(7, 4.5), dpi=DPI, layout="constrained")
        for family, found in sorted(points.items()):
            kernels, biases, _ = zip(*found)
            axis.plot(kernels, biases, marker="o", label=family.upper())
        axis.set_xlabel("kernel size k")
        axis.set_ylabel("shape bias")
        axis.set_ylim(0, 1)
        axis.grid(True, alpha=0.3)
        axis.legend()
        axis.set_title(f"{suite_name}: shape bias against kernel size")
        made.append(Chart(f"{suite_name}_shape_bias_vs_kernel", figure))
    return made


# --- calibration -------------------------------------------------------------------------------------------
CALIBRATION_FIELDS = ("ece", "ece_ts", "nll", "nll_ts", "brier", "brier_ts", "temperature")


def calibration_records(store, suite: str | None = None, backbones=None) -> list[dict]:
    records = []
    for entry in measured_groups(store, CALIBRATION, suite, backbones):
        rows = entry.by_condition.get("clean", [])
        if not rows:
            continue
        record = {"task": "classification", "suite": entry.group.suite, "model": entry.name,
                  "backbone": entry.group.backbone, "n": len(rows), "held_out_images": rows[0]["held_out_images"],
                  **{name: _mean(r.get(name) for r in rows) for name in CALIBRATION_FIELDS},
                  "recipe_hash": entry.group.recipe_hash}
        record["ece"], record["ece_ts"] = _percent(record["ece"]), _percent(record["ece_ts"])
        records.append(record)
    return records


def shift_records(store, suite: str | None = None, backbones=None) -> list[dict]:
    """Calibration per severity under corruption (the rows of `vbench robustness` that carry it)."""
    records = []
    for entry in measured_groups(store, CORRUPTION, suite, backbones):
        severities: dict[int, list] = {}
        for condition, rows in entry.by_condition.items():
            severity = int(condition.split("/")[1])
            severities.setdefault(severity, []).extend(r for r in rows if "ece" in r)
        for severity, rows in sorted(severities.items()):
            if rows:
                record = {"task": "classification", "suite": entry.group.suite, "model": entry.name,
                          "backbone": entry.group.backbone, "severity": severity, "evaluations": len(rows),
                          **{name: _mean(r.get(name) for r in rows) for name in CALIBRATION_FIELDS[:-1]}}
                record["ece"], record["ece_ts"] = _percent(record["ece"]), _percent(record["ece_ts"])
                records.append(record)
    return records


def _calibration_display(rows: list[dict], first: dict) -> pd.DataFrame:
    return pd.DataFrame([{
        **{key: text(r) for key, text in first.items()},
        "ECE": fmt(r["ece"]), "ECE (TS)": fmt(r["ece_ts"]), "NLL": fmt(r["nll"], 3), "NLL (TS)": fmt(r["nll_ts"], 3),
        "Brier": fmt(r["brier"], 3), "Brier (TS)": fmt(r["brier_ts"], 3)} for r in rows])


def calibration_sections(store, suite: str | None = None, backbones=None) -> list[ReportTable]:
    clean, shifted = calibration_records(store, suite, backbones), shift_records(store, suite, backbones)
    if not clean and not shifted:
        raise _none_found("calibration results", "calibration", suite, store)
    sections = []
    for suite_name in sorted({r["suite"] for r in clean + shifted}):
        rows = [r for r in clean if r["suite"] == suite_name]
        if rows:
            display = _calibration_display(rows, {"Model": lambda r: r["model"], "n": lambda r: str(r["n"])})
            display["T"] = [fmt(r["temperature"], 3) for r in rows]
            sections.append(ReportTable(f"{suite_name}/calibration", "classification", f"{suite_name}: calibration",
                                        rows, display, [CALIBRATION_NOTE], suite=suite_name))
        rows = [r for r in shifted if r["suite"] == suite_name]
        if rows:
            display = _calibration_display(rows, {"Model": lambda r: r["model"], "severity": lambda r: str(r["severity"])})
            sections.append(ReportTable(f"{suite_name}/calibration-shift", "classification",
                                        f"{suite_name}: calibration under corruption", rows, display, [SHIFT_NOTE],
                                        suite=suite_name))
    return sections


# --- charts for `vbench plot` --------------------------------------------------------------------------------
def analysis_charts(store, suite: str | None = None) -> list[Chart]:
    """The ERF heatmaps and the shape-bias-against-kernel chart of every suite that has them."""
    return erf_charts(store, suite) + shape_bias_charts(store, suite)


def save_charts(charts: list[Chart], output_dir: Path) -> list[Path]:
    """Each chart as PNG and SVG in ``output_dir`` (created), written atomically."""
    plt = pyplot()
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in charts:
        for extension in EXTENSIONS:
            path = output_dir / f"{chart.stem}.{extension}"
            with atomic_path(path) as temporary:
                chart.figure.savefig(temporary, dpi=DPI, format=extension)
            written.append(path)
        plt.close(chart.figure)
    return written
