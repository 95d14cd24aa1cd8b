"""The parts of the engine: schedules, seeding, evaluation, checkpoints that belong to one store and run."""

from __future__ import annotations

import math
import subprocess

import pytest
import torch
import torch.nn as nn

from vbench.errors import VbenchError
from vbench.parse import parse_seeds
from vbench.recipes import ClassificationRecipe, OptimizerConfig
from vbench.store.checkpoint import Checkpoints
from vbench.tasks.base import stage_seed
from vbench.tasks.classification import ClassificationTask, cosine_schedule
from vbench.tasks.segmentation import PolySchedule


def test_warmup_then_cosine_stepped_every_iteration():
    recipe = ClassificationRecipe(epochs=10, warmup_epochs=2, lr=1e-3, min_lr=1e-6)
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    scheduler = cosine_schedule(optimizer, recipe, steps_per_epoch=5)

    def lr_at(step: int) -> float:
        scheduler.step_update(step)
        return optimizer.param_groups[0]["lr"]

    assert lr_at(0) == pytest.approx(1e-6)
    assert lr_at(5) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 5 / 10)  # linear warm-up over 10 steps
    assert lr_at(10) == pytest.approx(1e-3)  # warm-up done: the peak
    assert lr_at(10 + 20) == pytest.approx((1e-3 + 1e-6) / 2)  # cosine half way through its 40 steps
    assert lr_at(49) == pytest.approx(1e-6 + (1e-3 - 1e-6) * (1 + math.cos(math.pi * 39 / 40)) / 2)
    assert [lr_at(s) for s in range(10, 50)] == sorted((lr_at(s) for s in range(10, 50)), reverse=True)


def test_segmentation_schedule_is_linear_warmup_then_poly():
    config = OptimizerConfig(lr=1e-3, warmup_iters=10, warmup_ratio=0.1, power=1.0, min_lr=0.0)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = PolySchedule(optimizer, config, total=110)

    def lr_at(step: int) -> float:
        schedule.step_update(step)
        return optimizer.param_groups[0]["lr"]

    assert lr_at(0) == pytest.approx(1e-4) and lr_at(5) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(10) == pytest.approx(1e-3) and lr_at(60) == pytest.approx(5e-4) and lr_at(110) == pytest.approx(0.0)


def test_stage_seed_depends_on_seed_and_stage_only():
    seeds = {stage_seed(seed, stage) for seed in range(3) for stage in range(1, 4)}
    assert len(seeds) == 9 and stage_seed(2, 3) == stage_seed(2, 3)
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("text, expected", [(None, [4]), ("0,1,2", [0, 1, 2]), (" 3 , 1", [3, 1])])
def test_parse_seeds(text, expected):
    assert parse_seeds(text, default=4) == expected


@pytest.mark.parametrize("text", ["0,0", "a", "-1", ","])
def test_parse_seeds_rejects(text):
    with pytest.raises(VbenchError, match="--seeds"):
        parse_seeds(text, default=0)


class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[x[:, 0, 0, 0].long()]


class PlainBatches:
    def eval_batches(self, images, labels):
        for start in range(0, len(images), 3):
            yield images[start:start + 3].float(), labels[start:start + 3]


def test_evaluate_top1_top5():
    # 10 images, 8 classes: images 0-3 right at rank 1, 4-6 at rank 2, 7-8 at rank 6, 9 last
    labels = torch.arange(10) % 8
    logits = torch.zeros(10, 8)
    for i, rank in enumerate([1, 1, 1, 1, 2, 2, 2, 6, 6, 8]):
        order = [c for c in range(8) if c != labels[i]]
        order.insert(rank - 1, int(labels[i]))
        for position, c in enumerate(order):
            logits[i, c] = 8 - position
    task = ClassificationTask.__new__(ClassificationTask)
    task.batches = PlainBatches()
    task.data = type("Data", (), {"test_images": torch.arange(10).view(10, 1, 1, 1).expand(10, 3, 2, 2),
                                  "test_labels": labels})()
    evaluation = task.evaluate(FixedLogits(logits))
    assert evaluation.metrics == {"top1": 40.0, "top5": 70.0}
    assert evaluation.predictions.correct.tolist() == [True] * 4 + [False] * 6
    assert evaluation.predictions.top_k[4, 1] == labels[4]


# --- checkpoints ------------------------------------------------------------------------------------
KEY = {"suite": "s", "backbone": "b", "seed": 0, "recipe_hash": "h", "data_id": "d"}


def checkpoints(tmp_path, store_id="store-a") -> tuple[Checkpoints, list[str]]:
    warnings: list[str] = []
    return Checkpoints(tmp_path / "checkpoints" / store_id, store_id, warn=warnings.append), warnings


def test_a_new_checkpoint_replaces_the_old_only_once_written_and_the_old_one_stays_as_previous(tmp_path):
    store, warnings = checkpoints(tmp_path)
    store.save(1, KEY, {"epoch": 1})
    with pytest.raises(Exception):
        store.save(1, KEY, {"epoch": 2, "unpicklable": lambda: None})
    assert store.load(1, KEY, "cpu")["epoch"] == 1  # the old one, intact
    assert sorted(p.name for p in store.folder.iterdir()) == ["run-1.pt"]  # no temporary file left behind
    store.save(1, KEY, {"epoch": 2})
    assert sorted(p.name for p in store.folder.iterdir()) == ["run-1.prev.pt", "run-1.pt"]
    assert store.load(1, KEY, "cpu")["epoch"] == 2 and warnings == []


def test_a_truncated_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path):
    store, warnings = checkpoints(tmp_path)
    store.save(1, KEY, {"epoch": 1})
    store.save(1, KEY, {"epoch": 2})
    current = store.path(1)
    current.write_bytes(current.read_bytes()[: current.stat().st_size // 2])
    assert store.load(1, KEY, "cpu")["epoch"] == 1
    [warning] = warnings
    assert str(current) in warning and "cannot be read" in warning and "\n" not in warning
    store.previous(1).write_bytes(b"garbage")
    assert store.load(1, KEY, "cpu") is None and len(warnings) == 3  # nothing valid: start from scratch


def test_a_checkpoint_of_another_run_or_store_is_never_loaded(tmp_path):
    store, warnings = checkpoints(tmp_path)
    store.save(1, KEY, {"epoch": 1})
    assert store.load(1, {**KEY, "seed": 1}, "cpu") is None  # another run's key
    other, _ = checkpoints(tmp_path, "store-b")
    other.folder.mkdir(parents=True)
    (other.folder / "run-1.pt").write_bytes(store.path(1).read_bytes())  # copied across stores by hand
    assert other.load(1, KEY, "cpu") is None
    assert any("belongs to another run or store" in w for w in warnings)
    other.delete(1)
    assert store.path(1).exists()  # deleting in one store never touches another's


def test_a_full_disk_says_so_and_how_much_the_checkpoint_needs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        store = Checkpoints(mount / "checkpoints", "store-a", warn=print)
        with pytest.raises(VbenchError) as info:
            store.save(1, KEY, {"weights": torch.zeros(100_000)})
        message = str(info.value)
        assert f"the disk holding {mount / 'checkpoints'} is full" in message and "0.4 MiB" in message
        assert not [p for p in (mount / "checkpoints").iterdir()]  # nothing half-written
    finally:
        subprocess.run(["umount", str(mount)], check=False)
