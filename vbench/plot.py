"""Accuracy-versus-params and accuracy-versus-FLOPs charts per suite (matplotlib, Agg backend).

Measured models are filled markers with the std over seeds as an error bar; the paper's published
models of the same dataset are hollow markers; every point is labelled with its model name.
"""

from __future__ import annotations

from pathlib import Path

from vbench.report import DATASET_TITLES, done_runs_frame, aggregate, paper_accuracy_rows, suite_records

AXES = {"params": ("# Params (M)", "params_m"), "flops": ("FLOPs (M MACs)", "flops_m")}
EXTENSIONS = ("png", "svg")


def paper_points(dataset: str | None) -> list[dict]:
    """The paper's models of ``dataset`` (duplicate rows of the same model under two tables collapse)."""
    rows = paper_accuracy_rows()
    rows = rows[rows["dataset"] == dataset].sort_values("order")
    points, seen = [], set()
    for _, row in rows.iterrows():
        key = (row["value"], row["params"], row["flops"])
        if key in seen:
            continue
        seen.add(key)
        points.append({"model": row["model"], "acc": float(row["value"]), "params_m": float(row["params"]),
                       "flops_m": float(row["flops"])})
    return points


def plot_suite(suite: str, dataset: str | None, records: list[dict], output_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        figure.tight_layout()
        for extension in EXTENSIONS:
            path = output_dir / f"{_safe(suite)}_acc_vs_{axis}.{extension}"
            figure.savefig(path)
            written.append(path)
        plt.close(figure)
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def plot_all(store, output_dir: str | Path, suite: str | None = None) -> list[Path]:
    from vbench.errors import VbenchError

    frame = done_runs_frame(store, suite=suite)
    if frame.empty:
        where = f" for suite {suite!r}" if suite else ""
        raise VbenchError(f"no finished runs{where} in {store.url}; run `vbench run` first")
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VbenchError(f"cannot create the plot directory {str(output_dir)!r}: {exc.strerror}; give a writable --output-dir") from None
    results = aggregate(frame)
    written = []
    for suite_name in sorted({r.suite for r in results}):
        suite_results = [r for r in results if r.suite == suite_name]
        records = suite_records(suite_results, compare_paper=False)
        written += plot_suite(suite_name, suite_results[0].dataset, records, output_dir)
    return written
