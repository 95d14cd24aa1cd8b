"""``vbench erf``: the effective receptive fields of finished runs (RepLKNet's method), kept in the store."""

from __future__ import annotations

from pathlib import Path
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


@app.command("erf")
def erf_command(
    suite: str = typer.Option(..., "--suite", help="A classification suite with finished runs (digits, cifar10, ...)."),
    backbones: Optional[str] = BackboneFilter,
    seeds: Optional[str] = SeedsFilter,
    images: int = typer.Option(50, "--images", help="Test images the gradients are averaged over (the first N)."),
    init: bool = typer.Option(False, "--init", help="The runs' initial weights (each built with its run's seed), not the final ones."),
    output_dir: str = typer.Option("results/plots", "--output-dir", help="Where the heatmaps (PNG and SVG) go."),
    data_root: Optional[str] = DataRootOption,
    limit: Optional[int] = LimitOption,
    device: str = DeviceOption,
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Measure each run's effective receptive field: the input gradient of the central point of its last feature map."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.analysis.erf import THRESHOLDS, evaluate_erf, threshold_key
    from vbench.analysis.report import erf_charts, save_charts
    from vbench.paths import check_output
    from vbench.store import opened

    load_plugins(plugin)
    check_output(output_dir, "--output-dir", folder=True)
    the_suite, seed_list = finished_runs_of(suite, seeds, data_root, db)
    with opened(db, write=True) as store:
        outcome = evaluate_erf(store, the_suite, backbones=stored_backbone_names(backbones, store), seeds=seed_list,
                               images=images, init=init, data_root=data_root, device=device, limit=limit,
                               console=console)
        written = save_charts(erf_charts(store, the_suite.name, outcome.condition), Path(output_dir))
        label = store.label
    wide_for_files()
    print_notes(outcome.skipped)
    table = results_table(f"vbench erf: {the_suite.name} ({outcome.condition} weights, {images} images)",
                          ("run", "backbone", "seed", "map", *(f"t={round(t * 100)}%" for t in THRESHOLDS)))
    for run, metrics in outcome.results:
        table.add_row(str(run.id), run.backbone, str(run.seed), "x".join(map(str, metrics["map_size"])),
                      *(_ratio(metrics.get(threshold_key(t))) for t in THRESHOLDS))
    table.caption = "high-contribution area ratio: the share of the image inside the smallest centred square " \
                    "holding more than t of the (log-scaled) contribution scores"
    console.print(table)
    console.print(f"{outcome.evaluated} measured now, {outcome.kept} kept from before; results are in {label}; "
                  f"heatmaps: {', '.join(str(p) for p in written if p.suffix == '.png')}\n"
                  f"next: vbench report --erf --suite {the_suite.name}", highlight=False)


def _ratio(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
