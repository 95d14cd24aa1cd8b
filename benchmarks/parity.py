"""Accuracy parity of the fast settings: the same runs in fp32 eager and in bf16 autocast + torch.compile.

Trains ``--backbones`` (default ViT/0.5M and ViT/0.5M-LKCA) on a suite (default ``digits``, its own recipe)
for each seed, once per setting, into a throwaway store, through the library API that ``vbench run`` uses,
and prints each run's top-1, the mean over seeds per setting and the difference. Target (issue 17): the
bf16+compile mean within 1 point of the fp32 mean. It also prints the training throughput of each setting.

    vbench bench parity [--suite digits] [--backbones vit-0.5m,vit-0.5m-lkca] [--seeds 0,1,2] [--epochs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _timing import argument_parser  # noqa: E402
from rich.console import Console
from rich.table import Table

from vbench.api import run_suite
from vbench.engine.runner import RunOptions
from vbench.store import open_store

SETTINGS = {"fp32 eager": RunOptions(amp=False, compile=False), "bf16+compile": RunOptions(amp=True, compile=True)}
TARGET_POINTS = 1.0


def parse_args() -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--suite", default="digits")
    parser.add_argument("--backbones", default="vit-0.5m,vit-0.5m-lkca")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs of every run (default: the suite's recipe).")
    return parser.parse_args()


def train(args, options: RunOptions, db: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """(backbone, seed) -> (top-1, training images/s) of each run."""
    overrides = {"epochs": args.epochs} if args.epochs is not None else None
    result = run_suite(args.suite, args.backbones, args.seeds, db=str(db), overrides=overrides,
                       options=RunOptions(**{**options.__dict__, "checkpoints": False}), console=Console(quiet=True))
    trained = {outcome.run_id for outcome in result.outcomes}
    store = open_store(str(db), write=False)
    measured = {(run.backbone, run.seed): (run.metrics["top1"], run.train_images_per_s or 0.0)
                for run in store.list_runs(status="done") if run.id in trained}
    store.close()
    return measured


def main() -> None:
    args = parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for name, options in SETTINGS.items():
            console.print(f"training {args.backbones} on {args.suite}, seeds {args.seeds}: {name}", highlight=False)
            results[name] = train(args, options, Path(folder) / f"{name.replace(' ', '-')}.db")
    fp32, fast = results["fp32 eager"], results["bf16+compile"]
    table = Table(title=f"Accuracy parity on {args.suite}: top-1 (%) per seed, training img/s")
    for column in ("backbone", "fp32 eager", "bf16+compile", "mean fp32", "mean bf16+compile", "difference",
                   "img/s fp32", "img/s bf16+compile"):
        table.add_column(column, justify="left" if column == "backbone" else "right")
    worst = 0.0
    for backbone in dict.fromkeys(name for name, _ in fp32):
        seeds = sorted(seed for name, seed in fp32 if name == backbone)
        a = [fp32[backbone, seed][0] for seed in seeds]
        b = [fast[backbone, seed][0] for seed in seeds]
        difference = statistics.mean(b) - statistics.mean(a)
        worst = max(worst, abs(difference))
        table.add_row(backbone, " ".join(f"{x:.1f}" for x in a), " ".join(f"{x:.1f}" for x in b),
                      f"{statistics.mean(a):.2f}", f"{statistics.mean(b):.2f}", f"{difference:+.2f}",
                      f"{statistics.median(fp32[backbone, s][1] for s in seeds):.0f}",
                      f"{statistics.median(fast[backbone, s][1] for s in seeds):.0f}")
    console.print(table)
    verdict = "within" if worst <= TARGET_POINTS else "NOT within"
    console.print(f"largest difference of the means {worst:.2f} points: {verdict} the target of "
                  f"{TARGET_POINTS:.0f} point", highlight=False)


if __name__ == "__main__":
    main()
