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
from vbench.paths import atomic_write, check_output


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
    erf: bool = typer.Option(False, "--erf", help="The effective receptive fields (vbench erf): area ratios at t = 20-99%."),
    shape_bias: bool = typer.Option(False, "--shape-bias", help="The shape bias on cue-conflict images (vbench shape-bias)."),
    calibration: bool = typer.Option(False, "--calibration", help="ECE, NLL and Brier before and after temperature scaling (vbench calibration), clean and under corruption."),
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
    if output is not None:
        check_output(output, "--output")
    if compare not in (None, "paper"):
        raise VbenchError(f"unknown --compare {compare!r}; the only comparison is `--compare paper`")
    load_plugins(plugin)
    features = {"robustness": robustness, "deploy": deploy, "erf": erf, "shape-bias": shape_bias,
                "calibration": calibration}
    asked = [name for name, wanted in features.items() if wanted]
    if asked and (compare or eval_only):
        raise VbenchError(f"--compare and --eval-only apply to the training tables, not to --{', --'.join(asked)}")
    if reference and not robustness:
        raise VbenchError("--reference applies to --robustness reports; add --robustness")
    with opened(db) as store:
        check_suite_name(store, suite)
        names = stored_backbone_names(backbones, store, family)
        if asked:
            ref = stored_backbone_name(store, reference) if reference else None
            report = feature_report(store, suite, names, asked, ref)
        else:
            report = _with_tuned(store, suite, names, eval_only, lambda: build_report(
                store, suite=suite, backbones=names, compare_paper=compare == "paper", eval_only=eval_only))
    text = render(report, fmt)
    if output is not None:
        write_text(output, text)
        err_console.print(f"wrote {output}", highlight=False)
    else:
        sys.stdout.write(text)


def feature_report(store, suite, names, asked: list[str], reference: str | None):
    """The tables of the features asked for (robustness, deployment, the analyses), in that order."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.analysis.report import calibration_sections, erf_sections, shape_bias_sections
    from vbench.deploy.report import deploy_sections
    from vbench.reporting.report import Report
    from vbench.robustness.report import robustness_sections

    makers = {"robustness": lambda: robustness_sections(store, suite, names, reference),
              "deploy": lambda: deploy_sections(store, suite, names),
              "erf": lambda: erf_sections(store, suite, names),
              "shape-bias": lambda: shape_bias_sections(store, suite, names),
              "calibration": lambda: calibration_sections(store, suite, names)}
    return Report([section for name in asked for section in makers[name]()], [], compare_paper=False)


def _with_tuned(store, suite, names, eval_only: bool, build):
    """The fixed-recipe report with the tuned tables of `vbench tune` after it, apart (either may be alone)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.reporting.report import Report
    from vbench.tune.report import tuned_sections

    tuned = [] if eval_only else tuned_sections(store, suite=suite, backbones=names)
    try:
        report = build()
    except VbenchError:
        if not tuned:
            raise
        return Report(tuned, [], compare_paper=False)
    report.sections += tuned
    return report


def write_text(output: str, text: str) -> None:
    try:
        atomic_write(Path(output), text)
    except OSError as exc:
        raise VbenchError(f"cannot write the report to {output!r}: {exc.strerror}; give a writable --output") from None
