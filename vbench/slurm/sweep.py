"""SLURM sweeps through submitit: ``vbench run ... --launcher slurm``.

Each (backbone, seed) of the command becomes one task of a SLURM job array, submitted with submitit
(the library FAIR's projects use for SLURM); the task runs that one run in its own process through
the same Runner (``vbench.slurm.job.SweepTask``, a submitit ``Checkpointable``: a preempted or timed
out task is requeued by submitit and resumes from the Runner's own checkpoint).

Before anything is submitted, everything is checked: the suite, backbones, data and sizes
(``vbench.engine.plan.plan_run``), that SLURM's commands exist, the ``--slurm-*`` options (SLURM itself judges them
through ``sbatch --test-only``, which submits nothing), and that the store is a database server (a
SQLite file only with ``--allow-sqlite``: SQLite on a network file system can lose writes) that
connects and holds the schema. Submitting is idempotent: a run that is done, or queued or running in
a live job, is not submitted again.

Each submitted task is a ``queued`` row in the store (its ``launch`` column: job id, array task, log
file) that the job claims when it starts, so ``vbench runs`` shows every submitted run and its log.
This module imports neither torch nor submitit at module level.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import submitit

from vbench.engine import distributed
from vbench.engine.plan import RunResult, plan_run
from vbench.engine.runner import RunOptions, RunOutcome
from vbench.errors import VbenchError
from vbench.paths import PACKAGE_FOLDER
from vbench.slurm.job import RunRequest, SweepTask
from vbench.slurm.queue import RUNNING_STATES, job_states, launch_record, running_elsewhere, slurm_launched
from vbench.store import check_url, display_url, open_store, opened

DEFAULT_TIME = "4:00:00"
MAX_REQUEUES = 10  # submitit's requeues of a task that timed out (preemptions do not count)
POLL_FIRST_S, POLL_MAX_S = 1.0, 3.0
SLURM_COMMANDS = ("sbatch", "srun", "squeue", "scancel")
# sbatch options that vbench sets itself: --slurm-option may not set them (their own flag does)
RESERVED_OPTIONS = {
    "partition": "--slurm-partition", "p": "--slurm-partition", "time": "--slurm-time", "t": "--slurm-time",
    "gpus-per-node": "--slurm-gpus-per-job", "gpus": "--slurm-gpus-per-job", "cpus-per-task": "--slurm-cpus-per-job",
    "c": "--slurm-cpus-per-job", "mem": "--slurm-mem", "ntasks-per-node": "--slurm-gpus-per-job",
    "ntasks": "--slurm-gpus-per-job", "nodes": "vbench (one node per job)", "N": "vbench (one node per job)",
    "array": "--max-parallel", "output": "vbench (the log files)", "o": "vbench (the log files)",
    "error": "vbench (the log files)", "e": "vbench (the log files)", "open-mode": "vbench (the log files)",
    "signal": "vbench (requeue before the time limit)", "wrap": "vbench",
}


# --- the options -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlurmSettings:
    """The ``--slurm-*`` options of ``vbench run``, checked by ``check()``."""

    partition: str | None = None
    time: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    mem: str | None = None
    max_parallel: int | None = None
    setup: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    allow_sqlite: bool = False
    wait: bool = True

    @property
    def tasks_per_job(self) -> int:
        """One process per GPU (a distributed run when there are several), else one."""
        return max(1, self.gpus_per_job)

    @property
    def minutes(self) -> int:
        return parse_time(self.time or DEFAULT_TIME)

    @property
    def extra_options(self) -> dict[str, str | bool]:
        return dict(parse_option(text) for text in self.options)

    def check(self) -> "SlurmSettings":
        """Every option on its own (SLURM judges the whole through ``sbatch --test-only`` later)."""
        self.minutes  # noqa: B018 - raises on a bad --slurm-time
        self.extra_options  # noqa: B018 - raises on a bad --slurm-option
        if self.gpus_per_job < 0:
            raise VbenchError(f"--slurm-gpus-per-job must be 0 or more, got {self.gpus_per_job}")
        if self.cpus_per_job is not None and self.cpus_per_job < self.tasks_per_job:
            raise VbenchError(f"--slurm-cpus-per-job {self.cpus_per_job} is fewer than the job's "
                              f"{self.tasks_per_job} processes (one per GPU); give at least {self.tasks_per_job}")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise VbenchError(f"--max-parallel must be at least 1, got {self.max_parallel}")
        if self.mem is not None and not re.fullmatch(r"\d+[KMGT]?B?", self.mem, flags=re.IGNORECASE):
            raise VbenchError(f"--slurm-mem {self.mem!r} is not a SLURM memory size; give e.g. 16G or 32000M")
        return self

    def executor_parameters(self, job_name: str) -> dict:
        """submitit's ``SlurmExecutor.update_parameters`` for these options."""
        parameters = {"job_name": job_name, "time": self.minutes, "nodes": 1, "ntasks_per_node": self.tasks_per_job,
                      "setup": list(self.setup), "additional_parameters": self.extra_options,
                      "stderr_to_stdout": True}  # one log per job, tracebacks included
        if self.partition:
            parameters["partition"] = self.partition
        if self.gpus_per_job:
            parameters["gpus_per_node"] = self.gpus_per_job
        if self.cpus_per_job:
            parameters["cpus_per_task"] = self.cpus_per_job // self.tasks_per_job
        if self.mem:
            parameters["mem"] = self.mem
        if self.max_parallel:
            parameters["array_parallelism"] = self.max_parallel
        return parameters

    def sbatch_flags(self, tasks: int) -> list[str]:
        """The same request as sbatch command-line flags (for ``sbatch --test-only``)."""
        flags = [f"--time={self.minutes}", "--nodes=1", f"--ntasks-per-node={self.tasks_per_job}"]
        if tasks > 1:
            flags.append(f"--array=0-{tasks - 1}%{min(tasks, self.max_parallel or tasks)}")
        if self.partition:
            flags.append(f"--partition={self.partition}")
        if self.gpus_per_job:
            flags.append(f"--gpus-per-node={self.gpus_per_job}")
        if self.cpus_per_job:
            flags.append(f"--cpus-per-task={self.cpus_per_job // self.tasks_per_job}")
        if self.mem:
            flags.append(f"--mem={self.mem}")
        for key, value in self.extra_options.items():
            flags.append(f"--{key}" if value is True else f"--{key}={value}")
        return flags


