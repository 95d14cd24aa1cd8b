"""``vbench report``: the paper's tables from the finished runs, in one document of any format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from vbench.api import check_suite_name, stored_backbone_name, stored_backbone_names
from vbench.cli._common import (
    BackboneFilter,
    DbOption,
    FamilyFilter,
    PluginOption,
    SuiteFilter,
    app,
    err_console,
    load_plugins,
)
from vbench.errors import VbenchError


@app.command("report")
def report_command(
    suite: Optional[str] = SuiteFilter,
    backbones: Optional[str] = BackboneFilter,
    family: Optional[str] = FamilyFilter,
    fmt: str = typer.Option("markdown", "--format", help="markdown, latex, csv, html or json."),
    compare: Optional[str] = typer.Option(None, "--compare", help="`paper`: the published numbers beside the measured ones."),
    output: Optional[str] = typer.Option(None, "--output", help="Write to this file instead of stdout."),
    robustness: bool = typer.Option(False, "--robustness", help="The corruption results (vbench robustness): accuracy per corruption, mCE."),
    reference: Optional[str] = typer.Option(None, "--reference", help="With --robustness: the backbone CE is relative to (default: each LKCA model's ViT partner)."),
    eval_only: bool = typer.Option(False, "--eval-only", help="Only the rows of `vbench eval` (weights evaluated without training)."),
    deploy: bool = typer.Option(False, "--deploy", help="The deployment results (vbench deploy): accuracy, latency, throughput, support."),
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Paper-style tables (Tables 1-4 layout; Tables 6-7 for segmentation) of the finished runs."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.reporting.render import check_format, render
    from vbench.reporting.report import build_report
    from vbench.store import opened

    check_format(fmt)
    if compare not in (None, "paper"):
        raise VbenchError(f"unknown --compare {compare!r}; the only comparison is `--compare paper`")
    load_plugins(plugin)
    if deploy and (robustness or compare or eval_only):
        raise VbenchError("--deploy is a report of its own; leave out --robustness, --compare and --eval-only")
    if reference and not robustness:
        raise VbenchError("--reference applies to --robustness reports; add --robustness")
    with opened(db) as store:
        check_suite_name(store, suite)
        names = stored_backbone_names(backbones, store, family)
        if deploy:
            # lazy: keeps `vbench --help` and `vbench list` fast
            from vbench.deploy.report import deploy_sections
            from vbench.reporting.report import Report

            report = Report(deploy_sections(store, suite, names), [], compare_paper=False)
        elif robustness:
            # lazy: keeps `vbench --help` and `vbench list` fast
            from vbench.reporting.report import Report
            from vbench.robustness.report import robustness_sections

            ref = stored_backbone_name(store, reference) if reference else None
            report = Report(robustness_sections(store, suite, names, ref), [], compare_paper=False)
        else:
            report = build_report(store, suite=suite, backbones=names, compare_paper=compare == "paper",
                                  eval_only=eval_only)
    text = render(report, fmt)
    if output:
        write_text(output, text)
        err_console.print(f"wrote {output}", highlight=False)
    else:
        sys.stdout.write(text)


def write_text(output: str, text: str) -> None:
    path = Path(output)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise VbenchError(f"cannot write the report to {output!r}: {exc.strerror}; give a writable --output") from None
