"""``vbench run``: train backbones on a suite and record every run."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from vbench.cli import _slurm
from vbench.cli._common import (
    AmpOption,
    CompileOption,
    DatasetRootOption,
    DbOption,
    DeviceOption,
    DownloadOption,
    PipelineOption,
    PluginOption,
    app,
    console,
    err_console,
    load_plugins,
    plural,
    summary_table,
    wide_for_files,
)
from vbench.errors import VbenchError


@app.command("run")
def run_command(
    suite: str = typer.Option(..., "--suite", help="Built-in suite name or a suite .toml file."),
    backbones: Optional[str] = typer.Option(None, "--backbones", help="Comma-separated names, aliases or patterns (vit-*)."),
    family: Optional[str] = typer.Option(None, "--family", help="Only backbones of this family (all of it without --backbones)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds (default: the recipe's seed)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Set recipe.epochs (the warm-up follows unless set)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Set recipe.batch_size."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Set recipe.lr."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Set recipe.seed (the seed when --seeds is not given)."),
    sets: Optional[List[str]] = typer.Option(None, "--set", show_default=False, help="key=value for any recipe key (repeatable)."),
    data_root: Optional[str] = DatasetRootOption,
    download: bool = DownloadOption,
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N training and test images (a quick debug run)."),
    device: str = DeviceOption,
    amp: bool = AmpOption,
    compile_model: bool = CompileOption,
    pipeline: str = PipelineOption,
    checkpoints: bool = typer.Option(True, "--checkpoints/--no-checkpoints", help="Write a resumable checkpoint after every evaluation."),
    force: bool = typer.Option(False, "--force", help="Rerun finished runs from scratch."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved recipe and the jobs, then exit: nothing is trained or written."),
    tensorboard: Optional[str] = typer.Option(None, "--tensorboard", help="Also log every epoch's metrics for TensorBoard under this folder."),
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
    launcher: str = _slurm.LauncherOption,
    slurm_partition: Optional[str] = _slurm.PartitionOption,
    slurm_time: Optional[str] = _slurm.TimeOption,
    slurm_gpus_per_job: int = _slurm.GpusOption,
    slurm_cpus_per_job: Optional[int] = _slurm.CpusOption,
    slurm_mem: Optional[str] = _slurm.MemOption,
    max_parallel: Optional[int] = _slurm.MaxParallelOption,
    slurm_setup: Optional[List[str]] = _slurm.SetupOption,
    slurm_option: Optional[List[str]] = _slurm.SlurmOptionOption,
    allow_sqlite: bool = _slurm.AllowSqliteOption,
    wait: bool = _slurm.WaitOption,
) -> None:
    """Train backbones on a suite and record every run in the run store (here, or as SLURM jobs)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench import api
    from vbench.engine.runner import RunOptions

    slurm = _slurm.slurm_settings(slurm_partition, slurm_time, slurm_gpus_per_job, slurm_cpus_per_job, slurm_mem,
                                  max_parallel, slurm_setup, slurm_option, allow_sqlite, wait)
    _slurm.check_launcher(launcher, slurm)
    load_plugins(plugin)
    if tensorboard:
        # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
        from vbench.engine.tensorboard import check_log_dir

        check_log_dir(tensorboard)
    options = RunOptions(device=device, amp=amp, compile=compile_model, pipeline=pipeline, force=force,
                         checkpoints=checkpoints, limit=limit, data_root=data_root, download=download)
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    if launcher == "slurm":
        if dry_run or tensorboard:
            raise VbenchError("--dry-run and --tensorboard apply to local runs; leave them out with --launcher slurm")
        return _slurm.run_slurm(suite, backbones, seeds, db=db, overrides=overrides, sets=sets or [], options=options,
                                plugins=plugin or [], settings=slurm, family=family)
    with err_console.status("loading the data, building and measuring the backbones..."):
        planned = api.plan_run(suite, backbones, seeds, db=db, overrides=overrides, sets=sets or (), options=options,
                               console=console, family=family)
    if not planned.runner.dist.is_main:  # torchrun: rank 0 alone reports
        console.quiet = True
    wide_for_files()
    if dry_run:
        # lazy: keeps `vbench --help` and `vbench list` fast
        from vbench.cli._plan import print_plan

        print_plan(planned, _first_line(planned))
        return
    console.print(_first_line(planned), highlight=False)
    if tensorboard:
        # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
        from vbench.engine.tensorboard import TensorBoardLog

        with TensorBoardLog(tensorboard, planned) as log:
            planned.runner.observers.append(log)
            result = api.execute(planned)
    else:
        result = api.execute(planned)
    console.print(summary_table(result))
    console.print(f"runs are in {result.store_label}; checkpoints under {result.artifact_root / 'checkpoints'}\n"
                  f"next: vbench report{_db_flag(db)}    vbench plot{_db_flag(db)}    vbench runs{_db_flag(db)}",
                  highlight=False)
    if result.failed:
        sys.exit(1)  # the failed runs are in the table and the store; scripts see a non-zero status


def _db_flag(db: Optional[str]) -> str:
    return f" --db {db}" if db else ""


def _first_line(planned) -> str:
    suite, runner = planned.suite, planned.runner
    sizes = runner.data.sizes
    recipe = suite.recipe
    if suite.task_info.step_unit == "epoch":
        schedule = (f"{plural(recipe.epochs, 'epoch')} ({plural(recipe.warmup_epochs, 'warm-up epoch')}) of "
                    f"{plural(runner.stages[0].iterations, 'step')}")
    else:
        points = ", ".join(str(stage.label) for stage in runner.stages)
        schedule = f"{recipe.iterations} iterations, {recipe.head} head, evaluated at {points}"
    limit = f" (--limit {planned.runner.options.limit})" if planned.runner.options.limit else ""
    return (f"suite {suite.name}: {sizes.get('train')} train / {sizes.get('test')} test images{limit}, {schedule}, "
            f"{plural(len(planned.jobs), 'run')}, device {runner.device}, precision {runner.precision.name}")