def parse_option(text: str) -> tuple[str, str | bool]:
    """``key=value`` (or a bare ``key`` for a flag such as ``exclusive``) of one ``--slurm-option``."""
    key, has_value, value = text.partition("=")
    key = key.strip().lstrip("-")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key) or (has_value and not value.strip()):
        raise VbenchError(f"--slurm-option {text!r} is not key=value (an sbatch option without its dashes, e.g. "
                          "--slurm-option account=myproject or --slurm-option qos=high)")
    key = key.replace("_", "-")
    if key in RESERVED_OPTIONS:
        raise VbenchError(f"--slurm-option {text!r}: {key} is set by {RESERVED_OPTIONS[key]}, not --slurm-option")
    return key, value.strip() if has_value else True


def parse_time(text: str) -> int:
    """Minutes in a SLURM time limit: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S (seconds round up)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match or text.strip() in ("0", ""):
        raise VbenchError(f"--slurm-time {text!r} is not a SLURM time limit; give minutes (90) or H:MM:SS (1:30:00) "
                          "or D-HH:MM:SS")
    days, first, second, third = match.groups()
    numbers = [int(part) for part in (first, second, third) if part is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = (numbers + [0, 0])[:3]
        total = int(days) * 1440 + hours * 60 + minutes + (seconds > 0)
    elif len(numbers) == 3:  # H:M:S
        total = numbers[0] * 60 + numbers[1] + (numbers[2] > 0)
    else:  # M or M:S
        total = numbers[0] + (len(numbers) == 2 and numbers[1] > 0)
    if total < 1:
        raise VbenchError(f"--slurm-time {text!r} is shorter than a minute")
    return total


# --- checks before anything is submitted -------------------------------------------------------------
def require_slurm() -> None:
    missing = [name for name in SLURM_COMMANDS if shutil.which(name) is None]
    if missing:
        raise VbenchError(f"--launcher slurm needs SLURM's {', '.join(missing)}, not found on PATH; run on a SLURM "
                          "login node (or use --launcher local)")


def check_sweep_store(url: str, allow_sqlite: bool) -> None:
    """A database server that connects and holds (or can create) the schema; SQLite only when allowed."""
    if url.startswith("sqlite") and not allow_sqlite:
        raise VbenchError(f"--launcher slurm needs a database server (--db postgresql://user@host/db), not the SQLite "
                          f"store {display_url(url)}: SQLite on a network file system can lose writes; pass "
                          "--allow-sqlite to use it anyway")
    open_store(url, write=True).close()


def check_with_sbatch(settings: SlurmSettings, tasks: int, workdir: Path) -> None:
    """SLURM's own judgement of the request (partition, time, resources, every --slurm-option), through
    ``sbatch --test-only``, which submits nothing."""
    command = ["sbatch", "--test-only", *settings.sbatch_flags(tasks), f"--output={os.devnull}", "--wrap", "true"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=workdir)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VbenchError(f"sbatch --test-only did not answer: {exc}") from None
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines()
                 if line.strip() and not line.startswith("Try ")]
        raise VbenchError(f"SLURM refuses the job ({'; '.join(lines) or f'sbatch exited {result.returncode}'}); "
                          "check the --slurm-* options")


# --- submitting --------------------------------------------------------------------------------------
@dataclass
class SweepItem:
    """One (backbone, seed) of the sweep and what became of it at submission."""

    job: object  # vbench.engine.runner.Job
    key: object  # vbench.store.RunKey
    decision: str  # submit | done | busy | failed
    run_id: int | None = None
    job_id: str | None = None
    log: str | None = None
    status: str | None = None  # pending | running | done | failed | busy | skipped (while and after waiting)
    row: object = None

    @property
    def label(self) -> str:
        return f"{self.job.spec.name} seed {self.job.seed}"


@dataclass
class Sweep:
    planned: object  # vbench.engine.plan.PlannedRun
    settings: SlurmSettings
    url: str
    request_of: Callable  # Job -> vbench.slurm.job.RunRequest
    store_label: str = ""
    folder: Path | None = None
    array_id: str | None = None
    tasks: list[SweepItem] = field(default_factory=list)

    @property
    def submitted(self) -> list[SweepItem]:
        return [task for task in self.tasks if task.decision == "submit"]


def plan_sweep(suite: str, backbones: str, seeds: str | None = None, *, db: str | None = None,
               overrides: dict | None = None, sets: Iterable[str] = (), options=None, plugins: Iterable[str] = (),
               settings: SlurmSettings = SlurmSettings(), console=None, **plan_options) -> Sweep:
    """Check everything a sweep needs; nothing is submitted, and the store only gets its schema (the check
    that it can). ``plan_options`` go to ``plan_run``. Raises VbenchError, one line, on bad input."""
    options = options or RunOptions()
    if distributed.requested().active:
        raise VbenchError("--launcher slurm submits jobs: run it as one process, not under torchrun")
    if options.force:
        raise VbenchError("--force cannot be combined with --launcher slurm; delete the runs to redo "
                          "(`vbench runs rm ID`) and submit again")
    url = check_slurm_first(db, settings)
    if options.data_root:
        options = replace(options, data_root=str(Path(options.data_root).expanduser().resolve()))
    planned = plan_run(suite, backbones, seeds, db=db, overrides=overrides, sets=sets, options=options,
                           console=console, **plan_options)
    distributed.Distributed(world_size=settings.tasks_per_job).check_batch_size(planned.suite.recipe.batch_size)
    check_with_sbatch(settings, len(planned.jobs), Path.cwd())
    check_sweep_store(url, settings.allow_sqlite)
    return Sweep(planned, settings, url, _requests(suite, planned, overrides or {}, sets, options, plugins))


def check_slurm_first(db: str | None, settings: SlurmSettings) -> str:
    """The quick checks, before the slow ones: SLURM's commands, the options, a SQLite store refused. Returns the
    store's URL."""
    require_slurm()
    settings.check()
    url = check_url(db)
    if url.startswith("sqlite") and not settings.allow_sqlite:
        check_sweep_store(url, allow_sqlite=False)  # the one-line refusal
    return url


