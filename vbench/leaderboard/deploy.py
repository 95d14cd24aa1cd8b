"""The deployment page: what ``vbench deploy`` measured, per suite:

- per runtime, top-1 against batch-1 latency (p90, MLPerf's single-stream figure) and against throughput at the
  largest batch size, a point per backbone and precision (the mean over seeds), the Pareto front drawn;
- each export's accuracy drop against the run's own PyTorch accuracy (eager fp32, same weights);
- the support matrix (backbone x runtime x precision) with the one-line reason of each failure;
- the measurements as ``vbench report --deploy`` gives them.
"""

from __future__ import annotations

from statistics import mean
from typing import Iterable

import pandas as pd

from vbench.deploy.report import deploy_sections
from vbench.errors import VbenchError
from vbench.leaderboard import charts
from vbench.leaderboard.html import chart_html, fragment, slug, table_html
from vbench.leaderboard.sections import Block, display_table, register_section
from vbench.reporting.report import ReportTable

LATENCY = charts.Axis("latency_p90_ms", "batch-1 latency, p90 (ms)", "latency", None, True)
THROUGHPUT = charts.Axis("images_per_s", "images/s at the largest batch", "throughput", None, False)


@register_section("deploy", page="deploy", title="Deployment", order=55)
def deployment(site) -> Iterable[Block]:
    try:
        sections = deploy_sections(site.store, site.suite, site.backbones)
    except VbenchError:  # no deployment results: no page
        return
    for measured, support in zip(sections[::2], sections[1::2]):
        key = f"deploy-{slug(measured.suite)}"
        html = fragment("blocks/board.html.j2", meta=_meta(measured.records), charts=_charts(key, measured.records),
                        notes=[], table=table_html(display_table(f"{key}-drop", drop_section(measured))))
        html += fragment("blocks/board.html.j2", meta=support.title, charts=[], notes=support.notes,
                         table=table_html(display_table(f"{key}-support", support)))
        html += fragment("blocks/board.html.j2", meta="Every measurement", charts=[], notes=measured.notes,
                         table=table_html(display_table(f"{key}-table", measured)))
        yield Block(key, measured.title, html)


def _meta(records: list[dict]) -> str:
    runs = len({r["run_id"] for r in records})
    machines = len({r["hardware"] for r in records})
    return (f"{runs} run{'s' if runs != 1 else ''} on {len({r['runtime'] for r in records})} runtime(s), "
            f"{machines} machine{'s' if machines != 1 else ''}; the accuracy drop of each deployed model:")


def chart_points(records: list[dict], runtime: str, batch_size: int, axis_key: str) -> list[dict]:
    """A point per (backbone, precision) of ``runtime`` at ``batch_size``: mean top-1 and mean ``axis_key`` over
    seeds, coloured by precision (the chart's families)."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if record["runtime"] == runtime and record["batch_size"] == batch_size and record.get(axis_key):
            groups.setdefault((record["model"], record["backbone"], record["precision"]), []).append(record)
    return [{"model": f"{model} {precision}", "backbone": backbone, "family": precision,
             "seeds": sorted({r["seed"] for r in rows}), "n": len(rows), "recipe_hash": "",
             "top1": mean(r["top1"] for r in rows), axis_key: mean(r[axis_key] for r in rows)}
            for (model, backbone, precision), rows in groups.items()]


def _charts(key: str, records: list[dict]) -> list:
    made = []
    largest = max(r["batch_size"] for r in records)
    for runtime in dict.fromkeys(r["runtime"] for r in records):
        for axis, batch_size, name in ((LATENCY, 1, "latency"), (THROUGHPUT, largest, "throughput")):
            points = chart_points(records, runtime, batch_size, axis.key)
            if points:
                spec = charts.metric_chart(f"{runtime}: top-1 against {axis.name}", points, axis, "top1", "top-1")
                made.append(chart_html(f"{key}-{slug(runtime)}-{name}", spec))
    return made


def drop_section(measured: ReportTable) -> ReportTable:
    """Per run, runtime and precision: top-1 deployed, PyTorch's and the difference (a drop is negative; the batch
    sizes share them)."""
    rows = {}
    for r in (r for r in measured.records if r["status"] == "ok"):
        rows.setdefault((r["run_id"], r["hardware"], r["runtime"], r["precision"]), {
            "Model": r["model"], "Seed": str(r["seed"]), "Runtime": r["runtime"], "Precision": r["precision"],
            "Exporter": r["exporter"], "Top-1": f"{r['top1']:.2f}", "PyTorch": f"{r['top1_torch']:.2f}",
            "Δ vs PyTorch": f"{r['top1'] - r['top1_torch']:+.2f}", "max |Δ logit|": f"{r['max_abs_diff']:.2e}"})
    return ReportTable(f"{measured.key}-drop", "classification", f"{measured.title}: accuracy drop", [],
                       pd.DataFrame(list(rows.values())), [], suite=measured.suite)
