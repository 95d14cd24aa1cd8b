"""SLURM's view of jobs, as a sweep and its jobs see it: states from squeue, the launch record a queued run
keeps, and which rows a live job still holds. Imports neither torch nor submitit."""

from __future__ import annotations

import subprocess
from typing import Iterable

from vbench.store import holder_alive, utcnow

RUNNING_STATES = {"RUNNING", "COMPLETING"}


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """SLURM's state of each pending or running job (``123`` or an array task ``123_4``) among ``job_ids``;
    a job that is not there has ended. Asks squeue once for all (once per job where one is unknown)."""
    wanted = {str(job_id) for job_id in job_ids if job_id}
    if not wanted:
        return {}
    bases = sorted({job_id.split("_")[0] for job_id in wanted})
    states: dict[str, str] = {}
    for group in ([bases] if len(bases) == 1 else [bases, *[[base] for base in bases]]):
        output = _squeue(group)
        if output is None:
            continue  # an id squeue no longer knows: ask for each on its own
        for line in output.splitlines():
            job_id, _, state = line.strip().partition("|")
            states[job_id] = state.split()[0] if state else "UNKNOWN"
        if group is bases:
            break
    return {job_id: state for job_id, state in states.items() if job_id in wanted or job_id.split("_")[0] in wanted}


def _squeue(bases: list[str]) -> str | None:
    try:
        result = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(bases)], capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def job_alive(job_id: str | None, states: dict[str, str]) -> bool:
    return bool(job_id) and (job_id in states or job_id.split("_")[0] in states)


def slurm_launched(run) -> bool:
    return bool(run.launch) and run.launch.get("launcher") == "slurm"


def launch_text(run, states: dict[str, str] | None) -> tuple[str, str]:
    """``vbench runs``'s job and log cells: ``slurm 123_4 PENDING`` (``ended`` once SLURM has no such job)."""
    if not slurm_launched(run):
        return "", ""
    job_id = str(run.launch.get("job_id") or "")
    state = ""
    if states is not None and run.status in ("queued", "running"):
        state = states.get(job_id, states.get(job_id.split("_")[0], "ended"))
    return f"slurm {job_id} {state}".strip(), str(run.launch.get("log") or "")


def running_elsewhere(run, states: dict[str, str]) -> bool:
    """Whether a queued or running row is held by something alive: its SLURM job, or (launched otherwise)
    a process that still renews its lease."""
    if run.status == "queued":
        return slurm_launched(run) and job_alive(run.launch.get("job_id"), states)
    if run.status != "running":
        return False
    if slurm_launched(run):
        return job_alive(run.launch.get("job_id"), states)
    return run.owner is not None and holder_alive(run.owner, run.heartbeat_at, utcnow())


def launch_record(job_id: str, log: str, tasks_per_job: int) -> dict:
    array_id, _, array_task = job_id.partition("_")
    return {"launcher": "slurm", "job_id": job_id, "array_job_id": array_id if array_task else None,
            "array_task": int(array_task) if array_task else None, "log": log, "processes": tasks_per_job}



def release_dead_holders(store, key, my_job_id: str | None) -> list[int]:
    """In a job, before claiming: a row of ``key`` still ``running`` under a SLURM job that has ended, or
    under an earlier run of this very job (requeued after preemption or timeout, so that one is dead),
    is marked interrupted, so the claim resumes it at once instead of waiting out its lease."""
    released = []
    rows = [run for run in store.find_runs(key, ("running",)) if slurm_launched(run)]
    states = job_states(run.launch.get("job_id") for run in rows)
    for run in rows:
        job_id = run.launch.get("job_id")
        if job_id == my_job_id or not job_alive(job_id, states):
            store.finish_run(run.id, "interrupted", error=f"its SLURM job {job_id} stopped (preempted, timed out, "
                                                          "cancelled or killed); resumed by the next job")
            released.append(run.id)
    return released
