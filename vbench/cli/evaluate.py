"""``vbench eval``: evaluate weights on a suite's test split without training, and record an eval-only run."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from vbench.cli._common import (
    AmpOption,
    DatasetRootOption,
    DbOption,
    DeviceOption,
    DownloadOption,
    PluginOption,
    app,
    console,
    count_text,
    err_console,
    load_plugins,
    number,
)


@app.command("eval")
def eval_command(
    suite: Optional[str] = typer.Option(None, "--suite", help="Built-in suite name or a suite .toml file (default with --run: the run's)."),
    backbones: Optional[str] = typer.Option(None, "--backbones", help="The backbone the weights belong to (default with --run: the run's)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Weights file: a vbench checkpoint, a torch state dict (model/state_dict) or .safetensors."),
    run_id: Optional[int] = typer.Option(None, "--run", help="Evaluate this run's final weights (or its last checkpoint)."),
    results_file: Optional[str] = typer.Option(None, "--results-file", help="Also write the result as JSON to this file."),
    sets: Optional[List[str]] = typer.Option(None, "--set", show_default=False, help="key=value for any recipe key (e.g. eval_batch_size=64)."),
    data_root: Optional[str] = DatasetRootOption,
    download: bool = DownloadOption,
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N test images."),
    device: str = DeviceOption,
    amp: bool = AmpOption,
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Evaluate weights without training (timm's validate.py): the suite's metrics on its test split,
    recorded as an eval-only run that training reports leave out."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.engine.evaluate import evaluate_weights
    from vbench.engine.runner import RunOptions

    load_plugins(plugin)
    options = RunOptions(device=device, amp=amp, limit=limit, data_root=data_root, download=download,
                         checkpoints=False)
    with err_console.status("loading the data and the weights, evaluating..."):
        result = evaluate_weights(suite, backbones, checkpoint=checkpoint, run_id=run_id, db=db, sets=sets or (),
                                  options=options, console=console, results_file=results_file)
    info = result.suite.task_info
    table = Table(title=f"vbench eval: {result.suite.name} ({result.data.sizes.get('test')} test images)")
    for column in ("run", "backbone", "weights", *(m.label for m in info.metrics), "params", "FLOPs", "time"):
        table.add_column(column, justify="left" if column in ("backbone", "weights") else "right", overflow="fold")
    table.add_row(str(result.run_id), result.backbone, result.source.label,
                  *(number(result.metrics.get(m.name)) for m in info.metrics), count_text(result.size.get("params")),
                  count_text(result.size.get("flops")), number(result.seconds, 1, " s"))
    console.print(table)
    written = f"; JSON in {results_file}" if results_file else ""
    console.print(f"recorded as eval-only run {result.run_id} in {result.store_label}{written}", highlight=False)
