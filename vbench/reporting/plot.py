"""Charts from the run store (matplotlib, Agg backend), every file named ``<suite>_<y>_vs_<x>.{png,svg}``:

- classification suites: ``acc_vs_params`` and ``acc_vs_flops`` (measured models filled, with the std over
  seeds as an error bar, each in its own colour; the paper's value of the same model hollow in that colour,
  tied to it by a dashed line; the paper's other models of the dataset hollow and grey), and the learning
  curves ``acc_vs_epochs`` (test top-1) and ``loss_vs_epochs`` (training loss), mean over seeds per epoch;
- segmentation suites: ``miou_vs_iterations``, one line per backbone and head, the paper's points hollow
  in the line's colour.

Nothing covers a point or leaves the canvas: legends sit outside the axes (constrained layout keeps them
on the figure), and point labels are placed by ``place_labels``: the first free spot on rings around the
point, inside the axes, off every marker and every label placed before it, with a leader line when it
had to move away (a rule that holds by construction, which tests check on the rendered boxes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from vbench.paths import check_output
from vbench.registry import Reference, Registry
from vbench.reporting.paper import paper_accuracy_rows, paper_segmentation_rows
from vbench.reporting.report import DATASET_TITLES, HEAD_NAMES, classification_records, segmentation_records
from vbench.reporting.results import finished_results, no_runs_error

AXES = {"params": ("# Params (M)", "params_m"), "flops": ("FLOPs (M MACs; the paper's counter leaves out attention matmuls)", "flops_m")}
EXTENSIONS = ("png", "svg")
DPI = 120
MARKER_SIZE = 42  # scatter marker area (points^2)
LABEL_FONT = 7
PAPER_GREY = "0.55"
# Further charts of the features built on the reports: ``maker(store, suite) -> list[Chart]``, each drawn by
# ``vbench plot`` after the suites' own (a Reference, so that this module never imports the features).
CHART_MAKERS: Registry = Registry("chart maker", group="vbench.charts")
CHART_MAKERS.add("robustness", Reference("vbench.robustness.report:severity_charts"))
CHART_MAKERS.add("analysis", Reference("vbench.analysis.report:analysis_charts"))  # ERF heatmaps, shape bias vs kernel


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
    # lazy: matplotlib, only when a chart is drawn
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib, only when a chart is drawn
    import matplotlib.pyplot as plt

    return plt


def stem(suite: str, y: str, x: str) -> str:
    """The one naming scheme of every plot file: ``<suite>_<y>_vs_<x>``."""
    return f"{_safe(suite)}_{y}_vs_{x}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _colours(count: int) -> list:
    """Distinct colours dark enough for 7-point labels on white: tab10, then Dark2, then tab20b's dark shades."""
    plt = _pyplot()
    palette = ([plt.get_cmap("tab10")(i) for i in range(10)] + [plt.get_cmap("Dark2")(i) for i in range(8)]
               + [plt.get_cmap("tab20b")(i) for i in range(0, 20, 4)])
    return [palette[i % len(palette)] for i in range(count)]


def _new_figure(entries: int = 0):
    """A figure with constrained layout, taller when its legend has many entries."""
    plt = _pyplot()
    height = max(5.5, 0.24 * entries + 1.5)
    return plt.subplots(figsize=(10, height), dpi=DPI, layout="constrained")


def _outside_legend(figure, handles: list, labels: list[str]) -> None:
    """The legend right of the axes, never over a point; constrained layout keeps it on the canvas."""
    if handles:
        figure.legend(handles, labels, loc="outside right upper", fontsize=8, ncols=1 if len(handles) <= 24 else 2)


def _freeze_layout(figure, ax) -> None:
    """Fix the axes' place and limits before labels are placed in display space."""
    figure.canvas.draw()
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    figure.set_layout_engine("none")


# --- label placement -------------------------------------------------------------------------------
@dataclass
class Label:
    text: str
    x: float
    y: float
    colour: object


@dataclass
class Placement:
    placed: list = field(default_factory=list)  # matplotlib Annotation objects
    unplaced: list = field(default_factory=list)  # label texts with no free spot


RINGS = tuple(range(6, 160, 6))  # offsets (points) tried around a point, nearest first
DIRECTIONS = tuple(range(0, 360, 20))  # degrees, right first, counter-clockwise


