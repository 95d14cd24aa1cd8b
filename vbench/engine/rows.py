"""A run row, built in one place: for a training run (``Runner.run_fields``), a queued SLURM run (the same) and an
eval-only run (``vbench.engine.evaluate``)."""

from __future__ import annotations

import socket

import torch

from vbench import __version__
from vbench.engine.precision import device_name


def run_settings(device: torch.device, precision: str, compile: bool, pipeline: str, world_size: int) -> dict:
    """How the run computed: device, precision, compile, batch pipeline, CPU threads and processes."""
    return {"device": str(device), "precision": precision, "compile": compile, "pipeline": pipeline,
            "threads": torch.get_num_threads(), "world_size": world_size}


def run_row(suite, spec, seed: int, data, settings: dict, size: dict, device: torch.device, *, steps: int,
            recipe: dict | None = None, recipe_hash: str | None = None, launch: dict | None = None) -> dict:
    """The columns that say what a run is and where it ran, before it has any result: ``suite``, the backbone's
    ``spec`` and the ``seed``; the recipe (the suite's with the seed, unless given); the data's identity and
    description; ``settings``; ``size`` (params, FLOPs and further counts); this host, device and versions."""
    counts = dict(size)
    info = suite.task_info
    return dict(
        task=info.name, suite=suite.name, dataset=suite.kind, backbone=spec.name, family=spec.family,
        paper_names=list(spec.paper_names), seed=seed,
        recipe=recipe if recipe is not None else {**suite.recipe.to_dict(), "seed": seed},
        recipe_hash=recipe_hash or suite.recipe.key_hash(), data_id=data.identity, data=data.description,
        settings=settings, img_size=suite.img_size, num_classes=suite.num_classes, step_unit=info.step_unit,
        steps=steps, steps_done=0, metrics={}, params=counts.pop("params", None), flops=counts.pop("flops", None),
        counts=counts, host=socket.gethostname(), device_name=device_name(device), torch_version=torch.__version__,
        vbench_version=__version__, launch=launch,
    )
