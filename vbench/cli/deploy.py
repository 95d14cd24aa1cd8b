"""``vbench deploy``: finished runs' final weights on real runtimes: exported, checked, timed, quantised."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

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
from vbench.errors import VbenchError


@app.command("deploy")
def deploy_command(
    suite: str = typer.Option(..., "--suite", help="The suite whose finished runs to deploy (classification)."),
    backbones: Optional[str] = BackboneFilter,
    seeds: Optional[str] = SeedsFilter,
    runtimes: Optional[str] = typer.Option(None, "--runtimes", help="Comma-separated: torch, torch-compile, onnxruntime, openvino (default: all)."),
    precisions: Optional[str] = typer.Option(None, "--precisions", help="Comma-separated: fp32, bf16, int8 (default: all)."),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes", help="Comma-separated (default 1,64): latency at 1, throughput above."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads of every runtime (default: torch's, one per core)."),
    exporter: str = typer.Option("dynamo", "--exporter", help="torch.onnx.export's exporter: dynamo or torchscript."),
    calibration_images: int = typer.Option(256, "--calibration-images", help="INT8: training images to calibrate on."),
    queries: int = typer.Option(200, "--queries", help="Single queries timed at batch 1 (at least 200)."),
    throughput_seconds: float = typer.Option(1.0, "--throughput-seconds", help="Each larger batch size is timed for at least this long."),
    data_root: Optional[str] = DataRootOption,
    limit: Optional[int] = LimitOption,
    device: str = DeviceOption,
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Export, check, evaluate and time the final weights of finished runs on each runtime and precision."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.deploy.evaluate import deploy, parse_request
    from vbench.store import opened

    load_plugins(plugin)
    request = parse_request(runtimes, precisions, batch_sizes, threads, exporter, calibration_images, queries,
                            throughput_seconds, device)
    the_suite, seed_list = finished_runs_of(suite, seeds, data_root, db)
    with opened(db, write=True) as store:
        outcome = deploy(store, the_suite, request, backbones=stored_backbone_names(backbones, store), seeds=seed_list,
                         data_root=data_root, limit=limit, console=console)
        label = store.label
    print_notes(outcome.skipped)
    wide_for_files()
    measured = [row for row in outcome.rows if row["status"] == "ok"]
    if measured:
        console.print(_measurements_table(the_suite.name, measured))
    for line in dict.fromkeys(f"{row['runtime']} {row['precision']}: {row['status']}: {row['reason']}"
                              for row in outcome.rows if row["status"] != "ok"):
        console.print(line, highlight=False, markup=False)
    console.print(f"machine {outcome.hardware.id}: {outcome.hardware.text()}; {request.threads} threads\n"
                  f"{outcome.measured} measured now, {outcome.unsupported} unsupported here, {outcome.kept} kept from "
                  f"before; results are in {label}\nnext: vbench report --deploy --suite {the_suite.name}",
                  highlight=False)
    if outcome.failures:
        others = f" (and {len(outcome.failures) - 1} more)" if len(outcome.failures) > 1 else ""
        raise VbenchError(f"{outcome.failures[0]}{others}; the other results were stored")


def _measurements_table(suite: str, rows: list[dict]) -> Table:
    columns = ("run", "backbone", "seed", "runtime", "precision", "batch", "top-1", "PyTorch", "max |Δ logit|",
               "p50 ms", "p90 ms", "p99 ms", "img/s")
    table = results_table(f"vbench deploy: {suite}", columns, left=("backbone", "runtime", "precision"))
    for row in rows:
        table.add_row(str(row["run_id"]), row["backbone"], str(row["seed"]), row["runtime"], row["precision"],
                      str(row["batch_size"]), f"{row['top1']:.2f}", f"{row['top1_torch']:.2f}",
                      f"{row['max_abs_diff']:.2e}", f"{row['latency_p50_ms']:.3f}", f"{row['latency_p90_ms']:.3f}",
                      f"{row['latency_p99_ms']:.3f}", f"{row['images_per_s']:.0f}")
    return table
