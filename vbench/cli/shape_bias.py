"""``vbench shape-bias``: shape against texture decisions of finished runs on cue-conflict images."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from vbench.api import check_suite_name, parse_seeds, stored_backbone_names
from vbench.cli._common import (
    BackboneFilter,
    DbOption,
    PluginOption,
    app,
    console,
    err_console,
    load_plugins,
    wide_for_files,
)


@app.command("shape-bias")
def shape_bias_command(
    suite: str = typer.Option(..., "--suite", help="A classification suite with finished runs (digits, cifar10, ...)."),
    backbones: Optional[str] = BackboneFilter,
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Only runs of these seeds (comma-separated)."),
    stimuli: Optional[str] = typer.Option(None, "--stimuli", help="model-vs-human's cue-conflict folder (16-category models); default: hybrid images from the test split."),
    images: Optional[int] = typer.Option(None, "--images", help="Hybrids: the first N test images as shape sources (default all)."),
    sigma: Optional[float] = typer.Option(None, "--sigma", help="Hybrids: the Gaussian blur in pixels that splits shape from texture (default max(1, size/16))."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where the suite's data live."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Runs trained with --limit N: the same first N images."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Measure each run's shape bias: shape / (shape + texture) decisions on cue-conflict images."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.analysis.shape_bias import evaluate_shape_bias
    from vbench.store import check_url, opened
    from vbench.suites import load_suite

    load_plugins(plugin)
    seed_list = parse_seeds(seeds, 0) if seeds else None
    the_suite = load_suite(suite, overrides={"data_root": data_root})
    with opened(check_url(db), write=False) as store:  # nothing to measure is one line before anything is written
        check_suite_name(store, the_suite.name)
    with opened(db, write=True) as store:
        outcome = evaluate_shape_bias(store, the_suite, backbones=stored_backbone_names(backbones, store),
                                      seeds=seed_list, stimuli=stimuli, images=images, sigma=sigma,
                                      data_root=data_root, device=device, limit=limit, console=console)
        label = store.label
    wide_for_files()
    for line in outcome.skipped:
        err_console.print(f"note: {line}", highlight=False)
    table = Table(title=f"vbench shape-bias: {the_suite.name} ({outcome.condition})")
    for column in ("run", "backbone", "seed", "kernel", "counted", "shape", "texture", "other", "shape bias"):
        table.add_column(column, justify="left" if column == "backbone" else "right")
    for run, m in outcome.results:
        table.add_row(str(run.id), run.backbone, str(run.seed), str(m.get("kernel_size") or "-"),
                      f"{m['counted']} of {m['images']}", str(m["shape"]), str(m["texture"]), str(m["other"]),
                      "-" if m["shape_bias"] is None else f"{m['shape_bias']:.3f}")
    console.print(table)
    console.print(f"{outcome.evaluated} measured now, {outcome.kept} kept from before; results are in {label}\n"
                  f"next: vbench report --shape-bias --suite {the_suite.name}", highlight=False)