def _alignment(angle: float) -> tuple[str, str]:
    dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    ha = "left" if dx > 0.3 else "right" if dx < -0.3 else "center"
    va = "bottom" if dy > 0.3 else "top" if dy < -0.3 else "center"
    return ha, va


def marker_radius_px(figure, size: float = MARKER_SIZE) -> float:
    """The radius in pixels of a scatter marker of area ``size`` points^2, its edge line included."""
    return (math.sqrt(size) / 2 + 1) * figure.dpi / 72


def _box_at(anchor, offset_px, size, ha: str, va: str):
    """The display box of a text of ``size`` (w, h) placed at ``anchor`` + ``offset_px`` with this alignment."""
    # lazy: matplotlib, only when a chart is drawn
    from matplotlib.transforms import Bbox

    x, y = anchor[0] + offset_px[0], anchor[1] + offset_px[1]
    width, height = size
    x0 = x if ha == "left" else x - width if ha == "right" else x - width / 2
    y0 = y if va == "bottom" else y - height if va == "top" else y - height / 2
    return Bbox.from_bounds(x0, y0, width, height)


def place_labels(figure, ax, labels: list[Label], points: list[tuple[float, float]]) -> Placement:
    """Put each label on the first spot (rings of growing offset, every 20 degrees) where its box is inside the
    axes and touches no marker at ``points`` (data coordinates) and no label placed before it; a label placed
    away from its point gets a thin leader line in its colour."""
    # lazy: matplotlib, only when a chart is drawn
    from matplotlib.transforms import Bbox

    renderer = figure.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    centres = ax.transData.transform(points) if points else []
    radius = marker_radius_px(figure) + 1
    taken = [Bbox.from_extents(cx - radius, cy - radius, cx + radius, cy + radius) for cx, cy in centres]
    per_point = figure.dpi / 72
    result = Placement()
    for label in labels:
        probe = ax.text(0, 0, label.text, fontsize=LABEL_FONT)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        size = (extent.width + 2, extent.height + 2)  # a pixel of air around the text
        anchor = ax.transData.transform((label.x, label.y))
        spot = None
        for ring in RINGS:
            for angle in DIRECTIONS:
                ha, va = _alignment(angle)
                offset = (ring * math.cos(math.radians(angle)), ring * math.sin(math.radians(angle)))
                box = _box_at(anchor, (offset[0] * per_point, offset[1] * per_point), size, ha, va)
                if _inside(box, axes_box) and not any(box.overlaps(other) for other in taken):
                    spot = (offset, ha, va, ring, box)
                    break
            if spot is not None:
                break
        if spot is None:
            result.unplaced.append(label.text)
            continue
        offset, ha, va, ring, box = spot
        taken.append(box)
        leader = dict(arrowstyle="-", color=label.colour, lw=0.6, alpha=0.7, shrinkA=1, shrinkB=3)
        result.placed.append(ax.annotate(
            label.text, (label.x, label.y), xytext=offset, textcoords="offset points", ha=ha, va=va,
            fontsize=LABEL_FONT, color=label.colour, annotation_clip=False,
            arrowprops=leader if ring > RINGS[1] else None))
    return result


def _inside(box, outer) -> bool:
    return box.x0 >= outer.x0 and box.y0 >= outer.y0 and box.x1 <= outer.x1 and box.y1 <= outer.y1


def _unplaced_note(figure, placement: Placement) -> None:
    """Labels with no free spot are named under the legend, right of the axes."""
    if not placement.unplaced or not figure.legends:
        return
    renderer = figure.canvas.get_renderer()
    legend = figure.legends[0].get_window_extent(renderer)
    x, y = figure.transFigure.inverted().transform((legend.x0, legend.y0 - 8))
    names = placement.unplaced
    lines = [", ".join(names[i:i + 3]) for i in range(0, len(names), 3)]
    figure.text(x, y, "not labelled for lack of room:\n" + "\n".join(lines), fontsize=7, color=PAPER_GREY,
                ha="left", va="top")


# --- classification ----------------------------------------------------------------------------------
@dataclass
class Chart:
    stem: str
    figure: object
    points: list = field(default_factory=list)  # (x, y) data coordinates of every marker
    placement: Placement = field(default_factory=Placement)


