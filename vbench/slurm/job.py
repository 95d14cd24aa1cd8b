"""What one task of a SLURM sweep runs: one (backbone, seed), through the same Runner as ``vbench run``.

submitit pickles a ``SweepTask`` at submission and calls it in the job. It is a submitit
``Checkpointable``: when SLURM preempts the job or its time runs out, submitit calls ``checkpoint()``
(which hands back the same task), requeues the job and calls the task again; the Runner then resumes
the run from its last checkpoint. A job with several GPUs runs one process per GPU, joined into one
torch.distributed run through submitit's ``TorchDistributedEnvironment``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace

import submitit
import torch

from vbench.engine import plan
from vbench.models.registry import load_all
from vbench.slurm.queue import launch_record, release_dead_holders
from vbench.store import opened


@dataclass(frozen=True)
class RunRequest:
    """The ``vbench run`` of one task, with every path absolute (the job may start elsewhere)."""

    suite: str
    backbone: str
    seed: int
    url: str
    overrides: dict
    sets: tuple
    options: object  # vbench.engine.runner.RunOptions
    plugins: tuple


class SweepTask(submitit.helpers.Checkpointable):
    def __init__(self, request: RunRequest):
        self.request = request

    def __call__(self) -> list[dict]:
        environment = submitit.JobEnvironment()
        if environment.num_tasks > 1:  # one process per GPU: one torch.distributed run
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        threads_of_the_allocation()

        request = self.request
        launch = launch_record(environment.job_id, str(environment.paths.stdout), environment.num_tasks)
        load_all(request.plugins)
        planned = plan.plan_run(request.suite, request.backbone, str(request.seed), db=request.url,
                               overrides=request.overrides, sets=request.sets,
                               options=replace(request.options, launch={**launch, "host": socket.gethostname()}))
        if planned.runner.dist.is_main:
            with opened(request.url, write=True) as store:
                for job in planned.jobs:
                    for run_id in release_dead_holders(store, planned.runner.key(job), environment.job_id):
                        print(f"run {run_id}: its earlier job stopped; resuming it", flush=True)
        result = plan.execute(planned)
        rows = [{"backbone": o.backbone, "seed": o.seed, "status": o.status, "run_id": o.run_id, "metrics": o.metrics,
                 "error": o.error} for o in result.outcomes]
        for row in rows:
            print(f"{row['backbone']} seed {row['seed']}: {row['status']} (run {row['run_id']}) "
                  f"{row['metrics'] or ''}{row['error'] or ''}", flush=True)
        failed = [row for row in rows if row["status"] == "failed"]
        if failed:  # the SLURM task fails too, so the array shows it
            raise RuntimeError(f"run {failed[0]['run_id']} failed: {failed[0]['error']}")
        return rows


def threads_of_the_allocation() -> None:
    """torch's intra-op threads: the CPUs SLURM gave each process, unless OMP_NUM_THREADS says otherwise."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(int(cpus))
