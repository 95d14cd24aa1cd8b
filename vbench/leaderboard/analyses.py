"""Sections of the analyses that go beyond the paper's tables, on pages of their own:

- robustness: the corruption results of ``vbench robustness`` (mCE against the reference, accuracy per
  corruption), as ``vbench report --robustness`` gives them;
- significance: every LKCA model against its ViT partner trained as the same experiment, as ``vbench compare``
  gives it (the t interval over seeds with its p-value; per pair of runs McNemar's exact test and a bootstrap
  interval over test images);
- imagenet: the ImageNet suites' tables (top-1, top-5, params, FLOPs and throughput at the input size) with a
  chart of top-1 against FLOPs.
"""

from __future__ import annotations

from typing import Iterable

from vbench.errors import VbenchError
from vbench.leaderboard import charts
from vbench.leaderboard.html import chart_html, fragment, slug, table_html
from vbench.leaderboard.sections import Block, display_table, register_section
from vbench.reporting.compare import compare, comparison_report
from vbench.reporting.report import IMAGENET_KEY
from vbench.robustness.report import robustness_sections

SITE_RESAMPLES = 999  # fewer than `vbench compare`'s 9,999: a site may hold many pairs


@register_section("robustness", page="robustness", title="Robustness", order=50)
def robustness(site) -> Iterable[Block]:
    try:
        sections = robustness_sections(site.store, site.suite, site.backbones)
    except VbenchError:  # no corruption results: no page
        return
    for section in sections:
        key = f"robustness-{slug(section.key)}"
        yield Block(key, section.title, fragment("blocks/board.html.j2", meta=None, charts=[], notes=section.notes,
                                                 table=table_html(display_table(f"{key}-table", section))))


@register_section("significance", page="significance", title="Significance", order=60)
def significance(site) -> Iterable[Block]:
    for section in (site.report.sections if site.report else []):
        if section.task != "classification" or section.pivot:
            continue
        for record in (r for r in section.records if r["gain"] is not None):
            try:
                comparison = compare(site.store, record["suite"], record["backbone"], record["partner"],
                                     n_resamples=SITE_RESAMPLES)
            except VbenchError:
                continue
            report = comparison_report(comparison)
            key = slug(f"significance-{record['suite']}-{record['backbone']}")
            seeds, images = report.sections[:2]  # a calibration section may follow
            notes = seeds.notes + images.notes + report.notes + [
                f"Bootstrap intervals here use {SITE_RESAMPLES} resamples; `vbench compare` uses more."]
            html = fragment("blocks/board.html.j2", meta=None, charts=[], notes=notes,
                            table=table_html(display_table(f"{key}-seeds", seeds)))
            html += table_html(display_table(f"{key}-images", images))
            yield Block(key, f"{record['suite']}: {seeds.title.split(': ')[0]}", html)


@register_section("imagenet", page="imagenet", title="ImageNet", order=40)
def imagenet(site) -> Iterable[Block]:
    for section in (site.report.sections if site.report else []):
        if not section.key.startswith(IMAGENET_KEY):
            continue
        key = slug(f"imagenet-{section.suite}")
        chart = charts.metric_chart("top-1 against FLOPs", section.records, charts.ACCURACY_AXES["flops"], "acc_mean",
                                    "top-1", std_key="acc_std")
        yield Block(key, section.title, fragment("blocks/board.html.j2", meta=None, notes=section.notes,
                                                 charts=[chart_html(f"{key}-flops", chart)],
                                                 table=table_html(display_table(f"{key}-table", section))))
