"""``vbench robustness``: finished runs' final weights on the 15 corruptions of Hendrycks & Dietterich."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

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
)


@app.command("robustness")
def robustness_command(
    suite: str = typer.Option(..., "--suite", help="cifar10, cifar100, tiny-imagenet (or a suite file of 32 or 64 px); imagenet, imagenet-100: ImageNet's test sets."),
    backbones: Optional[str] = BackboneFilter,
    seeds: Optional[str] = SeedsFilter,
    corruptions: str = typer.Option("all", "--corruptions", help="all, or comma-separated names (gaussian_noise,fog,...)."),
    severities: str = typer.Option("1,2,3,4,5", "--severities", help="Comma-separated severities in 1-5."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where the clean data (and any released -C files) live."),
    limit: Optional[int] = LimitOption,
    device: str = DeviceOption,
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Evaluate the final weights of finished runs on corrupted test images (released files, else generated); on an
    ImageNet suite, on ImageNet-C, -A, -R, -Sketch and V2, those under the data root."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.robustness.corruptions import parse_corruptions, parse_severities
    from vbench.robustness.evaluate import evaluate_robustness
    from vbench.store import opened

    load_plugins(plugin)
    names, levels = parse_corruptions(corruptions), parse_severities(severities)
    the_suite, seed_list = finished_runs_of(suite, seeds, data_root, db)
    if the_suite.kind == "imagenet":
        return _imagenet(the_suite, names, levels, backbones, seed_list, data_root, limit, device, db)
    with opened(db, write=True) as store:
        outcome = evaluate_robustness(store, the_suite, names, levels, backbones=stored_backbone_names(backbones, store),
                                      seeds=seed_list, data_root=data_root, device=device, limit=limit, console=console)
        label = store.label
    print_notes(outcome.skipped)
    table = Table(title=f"vbench robustness: {the_suite.name}")
    for column in ("runs", "corruptions", "severities", "evaluated now", "kept from before", "images"):
        table.add_column(column, justify="right")
    table.add_row(str(len(outcome.runs)), str(len(names)), ",".join(map(str, levels)), str(outcome.evaluated),
                  str(outcome.kept), " and ".join(sorted(outcome.sources)) or "-")
    console.print(table)
    console.print(f"{outcome.evaluated} evaluated now, {outcome.kept} kept from before; results are in {label}\n"
                  f"next: vbench report --robustness --suite {the_suite.name}", highlight=False)


def _imagenet(suite, corruptions, severities, backbones, seeds, data_root, limit, device, db) -> None:
    """``vbench robustness --suite imagenet``: ImageNet's test sets (vbench.robustness.imagenet)."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.robustness.imagenet import evaluate_imagenet
    from vbench.store import opened

    with opened(db, write=True) as store:
        outcome = evaluate_imagenet(store, suite, corruptions, severities, backbones=stored_backbone_names(backbones, store),
                                    seeds=seeds, data_root=data_root, device=device, limit=limit, console=console)
        label = store.label
    print_notes(outcome.skipped)
    table = Table(title=f"vbench robustness: {suite.name} (ImageNet's test sets)")
    for column in ("set", "folder"):
        table.add_column(column)
    for title, folder in outcome.sets.items():
        table.add_row(title, folder)
    for title in outcome.missing:
        table.add_row(title, "[dim]not under the data root: skipped[/dim]")
    console.print(table)
    console.print(f"{len(outcome.runs)} runs: {outcome.evaluated} evaluated now, {outcome.kept} kept from before; results "
                  f"are in {label}\nnext: vbench report --robustness --suite {suite.name}", highlight=False)
