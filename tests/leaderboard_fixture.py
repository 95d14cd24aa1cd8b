"""A store of synthetic finished runs for the leaderboard's tests and its README screenshot: a few backbones of
CIFAR-10 with several seeds each (their per-epoch metrics a smooth curve to the final top-1), two of CIFAR-100,
two segmentation runs on ADE20K and a failed run. The numbers are made up; only their layout is tested."""

from __future__ import annotations

import math
from pathlib import Path

from vbench.reporting.paper import table_names
from vbench.store import open_store
from vbench.suites import load_suite

# backbone, paper names, family, params, FLOPs (MACs), training images/s, top-1 per seed
CIFAR10 = [
    ("vit-0.5m", ["ViT/0.5M"], "vit", 484_000, 33_100_000, 5200.0, [87.62, 88.05, 87.91]),
    ("vit-0.5m-lkca", ["ViT/0.5M-LKCA"], "lkca", 497_000, 34_200_000, 4100.0, [90.71, 91.18, 90.86]),
    ("vit-lite", ["ViT/1M", "ViT-Lite"], "vit", 1_060_000, 75_500_000, 3100.0, [90.97, 91.42, 90.81]),
    ("lkca-t", ["ViT/1M-LKCA", "LKCA-T"], "lkca", 1_030_000, 70_000_000, 2500.0, [92.31, 92.70, 92.44]),
    ("swin-t", ["Swin-T"], "swin", 1_010_000, 40_100_000, 2900.0, [91.08, 91.47]),
    ("mobilevit-t", ["MobileViTv2-T"], "mobilevit", 1_000_000, 8_100_000, 3900.0, [91.31, 91.62]),
    ("vit-small", ["ViT", "ViT-Small"], "vit", 2_692_426, 188_837_000, 1400.0, [93.21, 93.52, 93.08]),
    ("lkca-b", ["ViT-LKCA", "LKCA-B"], "lkca", 2_691_520, 201_576_000, 1150.0, [93.98, 94.31, 94.17]),
]
CIFAR100 = [
    ("vit-lite", ["ViT/1M", "ViT-Lite"], "vit", 1_083_000, 75_520_000, 3050.0, [69.80]),
    ("lkca-t", ["ViT/1M-LKCA", "LKCA-T"], "lkca", 1_053_000, 70_020_000, 2480.0, [72.90]),
]
# backbone, paper names, family, head, params, FLOPs, (aAcc, mIoU) at iterations 10000 and 20000
ADE20K = [
    ("lkca-s", ["LKCA-S"], "lkca", "upernet", 50_580_000, 65_940_000_000, [(59.8, 36.9), (64.1, 39.8)]),
    ("vit-s", ["ViT-S", "Vit-S"], "vit", "upernet", 57_660_000, 67_250_000_000, [(55.2, 32.7), (58.9, 36.2)]),
]
EPOCHS = 100
EVALUATED = range(10, EPOCHS + 1, 10)  # the epochs the fixture records (a real run records every one)
# the names of Table 4, whose baselines (Swin-T, MobileViTv2-T) these rows include: lkca-t is "LKCA-T" there
MODELS = table_names("cifar10", [(names, backbone) for backbone, names, *_ in CIFAR10]) + ["LKCA-S", "ViT-S"]


def _curve(final: float, epoch: int) -> float:
    return final * (1 - math.exp(-5 * epoch / EPOCHS)) / (1 - math.exp(-5))


def _environment(seed: int) -> dict:
    return dict(settings={"device": "cuda", "precision": "fp32", "compile": False, "pipeline": "batched",
                          "threads": 8, "world_size": 1, "compiled": False, "compile_s": 0.0},
                host="node-1", device_name="NVIDIA A100-SXM4-40GB", torch_version="2.4.1", vbench_version="0.1.0",
                peak_memory_bytes=(900 + 10 * seed) * 2**20, peak_memory_kind="cuda max allocated",
                wall_time_s=3600.0 + seed)


