"""``vbench runs``: list the store's runs; ``vbench runs rm ID`` deletes one with its files."""

from __future__ import annotations

import json
import shutil
from typing import Optional

import typer
from rich.table import Table

from vbench.api import check_suite_name, delete_run, stored_backbone_names
from vbench.cli._common import BackboneFilter, DbOption, FamilyFilter, SuiteFilter, app, console, number, wide_for_files
from vbench.errors import VbenchError
from vbench.paths import check_output
from vbench.recipes import flatten, value_text
from vbench.store.schema import tune_marks
from vbench.tasks import get_task

runs_app = typer.Typer(help="List or delete recorded runs.", no_args_is_help=False)
app.add_typer(runs_app, name="runs")


@runs_app.callback(invoke_without_command=True)
def runs_command(
    ctx: typer.Context,
    suite: Optional[str] = SuiteFilter,
    backbones: Optional[str] = BackboneFilter,
    family: Optional[str] = FamilyFilter,
    status: Optional[str] = typer.Option(None, "--status", help="Only runs with this status (queued, running, done, failed, interrupted)."),
    db: Optional[str] = DbOption,
) -> None:
    """List runs: status, suite, backbone, seed, primary metric, steps and when (`vbench runs rm ID` deletes one)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.store import RUN_STATUSES, opened

    ctx.obj = {"db": db}
    if ctx.invoked_subcommand:
        return
    if status and status not in RUN_STATUSES:
        raise VbenchError(f"unknown --status {status!r}; choose one of {', '.join(RUN_STATUSES)}")
    with opened(db) as store:
        check_suite_name(store, suite)
        runs = store.list_runs(suite=suite, backbones=stored_backbone_names(backbones, store, family), status=status)
        label = store.label
    wide_for_files()
    jobs = scheduler_cells(runs)  # runs submitted to SLURM: their job, its state now, and its log
    table = Table(title=f"Runs in {label}")
    columns = ("id", "status", "suite", "backbone", "seed", "metric", "steps", "data", "started (UTC)", "wall", "error")
    for column in columns + (("job", "log") if jobs else ()):
        table.add_column(column, justify="right" if column in ("id", "seed", "steps", "wall") else "left",
                         overflow="fold" if column == "log" else "ellipsis")  # a log path is shown whole
    colours = {"done": "green", "failed": "red", "interrupted": "yellow", "running": "cyan", "queued": "magenta"}
    for run in runs:
        table.add_row(
            str(run.id), f"[{colours.get(run.status, 'white')}]{run.status}[/]", run.suite, run.backbone, str(run.seed),
            primary_text(run), steps_text(run), (run.data_id or "-")[:8],
            run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "-", number(run.wall_time_s, 1, " s"),
            (run.error or "")[:60], *(jobs.get(run.id, ("", "")) if jobs else ()))
    console.print(table)


def steps_text(run) -> str:
    if (run.settings or {}).get("eval_only"):
        return "eval only"
    steps = f"{run.steps_done}/{run.steps if run.steps is not None else '?'} {run.step_unit or ''}"
    tune = tune_marks(run)  # a run of `vbench tune`: a trial or a re-run of the best
    if "trial" in tune:
        return f"{steps}, trial {tune['trial']} of {tune.get('study')}"
    return f"{steps}, re-run of {tune.get('study')} trial {tune['rerun_of']}" if "rerun_of" in tune else steps


def scheduler_cells(runs) -> dict:
    """``{run id: (job, log)}`` for the runs launched through SLURM; the job cell carries SLURM's state of
    the unfinished ones when squeue is at hand (``ended``: SLURM no longer has the job)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.slurm import queue as slurm

    launched = [run for run in runs if slurm.slurm_launched(run)]
    if not launched:
        return {}
    unfinished = [run.launch.get("job_id") for run in launched if run.status in ("queued", "running")]
    states = slurm.job_states(unfinished) if unfinished and shutil.which("squeue") else None
    return {run.id: slurm.launch_text(run, states) for run in launched}


def primary_text(run) -> str:
    """The run's primary metric, as its task declares it."""
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
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.store import opened

    with opened(db if db is not None else (ctx.obj or {}).get("db"), write=True) as store:
        run = delete_run(store, run_id)
    console.print(f"deleted run {run_id} ({run.suite}, {run.backbone}, seed {run.seed}, {run.status})", highlight=False)


