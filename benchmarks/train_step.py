"""End-to-end training-step time of the engine against the bare model, and against the reference pipeline.

Three ways to run the same number of training steps of one backbone (default LKCA-B) on CIFAR-shaped
data (32x32, 10 classes, the paper's recipe with CIFAR AutoAugment):

* bare:      forward + backward + AdamW step on one normalised batch already on the device (no data
             pipeline at all): the floor;
* batched:   the engine's own epoch loop (``Engine._train_epoch``) with the batched recipe, the uint8
             training split on the device: what ``vbench run`` does;
* reference: the same loop fed by the reference pipeline (torchvision PIL transforms + DataLoader).

Targets on a GPU: batched at most 1.15x bare, reference at least 5x batched. On a CPU the model
dominates and a reduced number of steps is enough (``--steps``). A full CIFAR epoch of the recipe is
3 x 50,000 / 128 = 1,171 steps; the per-epoch times are extrapolated from the measured steps.

    python benchmarks/train_step.py [--backbone lkca-b] [--steps 20] [--rounds 2] [--device auto] [--amp] [--compile]
    vbench bench train-step -- --steps 20
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from _timing import sync
from vbench import registry
from vbench.store import open_store
from vbench.suites import load_suite
from vbench.train import (
    Data, Engine, EngineOptions, Job, _amp_dtype, build_model, make_optimizer, make_scheduler, resolve_device,
)

CIFAR_TRAIN = 50_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="lkca-b")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default: 200 on a GPU, 10 on a CPU)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="untimed steps first (default: 20 GPU, 2 CPU)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="bf16/fp16 autocast (CUDA only)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--rounds", type=int, default=2, help="measure every path this many times, interleaved; keep the fastest")
    parser.add_argument("--skip-reference", action="store_true")
    return parser.parse_args()


def cifar_shaped(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (n,), generator=generator)


def fresh_training(spec, suite, options: EngineOptions, steps_per_epoch: int):
    torch.manual_seed(0)
    model = build_model(spec, suite).to(options.device)
    optimizer = make_optimizer(model, suite.recipe)
    scheduler = make_scheduler(optimizer, suite.recipe, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=options.amp_active and _amp_dtype(options) == torch.float16)
    trained = torch.compile(model) if options.compile else model
    autocast = (lambda: torch.autocast("cuda", dtype=_amp_dtype(options))) if options.amp_active else nullcontext
    return trained, optimizer, scheduler, scaler, autocast


def time_bare(spec, suite, options: EngineOptions, steps: int, warmup: int) -> float:
    """Seconds per step of forward + backward + optimizer step on a batch already on the device."""
    model, optimizer, scheduler, scaler, autocast = fresh_training(spec, suite, options, steps + warmup)
    batch = suite.recipe.batch_size
    x = torch.randn(batch, 3, suite.img_size, suite.img_size, device=options.device)
    y = torch.randint(0, suite.num_classes, (batch,), device=options.device)
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            sync(options.device)
            start = time.perf_counter()
        scheduler.step_update(step)
        with autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=suite.recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    sync(options.device)
    return (time.perf_counter() - start) / steps


def time_engine(spec, suite, options: EngineOptions, steps: int, warmup: int) -> float:
    """Seconds per step of the engine's epoch loop: a warm-up epoch of ``warmup`` steps, then a timed one."""
    batch = suite.recipe.batch_size
    images, labels = cifar_shaped(steps * batch)
    store = open_store("sqlite://")
    trained = None
    timed = None
    for epoch, n_steps in ((1, warmup), (2, steps)):
        if n_steps == 0:
            continue
        data = Data(images[: n_steps * batch], labels[: n_steps * batch], images[:batch], labels[:batch])
        engine = Engine(store, suite, data, options, console=Console(quiet=True))
        if trained is None:
            trained = fresh_training(spec, suite, options, steps + warmup)
        job = Job(spec=spec, seed=0, params=0, flops=0)
        metrics = engine._train_epoch(*trained, job=job, epoch=epoch, label="bench")
        timed = metrics["time_s"] / n_steps
    return timed


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    steps = args.steps or (200 if on_gpu else 10)
    warmup = args.warmup_steps if args.warmup_steps is not None else (20 if on_gpu else 2)
    registry.load_all()
    spec = registry.get_backbone(args.backbone)
    suite = load_suite("cifar10", overrides={"batch_size": args.batch_size}, sets=["repeats=1"])
    full_epoch_steps = 3 * CIFAR_TRAIN // args.batch_size
    console = Console()
    base = dict(device=device, amp=args.amp, compile=args.compile)
    console.print(
        f"{spec.name} on {device} ({torch.cuda.get_device_name(device) if on_gpu else 'CPU, ' + str(torch.get_num_threads()) + ' threads'}), "
        f"batch {args.batch_size}, {steps} timed steps after {warmup} warm-up steps, amp {args.amp and on_gpu}, "
        f"compile {args.compile}", highlight=False)

    paths = {"bare model": lambda: time_bare(spec, suite, EngineOptions(**base), steps, warmup),
             "engine, batched": lambda: time_engine(spec, suite, EngineOptions(**base, pipeline="batched"), steps, warmup)}
    if not args.skip_reference:
        paths["engine, reference"] = lambda: time_engine(
            spec, suite, EngineOptions(**base, pipeline="reference"), steps, warmup)
    # Interleaved rounds, fastest of each: on a shared machine a single pass mostly measures the neighbours.
    results: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, measure in paths.items():
            results[name] = min(results.get(name, float("inf")), measure())
    bare = results["bare model"]
    batched = results["engine, batched"]
    table = Table(title=f"Training steps of {spec.name}, CIFAR-shaped data",
                  caption="bare model: fwd+bwd+AdamW on one batch already on the device; engine: vbench run's epoch loop")
    for column in ("path", "ms/step", "img/s", "CIFAR epoch", "vs bare", "vs batched"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, seconds in results.items():
        table.add_row(name, f"{seconds * 1e3:.1f}", f"{args.batch_size / seconds:.0f}",
                      f"{seconds * full_epoch_steps:.0f} s", f"{seconds / bare:.2f}x", f"{seconds / batched:.2f}x")
    console.print(table)
    console.print(f"targets on a GPU: batched <= 1.15x bare (here {batched / bare:.2f}x)"
                  + (f", reference >= 5x batched (here {results['engine, reference'] / batched:.2f}x)"
                     if "engine, reference" in results else ""), highlight=False)


if __name__ == "__main__":
    main()
