"""Charts from the run store (matplotlib, Agg backend): per classification suite, top-1 against params and
against FLOPs (measured filled with the std over seeds as an error bar, the paper's models of the same
dataset hollow); per segmentation suite, mIoU against iterations per backbone and head."""

from __future__ import annotations

from pathlib import Path

from vbench.errors import VbenchError
from vbench.report import (DATASET_TITLES, HEAD_NAMES, classification_records, paper_accuracy_rows,
                           paper_segmentation_rows, segmentation_records)
from vbench.results import finished_results, no_runs_error

AXES = {"params": ("# Params (M)", "params_m"), "flops": ("FLOPs (M MACs)", "flops_m")}
EXTENSIONS = ("png", "svg")


def paper_points(dataset: str | None) -> list[dict]:
    """The paper's models of ``dataset`` (duplicate rows of the same model under two tables collapse)."""
    rows = paper_accuracy_rows()
    rows = rows[rows["dataset"] == dataset].sort_values("order")
    points, seen = [], set()
    for _, row in rows.iterrows():
        key = (row["value"], row["params"], row["flops"])
        if key not in seen:
            seen.add(key)
            points.append({"model": row["model"], "acc": float(row["value"]), "params_m": float(row["params"]),
                           "flops_m": float(row["flops"])})
    return points


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, output_dir: Path, stem: str) -> list[Path]:
    written = []
    for extension in EXTENSIONS:
        path = output_dir / f"{stem}.{extension}"
        figure.savefig(path, bbox_inches="tight")
        written.append(path)
    return written


def plot_suite(suite: str, dataset: str | None, records: list[dict], output_dir: Path) -> list[Path]:
    plt = _pyplot()
    written = []
    paper = paper_points(dataset)
    for axis, (label, key) in AXES.items():
        figure, ax = plt.subplots(figsize=(9, 6), dpi=120)
        measured = [r for r in records if r.get(key) is not None]
        if measured:
            ax.errorbar([r[key] for r in measured], [r["acc_mean"] for r in measured],
                        yerr=[r["acc_std"] or 0.0 for r in measured], fmt="o", color="tab:blue",
                        markersize=7, capsize=3, label="measured (mean ± std over seeds)")
            for r in measured:
                ax.annotate(r["model"], (r[key], r["acc_mean"]), textcoords="offset points", xytext=(5, 4),
                            fontsize=8, color="tab:blue")
        if paper:
            ax.scatter([p[key] for p in paper], [p["acc"] for p in paper], facecolors="none",
                       edgecolors="tab:orange", s=45, label="paper")
            for p in paper:
                ax.annotate(p["model"], (p[key], p["acc"]), textcoords="offset points", xytext=(5, -9),
                            fontsize=7, color="tab:orange")
        title = DATASET_TITLES.get(dataset or "", dataset)
        ax.set_title(f"{suite}" + (f" ({title})" if title and title != suite else "") + f": top-1 vs {axis}")
        ax.set_xlabel(label + (" — paper FLOPs leave out attention matmuls" if axis == "flops" else ""))
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        written += _save(figure, output_dir, f"{_safe(suite)}_acc_vs_{axis}")
        plt.close(figure)
    return written


def plot_miou(suite: str, records: list[dict], output_dir: Path) -> list[Path]:
    """mIoU against iterations, one line per (backbone, head); the paper's points hollow beside them."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5), dpi=120)
    paper = paper_segmentation_rows()
    lines: dict[tuple, list[dict]] = {}
    for record in records:
        lines.setdefault((record["model"], record["head"]), []).append(record)
    for (name, head), points in lines.items():
        head_name = HEAD_NAMES.get(head, head)
        line, = ax.plot([p["iteration"] for p in points], [p["mIoU"] for p in points], marker="o",
                        label=f"{name} {head_name}")
        published = paper[(paper["model"].str.lower() == name.lower()) & (paper["head"].str.lower() == head_name.lower())]
        if not published.empty:
            ax.scatter(published["iterations"], published["mIoU"], facecolors="none", edgecolors=line.get_color(),
                       s=50, label=f"{name} {head_name} (paper)")
    ax.set_xlabel("iterations")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"{suite}: mIoU against training iterations")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    written = _save(figure, output_dir, f"{_safe(suite)}_miou_vs_iterations")
    plt.close(figure)
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def plot_all(store, output_dir: str | Path, suite: str | None = None) -> list[Path]:
    results = finished_results(store, suite=suite)
    if not results.groups:
        raise no_runs_error(store, suite, None)
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VbenchError(f"cannot create the plot directory {str(output_dir)!r}: {exc.strerror}; give a writable "
                          "--output-dir") from None
    written = []
    for suite_name in sorted({g.suite for g in results.groups}):
        groups = [g for g in results.groups if g.suite == suite_name]
        if groups[0].task == "classification":
            written += plot_suite(suite_name, groups[0].dataset, classification_records(groups, False), output_dir)
        elif groups[0].task == "segmentation":
            written += plot_miou(suite_name, segmentation_records(store, groups, False), output_dir)
    from vbench.robustness.report import plot_severity

    return written + plot_severity(store, output_dir, suite)
