"""Pages of what the models see and how well their confidence is calibrated (``vbench.analysis``):

- receptive fields: per suite, the ERF table and the heatmaps side by side (RepLKNet's scaling and colours);
- shape bias: per suite, the table and shape bias against kernel size for the LKA, LSKA and LKCA families;
- calibration: per suite, ECE, NLL and Brier before and after temperature scaling, clean and under corruption;

and, for a run's page, the heatmap of its confusion matrix (``confusion_block``).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from markupsafe import Markup

from vbench.analysis.erf import KIND as ERF
from vbench.analysis.report import (
    calibration_sections,
    erf_matrices,
    erf_sections,
    kernel_points,
    measured_groups,
    scaled,
    shape_bias_sections,
)
from vbench.errors import VbenchError
from vbench.leaderboard.charts import PALETTE, plotly_text
from vbench.leaderboard.html import chart_html, fragment, slug, table_html
from vbench.leaderboard.sections import Block, display_table, register_section
from vbench.reporting.confusion import class_errors

# RepLKNet draws its heatmaps with matplotlib's RdYlGn: its end and middle colours
RD_YL_GN = [[0.0, "#a50026"], [0.5, "#ffffbf"], [1.0, "#006837"]]
CONFUSION_SCALE = "Blues"
WHOLE_MATRIX_UP_TO = 100  # classes drawn whole on a run page (CIFAR-100); above, the worst classes' rows
WORST_SHOWN = 30


def heatmap_spec(title: str, z: list[list], colorscale, z_range: tuple[float, float] | None = None,
                 labels: tuple[list[str], list[str]] | None = None, hover: str = "") -> dict:
    """One plotly heatmap, row 0 at the top (as an image), square cells; ``labels``: (columns, rows) named."""
    trace = {"type": "heatmap", "z": z, "colorscale": colorscale, "showscale": True,
             "hovertemplate": hover or "row %{y}, column %{x}: %{z}<extra></extra>"}
    if z_range:
        trace["zmin"], trace["zmax"] = z_range
    axis = {"showticklabels": labels is not None, "ticks": "", "zeroline": False, "showgrid": False}
    x_axis, y_axis = dict(axis), dict(axis)
    if labels:
        trace["x"], trace["y"] = ([plotly_text(label) for label in names] for names in labels)
        x_axis.update(type="category", side="top")
        y_axis.update(type="category")
    return {"data": [trace], "layout": {
        "title": {"text": plotly_text(title), "font": {"size": 13}, "x": 0.01, "xanchor": "left"},
        "xaxis": {**x_axis, "constrain": "domain"},
        "yaxis": {**y_axis, "autorange": "reversed", "scaleanchor": "x", "constrain": "domain"},
        "height": 380, "margin": {"l": 40, "r": 16, "t": 48, "b": 24}, "paper_bgcolor": "rgba(0,0,0,0)"}}


def kernel_chart(title: str, points: dict[str, list[tuple[int, float, str]]]) -> dict:
    traces = []
    for index, (family, found) in enumerate(sorted(points.items())):
        traces.append({"type": "scatter", "mode": "lines+markers", "name": plotly_text(family.upper()),
                       "x": [p[0] for p in found], "y": [p[1] for p in found], "customdata": [[plotly_text(p[2])] for p in found],
                       "marker": {"color": PALETTE[index % len(PALETTE)], "size": 9},
                       "hovertemplate": "<b>%{customdata[0]}</b><br>kernel %{x}<br>shape bias %{y:.3f}<extra></extra>"})
    return {"data": traces, "layout": {
        "title": {"text": plotly_text(title), "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "xaxis": {"title": {"text": "kernel size k"}}, "yaxis": {"title": {"text": "shape bias"}, "range": [0, 1]},
        "height": 400, "margin": {"l": 56, "r": 16, "t": 40, "b": 40}, "paper_bgcolor": "rgba(0,0,0,0)"}}


def _board(key: str, section, charts: list | None = None) -> Markup:
    return fragment("blocks/board.html.j2", meta=None, charts=charts or [], notes=section.notes,
                    table=table_html(display_table(f"{key}-table", section)))


def _sections(make, site) -> list:
    try:
        return make(site.store, site.suite, site.backbones)
    except VbenchError:  # nothing measured: no page
        return []


@register_section("erf", page="receptive-fields", title="Receptive fields", order=70)
def receptive_fields(site) -> Iterable[Block]:
    measured = measured_groups(site.store, ERF, site.suite, site.backbones)
    if not measured:  # nothing measured: no page
        return
    for section in erf_sections(site.store, site.suite, site.backbones, measured=measured):
        key = f"erf-{slug(section.key)}"
        charts = []
        for condition in ("trained", "init"):
            for name, seeds, matrix in erf_matrices(measured, section.suite, condition):
                values = [[round(float(v), 4) for v in row] for row in scaled(matrix)]
                spec = heatmap_spec(f"{name} ({condition}, n={seeds})", values, RD_YL_GN, (0.0, 1.0),
                                    hover="row %{y}, column %{x}: %{z:.3f}<extra></extra>")
                charts.append(chart_html(slug(f"{key}-{name}-{condition}"), spec))
        yield Block(key, section.title, _board(key, section, charts))


@register_section("shape-bias", page="shape-bias", title="Shape bias", order=71)
def shape_bias(site) -> Iterable[Block]:
    for section in _sections(shape_bias_sections, site):
        key = f"shape-bias-{slug(section.key)}"
        points = kernel_points(section.records)
        charts = [chart_html(f"{key}-kernel", kernel_chart("shape bias against kernel size (LKA, LSKA, LKCA)",
                                                           points))] if points else []
        yield Block(key, section.title, _board(key, section, charts))


@register_section("calibration", page="calibration", title="Calibration", order=72)
def calibration(site) -> Iterable[Block]:
    for section in _sections(calibration_sections, site):
        key = f"calibration-{slug(section.key)}"
        yield Block(key, section.title, _board(key, section))


def confusion_block(predictions, num_classes: int | None) -> Markup:
    """A run page's heatmap of its confusion matrix (rows: true class, columns: top-1 class) and its worst classes;
    with more than ``WHOLE_MATRIX_UP_TO`` classes, the rows of the ``WORST_SHOWN`` worst classes and the columns of
    the classes they are taken for (a page per run must stay small)."""
    errors = class_errors(predictions, num_classes)
    worst = errors.worst(WORST_SHOWN)
    matrix, title = errors.matrix, "confusion matrix (rows: true class, columns: predicted)"
    rows = columns = list(range(len(matrix)))
    if len(matrix) > WHOLE_MATRIX_UP_TO:
        rows = [row["class"] for row in worst]
        columns = sorted(set(rows) | {row["taken_for"] for row in worst if row["taken_for"] is not None})
        matrix = matrix[np.ix_(rows, columns)]
        title = f"confusion of the {len(rows)} worst classes (rows) with the classes they are taken for"
    named = (None if len(matrix) > 20 and len(rows) == len(errors.matrix)
             else ([str(c) for c in columns], [str(c) for c in rows]))
    spec = heatmap_spec(title, matrix.tolist(), CONFUSION_SCALE, labels=named,
                        hover="true %{y}, predicted %{x}: %{z} images<extra></extra>")
    listed = ", ".join(f"class {row['class']} {row['accuracy']:.1f}%" for row in worst[:5])
    return chart_html("confusion", spec, css="chart wide") \
        + Markup('<p class="meta">Worst classes: {}</p>').format(listed)
