"""``vbench shape-bias``: shape against texture decisions of finished runs on cue-conflict images."""

from __future__ import annotations

from typing import List, Optional

import typer

from vbench.api import stored_backbone_names
from vbench.cli._common import (
    BackboneFilter,
    DataRootOption,
    DbOption,
    DeviceOption,
    LimitOption,
    PluginOption,
    SeedsFilter,
    app,
    console,
    finished_runs_of,
    load_plugins,
    print_notes,
    results_table,
    wide_for_files,
)


@app.command("shape-bias")
def shape_bias_command(
    suite: str = typer.Option(..., "--suite", help="A classification suite with finished runs (digits, cifar10, ...)."),
    backbones: Optional[str] = BackboneFilter,
    seeds: Optional[str] = SeedsFilter,
    stimuli: Optional[str] = typer.Option(None, "--stimuli", help="model-vs-human's cue-conflict folder (16-category models); default: hybrid images from the test split."),
    images: Optional[int] = typer.Option(None, "--images", help="Hybrids: the first N test images as shape sources (default all)."),
    sigma: Optional[float] = typer.Option(None, "--sigma", help="Hybrids: the Gaussian blur in pixels that splits shape from texture (default max(1, size/16))."),
    data_root: Optional[str] = DataRootOption,
    limit: Optional[int] = LimitOption,
    device: str = DeviceOption,
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Measure each run's shape bias: shape / (shape + texture) decisions on cue-conflict images."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.analysis.shape_bias import evaluate_shape_bias
    from vbench.store import opened

    load_plugins(plugin)
    the_suite, seed_list = finished_runs_of(suite, seeds, data_root, db)
    with opened(db, write=True) as store:
        outcome = evaluate_shape_bias(store, the_suite, backbones=stored_backbone_names(backbones, store),
                                      seeds=seed_list, stimuli=stimuli, images=images, sigma=sigma,
                                      data_root=data_root, device=device, limit=limit, console=console)
        label = store.label
    wide_for_files()
    print_notes(outcome.skipped)
    table = results_table(f"vbench shape-bias: {the_suite.name} ({outcome.condition})",
                          ("run", "backbone", "seed", "kernel", "counted", "shape", "texture", "other", "shape bias"))
    for run, m in outcome.results:
        table.add_row(str(run.id), run.backbone, str(run.seed), str(m.get("kernel_size") or "-"),
                      f"{m['counted']} of {m['images']}", str(m["shape"]), str(m["texture"]), str(m["other"]),
                      "-" if m["shape_bias"] is None else f"{m['shape_bias']:.3f}")
    console.print(table)
    console.print(f"{outcome.evaluated} measured now, {outcome.kept} kept from before; results are in {label}\n"
                  f"next: vbench report --shape-bias --suite {the_suite.name}", highlight=False)
