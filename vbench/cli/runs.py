"""``vbench runs``: list the store's runs; ``vbench runs rm ID`` deletes one with its files."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from vbench.cli._common import BackboneFilter, DbOption, SuiteFilter, app, console, number, wide_for_files

runs_app = typer.Typer(help="List or delete recorded runs.", no_args_is_help=False)
app.add_typer(runs_app, name="runs")


@runs_app.callback(invoke_without_command=True)
def runs_command(
    ctx: typer.Context,
    suite: Optional[str] = SuiteFilter,
    backbones: Optional[str] = BackboneFilter,
    status: Optional[str] = typer.Option(None, "--status", help="Only runs with this status (queued, running, done, failed, interrupted)."),
    db: Optional[str] = DbOption,
) -> None:
    """List runs: status, suite, backbone, seed, primary metric, steps and when (`vbench runs rm ID` deletes one)."""
    from vbench.api import check_suite_name, stored_backbone_names
    from vbench.errors import VbenchError
    from vbench.store import RUN_STATUSES, opened

    ctx.obj = {"db": db}
    if ctx.invoked_subcommand:
        return
    if status and status not in RUN_STATUSES:
        raise VbenchError(f"unknown --status {status!r}; choose one of {', '.join(RUN_STATUSES)}")
    with opened(db) as store:
        check_suite_name(store, suite)
        runs = store.list_runs(suite=suite, backbones=stored_backbone_names(backbones), status=status)
        label = store.label
    wide_for_files()
    jobs = scheduler_cells(runs)  # runs submitted to SLURM: their job, its state now, and its log
    table = Table(title=f"Runs in {label}")
    columns = ("id", "status", "suite", "backbone", "seed", "metric", "steps", "started (UTC)", "wall", "error")
    for column in columns + (("job", "log") if jobs else ()):
        table.add_column(column, justify="right" if column in ("id", "seed", "steps", "wall") else "left",
                         overflow="fold" if column == "log" else "ellipsis")  # a log path is shown whole
    colours = {"done": "green", "failed": "red", "interrupted": "yellow", "running": "cyan", "queued": "magenta"}
    for run in runs:
        table.add_row(
            str(run.id), f"[{colours.get(run.status, 'white')}]{run.status}[/]", run.suite, run.backbone, str(run.seed),
            primary_text(run), f"{run.steps_done}/{run.steps if run.steps is not None else '?'} {run.step_unit or ''}",
            run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "-", number(run.wall_time_s, 1, " s"),
            (run.error or "")[:60], *(jobs.get(run.id, ("", "")) if jobs else ()))
    console.print(table)


def scheduler_cells(runs) -> dict:
    """``{run id: (job, log)}`` for the runs launched through SLURM; the job cell carries SLURM's state of
    the unfinished ones when squeue is at hand (``ended``: SLURM no longer has the job)."""
    import shutil

    from vbench import slurm

    launched = [run for run in runs if slurm.slurm_launched(run)]
    if not launched:
        return {}
    unfinished = [run.launch.get("job_id") for run in launched if run.status in ("queued", "running")]
    states = slurm.job_states(unfinished) if unfinished and shutil.which("squeue") else None
    return {run.id: slurm.launch_text(run, states) for run in launched}


def primary_text(run) -> str:
    """The run's primary metric, as its task declares it."""
    from vbench.tasks import get_task

    try:
        metric = get_task(run.task).primary_metric
    except Exception:  # noqa: BLE001 - a run of a task that is not installed now
        return "-"
    value = run.metric(metric.name)
    return "-" if value is None else f"{metric.label} {value:.2f}"


@runs_app.command("rm")
def runs_rm_command(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Id of the run (see `vbench runs`)."),
    db: Optional[str] = DbOption,
) -> None:
    """Delete one run, its steps and evaluations, and its files (checkpoints, weights, predictions)."""
    from vbench.api import delete_run
    from vbench.store import opened

    with opened(db or (ctx.obj or {}).get("db"), write=True) as store:
        run = delete_run(store, run_id)
    console.print(f"deleted run {run_id} ({run.suite}, {run.backbone}, seed {run.seed}, {run.status})", highlight=False)
