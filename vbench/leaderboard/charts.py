"""Chart specs for plotly.js (``{"data": [...], "layout": {...}}``, embedded in the pages as JSON and drawn by
the ``plotly.min.js`` that ships with plotly's Python package). Plain dicts rather than ``plotly.graph_objects``:
a site writes one chart per run, and building a validated figure object costs milliseconds each."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Iterable

# plotly's default colour sequence, named here so a paper point can take the colour of its measured line
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
PAPER_COLOR = "#555555"
FRONT_COLOR = "#222222"


@dataclass(frozen=True)
class Axis:
    key: str  # the record's field
    title: str
    name: str  # in a chart's title: "top-1 against <name>"
    paper_key: str | None  # the paper point's field, None when the paper has no such number
    lower_is_better: bool  # params and FLOPs are costs; throughput is a benefit


ACCURACY_AXES = {  # the paper counts FLOPs without the attention matmuls: the section's notes say so
    "params": Axis("params_m", "# Params (M)", "params", "params_m", True),
    "flops": Axis("flops_m", "FLOPs (M MACs)", "FLOPs", "flops_m", True),
    "throughput": Axis("images_per_s", "training images/s (measured)", "throughput", None, False),
}


def pareto_front(points: Iterable[tuple[float, float]], lower_is_better: bool = True) -> list[tuple[float, float]]:
    """The (x, accuracy) points that no other point beats on both: higher accuracy at a lower x (a cost) or,
    with ``lower_is_better=False``, at a higher x (a benefit). Sorted from the best x on."""
    ordered = sorted(points, key=lambda p: (p[0] if lower_is_better else -p[0], -p[1]))
    front: list[tuple[float, float]] = []
    for x, y in ordered:
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def family_colors(families: Iterable[str | None]) -> dict[str | None, str]:
    names = sorted({f or "other" for f in families})
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def plotly_text(value) -> str:
    """Text that Plotly shows as given: it reads <b>, <i>, <a href> and entities in names, titles and hover text,
    so names from the store are HTML-escaped (Plotly shows &lt; as <)."""
    return html.escape(str(value), quote=False)


def chart_layout(title: str, x_title: str, y_title: str, log_x: bool = True) -> dict:
    return {
        "title": {"text": plotly_text(title), "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "xaxis": {"title": {"text": plotly_text(x_title)}, "type": "log" if log_x else "linear", "zeroline": False},
        "yaxis": {"title": {"text": plotly_text(y_title)}, "zeroline": False},
        "height": 400, "margin": {"l": 56, "r": 16, "t": 40, "b": 40}, "hovermode": "closest",
        "legend": {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top", "font": {"size": 10}},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "#fbfbfb",
    }


def no_data(layout: dict, text: str) -> dict:
    layout["annotations"] = [{"text": plotly_text(text), "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5,
                              "y": 0.5, "font": {"color": "#777"}}]
    layout["xaxis"]["type"] = "linear"
    return layout


def metric_chart(title: str, records: list[dict], axis: Axis, y_key: str, y_label: str,
                 paper: list[dict] | None = None, std_key: str | None = None, unit: str = "%",
                 higher_is_better: bool = True) -> dict:
    """``y_key`` against ``axis`` for the measured records (filled, by family, the std over seeds as an error
    bar), the Pareto front of the measured points, and the paper's points hollow."""
    measured = [r for r in records if _finite(r.get(axis.key)) and r.get(y_key) is not None]
    colors = family_colors(r.get("family") for r in measured)
    traces = []
    for family, color in colors.items():
        rows = [r for r in measured if (r.get("family") or "other") == family]
        traces.append({
            "type": "scatter", "mode": "markers", "name": plotly_text(family), "x": [r[axis.key] for r in rows],
            "y": [r[y_key] for r in rows],
            "error_y": {"type": "data", "array": [r.get(std_key) or 0 for r in rows] if std_key else [],
                        "visible": bool(std_key), "thickness": 1, "width": 3},
            "marker": {"color": color, "size": 9, "line": {"width": 1, "color": "#fff"}},
            "customdata": [[plotly_text(r["model"]), plotly_text(r["backbone"]),
                            ", ".join(str(s) for s in r.get("seeds") or []), plotly_text((r.get("recipe_hash") or "")[:8]),
                            f"± {r[std_key]:.2f}" if std_key and r.get(std_key) is not None else "",
                            r.get("n", "")] for r in rows],
            "hovertemplate": ("<b>%{customdata[0]}</b> (%{customdata[1]})<br>" + plotly_text(y_label) + " %{y:.2f}"
                              + " %{customdata[4]}<br>" + plotly_text(axis.title) + " %{x:.4g}<br>"
                              "seeds %{customdata[2]} (n=%{customdata[5]})<br>recipe %{customdata[3]}<extra></extra>"),
        })
    sign = 1 if higher_is_better else -1  # the front of a metric to lower (an error) is that of its negation
    front = [(x, sign * y) for x, y in pareto_front([(r[axis.key], sign * r[y_key]) for r in measured],
                                                      axis.lower_is_better)]
    if len(front) > 1:
        traces.append({"type": "scatter", "mode": "lines", "name": "Pareto front (measured)",
                       "x": [p[0] for p in front], "y": [p[1] for p in front], "hoverinfo": "skip",
                       "line": {"shape": "hv", "dash": "dot", "width": 1.5, "color": FRONT_COLOR}})
    published = [p for p in paper or () if axis.paper_key and _finite(p.get(axis.paper_key))]
    if published:
        traces.append({
            "type": "scatter", "mode": "markers", "name": "paper", "x": [p[axis.paper_key] for p in published],
            "y": [p["acc"] for p in published], "customdata": [[plotly_text(p["model"])] for p in published],
            "marker": {"symbol": "circle-open", "size": 9, "color": PAPER_COLOR, "line": {"width": 1.5}},
            "hovertemplate": "<b>%{customdata[0]}</b> (paper)<br>" + plotly_text(y_label) + " %{y:.2f}<extra></extra>",
        })
    layout = chart_layout(title, axis.title, f"{y_label} ({unit})" if unit else y_label)
    if not measured:
        no_data(layout, f"no run here recorded {axis.title}")
    return {"data": traces, "layout": layout}


