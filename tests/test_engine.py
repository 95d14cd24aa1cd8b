"""The training engine's parts: schedule, seeding, evaluation, checkpoints, model building, determinism."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn as nn

from vbench.errors import VbenchError
from vbench.registry import BackboneSpec
from vbench.store import RunKey, open_store
from vbench.suites import Recipe, load_suite
from vbench.train import (
    Data, Engine, EngineOptions, Job, build_model, checkpoint_path, epoch_seed, evaluate, load_checkpoint,
    make_scheduler, parse_seeds, recipe_key_hash, save_checkpoint,
)


def test_warmup_then_cosine_stepped_every_iteration():
    recipe = Recipe(epochs=10, warmup_epochs=2, lr=1e-3, min_lr=1e-6)
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    scheduler = make_scheduler(optimizer, recipe, steps_per_epoch=5)

    def lr_at(step: int) -> float:
        scheduler.step_update(step)
        return optimizer.param_groups[0]["lr"]

    assert lr_at(0) == pytest.approx(1e-6)
    assert lr_at(5) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 5 / 10)  # linear warm-up over 10 steps
    assert lr_at(10) == pytest.approx(1e-3)  # warm-up done: the peak
    assert lr_at(10 + 20) == pytest.approx((1e-3 + 1e-6) / 2)  # cosine half way through its 40 steps
    assert lr_at(49) == pytest.approx(1e-6 + (1e-3 - 1e-6) * (1 + math.cos(math.pi * 39 / 40)) / 2)
    assert [lr_at(s) for s in range(10, 50)] == sorted((lr_at(s) for s in range(10, 50)), reverse=True)


def test_epoch_seed_depends_on_seed_and_epoch_only():
    seeds = {epoch_seed(seed, epoch) for seed in range(3) for epoch in range(1, 4)}
    assert len(seeds) == 9 and epoch_seed(2, 3) == epoch_seed(2, 3)
    assert all(0 <= s < 2**63 for s in seeds)


def test_recipe_hash_leaves_out_the_seed_only():
    recipe = Recipe()
    assert recipe_key_hash(recipe) == recipe_key_hash(dataclasses.replace(recipe, seed=5))
    assert recipe_key_hash(recipe) != recipe_key_hash(dataclasses.replace(recipe, lr=5e-4))


@pytest.mark.parametrize("text, expected", [(None, [4]), ("0,1,2", [0, 1, 2]), (" 3 , 1", [3, 1])])
def test_parse_seeds(text, expected):
    assert parse_seeds(text, default=4) == expected


@pytest.mark.parametrize("text", ["0,0", "a", "-1", ","])
def test_parse_seeds_rejects(text):
    with pytest.raises(VbenchError, match="--seeds"):
        parse_seeds(text, default=0)


class FixedLogits(nn.Module):
    """Logits that rank class (label + shift) % C first, then label, then the rest."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.logits[x[:, 0, 0, 0].long()] + self.bias


class PlainRecipe:
    def __init__(self, eval_batch_size: int):
        self.eval_batch_size = eval_batch_size

    def eval_batches(self, images, labels):
        for start in range(0, len(images), self.eval_batch_size):
            yield images[start:start + self.eval_batch_size].float(), labels[start:start + self.eval_batch_size]


def test_evaluate_top1_top5():
    # 10 images, 8 classes: images 0-3 right at rank 1, 4-6 at rank 2, 7-8 at rank 6, 9 nowhere near
    labels = torch.arange(10) % 8
    logits = torch.zeros(10, 8)
    ranks = [1, 1, 1, 1, 2, 2, 2, 6, 6, 8]
    for i, rank in enumerate(ranks):
        order = [c for c in range(8) if c != labels[i]]
        order.insert(rank - 1, int(labels[i]))
        for position, c in enumerate(order):
            logits[i, c] = 8 - position
    images = torch.arange(10).view(10, 1, 1, 1).expand(10, 3, 2, 2).to(torch.uint8)
    top1, top5 = evaluate(FixedLogits(logits), PlainRecipe(3), images, labels, autocast=lambda: torch.autocast("cpu", enabled=False))
    assert (top1, top5) == (40.0, 70.0)


