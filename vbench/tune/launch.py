"""``vbench tune ... --launcher slurm``: the trials as tasks of one SLURM job array, all sharing the studies.

The command checks everything as ``vbench run --launcher slurm`` does (``vbench.slurm.sweep``: SLURM's commands,
the ``--slurm-*`` options through ``sbatch --test-only``, a database server for the store), creates the studies,
counts each backbone's open trials and submits one task per open trial. Each task (``TrialJob``) trains one trial of
its backbone's study through the same ``vbench.tune.trials`` code as a local command: it carries on a trial whose
job has ended, else asks the study for a new one, so the tasks of all jobs share one study (in PostgreSQL). A task
that SLURM preempts or times out is requeued by submitit and carries on its own trial's run from its checkpoint.
``--rerun-best`` then submits each backbone's re-runs as a normal ``vbench run`` sweep.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import submitit
from rich.console import Console

from vbench.models.registry import load_all
from vbench.slurm import sweep as slurm_sweep
from vbench.slurm.job import threads_of_the_allocation
from vbench.slurm.queue import job_alive, job_states, launch_record
from vbench.tune.plan import TuneRequest, TuningPlan
from vbench.tune.study import open_studies, study_state
from vbench.tune.trials import Session, best_trials, open_trials, pick_and_run, rerun_request

POLL_S = 2.0


class TrialJob(submitit.helpers.Checkpointable):
    """One SLURM task: one trial of ``backbone``'s study (resubmitted as it is when SLURM requeues it)."""

    def __init__(self, request: TuneRequest, backbone: str):
        self.request, self.backbone = request, backbone

    def __call__(self) -> dict:
        environment = submitit.JobEnvironment()
        threads_of_the_allocation()
        load_all(self.request.plugins)
        launch = {**launch_record(environment.job_id, str(environment.paths.stdout), 1), "host": socket.gethostname()}
        session = Session(self.request, Console(), job_id=environment.job_id, launch=launch)
        try:
            result = pick_and_run(session, self.backbone, _print_start)
            if result is None:
                print(f"{self.backbone}: the study has its trials; nothing to do", flush=True)
                return {"backbone": self.backbone, "status": "none"}
        finally:
            session.close()
        print(f"{self.backbone}: trial {result.number} {result.status} (run {result.run_id}) "
              f"{result.value if result.value is not None else result.error}", flush=True)
        if result.status == "failed":  # the SLURM task fails too, so the array shows it
            raise RuntimeError(f"trial {result.number} failed: {result.error}")
        return {"backbone": self.backbone, "status": result.status, "trial": result.number, "value": result.value}


def _print_start(kind: str, backbone: str, picked) -> None:
    carried = f" (carries on trial {picked.continues}'s run)" if picked.continues is not None else ""
    print(f"{backbone}: trial {picked.trial.number}{carried}: {picked.params}", flush=True)


@dataclass
class TrialSweep:
    plan: TuningPlan
    settings: object  # vbench.slurm.sweep.SlurmSettings
    open: dict[str, int] = field(default_factory=dict)  # backbone -> trials submitted
    jobs: list[tuple[str, str, str]] = field(default_factory=list)  # (backbone, job id, log)
    array_id: str | None = None
    folder: Path | None = None


def check_slurm(plan: TuningPlan, settings) -> None:
    """What a SLURM tuning needs, checked before anything is submitted (the store only gets its schema)."""
    tasks = plan.request.trials * len(plan.group.backbones)
    slurm_sweep.check_with_sbatch(settings, tasks, Path.cwd())
    slurm_sweep.check_sweep_store(plan.request.url, settings.allow_sqlite)


def submit_trials(plan: TuningPlan, settings) -> TrialSweep:
    """Create the studies, count each one's open trials and submit a task per open trial, as one job array."""
    request = plan.request
    sweep = TrialSweep(plan, settings)
    session = Session(request, Console(quiet=True))
    try:
        for backbone in request.group.backbones:
            finished, live = open_trials(session, backbone)
            sweep.open[backbone] = max(0, request.trials - finished - live)
        sweep.folder = session.store.artifact_dir("slurm")
    finally:
        session.close()
    todo = [backbone for backbone, count in sweep.open.items() for _ in range(count)]
    if not todo:
        return sweep
    jobs = slurm_sweep.submit_array(sweep.folder, settings, f"vbench-tune-{request.group.suite}",
                                    [TrialJob(request, backbone) for backbone in todo], "the trials")
    sweep.array_id = jobs[0].job_id.split("_")[0]
    sweep.jobs = [(backbone, job.job_id, str(job.paths.stdout)) for backbone, job in zip(todo, jobs)]
    return sweep


def submitted_line(sweep: TrialSweep) -> str:
    if not sweep.jobs:
        return "nothing to submit: every study has its trials (finished, or running in a live job)"
    counts = ", ".join(f"{backbone} {count}" for backbone, count in sweep.open.items())
    return f"submitted {len(sweep.jobs)} trials ({counts}) as SLURM job {sweep.array_id}"


def how_to_follow(sweep: TrialSweep) -> str:
    return (f"the jobs keep running; follow them with: squeue -j {sweep.array_id}; give the same command again to "
            f"see the studies (nothing is submitted twice)\nlogs: {sweep.folder}")


def wait_trials(sweep: TrialSweep, report: Callable[[str], None]) -> None:
    """Poll until no task of the array is pending or running, reporting the studies' progress when it changes.
    Ctrl-C (KeyboardInterrupt) stops the waiting, not the jobs."""
    request = sweep.plan.request
    studies = open_studies(request.group, request.url, request.trials)
    last = None
    while True:
        states = job_states(job_id for _, job_id, _ in sweep.jobs)
        alive = sum(job_alive(job_id, states) for _, job_id, _ in sweep.jobs)
        finished = {backbone: study_state(study).finished for backbone, study in studies.items()}
        text = f"job {sweep.array_id}: {alive} tasks pending or running; finished trials " + ", ".join(
            f"{backbone} {count} of {request.trials}" for backbone, count in finished.items())
        if text != last:
            report(text)
            last = text
        if not alive:
            return
        time.sleep(POLL_S)


def rerun_best_on_slurm(plan: TuningPlan, settings, states: dict, console) -> list:
    """Each backbone's best trial's recipe on the re-run seeds, as a normal ``vbench run`` sweep; waits for them."""
    request = plan.request
    seeds = ",".join(map(str, plan.rerun_seeds))
    sweeps = []
    for backbone, (number, params) in best_trials(request, states).items():
        sets, options = rerun_request(request, number, params)
        sweep = slurm_sweep.plan_sweep(request.suite, backbone, seeds, db=request.url, overrides=request.overrides,
                                       sets=sets, options=options, plugins=request.plugins, settings=settings)
        slurm_sweep.submit_sweep(sweep)
        console.print(f"{backbone}: re-running trial {number} on seeds {seeds}: "
                      f"{len(sweep.submitted)} runs submitted", highlight=False)
        sweeps.append((backbone, number, sweep))
    return [(backbone, number, slurm_sweep.wait(sweep)) for backbone, number, sweep in sweeps]