def _requests(suite: str, planned, overrides: dict, sets: Iterable[str], options, plugins: Iterable[str]) -> Callable:
    """What each job runs: this command for one (backbone, seed), every path made absolute."""
    suite_arg = str(Path(suite).resolve()) if Path(suite).is_file() else suite
    plugin_args = tuple(str(Path(p).resolve()) if Path(p).exists() else p for p in plugins)
    sets = tuple(sets)

    def request_of(job) -> RunRequest:
        return RunRequest(suite_arg, job.spec.name, job.seed, planned.url, dict(overrides), sets, options, plugin_args)

    return request_of


def submit_sweep(sweep: Sweep) -> Sweep:
    """Decide what each (backbone, seed) needs, submit the job array and record each submitted run as queued."""
    with opened(sweep.url, write=True) as store:
        sweep.store_label = store.label
        sweep.tasks = decide(sweep.planned, store)
        submit(sweep, store)
    return sweep


def decide(planned, store) -> list[SweepItem]:
    """What each (backbone, seed) needs: ``submit``; ``done`` (finished already: the store skips it);
    ``busy`` (queued or running in a live job or process); ``failed`` (its backbone cannot be built)."""
    runner = planned.runner
    tasks = [SweepItem(job, runner.key(job), "failed" if job.error else "submit") for job in planned.jobs]
    rows = {id(task): store.find_runs(task.key) for task in tasks if task.decision == "submit"}
    states = job_states(run.launch.get("job_id") for found in rows.values() for run in found if slurm_launched(run))
    for task in tasks:
        found = rows.get(id(task), [])
        done = [run for run in found if run.status == "done"]
        live = [run for run in found if running_elsewhere(run, states)]
        if done:
            task.decision, task.run_id, task.row = "done", done[0].id, done[0]
        elif live:
            task.decision, task.run_id, task.row = "busy", live[0].id, live[0]
            task.job_id = (live[0].launch or {}).get("job_id")
            task.log = (live[0].launch or {}).get("log")
    return tasks


