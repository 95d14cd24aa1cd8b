"""What Optuna costs a tuning trial: a real `vbench tune` on the digits suite (ViT/0.5M and ViT/0.5M-LKCA, 4 epochs a
trial by default) into a fresh SQLite store, timing every trial as a whole (planning, training, bookkeeping) and the
part of it spent in Optuna's calls (asking, drawing the values, reporting each epoch, asking the pruner, telling the
result, reading the study's trials: all through RDBStorage in the run store's database). Both are measured in the
same trial, so the ratio does not depend on what else the machine runs.

    vbench bench tune [--trials 2] [--epochs 4] [--backbones vit-0.5m,vit-0.5m-lkca] [--limit N]

The target: Optuna's share of a digits trial under 2%.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vbench.engine.runner import RunOptions
from vbench.tune.plan import plan_tuning
from vbench.tune.trials import tune

TARGET = 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--backbones", default="vit-0.5m,vit-0.5m-lkca")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="vbench-bench-tune-") as folder:
        db = str(Path(folder) / "vbench.db")
        plan = plan_tuning("digits", args.backbones, args.trials, db=db, overrides={"epochs": args.epochs},
                           options=RunOptions(device="cpu", limit=args.limit), console=Console(quiet=True))
        outcome = tune(plan.request, Console(quiet=True))
    table = Table(title=f"Optuna's share of a digits trial ({args.epochs} epochs, SQLite store)")
    for column in ("backbone", "trial", "status", "trial s", "Optuna ms", "share"):
        table.add_column(column, justify="left" if column in ("backbone", "status") else "right")
    shares = []
    for result in outcome.results:
        share = result.optuna_s / result.wall_s
        shares.append(share)
        table.add_row(result.backbone, str(result.number), result.status, f"{result.wall_s:.1f}",
                      f"{result.optuna_s * 1e3:.0f}", f"{share:.2%}")
    console.print(table)
    verdict = "met" if max(shares) < TARGET else "NOT met"
    console.print(f"Optuna per trial: median {statistics.median(r.optuna_s for r in outcome.results) * 1e3:.0f} ms, "
                  f"median share {statistics.median(shares):.2%}, largest {max(shares):.2%} of its trial; target under "
                  f"{TARGET:.0%}: {verdict}", highlight=False)


if __name__ == "__main__":
    main()
