"""The Runner's train-step overhead over the bare model, and what the data pipelines add on top.

The same batches and the same model (default ViT/0.5M on CIFAR-shaped data, 32x32, 10 classes, batch 128):

* bare:             a plain loop over prepared batches: lr step, forward, mixed loss, backward, AdamW step;
* runner:           `vbench run`'s Runner over the same prepared batches (its loss guard, meters, progress,
                    lease, store writes and lr schedule included; evaluation and checkpoints excluded);
* runner + batched: the Runner with the batched recipe drawing and augmenting the batches (what `vbench run`
                    does on the suite's uint8 split);
* runner + reference: the same with the per-image reference pipeline (PIL + DataLoader), unless --skip-reference.

Target (issue 9): runner at most 1.05x bare on the CPU. Interleaved rounds, the median of each path.

    vbench bench train-step [--backbone vit-0.5m] [--steps 20] [--rounds 5] [--device auto] [--amp] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _timing import argument_parser, sync
from rich.console import Console
from rich.table import Table

from vbench.data import Dataset
from vbench.data.augment import BatchedPipeline, mixed_cross_entropy
from vbench.engine.precision import Compiled, Precision, resolve_device
from vbench.engine.runner import Runner, RunOptions
from vbench.models import registry
from vbench.store import open_store
from vbench.suites import load_suite
from vbench.tasks.base import DataInfo
from vbench.tasks.classification import ClassificationTask, cosine_schedule


def parse_args() -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--backbone", default="vit-0.5m")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per path and round")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CPU with native bf16, or CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median of each path is shown")
    parser.add_argument("--skip-reference", action="store_true")
    return parser.parse_args()


def cifar_shaped(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator),
            torch.randint(0, 10, (n,), generator=generator))


class BenchTask(ClassificationTask):
    """The classification task on synthetic CIFAR-shaped data; ``prepared`` batches replace the pipeline."""

    prepared: list | None = None

    def prepare(self) -> DataInfo:
        images, labels = cifar_shaped(self.steps * self.recipe.batch_size)
        self.data = Dataset(images, labels, images[:8], labels[:8], None, {"train": "bench", "test": "bench"})
        self.batches = self.make_batches()
        self.steps_per_epoch = self.batches.steps_per_epoch(len(images))
        return DataInfo(f"bench-{self.pipeline}", self.data.describe())

    def make_batches(self):
        if self.pipeline == "reference":
            from vbench.data.reference_pipeline import ReferencePipeline

            return ReferencePipeline(self.suite, self.device, num_workers=2)
        return BatchedPipeline(self.suite, self.device)

    def train_batches(self, seed, stage):
        return iter(self.prepared) if self.prepared is not None else super().train_batches(seed, stage)


def runner_seconds(spec, suite, options: RunOptions, steps: int, pipeline: str, prepared: list | None) -> float:
    """Seconds per step of one epoch of the Runner (its first epoch, of ``steps`` steps)."""
    runner = Runner(suite, RunOptions(**{**options.__dict__, "pipeline": pipeline}), Console(quiet=True))
    task = BenchTask(suite, runner.device, pipeline=pipeline)
    task.steps, task.prepared = steps, prepared
    runner.task = task
    runner.prepare()
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(str(Path(folder) / "bench.db"))
        [job] = runner.plan([spec], [0])
        [outcome] = runner.run(store, [job])
        assert outcome.status == "done", outcome.error
        [step] = store.steps(outcome.run_id)
        store.close()
    return step.metrics["time_s"] / steps


def make_stepper(spec, suite, device, amp: bool, compile_model: bool, batches: list):
    """A plain training step over ``batches`` (lr step, forward, mixed loss, backward, AdamW step) with its own
    model and optimizer, compiled as the Runner compiles; ``step(i)`` trains on batch ``i`` (cycling)."""
    precision = Precision.resolve(amp, device)
    torch.manual_seed(0)
    model = BenchTask(suite, device).build_model(spec).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=suite.recipe.lr, weight_decay=suite.recipe.weight_decay)
    schedule = cosine_schedule(optimizer, suite.recipe, len(batches))
    trained = Compiled(model, compile_model, print, precision.attention)
    scaler = precision.scaler()

    def step(index: int) -> None:
        batch = batches[index % len(batches)]
        schedule.step_update(index % len(batches))
        with precision.autocast():
            logits = trained(batch.x)
        loss = mixed_cross_entropy(logits.float(), batch, suite.recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def seconds_per_step(step, steps: int, device) -> float:
    start = time.perf_counter()
    for index in range(steps):
        step(index)
    sync(device)
    return (time.perf_counter() - start) / steps


def bare_seconds(spec, suite, options: RunOptions, prepared: list) -> float:
    """Seconds per step of a plain loop over the same prepared batches and the same model."""
    device = resolve_device(options.device)
    step = make_stepper(spec, suite, device, options.amp, options.compile, prepared)
    step(0)  # compiles, when compiling
    sync(device)
    return seconds_per_step(step, len(prepared), device)


def main() -> None:
    args = parse_args()
    options = RunOptions(device=args.device, amp=args.amp, compile=args.compile, checkpoints=False)
    device = resolve_device(args.device)
    registry.load_all()
    spec = registry.get_backbone(args.backbone)
    suite = load_suite("cifar10", overrides={"batch_size": args.batch_size, "epochs": 1}, sets=["repeats=1"])
    images, labels = cifar_shaped(args.steps * args.batch_size)
    prepared = list(BatchedPipeline(suite, device).train_batches(images.to(device), labels.to(device), 0, 1))
    console = Console()
    console.print(f"{spec.name} on {device} ({torch.get_num_threads()} threads), batch {args.batch_size}, "
                  f"{args.steps} steps per path, {args.rounds} interleaved rounds, precision "
                  f"{Precision.resolve(args.amp, device).name}, compile {args.compile}", highlight=False)
    paths = {
        "bare model": lambda: bare_seconds(spec, suite, options, prepared),
        "runner": lambda: runner_seconds(spec, suite, options, args.steps, "batched", prepared),
        "runner + batched recipe": lambda: runner_seconds(spec, suite, options, args.steps, "batched", None),
    }
    if not args.skip_reference:
        paths["runner + reference pipeline"] = lambda: runner_seconds(spec, suite, options, args.steps, "reference", None)
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):  # interleaved: on a shared machine a single pass mostly measures the neighbours
        for name, measure in paths.items():
            samples[name].append(measure())
    medians = {name: statistics.median(values) for name, values in samples.items()}
    bare = medians["bare model"]
    table = Table(title=f"Train steps of {spec.name}, CIFAR-shaped data",
                  caption="median of the rounds; min and max beside it")
    for column in ("path", "ms/step (median)", "min", "max", "img/s", "vs bare"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, values in samples.items():
        table.add_row(name, f"{medians[name] * 1e3:.1f}", f"{min(values) * 1e3:.1f}", f"{max(values) * 1e3:.1f}",
                      f"{args.batch_size / medians[name]:.0f}", f"{medians[name] / bare:.3f}x")
    console.print(table)
    console.print(f"target: runner <= 1.05x bare (here {medians['runner'] / bare:.3f}x)", highlight=False)


if __name__ == "__main__":
    main()
