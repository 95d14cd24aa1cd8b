"""``vbench tune``: equal-budget tuning, every backbone the same search (vbench.tune)."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import List, Optional

import typer
from rich.table import Table

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
    number,
    plural,
    summary_table,
    wide_for_files,
)
from vbench.errors import VbenchError


@app.command("tune")
def tune_command(
    suite: str = typer.Option(..., "--suite", help="Built-in suite name or a suite .toml file."),
    backbones: Optional[str] = typer.Option(None, "--backbones", help="Comma-separated names, aliases or patterns: each gets its own study."),
    family: Optional[str] = typer.Option(None, "--family", help="Only backbones of this family (all of it without --backbones)."),
    trials: int = typer.Option(..., "--trials", help="The budget: finished (complete or pruned) trials per backbone."),
    space: Optional[str] = typer.Option(None, "--space", help="The search space, a TOML file (default: lr, weight_decay, drop_path, warmup_epochs, label_smoothing)."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe or random (Optuna's samplers)."),
    pruner: str = typer.Option("median", "--pruner", help="median, asha or none: stops trials on the per-epoch primary metric."),
    seed: int = typer.Option(0, "--seed", help="The samplers' seed and the seed every trial trains with."),
    study: Optional[str] = typer.Option(None, "--study", help="Name of the group of studies (default: the suite's name)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs of every trial (recipe.epochs)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Set recipe.batch_size for every trial."),
    sets: Optional[List[str]] = typer.Option(None, "--set", show_default=False, help="key=value for a recipe key the space does not search (repeatable)."),
    rerun_best: bool = typer.Option(False, "--rerun-best", help="Then train each backbone's best trial's recipe on --seeds as normal runs."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="With --rerun-best: the seeds of the re-runs (default 0,1,2)."),
    data_root: Optional[str] = DatasetRootOption,
    download: bool = DownloadOption,
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N training and test images (a quick debug run)."),
    device: str = DeviceOption,
    amp: bool = AmpOption,
    compile_model: bool = CompileOption,
    pipeline: str = PipelineOption,
    checkpoints: bool = typer.Option(True, "--checkpoints/--no-checkpoints", help="Checkpoint every epoch (an interrupted trial resumes)."),
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
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything and print the plan; train nothing, write nothing."),
) -> None:
    """Tune every backbone with the same budget: one Optuna study each, its trials normal runs (here or on SLURM)."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.engine.runner import RunOptions

    slurm = _slurm.slurm_settings(slurm_partition, slurm_time, slurm_gpus_per_job, slurm_cpus_per_job, slurm_mem,
                                  max_parallel, slurm_setup, slurm_option, allow_sqlite, wait)
    _slurm.check_launcher(launcher, slurm)
    tuning = _tuning_modules()
    if launcher == "slurm":
        # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
        from vbench.slurm.sweep import check_slurm_first

        check_slurm_first(db, slurm)
    load_plugins(plugin)
    options = RunOptions(device=device, amp=amp, compile=compile_model, pipeline=pipeline, checkpoints=checkpoints,
                         limit=limit, data_root=data_root, download=download)
    with err_console.status("loading the data, building and measuring the backbones..."):
        plan = tuning.plan.plan_tuning(
            suite, backbones, trials, space=space, sampler=sampler, pruner=pruner, seed=seed, study=study, db=db,
            overrides={"epochs": epochs, "batch_size": batch_size}, sets=sets or (), options=options,
            rerun_best=rerun_best, seeds=seeds, family=family, plugins=plugin or (), console=console)
        if launcher == "slurm":
            tuning.launch.check_slurm(plan, slurm)
    wide_for_files()
    console.print(first_line(plan), highlight=False)
    if dry_run:
        return
    if launcher == "slurm":
        return _tune_on_slurm(tuning, plan, slurm)
    outcome = tuning.trials.tune(plan.request, console, announce=_announcer(plan))
    console.print(studies_table(plan, outcome.states))
    short = _short_studies(plan, outcome.states, outcome.gave_up)
    if short:
        console.print(short, highlight=False)
        sys.exit(1)
    failed = False
    if plan.rerun_seeds is not None:
        reruns = tuning.trials.rerun_best(plan.request, plan.rerun_seeds, console, outcome.states)
        failed = _print_reruns(plan, reruns)
    _next_lines(plan, db)
    if failed:
        sys.exit(1)


def _tuning_modules():
    """vbench.tune's modules; one line when Optuna (the `tune` extra) is not installed."""
    try:
        # lazy: imports torch and Optuna, an optional dependency (the `tune` extra)
        from vbench.tune import launch, plan, trials
    except ModuleNotFoundError as exc:
        if exc.name == "optuna":
            raise VbenchError("vbench tune needs Optuna: pip install 'vbench[tune]'") from None
        raise
    return SimpleNamespace(plan=plan, trials=trials, launch=launch)