def add_classification(store, suite: str, row: tuple, seed: int, top1: float) -> int:
    backbone, names, family, params, flops, rate, _ = row
    recipe = load_suite(suite).recipe
    run_id = store.start_run(
        task="classification", suite=suite, dataset=suite, backbone=backbone, family=family, paper_names=names,
        seed=seed, status="done", recipe={**recipe.to_dict(), "seed": seed}, recipe_hash=recipe.key_hash(),
        data_id=f"data-{suite}", data={"root": f"/data/{suite}", "sizes": {"train": 50000, "test": 10000},
                                       "limit": None},
        img_size=32, num_classes=100 if suite == "cifar100" else 10, step_unit="epoch", steps=EPOCHS,
        steps_done=EPOCHS, metrics={"top1": top1, "top5": min(99.9, top1 + 6.2)}, params=params, flops=flops,
        counts={"flops_complete": True}, train_images_per_s=rate * (1 + 0.01 * seed), **_environment(seed))
    store.replace_steps(run_id, [(epoch, {"train_loss": 2.3 * math.exp(-2.5 * epoch / EPOCHS) + 0.45,
                                          "train_acc": _curve(top1, epoch) - 4.0, "lr": 1e-3 * (1 - epoch / EPOCHS),
                                          "top1": _curve(top1, epoch), "top5": min(99.9, _curve(top1, epoch) + 6.2)})
                                 for epoch in EVALUATED])
    return run_id


def add_segmentation(store, row: tuple, seed: int = 0) -> int:
    backbone, names, family, head, params, flops, points = row
    recipe = load_suite("ade20k", sets=[f"head={head}"]).recipe
    iterations = [10000, 20000]
    final_aacc, final_miou = points[-1]
    run_id = store.start_run(
        task="segmentation", suite="ade20k", dataset="ade20k", backbone=backbone, family=family, paper_names=names,
        seed=seed, status="done", recipe={**recipe.to_dict(), "seed": seed}, recipe_hash=recipe.key_hash(),
        data_id="data-ade20k", data={"root": "/data/ade20k", "sizes": {"train": 20210, "test": 2000}},
        img_size=512, num_classes=150, step_unit="iteration", steps=iterations[-1], steps_done=iterations[-1],
        metrics={"aAcc": final_aacc, "mIoU": final_miou, "mAcc": final_miou + 9.0}, params=params, flops=flops,
        train_images_per_s=31.0, **_environment(seed))
    store.replace_steps(run_id, [(step, {"train_loss": 1.9 - 0.4 * i, "aAcc": a, "mIoU": m, "mAcc": m + 9.0})
                                 for i, (step, (a, m)) in enumerate(zip(iterations, points))])
    return run_id


def write_fixture_store(path: Path) -> Path:
    """The fixture store at ``path`` (a new SQLite file)."""
    store = open_store(str(path))
    for row in CIFAR10:
        for seed, top1 in enumerate(row[-1]):
            add_classification(store, "cifar10", row, seed, top1)
    for row in CIFAR100:
        add_classification(store, "cifar100", row, 0, row[-1][0])
    for row in ADE20K:
        add_segmentation(store, row)
    failed = store.start_run(task="classification", suite="cifar10", dataset="cifar10", backbone="lkca-b",
                             family="lkca", paper_names=["ViT-LKCA", "LKCA-B"], seed=3, status="failed",
                             recipe=load_suite("cifar10").recipe.to_dict(),
                             recipe_hash=load_suite("cifar10").recipe.key_hash(), data_id="data-cifar10",
                             step_unit="epoch", steps=EPOCHS, steps_done=20, metrics={},
                             error="the training loss is NaN at epoch 21", **_environment(3))
    store.replace_steps(failed, [(10, {"train_loss": 2.0, "top1": 70.0}),
                                 (20, {"train_loss": float("nan"), "top1": 80.0})])  # stored as NaN, not JSON
    store.close()
    return path