def package_root() -> str:
    """The folder vbench is imported from: the job's Python must import the very same code."""
    return str(PACKAGE_FOLDER.parent)


def submit_array(folder: Path, settings: SlurmSettings, job_name: str, calls: list, what: str) -> list:
    """Submit ``calls`` (picklable callables) as one job array under ``folder``; sbatch's refusal is one line."""
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=MAX_REQUEUES)
    parameters = settings.executor_parameters(job_name=job_name)
    parameters["setup"] = [*parameters["setup"],  # the user's lines first: a `module load` may set PYTHONPATH
                           f"export PYTHONPATH={shlex.quote(package_root())}${{PYTHONPATH:+:$PYTHONPATH}}"]
    executor.update_parameters(**parameters)
    jobs = []
    try:
        with executor.batch():  # one job array: the jobs get their ids when the block ends
            for call in calls:
                jobs.append(executor.submit(call))
    except Exception as exc:  # noqa: BLE001 - sbatch's refusal, in one line
        detail = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise VbenchError(f"sbatch refused {what}: {detail[-1] if detail else type(exc).__name__}") from None
    return jobs


def submit(sweep: Sweep, store) -> None:
    """Submit every task marked ``submit`` as one job array and record each as a queued run."""
    todo = sweep.submitted
    if not todo:
        return
    sweep.folder = store.artifact_dir("slurm")
    jobs = submit_array(sweep.folder, sweep.settings, f"vbench-{sweep.planned.suite.name}",
                        [SweepTask(sweep.request_of(task.job)) for task in todo], "the sweep")
    sweep.array_id = jobs[0].job_id.split("_")[0]
    for task, job in zip(todo, jobs):
        task.job_id, task.log = job.job_id, str(job.paths.stdout)
        launch = launch_record(job.job_id, task.log, sweep.settings.tasks_per_job)
        task.run_id = store.queue_run(task.key, sweep.planned.runner.run_fields(task.job), launch)
        task.status = "pending"


