"""The input pipeline alone: images per second and peak memory of one training epoch, no model.

``vbench bench data --suite S`` generates an image folder shaped like the suite's data (JPEGs of random sizes around
the suite's input size, ``--images`` of them in ``--classes`` classes, ImageNet's train/<class>/, val/<class>/ layout),
writes it as shards (``vbench data shards``), and times, each in a fresh process (so that its peak RSS is its own),
in interleaved rounds:

- ``memory``: the in-memory path (every image decoded into one uint8 tensor first, not timed; then the suite's
  batched augmentation over the tensor), where the recipe allows it (timm's transforms need streaming);
- ``folder`` and ``shards``: the streamed path (``vbench.data.stream``) over the folder and over the shards, with
  the augmentation batched after decode (``--pipeline batched``) and, for the paper's recipe, per image in the
  workers (``shards/per-image``, the reference pipeline's PIL transforms);
- ``timm``: timm's ``create_loader`` over the same folder (timm's ImageFolder reader), the same workers and the
  same transform (for ``augment_impl = "timm"``: timm's ImageNet training transform, its prefetcher normalising and
  erasing the batch, timm's Mixup/CutMix), as timm's train.py runs it.

Speed: images per second of wall time, and per second of CPU time (the process's and its workers'), medians over
the rounds. Peak RSS: the process's own (VmHWM) and the largest of its DataLoader workers'. ``--memory N`` instead
streams one epoch over N and over 8N generated images (shards) and compares the peaks: the streamed path's
memory should not grow with the data.

    vbench bench data --suite imagenet [--images 2000] [--classes 20] [--workers 2] [--rounds 3] [--batch-size 64]
                                       [--set key=value] [--memory 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = ("memory", "folder", "shards", "shards/per-image", "timm")


# --- the data ---------------------------------------------------------------------------------------------
def make_data(folder: Path, suite_name: str, images: int, classes: int, sets: list[str]) -> Path:
    """An ImageNet-layout folder of ``images`` training JPEGs (and a tenth as many validation ones), its shards
    and a suite file over it; returns the suite file."""
    from vbench.data.fixtures import write_imagenet
    from vbench.data.shards import folder_sources, write_shards
    from vbench.suites import load_suite

    suite = load_suite(suite_name, sets=sets)
    size = suite.img_size
    per_class = max(1, images // classes)
    write_imagenet(folder / "images", num_classes=classes, train_per_class=per_class,
                   val_per_class=max(1, per_class // 10), sizes=(size * 3 // 4, size * 7 // 4), learnable=False)
    write_shards(folder_sources(folder / "images"), folder / "shards", shard_size=max(64, images // 16))
    suite_file = folder / "bench.toml"
    suite_file.write_text(f'include = "{suite.path}"\nname = "bench-data"\nkind = "image-folder"\n'
                          f'root = "images"\nnum_classes = {classes}\n')
    return suite_file


# --- one measurement, in its own process --------------------------------------------------------------------
def child(config: str, suite_file: str, workers: int, batch_size: int, sets: list[str]) -> dict:
    import torch

    from vbench.suites import load_suite

    torch.set_num_threads(1)
    os.environ["VBENCH_DATA_WORKERS"] = str(workers)
    folder = Path(suite_file).parent
    overrides = {"batch_size": batch_size, "data_root": str(folder / ("shards" if config.startswith("shards") else "images"))}
    suite = load_suite(suite_file, overrides=overrides, sets=[*sets, "repeats=1", "aug_repeats=1"])
    if config == "timm":
        count, seconds, cpu = _timm_epoch(suite, folder / "images", workers, batch_size)
        load = 0.0
    else:
        count, seconds, cpu, load = _vbench_epoch(suite, config)
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"config": config, "images": count, "seconds": seconds, "cpu_seconds": cpu, "load_seconds": load,
            "rss_main": _own_peak_rss(), "rss_worker": worker}


def _own_peak_rss() -> int:
    """This process's peak resident set (VmHWM: its own memory map's, unlike ru_maxrss, which a process started by
    fork and exec inherits from its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader workers of finished epochs)."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _vbench_epoch(suite, config: str) -> tuple[int, float, float]:
    import dataclasses

    import torch

    from vbench.tasks.classification import ClassificationTask

    suite = dataclasses.replace(suite, stream=config != "memory")
    pipeline = "reference" if config.endswith("per-image") else "batched"
    started = time.perf_counter()
    task = ClassificationTask(suite, torch.device("cpu"), pipeline=pipeline)
    task.prepare()
    load = time.perf_counter() - started
    stage = task.stages()[0]
    count, started, cpu = 0, time.perf_counter(), _cpu_seconds()
    for batch in task.train_batches(0, stage):
        count += len(batch.y_a)
    return count, time.perf_counter() - started, _cpu_seconds() - cpu, load


