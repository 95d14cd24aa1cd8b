"""``vbench plot``: accuracy against params and FLOPs per suite, mIoU against iterations."""

from __future__ import annotations

from typing import List, Optional

import typer

from vbench.api import check_suite_name
from vbench.cli._common import DbOption, PluginOption, SuiteFilter, app, console, load_plugins


@app.command("plot")
def plot_command(
    suite: Optional[str] = SuiteFilter,
    output_dir: str = typer.Option("results/plots", "--output-dir", help="Where the PNG and SVG files go."),
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Top-1 against params and FLOPs per suite (measured filled, the paper's hollow); mIoU against
    iterations per backbone and head for segmentation suites."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.reporting.plot import plot_all
    from vbench.store import opened

    load_plugins(plugin)
    with opened(db) as store:
        check_suite_name(store, suite)
        written = plot_all(store, output_dir, suite=suite)
    for path in written:
        console.print(str(path), highlight=False)