@runs_app.command("show")
def runs_show_command(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Id of the run (see `vbench runs`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole record as JSON."),
    db: Optional[str] = DbOption,
) -> None:
    """One run: recipe, environment, data identity, per-epoch (per-iteration) metrics and its files."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.reporting.run_details import get_run, run_record
    from vbench.store import opened

    with opened(db if db is not None else (ctx.obj or {}).get("db")) as store:
        record = run_record(store, get_run(store, run_id))
    if as_json:
        print(json.dumps(record, indent=2))
        return
    wide_for_files()
    for part in show_parts(record):
        console.print(part)


def show_parts(record: dict) -> list:
    """The renderables of `vbench runs show`, top to bottom."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.reporting.run_details import mfu_text, sparkline

    settings = record.get("settings") or {}
    source = f" of {settings['source']}" if settings.get("eval_only") else ""
    colour = {"done": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}.get(record["status"], "white")
    header = (f"[bold]run {record['id']}[/bold]: {record['backbone']} ({record.get('family') or '-'}) on suite "
              f"{record['suite']}, seed {record['seed']}, {record['task']}, [{colour}]{record['status']}[/]"
              f"{' (eval only' + source + ')' if settings.get('eval_only') else ''}; started {str(record.get('started_at') or '-')[:19]}, "
              f"wall {number(record.get('wall_time_s'), 1, ' s')}")
    parts: list = [header]
    if record.get("error"):
        parts.append(f"[red]error: {record['error']}[/red]")
    parts.append(_pairs("Final metrics and sizes", {
        **{name: value_text(value) for name, value in (record.get("metrics") or {}).items()},
        "params": f"{record['params']:,}" if record.get("params") is not None else "-",
        "FLOPs": f"{record['flops']:,}" if record.get("flops") is not None else "-",
        "train img/s": number(record.get("train_images_per_s"), 0),
        "train FLOP/s, MFU": mfu_text(settings) or "-",
        "peak memory": (f"{record['peak_memory_bytes'] / 2**20:.0f} MiB ({record.get('peak_memory_kind')})"
                        if record.get("peak_memory_bytes") else "-")}))
    parts.append(_pairs(f"Recipe {record['recipe_hash']}", {k: value_text(v) for k, v in flatten(record.get("recipe") or {}).items()}))
    environment = {name: str(record.get(name) or "-") for name in ("host", "device_name", "torch_version", "vbench_version")}
    environment.update({f"settings.{k}": value_text(v) for k, v in settings.items()})
    parts.append(_pairs("Environment", environment))
    data = record.get("data") or {}
    parts.append(_pairs(f"Data {record.get('data_id') or '-'}", {k: value_text(v) if not isinstance(v, dict) else
                                                                  ", ".join(f"{a} {value_text(b)}" for a, b in v.items())
                                                                  for k, v in data.items()}))
    steps = record.get("history") or []
    if steps:
        parts.append(_steps_table(steps, record.get("step_unit") or "epoch"))
        lines = Table.grid(padding=(0, 2))
        for name in [n for n in steps[-1] if n.startswith(("train_", "eval_"))]:
            values = [row.get(name) for row in steps]
            numbers = [v for v in values if isinstance(v, (int, float))]
            if numbers:
                lines.add_row(name, sparkline(values), f"{numbers[0]:.4g} -> {numbers[-1]:.4g}")
        parts.append(lines)
    if record.get("per_class"):
        parts.append(_worst_classes_table(record["per_class"]))
    files = record.get("files") or {}
    parts.append(_pairs("Files", files or {"-": "no files (deleted, or the run did not finish)"}))
    return parts


def _worst_classes_table(per_class: dict):
    """The classes the run gets most wrong, from its per-image predictions."""
    if "error" in per_class:
        return f"[yellow]per-class errors: {per_class['error']}[/yellow]"
    table = Table(title="Worst classes (per-image predictions of the final evaluation)", title_justify="left")
    for column in ("class", "test images", "accuracy", "most often taken for"):
        table.add_column(column, justify="right")
    for row in per_class["worst"]:
        count = row["taken_for_images"]
        taken = "-" if row["taken_for"] is None else f"class {row['taken_for']} ({count} image{'s' * (count != 1)})"
        table.add_row(str(row["class"]), str(row["images"]), f"{row['accuracy']:.1f}%", taken)
    return table


def _pairs(title: str, values: dict) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in values.items():
        table.add_row(str(key), str(value))
    return table


def _steps_table(steps: list[dict], unit: str) -> Table:
    columns = list(dict.fromkeys(name for row in steps for name in row))
    table = Table(title=f"Per {unit}", title_justify="left")
    for column in columns:
        table.add_column(column, justify="right")
    for row in steps:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value else f"{value:.4f}".rstrip("0").rstrip(".")
    return "-" if value is None else str(value)


@runs_app.command("export")
def runs_export_command(
    ctx: typer.Context,
    run_id: Optional[int] = typer.Argument(None, help="Id of the run (or --suite for every finished run of a suite)."),
    suite: Optional[str] = SuiteFilter,
    output: str = typer.Option(..., "--output", help="Folder to write run-<id>/{args.yaml,summary.csv,results.json} into."),
    db: Optional[str] = DbOption,
) -> None:
    """Write per run an args.yaml, a summary.csv (one row per epoch, as timm writes it) and a results.json."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.reporting.run_details import export_runs, get_run
    from vbench.store import opened

    if (run_id is None) == (suite is None):
        raise VbenchError("give a run id or --suite (every finished run of that suite), not both")
    check_output(output, "--output", folder=True)
    with opened(db if db is not None else (ctx.obj or {}).get("db")) as store:
        if run_id is not None:
            runs = [get_run(store, run_id)]
        else:
            check_suite_name(store, suite)
            runs = store.list_runs(suite=suite, status="done")
            if not runs:
                raise VbenchError(f"no finished run of suite {suite!r} in {store.label}")
        folders = export_runs(store, runs, output)
    for folder in folders:
        console.print(str(folder), highlight=False)