def _timm_epoch(suite, images: Path, workers: int, batch_size: int) -> tuple[int, float]:
    """timm's ImageFolder reader and create_loader with the suite's transform values, and timm's Mixup."""
    import torch
    from timm.data import Mixup, create_dataset, create_loader

    from vbench.data.stream import pillow_safe_posterize

    recipe = suite.recipe
    dataset = create_dataset("", root=str(images), split="train", is_training=True)
    loader = create_loader(
        dataset, input_size=(3, suite.img_size, suite.img_size), batch_size=batch_size, is_training=True,
        re_prob=recipe.erasing_prob, re_mode="pixel", scale=tuple(recipe.crop_scale), ratio=tuple(recipe.crop_ratio),
        hflip=recipe.hflip, auto_augment=None if recipe.autoaugment == "none" else recipe.autoaugment,
        interpolation=recipe.interpolation, mean=tuple(suite.mean), std=tuple(suite.std), num_workers=workers,
        device=torch.device("cpu"), use_prefetcher=True, persistent_workers=False)
    pillow_safe_posterize(dataset.transform)  # as vbench's transform: timm's RandAugment crashes on Pillow 13 otherwise
    mixup = Mixup(mixup_alpha=recipe.mixup_alpha, cutmix_alpha=recipe.cutmix_alpha, prob=recipe.mix_prob,
                  switch_prob=recipe.switch_prob, label_smoothing=recipe.label_smoothing, num_classes=suite.num_classes)
    count, started, cpu = 0, time.perf_counter(), _cpu_seconds()
    for x, y in loader:
        if recipe.mix_prob > 0:
            x, y = mixup(x, y)
        count += len(x)
    del loader  # its workers exit, so that their CPU time is counted
    return count, time.perf_counter() - started, _cpu_seconds() - cpu


def measure(config: str, suite_file: Path, workers: int, batch_size: int, sets: list[str]) -> dict:
    command = [sys.executable, __file__, "--child", config, "--suite-file", str(suite_file), "--workers", str(workers),
               "--batch-size", str(batch_size), *(f"--set={s}" for s in sets)]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode:
        return {"config": config, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the runs ---------------------------------------------------------------------------------------------
def speed(args, sets: list[str]) -> dict:
    from vbench.suites import load_suite

    recipe = load_suite(args.suite, sets=sets).recipe
    configs = [c for c in CONFIGS
               if not (c == "memory" and recipe.augment_impl == "timm")  # timm's transforms need streaming
               and not (c == "timm" and recipe.augment_impl != "timm")  # timm's loader has the paper's transforms not
               and not (c.endswith("per-image") and recipe.augment_impl == "timm")]  # timm's: per image already
    with tempfile.TemporaryDirectory(prefix="vbench-bench-data-") as tmp:
        suite_file = make_data(Path(tmp), args.suite, args.images, args.classes, sets)
        rounds: dict[str, list[dict]] = {config: [] for config in configs}
        for _ in range(args.rounds):
            for config in configs:
                rounds[config].append(measure(config, suite_file, args.workers, args.batch_size, sets))
    return {"configs": configs, "rounds": rounds}


def memory(args, sets: list[str]) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="vbench-bench-data-") as tmp:
        for factor in (1, 8):
            folder = Path(tmp) / f"x{factor}"
            folder.mkdir()
            suite_file = make_data(folder, args.suite, args.memory * factor, args.classes, sets)
            results[factor] = measure("shards", suite_file, args.workers, args.batch_size, sets)
    return results


