"""``vbench calibration``: ECE, NLL and Brier score of finished runs, before and after temperature scaling."""

from __future__ import annotations

from typing import List, Optional

import typer

from vbench.api import stored_backbone_names
from vbench.cli._common import (
    BackboneFilter,
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


@app.command("calibration")
def calibration_command(
    suite: str = typer.Option(..., "--suite", help="A classification suite with finished runs (digits, cifar10, ...)."),
    backbones: Optional[str] = BackboneFilter,
    seeds: Optional[str] = SeedsFilter,
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Runs whose predictions hold no probabilities: where the data live."),
    limit: Optional[int] = LimitOption,
    device: str = DeviceOption,
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Measure each run's calibration on a held-out half of its test split, before and after temperature scaling."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.analysis.calibration import evaluate_calibration
    from vbench.store import opened

    load_plugins(plugin)
    the_suite, seed_list = finished_runs_of(suite, seeds, data_root, db)
    with opened(db, write=True) as store:
        outcome = evaluate_calibration(store, the_suite, backbones=stored_backbone_names(backbones, store),
                                       seeds=seed_list, data_root=data_root, device=device, limit=limit,
                                       console=console)
        label = store.label
    wide_for_files()
    print_notes(outcome.skipped)
    table = results_table(f"vbench calibration: {the_suite.name} (held-out half of the test split)",
                          ("run", "backbone", "seed", "images", "ECE", "ECE (TS)", "NLL", "NLL (TS)", "Brier",
                           "Brier (TS)", "T"))
    for run, m in outcome.results:
        table.add_row(str(run.id), run.backbone, str(run.seed), str(m["held_out_images"]), f"{100 * m['ece']:.2f}%",
                      f"{100 * m['ece_ts']:.2f}%", f"{m['nll']:.3f}", f"{m['nll_ts']:.3f}", f"{m['brier']:.3f}",
                      f"{m['brier_ts']:.3f}", f"{m['temperature']:.3f}")
    console.print(table)
    weights = f" ({outcome.from_weights} from their final weights: their predictions kept no probabilities)" \
        if outcome.from_weights else ""
    console.print(f"{outcome.evaluated} measured{weights}; results are in {label}\n"
                  f"next: vbench report --calibration --suite {the_suite.name}", highlight=False)