def first_line(plan) -> str:
    group, planned = plan.group, plan.planned
    sizes = planned.runner.data.sizes
    recipe = planned.suite.recipe
    limit = f" (--limit {planned.runner.options.limit})" if planned.runner.options.limit else ""
    steps = (f"{plural(recipe.epochs, 'epoch')} a trial" if planned.suite.task_info.step_unit == "epoch"
             else f"{recipe.iterations} iterations a trial")
    resumed = " (resuming them)" if plan.stored else ""
    return (f"tuning {', '.join(group.backbones)} on suite {group.suite}: {plural(plan.request.trials, 'trial')} each "
            f"of {steps}, {sizes.get('train')} train / {sizes.get('test')} test images{limit}; space "
            f"{group.space.hash[:8]} ({group.space.text()}); sampler {group.sampler}, pruner {group.pruner}, seed "
            f"{group.seed}; studies {group.name}/<backbone>{resumed}")


def _announcer(plan):
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.tune.space import params_text

    budget, unit = plan.request.trials, plan.planned.suite.task_info.primary_metric.label

    def announce(kind: str, backbone: str, item) -> None:
        if kind == "start":
            carried = f" (carries on trial {item.continues}'s run)" if item.continues is not None else ""
            console.print(f"[bold]{backbone}: trial {item.trial.number} ({item.finished + 1} of {budget})[/bold]"
                          f"{carried}: {params_text(item.params)}", highlight=False)
        elif item.status == "complete":
            console.print(f"{backbone}: trial {item.number} complete: {unit} {item.value:.2f}", highlight=False)
        else:
            console.print(f"{backbone}: trial {item.number} {item.status}: {item.error}", highlight=False)

    return announce


def studies_table(plan, states: dict) -> Table:
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.tune.space import params_text

    label = plan.planned.suite.task_info.primary_metric.label
    table = Table(title=f"vbench tune: {plan.group.suite} (study {plan.group.name})")
    for column in ("backbone", "finished", "complete", "pruned", "failed", "best trial", f"best {label}", "best values"):
        table.add_column(column, justify="left" if column in ("backbone", "best values") else "right")
    for backbone, state in states.items():
        table.add_row(backbone, f"{state.finished} of {plan.request.trials}", str(state.complete), str(state.pruned),
                      str(state.failed), "-" if state.best_number is None else str(state.best_number),
                      number(state.best_value), params_text(state.best_params or {}) or "-")
    return table


def _short_studies(plan, states: dict, gave_up: dict) -> str:
    lines = [f"{plan.group.study_name(b)}: {s.finished} of {plan.request.trials} trials finished"
             + (f" ({gave_up[b]})" if b in gave_up else "") for b, s in states.items() if s.finished < plan.request.trials]
    if not lines:
        return ""
    return "\n".join(lines) + "\ngive the same command again to finish them (finished trials are never repeated)"


def _print_reruns(plan, reruns) -> bool:
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.engine.plan import RunResult
    from vbench.store import opened
    from vbench.tune.report import tuned_sections

    results = [result for _, _, result in reruns]
    combined = RunResult(results[0].suite, [o for r in results for o in r.outcomes], results[0].store_label,
                         results[0].artifact_root)
    console.print(summary_table(combined))
    with opened(plan.request.url) as store:
        for section in tuned_sections(store, suite=plan.group.suite, study=plan.group.name):
            console.print(section_table(section))
    return combined.failed


def section_table(section) -> Table:
    table = Table(title=section.title, caption="\n".join(section.notes[:1]))
    for column in section.display.columns:
        table.add_column(str(column), overflow="fold")
    for values in section.display.itertuples(index=False):
        table.add_row(*(str(v) for v in values))
    return table


def _next_lines(plan, db: Optional[str]) -> None:
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.store import display_url, sqlite_file

    db_flag = f" --db {db}" if db else ""
    rerun = "" if plan.rerun_seeds is not None else "the same command with --rerun-best --seeds 0,1,2, then "
    url = plan.request.url
    console.print(f"studies and runs are in {sqlite_file(url) or display_url(url)}\n"
                  f"next: {rerun}vbench report --suite {plan.group.suite}{db_flag}    "
                  f"vbench leaderboard{db_flag}", highlight=False)


def _tune_on_slurm(tuning, plan, settings) -> None:
    """Submit the trials as SLURM jobs sharing the studies, wait for them (or return once submitted)."""
    sweep = tuning.launch.submit_trials(plan, settings)
    console.print(tuning.launch.submitted_line(sweep), highlight=False)
    if not sweep.jobs:
        return _after_slurm(tuning, plan, settings)
    if not settings.wait:
        console.print(tuning.launch.how_to_follow(sweep), highlight=False)
        return None
    try:
        tuning.launch.wait_trials(sweep, lambda text: console.print(text, highlight=False))
    except KeyboardInterrupt:
        console.print(f"\nstopped waiting; {tuning.launch.how_to_follow(sweep)}", highlight=False)
        sys.exit(130)
    return _after_slurm(tuning, plan, settings)


def _after_slurm(tuning, plan, settings) -> None:
    states = tuning.trials.states_of(plan.request)
    console.print(studies_table(plan, states))
    short = _short_studies(plan, states, {})
    if short:
        console.print(short, highlight=False)
        sys.exit(1)
    if plan.rerun_seeds is not None:
        results = tuning.launch.rerun_best_on_slurm(plan, settings, states, console)
        failed = _print_reruns(plan, results)
        if failed:
            sys.exit(1)
