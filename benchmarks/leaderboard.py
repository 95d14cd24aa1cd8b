"""How long `vbench leaderboard` takes to write the site of a large store (issue 14's target: 10,000 runs in
under 10 s). The store is synthetic: finished runs of every built-in backbone on the paper's classification
suites and ADE20K, seeds 0, 1, 2, ... until the count is reached, each with per-epoch (per-evaluation)
metrics, bulk-inserted into a fresh SQLite file; then the site is written (a page per run) and timed.

    vbench bench leaderboard [--runs 10000] [--steps 10] [--rounds 3] [--keep DIR]

Each round is timed twice: into a fresh folder, and replacing the site of the round before (which is then
deleted). Wall and CPU seconds are printed: on a machine shared with other work, wall time says little.
"""

from __future__ import annotations

import math
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

from _timing import argument_parser  # noqa: E402
from rich.console import Console
from rich.table import Table

from vbench.models import registry
from vbench.store import Run, Step, open_store, utcnow
from vbench.suites import load_suite

CLASSIFICATION_SUITES = ("cifar10", "cifar100", "svhn", "tiny-imagenet")
SEGMENTATION_SUITES = ("ade20k",)


def _experiments() -> list[tuple]:
    """(suite, task, spec, recipe) for every backbone a built-in suite can train."""
    registry.load_all()
    experiments = []
    for suite_name in CLASSIFICATION_SUITES + SEGMENTATION_SUITES:
        suite = load_suite(suite_name)
        for spec in sorted(registry.BACKBONES.values(), key=lambda s: s.name):
            if suite.task in spec.tasks:
                experiments.append((suite, spec))
    return experiments


def _curve(final: float, step: int, steps: int) -> float:
    return final * (1 - math.exp(-4 * step / steps)) / (1 - math.exp(-4))


def synthetic_rows(runs: int, steps: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``runs`` finished run rows spread over every (suite, backbone), and their step rows."""
    rng = random.Random(seed)
    experiments = _experiments()
    base = {spec.name: rng.uniform(60, 95) for _, spec in experiments}
    run_rows, step_rows = [], []
    now = utcnow()
    for index in range(runs):
        suite, spec = experiments[index % len(experiments)]
        run_seed = index // len(experiments)
        run_id = index + 1
        segmentation = suite.task == "segmentation"
        primary = "mIoU" if segmentation else "top1"
        final = base[spec.name] * (0.5 if segmentation else 1) + rng.gauss(0, 0.4)
        metrics = {"mIoU": final, "aAcc": final + 30, "mAcc": final + 10} if segmentation else \
            {"top1": final, "top5": min(99.9, final + 5)}
        labels = [round((k + 1) * (suite.recipe.iterations if segmentation else suite.recipe.epochs) / steps)
                  for k in range(steps)] if steps else []
        run_rows.append(dict(
            id=run_id, task=suite.task, suite=suite.name, dataset=suite.kind, backbone=spec.name, family=spec.family,
            paper_names=list(spec.paper_names), seed=run_seed, status="done",
            recipe={**suite.recipe.to_dict(), "seed": run_seed}, recipe_hash=suite.recipe.key_hash(),
            data_id=f"synthetic-{suite.name}", data={"root": "/data", "sizes": {"train": 50000, "test": 10000}},
            settings={"device": "cpu", "precision": "fp32", "compile": False, "pipeline": "batched", "threads": 1,
                      "world_size": 1},
            img_size=suite.img_size, num_classes=suite.num_classes,
            step_unit="iteration" if segmentation else "epoch", steps=labels[-1] if labels else 0,
            steps_done=labels[-1] if labels else 0, metrics=metrics, params=int(rng.uniform(0.5e6, 30e6)),
            flops=int(rng.uniform(50e6, 5e9)), counts={}, train_images_per_s=rng.uniform(100, 5000),
            peak_memory_bytes=2**30, peak_memory_kind="rss", wall_time_s=3600.0, started_at=now, ended_at=now,
            host="bench", device_name="synthetic", torch_version="2.x", vbench_version="0.1.0"))
        for label in labels:
            value = _curve(final, label, labels[-1])
            row = {primary: value, "train_loss": 3.0 * math.exp(-3 * label / labels[-1]) + 0.2, "lr": 1e-3}
            step_rows.append({"run_id": run_id, "step": label, "metrics": row})
    return run_rows, step_rows


def synthetic_store(path: Path, runs: int, steps: int) -> Path:
    """A fresh SQLite store at ``path`` holding ``runs`` synthetic finished runs (one bulk insert)."""
    store = open_store(str(path))
    run_rows, step_rows = synthetic_rows(runs, steps)
    with store.engine.begin() as connection:
        connection.execute(Run.__table__.insert(), run_rows)
        if step_rows:
            connection.execute(Step.__table__.insert(), step_rows)
    store.close()
    return path


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the run-page workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_build(db: Path, output: Path) -> tuple[float, float, object]:
    """Wall and CPU seconds of one `vbench leaderboard` (opening the store included), and its summary."""
    from vbench.leaderboard import build_site
    from vbench.store import opened

    wall, cpu = time.perf_counter(), _cpu_s()
    with opened(str(db)) as store:
        summary = build_site(store, output)
    return time.perf_counter() - wall, _cpu_s() - cpu, summary


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=10, help="step rows per run (per-epoch metrics)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write the site here and keep it")
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"vbench leaderboard on {args.runs:,} runs ({args.steps} step rows each)",
                  caption="median of the rounds; 'replace': the site of the round before is replaced (and deleted); "
                          "CPU: this process and its workers")
    for column in ("output", "pages", "wall s", "min s", "max s", "CPU s"):
        table.add_column(column, justify="left" if column == "output" else "right")
    with tempfile.TemporaryDirectory(prefix="vbench-bench-leaderboard-") as folder:
        started = time.perf_counter()
        db = synthetic_store(Path(folder) / "runs.db", args.runs, args.steps)
        console.print(f"synthetic store: {args.runs:,} runs, {args.runs * args.steps:,} step rows "
                      f"({time.perf_counter() - started:.1f} s to insert)")
        output = args.keep or Path(folder) / "site"
        for label in ("fresh", "replace"):
            walls, cpus = [], []
            if label == "replace":
                time_build(db, output)  # the site to replace
            for round_ in range(args.rounds):
                wall, cpu, summary = time_build(db, output if label == "replace" else Path(folder) / f"fresh-{round_}")
                walls.append(wall)
                cpus.append(cpu)
            table.add_row(label, f"{summary.pages:,}", f"{statistics.median(walls):.2f}", f"{min(walls):.2f}",
                          f"{max(walls):.2f}", f"{statistics.median(cpus):.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
