"""The studies as plotly.js chart specs (plain dicts, as the leaderboard's own charts): the optimisation history
(every trial's value, pruned trials at their last reported value, the best so far) and the parameter importances
(Optuna's fANOVA, ``optuna.importance.get_param_importances``), per backbone of a group."""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna

from vbench.leaderboard.charts import chart_layout, no_data, plotly_text
from vbench.tune.report import recipe_text
from vbench.tune.study import load_study, open_storage, stored_groups

COLORS = {"complete": "#1f77b4", "pruned": "#999999", "best": "#d62728", "bar": "#2ca02c"}


@dataclass
class StudyCharts:
    backbone: str
    history: dict
    importance: dict
    note: str | None = None  # why there are no importances


def _layout(title: str, x_title: str, y_title: str) -> dict:
    layout = chart_layout(title, x_title, y_title, log_x=False)
    layout["height"] = 360
    layout["yaxis"]["automargin"] = True
    return layout


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def history_chart(study: optuna.Study, backbone: str, label: str) -> dict:
    """Each finished trial's value by trial number, and the best so far as a step line."""
    states = optuna.trial.TrialState
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.state in (states.COMPLETE, states.PRUNED)),
                    key=lambda t: t.number)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    traces = []
    for state, name in ((states.COMPLETE, "complete"), (states.PRUNED, "pruned")):
        points = [(t.number, t.value if state == states.COMPLETE else t.intermediate_values[t.last_step],
                   plotly_text(recipe_text(t.params))) for t in trials if t.state == state
                  and (state == states.COMPLETE or t.last_step is not None)]
        points = [p for p in points if _finite(p[1])]
        if points:
            traces.append({"type": "scatter", "mode": "markers", "name": name, "x": [p[0] for p in points],
                           "y": [p[1] for p in points], "customdata": [[p[2]] for p in points],
                           "marker": {"color": COLORS[name], "size": 8,
                                      "symbol": "circle" if name == "complete" else "x"},
                           "hovertemplate": f"trial %{{x}} ({name})<br>{label} %{{y:.2f}}<br>%{{customdata[0]}}"
                                            "<extra></extra>"})
    best, line = None, []
    for trial in (t for t in trials if t.state == states.COMPLETE and _finite(t.value)):
        if best is None or (trial.value > best if maximize else trial.value < best):
            best = trial.value
        line.append((trial.number, best))
    if line:
        traces.append({"type": "scatter", "mode": "lines", "name": "best so far", "x": [p[0] for p in line],
                       "y": [p[1] for p in line], "line": {"shape": "hv", "color": COLORS["best"]},
                       "hoverinfo": "skip"})
    return {"data": traces, "layout": _layout(f"{backbone}: optimisation history", "trial", label)}


def importance_chart(study: optuna.Study, backbone: str) -> tuple[dict, str | None]:
    """fANOVA importances (seeded) as horizontal bars; an empty chart and the reason when there are too few trials."""
    complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    layout = _layout(f"{backbone}: parameter importances ({complete} complete trial{'s' if complete != 1 else ''})",
                     "importance (fANOVA, sums to 1)", "")
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        importances, note = {}, f"{backbone}: no importances ({exc})"
    else:
        note = None if importances else f"{backbone}: no importances (needs complete trials of differing values)"
    names = [name for name, value in importances.items() if _finite(value)][::-1]  # the largest on top
    data = [{"type": "bar", "orientation": "h", "x": [importances[n] for n in names], "y": names,
             "marker": {"color": COLORS["bar"]}, "hovertemplate": "%{y}: %{x:.3f}<extra></extra>", "name": "importance"}]
    if not names:
        no_data(layout, "too few complete trials")
    return {"data": data if names else [], "layout": layout}, note


def group_charts(url: str, group: str, label: str) -> list[StudyCharts]:
    """The charts of every backbone's study of ``group`` in the database at ``url`` (read only)."""
    backbones = stored_groups(url).get(group, {})
    if not backbones:
        return []
    storage = open_storage(url, write=False)
    try:
        charts = []
        for backbone in backbones:
            study = load_study(url, f"{group}/{backbone}", storage)
            importance, note = importance_chart(study, backbone)
            charts.append(StudyCharts(backbone, history_chart(study, backbone, label), importance, note))
        return charts
    finally:
        storage.remove_session()
        storage.engine.dispose()
