"""The leaderboard's tuning page: per suite and study of ``vbench tune``, the tuned table of ``vbench report`` (best
recipes, trials, re-runs, equal-budget and fixed-recipe gains), and per backbone its optimisation history and
parameter importances as plotly charts (read from the Optuna studies in the run store's database)."""

from __future__ import annotations

from typing import Iterable

from vbench.leaderboard.html import chart_html, fragment, slug, table_html
from vbench.leaderboard.sections import Block, display_table, register_section
from vbench.tune.report import tuned_sections


@register_section("tuning", page="tuning", title="Tuning", order=55)
def tuning(site) -> Iterable[Block]:
    for section in tuned_sections(site.store, site.suite, site.backbones):
        key = f"tuning-{slug(section.key)}"
        study = section.records[0]["study"] if section.records else ""
        charts, notes = _charts(site.store.url, study, key)
        html = fragment("blocks/board.html.j2", meta=None, table=table_html(display_table(f"{key}-table", section)),
                        charts=charts, notes=[*section.notes, *notes])
        yield Block(key, section.title, html)


def _charts(url: str, study: str, key: str) -> tuple[list, list[str]]:
    try:
        # lazy: Optuna is an optional dependency (the `tune` extra); without it the page has its table alone
        from vbench.leaderboard.tuning_charts import group_charts
    except ModuleNotFoundError:
        return [], ["The studies' charts need Optuna: pip install 'vbench[tune]'."]
    charts, notes = [], []
    for entry in group_charts(url, study, "top-1 (%)"):
        name = slug(entry.backbone)
        charts += [chart_html(f"{key}-{name}-history", entry.history), chart_html(f"{key}-{name}-importance",
                                                                                   entry.importance)]
        notes += [entry.note] if entry.note else []
    return charts, notes