def test_checkpoint_is_replaced_atomically(tmp_path):
    key = RunKey("s", "b", 0, "h")
    path = tmp_path / "ck" / "a.pt"
    save_checkpoint(path, {"format": 1, "key": dataclasses.asdict(key), "epoch": 1})
    with pytest.raises(Exception):
        save_checkpoint(path, {"format": 1, "key": dataclasses.asdict(key), "epoch": 2, "bad": lambda: None})
    assert load_checkpoint(path, key, torch.device("cpu"))["epoch"] == 1  # the old one, intact
    assert [p.name for p in path.parent.iterdir()] == ["a.pt"]  # no temporary file left behind
    assert load_checkpoint(path, RunKey("s", "b", 1, "h"), torch.device("cpu")) is None  # another run's


def test_drop_path_reaches_builders_that_take_it():
    suite = load_suite("smoke", sets=["drop_path=0.25"])
    seen = {}

    def takes(img_size, num_classes, drop_path=0.0):
        seen["takes"] = drop_path
        return nn.Linear(1, num_classes)

    def takes_nothing(img_size, num_classes):
        return nn.Linear(1, num_classes)

    build_model(BackboneSpec("a", takes, "t"), suite)
    assert seen == {"takes": 0.25}
    assert build_model(BackboneSpec("b", takes_nothing, "t"), suite).out_features == 10
    lkca = build_model(BackboneSpec("lkca", __import__("vbench").registry.get_backbone("lkca-t").builder, "lkca"), suite)
    assert {m.drop_prob for m in lkca.modules() if type(m).__name__ == "DropPath"} == {0.25}

    def broken(img_size, num_classes, drop_path=0.0):
        raise ValueError("img_size must be 64")

    with pytest.raises(VbenchError, match="cannot be built for suite 'smoke'.*img_size must be 64"):
        build_model(BackboneSpec("c", broken, "t"), suite)


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, drop_path: float = 0.1):
        super().__init__()
        from timm.layers import DropPath

        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.drop_path = DropPath(drop_path)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        x = self.conv(x)
        return self.head(self.drop_path(x).mean(dim=(2, 3)))


def tiny(img_size=32, num_classes=10, drop_path=0.0):
    """A tiny test net."""
    return TinyNet(num_classes, drop_path)


def train_tiny(tmp_path, seed: int, name: str) -> dict:
    suite = load_suite("smoke", overrides={"epochs": 2, "batch_size": 16},
                       sets=["repeats=1", "autoaugment=none", "warmup_epochs=1"])
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(64) % 10
    data = Data(images, labels, images[:32], labels[:32])
    store = open_store(f"sqlite:///{tmp_path / name / 'runs.db'}")
    engine = Engine(store, suite, data, EngineOptions(device=torch.device("cpu")))
    spec = BackboneSpec("tiny", tiny, "test")
    [outcome] = engine.run_all([Job(spec, seed, params=1, flops=1)])
    assert outcome.status == "done"
    key = RunKey("smoke", "tiny", seed, recipe_key_hash(suite.recipe))
    state = torch.load(checkpoint_path(store, key), weights_only=False)
    epochs = [(e.epoch, e.train_loss, e.top1) for e in store.epochs(outcome.run_id)]
    store.close()
    return {"model": state["model"], "epochs": epochs}


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    first, again, other = (train_tiny(tmp_path, seed, name) for seed, name in ((3, "a"), (3, "b"), (4, "c")))
    assert first["epochs"] == again["epochs"] and len(first["epochs"]) == 2
    assert all(torch.equal(first["model"][k], again["model"][k]) for k in first["model"])
    assert not torch.equal(first["model"]["conv.weight"], other["model"]["conv.weight"])
