"""Train-step speed of the four settings a user can pick: fp32 eager, bf16 autocast, torch.compile, and both.

For each backbone (default ViT-Small, LKCA-B, Swin-T and ResNet-56, CIFAR-shaped data at 32x32, batch 128),
each setting gets its own model, optimizer and (when compiling) compiled graph, built and warmed once; the
first step, which compiles, is timed apart as the compile time. Then the settings are timed in interleaved
rounds of ``--steps`` steps each (on a shared machine a single pass mostly measures the neighbours), and the
table gives images/s per setting (median of the rounds, min and max beside it) and the ratio of the medians
to fp32 eager. The step is the bare model's (the Runner adds at most a few percent, `vbench bench train-step`).
Beside each: the model FLOP/s (counted MACs x 2 FLOPs x 3 for forward and backward, times images/s) and the MFU,
their share of this machine's matmul peak at the setting's precision (``vbench.engine.mfu``, probed once and cached).

bf16 needs a CUDA GPU or a CPU with native bf16 (avx512_bf16 or amx_bf16); elsewhere its settings are skipped
with a line that says so.

    vbench bench speed [--backbones vit-small,lkca-b,swin-t,resnet56-cifar] [--steps 5] [--rounds 5]
                       [--batch-size 128] [--settings fp32,bf16,compile,bf16+compile] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from _timing import argument_parser, sync
from rich.console import Console
from rich.table import Table
from train_step import cifar_shaped, make_stepper, seconds_per_step

from vbench.data.augment import BatchedPipeline
from vbench.engine.mfu import utilization
from vbench.engine.precision import Precision, resolve_device
from vbench.errors import VbenchError
from vbench.models import registry
from vbench.models.measure import count_flops
from vbench.suites import load_suite

SETTINGS = {"fp32": (False, False), "bf16": (True, False), "compile": (False, True), "bf16+compile": (True, True)}


def parse_args() -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--backbones", default="vit-small,lkca-b,swin-t,resnet56-cifar")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return parser.parse_args()


@dataclass
class Stepper:
    """One setting's training step, ready to time, and the seconds its first two steps took (compiling)."""

    step: Callable[[int], None]
    compile_s: float


def ready_stepper(spec, suite, device, amp: bool, compile_model: bool, batches: list) -> Stepper:
    step = make_stepper(spec, suite, device, amp, compile_model, batches)
    start = time.perf_counter()
    step(0)  # compiles forward and backward, when compiling
    step(1)
    sync(device)
    return Stepper(step, time.perf_counter() - start)


def usable_settings(names: list[str], device, console: Console) -> list[str]:
    unknown = [name for name in names if name not in SETTINGS]
    if unknown:
        raise VbenchError(f"unknown setting(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    try:
        Precision.resolve(True, device)
    except VbenchError as exc:
        console.print(f"skipping the bf16 settings: {exc}", highlight=False)
        return [name for name in names if not SETTINGS[name][0]]
    return names


def measure_backbone(name: str, args, suite, device, settings: list[str], console: Console) -> dict:
    spec = registry.get_backbone(name)
    macs = count_flops(spec.build(suite.img_size, suite.num_classes), suite.img_size).total
    images, labels = cifar_shaped(4 * args.batch_size)
    batches = list(BatchedPipeline(suite, device).train_batches(images.to(device), labels.to(device), 0, 1))
    steppers = {}
    for setting in settings:
        amp, compile_model = SETTINGS[setting]
        steppers[setting] = ready_stepper(spec, suite, device, amp, compile_model, batches)
    samples: dict[str, list[float]] = {setting: [] for setting in settings}
    for _ in range(args.rounds):
        for setting, stepper in steppers.items():
            samples[setting].append(seconds_per_step(stepper.step, args.steps, device))
    console.print(f"{name}: measured {', '.join(settings)}", highlight=False)
    precisions = {setting: Precision.resolve(SETTINGS[setting][0], device).name for setting in settings}
    return {"samples": samples, "compile_s": {setting: s.compile_s for setting, s in steppers.items()}, "macs": macs,
            "precisions": precisions}


def speed_table(results: dict, batch_size: int, device) -> Table:
    table = Table(title=f"Train-step speed on {device}, batch {batch_size}, CIFAR-shaped 32x32",
                  caption="images/s: median of the interleaved rounds (min-max); ratio of medians to fp32 eager; "
                          "first two steps (compile) timed apart; model FLOP/s: counted MACs x 2 x 3 (forward and "
                          "backward) x images/s; MFU: its share of the matmul peak probed at the setting's precision")
    for column in ("backbone", "setting", "img/s", "min-max", "vs fp32 eager", "model GFLOP/s", "peak GFLOP/s", "MFU",
                   "first steps s"):
        table.add_column(column, justify="left" if column in ("backbone", "setting") else "right")
    for name, result in results.items():
        samples = result["samples"]
        baseline = statistics.median(samples["fp32"]) if "fp32" in samples else None
        for setting, seconds in samples.items():
            median = statistics.median(seconds)
            ratio = f"{baseline / median:.2f}x" if baseline else "-"
            used = utilization(result["macs"], batch_size / median, device, result["precisions"][setting])
            table.add_row(name, setting, f"{batch_size / median:.0f}",
                          f"{batch_size / max(seconds):.0f}-{batch_size / min(seconds):.0f}", ratio,
                          f"{used['model_flops_per_s'] / 1e9:.1f}", f"{used['matmul_peak_flops_per_s'] / 1e9:.0f}",
                          f"{100 * used['mfu']:.1f}%", f"{result['compile_s'][setting]:.1f}")
    return table


def main() -> None:
    args = parse_args()
    console = Console()
    device = resolve_device(args.device)
    registry.load_all()
    settings = usable_settings(args.settings.split(","), device, console)
    suite = load_suite("cifar10", overrides={"batch_size": args.batch_size, "epochs": 1}, sets=["repeats=1"])
    console.print(f"{torch.get_num_threads()} threads, {args.rounds} rounds of {args.steps} steps per setting",
                  highlight=False)
    results = {name: measure_backbone(name, args, suite, device, settings, console)
               for name in args.backbones.split(",")}
    console.print(speed_table(results, args.batch_size, device))


if __name__ == "__main__":
    main()
