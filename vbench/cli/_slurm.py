"""``vbench run ... --launcher slurm``: the options and the command's SLURM path (the logic is in vbench.slurm.sweep)."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vbench.cli._common import console, err_console, summary_table, wide_for_files
from vbench.errors import VbenchError

LAUNCHERS = ("local", "slurm")

LauncherOption = typer.Option("local", "--launcher", help="local (this process) or slurm (each backbone and seed one "
                                                          "task of a SLURM job array, through submitit).")
PartitionOption = typer.Option(None, "--slurm-partition", help="SLURM partition (default: the cluster's).")
TimeOption = typer.Option(None, "--slurm-time", show_default=False,
                          help="Time limit of each job: minutes or [D-]H:MM:SS (default 4:00:00); a job that reaches "
                               "it is requeued and resumes.")
GpusOption = typer.Option(0, "--slurm-gpus-per-job", help="GPUs of each job; with several, the job is one "
                                                          "torch.distributed run over them.")
CpusOption = typer.Option(None, "--slurm-cpus-per-job", help="CPUs of each job (shared among its processes).")
MemOption = typer.Option(None, "--slurm-mem", help="Memory of each job, e.g. 32G.")
MaxParallelOption = typer.Option(None, "--max-parallel", help="At most this many jobs of the sweep at once (the "
                                                              "array throttle).")
SetupOption = typer.Option(None, "--slurm-setup", show_default=False,
                           help="A shell line run before each job, e.g. 'module load cuda' (repeatable).")
SlurmOptionOption = typer.Option(None, "--slurm-option", show_default=False,
                                 help="Any other sbatch option as key=value, e.g. account=proj (repeatable).")
AllowSqliteOption = typer.Option(False, "--allow-sqlite", help="Let --launcher slurm write a SQLite file (jobs on "
                                                               "several nodes can lose writes to it).")
WaitOption = typer.Option(True, "--wait/--no-wait", help="With --launcher slurm: wait and show the jobs' progress "
                                                         "(Ctrl-C leaves them running), or return once submitted.")


def slurm_settings(partition: Optional[str], time: Optional[str], gpus: int, cpus: Optional[int], mem: Optional[str],
                   max_parallel: Optional[int], setup: Optional[List[str]], options: Optional[List[str]],
                   allow_sqlite: bool, wait: bool):
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.slurm.sweep import SlurmSettings

    return SlurmSettings(partition, time, gpus, cpus, mem, max_parallel, tuple(setup or ()), tuple(options or ()),
                         allow_sqlite, wait)


FLAGS = {"partition": "--slurm-partition", "time": "--slurm-time", "gpus_per_job": "--slurm-gpus-per-job",
         "cpus_per_job": "--slurm-cpus-per-job", "mem": "--slurm-mem", "max_parallel": "--max-parallel",
         "setup": "--slurm-setup", "options": "--slurm-option", "allow_sqlite": "--allow-sqlite", "wait": "--no-wait"}


def check_launcher(launcher: str, settings) -> None:
    """``--launcher local`` takes no SLURM option: one given by mistake would silently do nothing."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.slurm.sweep import SlurmSettings

    if launcher not in LAUNCHERS:
        raise VbenchError(f"unknown --launcher {launcher!r}; choose local or slurm")
    if launcher == "local" and settings != SlurmSettings():
        given = [FLAGS[name] for name, value in vars(settings).items() if value != getattr(SlurmSettings(), name)]
        raise VbenchError(f"{', '.join(given)}: SLURM options need --launcher slurm (--launcher local takes none)")


def run_slurm(suite: str, backbones: str, seeds: Optional[str], *, db: Optional[str], overrides: dict, sets: list,
              options, plugins: list, settings, family: Optional[str] = None) -> None:
    """Check everything, submit the sweep, then wait for it with live progress (or return at once)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.slurm import sweep as slurm

    with err_console.status("loading the data, building and measuring the backbones..."):
        sweep = slurm.plan_sweep(suite, backbones, seeds, db=db, overrides=overrides, sets=sets, options=options,
                                 plugins=plugins, settings=settings, console=console, family=family)
    slurm.submit_sweep(sweep)
    wide_for_files()
    db_flag = f" --db {db}" if db else ""
    console.print(_submitted_line(sweep), highlight=False)
    if not sweep.submitted or not settings.wait:
        console.print(submitted_table(sweep))
        if sweep.submitted:
            console.print(slurm.how_to_follow(sweep, db_flag), highlight=False)
        sys.exit(1 if any(task.decision == "failed" for task in sweep.tasks) else 0)
    try:
        result = _wait_with_progress(sweep)
    except KeyboardInterrupt:
        console.print(f"\nstopped waiting; {slurm.how_to_follow(sweep, db_flag)}", highlight=False)
        sys.exit(130)

    console.print(summary_table(result))
    console.print(f"runs are in {result.store_label}; job logs under {sweep.folder}\n"
                  f"next: vbench report{db_flag}    vbench runs{db_flag}", highlight=False)
    if result.failed:
        sys.exit(1)


def _submitted_line(sweep) -> str:
    submitted = sweep.submitted
    skipped = {name: sum(task.decision == name for task in sweep.tasks) for name in ("done", "busy", "failed")}
    notes = [f"{count} {what}" for what, count in (("already done", skipped["done"]),
                                                   ("queued or running elsewhere", skipped["busy"]),
                                                   ("cannot be built", skipped["failed"])) if count]
    head = (f"submitted {len(submitted)} of {len(sweep.tasks)} runs as SLURM job {sweep.array_id}"
            if submitted else f"nothing to submit: all {len(sweep.tasks)} runs are accounted for")
    return head + (f" ({', '.join(notes)})" if notes else "")


def submitted_table(sweep) -> Table:
    table = Table(title=f"vbench run --launcher slurm: {sweep.planned.suite.name}")
    for column in ("run", "backbone", "seed", "state", "job", "log"):
        table.add_column(column, justify="right" if column in ("run", "seed") else "left")
    states = {"submit": "queued", "done": "done already", "busy": "queued or running", "failed": "cannot be built"}
    for task in sweep.tasks:
        table.add_row(str(task.run_id or "-"), task.job.spec.name, str(task.job.seed), states[task.decision],
                      task.job_id or "-", task.log or (task.job.error or ""))
    return table


def _wait_with_progress(sweep):
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.slurm import sweep as slurm

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[counts]}"), console=console, disable=not console.is_terminal)
    bar = progress.add_task(f"job {sweep.array_id}", total=len(sweep.submitted), counts="")

    def report(counts: dict) -> None:
        text = "  ".join(f"{name} {counts[name]}" for name in slurm.COUNTED)
        progress.update(bar, completed=counts["done"] + counts["failed"], counts=text)
        if not console.is_terminal:  # a log gets a line whenever the counts change
            console.print(f"job {sweep.array_id}: {text}", highlight=False)

    with progress:
        return slurm.wait(sweep, report)