def miou_chart(title: str, records: list[dict], paper_rows: list[dict]) -> dict:
    """mIoU against iterations, a line per (model, head) with the std-free mean over seeds; the paper's points
    of the same model and head hollow, in the line's colour."""
    lines: dict[tuple, list[dict]] = {}
    for record in records:
        lines.setdefault((record["model"], record["head_name"]), []).append(record)
    traces = []
    for index, ((model, head), points) in enumerate(lines.items()):
        color = PALETTE[index % len(PALETTE)]
        points = sorted(points, key=lambda r: r["iteration"])
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": plotly_text(f"{model} {head}"),
            "x": [p["iteration"] for p in points], "y": [p["mIoU"] for p in points],
            "line": {"color": color}, "marker": {"color": color, "size": 7},
            "customdata": [[plotly_text(p["backbone"]), ", ".join(str(s) for s in p["seeds"]),
                            plotly_text(p["recipe_hash"][:8]), p["n"], plotly_text(f"{model} {head}")] for p in points],
            "hovertemplate": ("<b>%{customdata[4]}</b> (%{customdata[0]})<br>mIoU %{y:.2f} at iteration %{x}"
                              "<br>seeds %{customdata[1]} (n=%{customdata[3]})<br>recipe %{customdata[2]}"
                              "<extra></extra>"),
        })
        published = [p for p in paper_rows if p["model"].lower() == model.lower() and p["head"].lower() == head.lower()]
        if published:
            traces.append({
                "type": "scatter", "mode": "markers", "name": plotly_text(f"{model} {head} (paper)"),
                "x": [p["iterations"] for p in published], "y": [p["mIoU"] for p in published],
                "marker": {"symbol": "circle-open", "size": 10, "color": color, "line": {"width": 2}},
                "customdata": [[plotly_text(f"{model} {head}")] for _ in published],
                "hovertemplate": "<b>%{customdata[0]}</b> (paper)<br>mIoU %{y:.2f} at iteration %{x}<extra></extra>",
            })
    layout = chart_layout(title, "iterations", "mIoU (%)", log_x=False)
    if not traces:
        no_data(layout, "no evaluated iteration")
    return {"data": traces, "layout": layout}


def learning_curve_layout(step_unit: str) -> dict:
    """The layout of a run's learning curve: evaluated metrics (percent) on the left axis, training losses on
    the right. The page's script makes the traces from the run's step rows (``leaderboard.js``)."""
    layout = chart_layout("", step_unit + "s", "metric (%)", log_x=False)
    layout["yaxis2"] = {"title": {"text": "loss"}, "overlaying": "y", "side": "right", "zeroline": False,
                        "showgrid": False}
    layout["margin"].update(r=56, t=16)
    del layout["title"]
    return layout