# --- waiting -----------------------------------------------------------------------------------------
COUNTED = ("pending", "running", "done", "failed")


def refresh(sweep: Sweep, store) -> dict[str, int]:
    """Each submitted task's state: done or failed as soon as its job has recorded the run so (the job may
    still be winding down), else SLURM's while the job lives; a job gone without either has failed."""
    states = job_states(task.job_id for task in sweep.submitted)
    rows = {run.id: run for run in store.list_runs(suite=sweep.planned.suite.name)}
    for task in sweep.submitted:
        task.row = rows.get(task.run_id, task.row)
        state = states.get(task.job_id)
        recorded = task.row is not None and (task.row.launch or {}).get("job_id") == task.job_id
        if recorded and task.row.status in ("done", "failed"):
            task.status = task.row.status
        elif state in RUNNING_STATES:
            task.status = "running"
        elif state is not None:
            task.status = "pending"
        else:
            task.status = "done" if task.row is not None and task.row.status == "done" else "failed"
    return {name: sum(task.status == name for task in sweep.submitted) for name in COUNTED}


def wait(sweep: Sweep, report: Callable[[dict[str, int]], None] = lambda counts: None):
    """Poll until no submitted task is pending or running (every 1 s, slowing to 3 s while nothing changes),
    calling ``report(counts)`` whenever the counts change; then return the sweep's ``RunResult``. Ctrl-C
    (KeyboardInterrupt) stops the waiting, not the jobs."""
    with opened(sweep.url, write=True) as store:
        interval, last = POLL_FIRST_S, None
        while True:
            counts = refresh(sweep, store)
            if counts != last:
                report(counts)
                interval, last = POLL_FIRST_S, counts
            if counts["pending"] == 0 and counts["running"] == 0:
                break
            time.sleep(interval)
            interval = min(interval * 1.5, POLL_MAX_S)
        record_lost_jobs(sweep, store)
        return sweep_result(sweep, store)


def sweep_result(sweep: Sweep, store):
    """Every (backbone, seed) as a ``RunOutcome`` from its row: done or failed; skipped (done before); busy."""
    rows = {run.id: run for run in store.list_runs(suite=sweep.planned.suite.name)}
    outcomes = []
    for task in sweep.tasks:
        row = rows.get(task.run_id)
        if row is None:
            outcomes.append(RunOutcome(task.job.spec.name, task.job.seed, "failed", error=task.job.error))
            continue
        status = {"done": "skipped", "busy": "busy"}.get(task.decision) or ("done" if row.status == "done" else "failed")
        outcomes.append(RunOutcome(row.backbone, row.seed, status, row.id, dict(row.metrics or {}), row.params,
                                   row.flops, row.train_images_per_s, row.peak_memory_bytes, row.wall_time_s, row.error))
    return RunResult(sweep.planned.suite, outcomes, store.label, store.artifact_root)


def record_lost_jobs(sweep: Sweep, store) -> None:
    """A task whose job ended without finishing or failing its run (killed, out of memory, crashed before
    it began) leaves its row queued or running: mark it failed, pointing at the job's log."""
    for task in sweep.submitted:
        row = task.row
        if task.status != "failed" or row is None or row.status not in ("queued", "running"):
            continue
        if (row.launch or {}).get("job_id") != task.job_id:
            continue  # taken over by another launch since
        store.finish_run(row.id, "failed", error=f"its SLURM job {task.job_id} ended before the run finished; "
                                                 f"see {task.log}")


def how_to_follow(sweep: Sweep, db_flag: str) -> str:
    return (f"the jobs keep running; follow them with: vbench runs{db_flag}    squeue -j {sweep.array_id}"
            + (f"\nlogs: {sweep.folder}" if sweep.folder else ""))
