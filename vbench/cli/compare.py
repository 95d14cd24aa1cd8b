"""``vbench compare A B --suite S``: confidence intervals and significance tests between two backbones."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from vbench.api import check_suite_name, parse_seeds, stored_backbone_name
from vbench.cli._common import DbOption, PluginOption, app, load_plugins
from vbench.errors import VbenchError


@app.command("compare")
def compare_command(
    a: str = typer.Argument(..., help="Backbone A (name or alias)."),
    b: str = typer.Argument(..., help="Backbone B (name or alias)."),
    suite: str = typer.Option(..., "--suite", help="The suite both were trained on."),
    suite_b: Optional[str] = typer.Option(None, "--suite-b", help="B's suite, when it is another one (A and B may then be one backbone): same recipe and test images, read another way."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Only these seeds (comma-separated)."),
    fmt: str = typer.Option("markdown", "--format", help="markdown, latex, csv, html or json."),
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Is A better than B? The mean difference over seeds with a 95% t interval (paired or Welch) and its
    p-value; per pair of runs, a bootstrap interval over test images and McNemar's exact test."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.reporting.compare import compare, comparison_report
    from vbench.reporting.render import check_format, render
    from vbench.store import opened

    check_format(fmt)
    seed_list = parse_seeds(seeds, 0) if seeds is not None else None
    load_plugins(plugin)
    with opened(db) as store:
        check_suite_name(store, suite)
        if suite_b:
            check_suite_name(store, suite_b)
        names = [stored_backbone_name(store, name) for name in (a, b)]
        if names[0] == names[1] and suite_b in (None, suite):
            raise VbenchError(f"{a} and {b} are the same backbone; compare two different ones (or one backbone on two "
                              "suites with --suite-b)")
        report = comparison_report(compare(store, suite, *names, seeds=seed_list, suite_b=suite_b))
    sys.stdout.write(render(report, fmt))
