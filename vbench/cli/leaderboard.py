"""``vbench leaderboard``: a static site of the run store (tables, charts, a page per run); ``--serve`` serves it."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vbench.api import check_suite_name, stored_backbone_names
from vbench.cli._common import (
    BackboneFilter,
    DbOption,
    PluginOption,
    SuiteFilter,
    app,
    console,
    err_console,
    load_plugins,
)


@app.command("leaderboard")
def leaderboard_command(
    output: str = typer.Option("results/leaderboard", "--output", help="The site's folder (replaced whole)."),
    suite: Optional[str] = SuiteFilter,
    backbones: Optional[str] = BackboneFilter,
    serve: bool = typer.Option(False, "--serve", help="Then serve the site on http://127.0.0.1:PORT/ until Ctrl-C."),
    port: int = typer.Option(8000, "--port", help="The port for --serve (0: any free one)."),
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Write the leaderboard site: per suite the paper-layout table (sortable, filterable) with accuracy against
    params, FLOPs and throughput; segmentation and other tasks on their own pages; a page per run. It works
    offline (file:// or any static host)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.leaderboard import build_site, check_output, open_server
    from vbench.store import opened

    check_output(output)
    if serve:  # a taken port is an error before anything is written
        open_server(check_output(output), port).server_close()
    load_plugins(plugin)
    with opened(db) as store, Progress(TextColumn("run pages"), BarColumn(), MofNCompleteColumn(),
                                       TimeElapsedColumn(), console=err_console, transient=True) as bar:
        check_suite_name(store, suite)

        def progress(total: int):
            task = bar.add_task("run pages", total=total)
            return lambda count: bar.advance(task, count)

        summary = build_site(store, output, suite=suite, backbones=stored_backbone_names(backbones),
                             progress=progress)
    shown = f"{summary.groups} result row{'s' if summary.groups != 1 else ''}" if summary.groups else \
        "no finished runs yet (the index says how to add some)"
    console.print(f"wrote {summary.pages} pages ({summary.run_pages} run pages; {shown}) to {summary.path} in "
                  f"{summary.seconds:.1f} s; open {summary.index}", highlight=False, soft_wrap=True)
    if serve:
        _serve(summary.path, port)


def _serve(path, port: int) -> None:
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.leaderboard import serve_site

    def announce(url: str) -> None:
        console.print(f"serving {path} at {url} (Ctrl-C stops)", highlight=False, soft_wrap=True)
        sys.stdout.flush()

    serve_site(path, port, announce)
    console.print("stopped", highlight=False)