def summarise(result: dict) -> list[dict]:
    rows = []
    for config in result["configs"]:
        runs = result["rounds"][config]
        failed = [r for r in runs if "error" in r]
        if failed:
            rows.append({"config": config, "error": failed[0]["error"]})
            continue
        rate = statistics.median(r["images"] / r["seconds"] for r in runs)
        per_cpu = statistics.median(r["images"] / r["cpu_seconds"] for r in runs)
        rows.append({"config": config, "images": runs[0]["images"], "images_per_s": rate, "images_per_cpu_s": per_cpu,
                     "rss_main_mb": max(r["rss_main"] for r in runs) / 2**20,
                     "rss_worker_mb": max(r["rss_worker"] for r in runs) / 2**20,
                     "load_s": statistics.median(r["load_seconds"] for r in runs)})
    reference = next((r for r in rows if r["config"] == "timm" and "error" not in r), None)
    for row in rows:
        if reference and "error" not in row:
            row["vs_timm"] = row["images_per_s"] / reference["images_per_s"]
            row["cpu_vs_timm"] = row["images_per_cpu_s"] / reference["images_per_cpu_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="imagenet")
    parser.add_argument("--images", type=int, default=2000, help="training images generated")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, the same for every loader")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is reported)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="key=value for a recipe key")
    parser.add_argument("--memory", type=int, default=None, help="compare the streamed peak RSS over N and 8N images")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--suite-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.suite_file, args.workers, args.batch_size, args.sets)))
        return
    from rich.console import Console
    from rich.table import Table

    if args.memory:
        result = memory(args, args.sets)
        if args.json:
            print(json.dumps(result, indent=2))
            return
        table = Table(title=f"Peak RSS of one streamed epoch (shards, {args.suite}, {args.workers} workers)")
        for column in ("images", "images/s", "main MB", "largest worker MB"):
            table.add_column(column, justify="right")
        for factor, r in result.items():
            if "error" in r:
                table.add_row(f"{args.memory * factor}", r["error"], "", "")
                continue
            table.add_row(f"{r['images']:,}", f"{r['images'] / r['seconds']:.0f}", f"{r['rss_main'] / 2**20:.0f}",
                          f"{r['rss_worker'] / 2**20:.0f}")
        if all("error" not in r for r in result.values()):
            one, eight = result[1], result[8]
            table.caption = (f"8N / N: main {eight['rss_main'] / one['rss_main']:.3f}x, largest worker "
                             f"{eight['rss_worker'] / one['rss_worker']:.3f}x")
        Console().print(table)
        return
    result = speed(args, args.sets)
    rows = summarise(result)
    if args.json:
        print(json.dumps({"rows": rows, "rounds": result["rounds"]}, indent=2))
        return
    table = Table(title=f"Input pipeline, one epoch, no model ({args.suite}, {args.images} images, {args.workers} workers, "
                        f"batch {args.batch_size}; median of {args.rounds} interleaved rounds)")
    columns = ("loader", "images", "images/s", "vs timm", "images/CPU-s", "vs timm (CPU)", "peak RSS main MB",
               "largest worker MB")
    for column in columns:
        table.add_column(column, justify="left" if column == "loader" else "right")
    for row in rows:
        if "error" in row:
            table.add_row(row["config"], row["error"], *[""] * (len(columns) - 2))
            continue
        table.add_row(row["config"], f"{row['images']:,}", f"{row['images_per_s']:.0f}",
                      f"{row['vs_timm']:.2f}x" if "vs_timm" in row else "-", f"{row['images_per_cpu_s']:.0f}",
                      f"{row['cpu_vs_timm']:.2f}x" if "cpu_vs_timm" in row else "-", f"{row['rss_main_mb']:.0f}",
                      f"{row['rss_worker_mb']:.0f}")
    table.caption = ("images/CPU-s: images per second of CPU time of the process and its workers, which other jobs on "
                     "the machine disturb less than wall time")
    Console().print(table)


if __name__ == "__main__":
    main()