def accuracy_chart(suite: str, dataset: str | None, records: list[dict], axis: str) -> Chart:
    """Top-1 against params or FLOPs: measured (filled, own colour, std bar), the paper's value of the same
    model (hollow, same colour, dashed line), the paper's other models (hollow, grey)."""
    label, key = AXES[axis]
    measured = [r for r in records if r.get(key) is not None and r.get("acc_mean") is not None]
    paper = {p["model"]: p for p in paper_points(dataset)}
    figure, ax = _new_figure()
    colours = _colours(len(measured))
    labels, points, paired = [], [], False
    for record, colour in zip(measured, colours):
        x, y = record[key], record["acc_mean"]
        ax.errorbar([x], [y], yerr=[record["acc_std"] or 0.0], fmt="none", ecolor=colour, capsize=3, lw=1)
        ax.scatter([x], [y], s=MARKER_SIZE, color=colour, zorder=3)
        points.append((x, y))
        labels.append(Label(record["model"], x, y, colour))
        published = paper.pop(record["model"], None)
        if published is not None:
            paired = True
            px, py = published[key], published["acc"]
            ax.plot([x, px], [y, py], ls="--", lw=0.8, color=colour, zorder=2)
            ax.scatter([px], [py], s=MARKER_SIZE, facecolors="none", edgecolors=colour, linewidths=1.2, zorder=3)
            points.append((px, py))
    for model, published in paper.items():
        px, py = published[key], published["acc"]
        ax.scatter([px], [py], s=MARKER_SIZE, facecolors="none", edgecolors=PAPER_GREY, linewidths=1, zorder=3)
        points.append((px, py))
        labels.append(Label(model, px, py, PAPER_GREY))
    title = DATASET_TITLES.get(dataset or "", dataset)
    ax.set_title(f"{suite}" + (f" ({title})" if title and title != suite else "") + f": top-1 vs {axis}")
    ax.set_xlabel(label)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, alpha=0.3)
    _pad_limits(ax, points)
    _outside_legend(figure, *_legend_keys(bool(measured), paired, bool(paper)))
    _freeze_layout(figure, ax)
    placement = place_labels(figure, ax, labels, points)
    _unplaced_note(figure, placement)
    return Chart(stem(suite, "acc", axis), figure, points, placement)


def _legend_keys(measured: bool, paired: bool, paper: bool) -> tuple[list, list[str]]:
    """Legend entries that explain the marks (the models are named beside their points)."""
    # lazy: matplotlib, only when a chart is drawn
    from matplotlib.lines import Line2D

    keys = []
    if measured:
        keys.append((Line2D([], [], marker="o", ls="none", color="0.2"), "measured: mean ± std over seeds"))
    if paired:
        keys.append((Line2D([], [], marker="o", markerfacecolor="none", ls="--", lw=0.8, color="0.2"),
                     "its paper value (same colour)"))
    if paper:
        keys.append((Line2D([], [], marker="o", markerfacecolor="none", ls="none", color=PAPER_GREY),
                     "paper's other models"))
    return [k[0] for k in keys], [k[1] for k in keys]


def _pad_limits(ax, points: list[tuple[float, float]]) -> None:
    """Room around the points for their labels."""
    if not points:
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    dx, dy = (max(xs) - min(xs)) or abs(xs[0]) or 1.0, (max(ys) - min(ys)) or abs(ys[0]) or 1.0
    ax.set_xlim(min(xs) - 0.08 * dx, max(xs) + 0.14 * dx)
    ax.set_ylim(min(ys) - 0.1 * dy, max(ys) + 0.1 * dy)


@dataclass
class Curve:
    name: str
    steps: list[int]
    values: list[float]


def learning_curves(store, groups, metric: str) -> list[Curve]:
    """Per group, ``metric`` of its step rows, averaged over seeds at each step."""
    steps = store.steps_of([run.id for group in groups for run in group.runs])
    curves = []
    for group in groups:
        per_step: dict[int, list[float]] = {}
        for run in group.runs:
            for row in steps[run.id]:
                value = (row.metrics or {}).get(metric)
                if isinstance(value, (int, float)):
                    per_step.setdefault(row.step, []).append(float(value))
        if per_step:
            ordered = sorted(per_step)
            name = group.paper_names[0] if group.paper_names else group.backbone
            variant = f" {HEAD_NAMES.get(group.variant, group.variant)}" if group.variant else ""
            curves.append(Curve(f"{name}{variant} (n={group.n})", ordered,
                                [sum(per_step[s]) / len(per_step[s]) for s in ordered]))
    return curves


