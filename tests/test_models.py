"""Every registered backbone, for every task it declares, trains through the Runner's path (the way timm's
tests/test_models.py walks its registry): built for a suite at a size it supports, one training step and one
evaluation on tiny fixture data, finite loss and metrics in the store."""

from __future__ import annotations

import math

import pytest

from vbench import api
from vbench.data.fixtures import write_fixture
from vbench.engine.plan import PlannedRun
from vbench.engine.runner import RunOptions
from vbench.models import registry
from vbench.segmentation.ade20k import write_ade20k_fixture
from vbench.store import open_store

VARIANTS = [(spec.name, task) for spec in registry.list_backbones() for task in spec.tasks]
# The paper trains these only on 64x64 Tiny-ImageNet: at 32x32 their patchings do not fit.
ONLY_AT_64 = {"twins-svt-s", "twins-svt-b"}
ONE_STEP = {
    "classification": ["--set", "repeats=1", "--set", "autoaugment=none", "--set", "eval_batch_size=4"],
    "segmentation": ["img_size=32", "scale=[64, 32]", "batch_size=2", "num_workers=0", "iterations=1",
                     "eval_at=[1]", "eval_limit=1"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_fixture("cifar10", root, per_batch=2, num_test=4)
    write_fixture("tiny-imagenet", root, train_per_class=1, val_per_class=1)
    write_ade20k_fixture(root, n_train=2, n_val=1, size=(40, 56))
    return root


def plan_one_step(name: str, task: str, data_root) -> PlannedRun:
    options = RunOptions(device="cpu", checkpoints=False, data_root=str(data_root), limit=2)
    if task == "segmentation":
        return api.plan_run("ade20k", name, options=options, sets=ONE_STEP["segmentation"])
    suite = "tiny-imagenet" if name in ONLY_AT_64 else "cifar10"
    sets = [item for item in ONE_STEP["classification"] if item != "--set"]
    return api.plan_run(suite, name, options=options, overrides={"epochs": 1, "batch_size": 2}, sets=sets)


def test_the_walk_covers_every_variant():
    assert len(VARIANTS) >= 55 and ("lkca-b", "segmentation") in VARIANTS and ("swin-t", "classification") in VARIANTS


@pytest.mark.parametrize("name, task", VARIANTS, ids=[f"{n}-{t}" for n, t in VARIANTS])
def test_backbone_trains_one_step_through_the_runner(name, task, data, tmp_path):
    planned = plan_one_step(name, task, data)
    [job] = planned.jobs
    assert job.error is None, job.error
    assert job.size["params"] > 0 and job.size["flops"] > 0
    assert planned.runner.stages[0].iterations == 1
    planned.url = str(tmp_path / "runs.db")
    result = api.execute(planned)
    [outcome] = result.outcomes
    assert outcome.status == "done", outcome.error
    store = open_store(planned.url, write=False)
    [run] = store.list_runs()
    [step] = store.steps(run.id)
    assert math.isfinite(step.metrics["train_loss"])
    info = planned.suite.task_info
    assert set(run.metrics) == {m.name for m in info.metrics}
    assert all(math.isfinite(value) and 0 <= value <= 100 for value in run.metrics.values())
