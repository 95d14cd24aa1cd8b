"""`vbench plot`: one naming scheme, PNG and SVG of every chart, learning curves from the step rows, and charts
that can be read: checked on the rendered boxes, no label or legend covers a point or leaves the canvas."""

from __future__ import annotations

import random

import pytest
from cli import run_cli
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from plugins import FAST, write_plugin

from vbench.data.fixtures import write_fixture
from vbench.reporting import plot
from vbench.store import open_store


def marker_boxes(chart) -> list[Bbox]:
    ax = chart.figure.axes[0]
    radius = plot.marker_radius_px(chart.figure)
    return [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
            for x, y in ax.transData.transform(chart.points)]


def inside(box: Bbox, outer: Bbox) -> bool:
    return box.x0 >= outer.x0 - 0.5 and box.y0 >= outer.y0 - 0.5 and box.x1 <= outer.x1 + 0.5 and box.y1 <= outer.y1 + 0.5


def assert_readable(chart) -> None:
    figure = chart.figure
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    ax = figure.axes[0]
    # nothing drawn runs off the canvas (the box bbox_inches="tight" would crop to)
    tight = figure.get_tightbbox(renderer).transformed(figure.dpi_scale_trans)
    assert inside(tight, figure.bbox), (tight, figure.bbox)
    markers = marker_boxes(chart)
    assert markers, "a chart without points"
    for legend in figure.legends:
        box = legend.get_window_extent(renderer)
        assert inside(box, figure.bbox) and not box.overlaps(ax.get_window_extent(renderer))
    # the labels' text boxes (an Annotation's own extent adds its leader line, which may cross things)
    labels = [Text.get_window_extent(annotation, renderer) for annotation in chart.placement.placed]
    for index, box in enumerate(labels):
        text = chart.placement.placed[index].get_text()
        assert inside(box, ax.get_window_extent(renderer)), text
        assert not any(box.overlaps(marker) for marker in markers), f"{text!r} covers a point"
        assert not any(box.overlaps(other) for other in labels[index + 1:]), f"{text!r} covers another label"


def crowded_records(dataset: str, count: int) -> list[dict]:
    """Measured models near the paper's own values: the crowded case (the paper's other models beside them)."""
    rng = random.Random(0)
    return [{"model": p["model"], "acc_mean": p["acc"] + rng.uniform(-3, 3), "acc_std": rng.uniform(0, 1),
             "params_m": p["params_m"] * rng.uniform(0.95, 1.05), "flops_m": p["flops_m"] * rng.uniform(0.9, 1.1)}
            for p in plot.paper_points(dataset)[:count]]


@pytest.mark.parametrize("dataset, count", [("tiny-imagenet", 20), ("cifar10", 1), ("svhn", 10)])
@pytest.mark.parametrize("axis", ["params", "flops"])
def test_accuracy_charts_keep_every_label_off_points_and_on_the_canvas(dataset, count, axis):
    chart = plot.accuracy_chart(dataset, dataset, crowded_records(dataset, count), axis)
    assert chart.stem == f"{dataset}_acc_vs_{axis}"
    assert_readable(chart)
    # every model is named: the measured ones and the paper's others
    names = {annotation.get_text() for annotation in chart.placement.placed} | set(chart.placement.unplaced)
    assert names == {p["model"] for p in plot.paper_points(dataset)}
    assert chart.placement.unplaced == []


def test_a_measured_point_and_its_paper_value_share_a_colour_and_a_line():
    records = crowded_records("cifar10", 2)
    chart = plot.accuracy_chart("cifar10", "cifar10", records, "params")
    ax = chart.figure.axes[0]
    for record in records:
        paper = next(p for p in plot.paper_points("cifar10") if p["model"] == record["model"])
        [line] = [line for line in ax.get_lines() if list(line.get_xdata()) == [record["params_m"], paper["params_m"]]]
        assert list(line.get_ydata()) == [record["acc_mean"], paper["acc"]] and line.get_linestyle() == "--"
        label = next(a for a in chart.placement.placed if a.get_text() == record["model"])
        assert label.get_color() == line.get_color()


def test_plot_writes_learning_curves_and_every_chart_as_png_and_svg(tmp_path):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    db = tmp_path / "runs.db"
    result = run_cli("run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", write_plugin(tmp_path),
                     "--epochs", "3", "--seeds", "0,1", "--data-root", fixture.root, "--db", db, "--batch-size", "10",
                     *FAST)
    assert result.code == 0, result.out + result.err
    result = run_cli("plot", "--db", db, "--output-dir", tmp_path / "plots")
    assert result.code == 0, result.err
    stems = [f"cifar10_{y}_vs_{x}" for y, x in (("acc", "params"), ("acc", "flops"), ("acc", "epochs"),
                                                 ("loss", "epochs"))]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(f"{s}.{e}" for s in stems for e in ("png", "svg"))
    assert result.out.split() == [str(tmp_path / "plots" / f"{s}.{e}") for s in stems for e in ("png", "svg")]
    store = open_store(str(db), write=False)
    charts = {chart.stem: chart for chart in plot.charts(store)}
    loss = charts["cifar10_loss_vs_epochs"]
    [line] = loss.figure.axes[0].get_lines()
    steps = store.steps_of([1, 2])
    expected = [sum(steps[run][epoch].metrics["train_loss"] for run in (1, 2)) / 2 for epoch in range(3)]
    assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == pytest.approx(expected)
    assert line.get_label() == "Tiny (n=2)"
    for chart in charts.values():
        assert_readable(chart)