def curve_chart(suite: str, curves: list[Curve], y: str, x: str, ylabel: str, paper: list | None = None) -> Chart:
    """One line per curve, named in the legend outside the axes; ``paper``: (curve index, steps, values) drawn
    hollow in the curve's colour."""
    entries = len(curves) + (len(paper or []))
    figure, ax = _new_figure(entries)
    colours = _colours(len(curves))
    points = []
    for curve, colour in zip(curves, colours):
        ax.plot(curve.steps, curve.values, marker="o", markersize=4, color=colour, label=curve.name)
        points += list(zip(curve.steps, curve.values))
    for index, steps, values in paper or []:
        ax.scatter(steps, values, s=MARKER_SIZE, facecolors="none", edgecolors=colours[index], linewidths=1.2,
                   label=f"{curves[index].name.split(' (n=')[0]} (paper)", zorder=3)
        points += list(zip(steps, values))
    # lazy: matplotlib, only when a chart is drawn
    from matplotlib.ticker import MaxNLocator

    unit = x.removesuffix("s")
    ax.set_xlabel(unit)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{suite}: {ylabel} per {unit}")
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _outside_legend(figure, *ax.get_legend_handles_labels())
    _freeze_layout(figure, ax)
    return Chart(stem(suite, y, x), figure, points)


def classification_charts(store, suite: str, groups) -> list[Chart]:
    dataset = groups[0].dataset
    records = classification_records(groups, False)
    charts = [accuracy_chart(suite, dataset, records, axis) for axis in AXES]
    accuracy = learning_curves(store, groups, "top1")
    if accuracy:
        charts.append(curve_chart(suite, accuracy, "acc", "epochs", "test top-1 accuracy (%)"))
    loss = learning_curves(store, groups, "train_loss")
    if loss:
        charts.append(curve_chart(suite, loss, "loss", "epochs", "training loss"))
    return charts


# --- segmentation ------------------------------------------------------------------------------------
def segmentation_charts(store, suite: str, groups) -> list[Chart]:
    """mIoU against iterations, one line per (backbone, head); the paper's points hollow in the line's colour."""
    records = segmentation_records(store, groups, False)
    lines: dict[tuple, list[dict]] = {}
    for record in records:
        lines.setdefault((record["model"], record["head"]), []).append(record)
    published = paper_segmentation_rows()
    curves, paper = [], []
    for index, ((name, head), points) in enumerate(lines.items()):
        head_name = HEAD_NAMES.get(head, head)
        curves.append(Curve(f"{name} {head_name}", [p["iteration"] for p in points], [p["mIoU"] for p in points]))
        match = published[(published["model"].str.lower() == name.lower())
                          & (published["head"].str.lower() == head_name.lower())]
        if not match.empty:
            paper.append((index, list(match["iterations"]), list(match["mIoU"])))
    return [curve_chart(suite, curves, "miou", "iterations", "mIoU (%)", paper)]


# --- all charts ----------------------------------------------------------------------------------------
def charts(store, suite: str | None = None) -> list[Chart]:
    results = finished_results(store, suite=suite)
    if not results.groups:
        raise no_runs_error(store, suite, None)
    made = []
    for suite_name in sorted({g.suite for g in results.groups}):
        groups = [g for g in results.groups if g.suite == suite_name]
        if groups[0].task == "classification":
            made += classification_charts(store, suite_name, groups)
        elif groups[0].task == "segmentation":
            made += segmentation_charts(store, suite_name, groups)
    for extra in CHART_MAKERS.values():
        made += extra(store, suite)
    return made


def save(chart: Chart, output_dir: Path) -> list[Path]:
    written = []
    for extension in EXTENSIONS:
        path = output_dir / f"{chart.stem}.{extension}"
        chart.figure.savefig(path, dpi=DPI)
        written.append(path)
    return written


def plot_all(store, output_dir: str | Path, suite: str | None = None) -> list[Path]:
    output_dir = check_output(output_dir, "--output-dir", folder=True)
    made = charts(store, suite)
    output_dir.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    written = []
    for chart in made:
        written += save(chart, output_dir)
        plt.close(chart.figure)
    return written
