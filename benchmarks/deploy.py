"""Inference speed on the deployment runtimes (``vbench deploy``'s), and which backbones export.

Speed (the default): ViT-Small, LKCA-B, MobileViTv2-050 and ResNet-56, CIFAR-shaped (32x32, 10 classes, random
weights: the speed of a model does not depend on its training), at batch 1 and 64, on every runtime and precision
this machine runs. Each setting is prepared once (exported, quantised on random calibration images, compiled and
warmed), then the settings are timed in interleaved rounds (on a shared machine a single pass mostly measures the
neighbours): per round, batch 1 is ``--queries`` single queries and a larger batch is timed for ``--seconds``. The
table gives the median over rounds of the p50 and p90 latency and of the images/s, and the ratio of images/s to
torch eager fp32 at the same batch size; the support matrix gives each unsupported setting's reason.

Registry (``--registry``): every classification backbone at its smallest image size (the first of 8, 16, 32, 64
it builds and runs at) exported with each exporter, run in ONNX Runtime and in OpenVINO and compared with PyTorch
on a batch of 3 (the largest absolute logit difference), with the seconds the export took and, for a backbone that
does not export, the reason.

    vbench bench deploy [--backbones vit-small,lkca-b,mobilevitv2-050,resnet56-cifar] [--runtimes ...]
                        [--precisions fp32,bf16,int8] [--batch-sizes 1,64] [--rounds 5] [--queries 200] [--seconds 1]
                        [--threads N] [--exporter dynamo] [--device auto]
    vbench bench deploy --registry [--backbones PATTERNS] [--exporters dynamo,torchscript]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from train_step import cifar_shaped

from vbench.data.augment import BatchedPipeline
from vbench.deploy.evaluate import once
from vbench.deploy.export import EXPORTERS, SMALLEST_SIZES, export_onnx, smallest_model
from vbench.deploy.latency import batch_of, latency, throughput
from vbench.deploy.quantize import calibration_set
from vbench.deploy.runtimes import PRECISIONS, RUNTIMES, Subject, openvino_core
from vbench.engine.hardware import fingerprint
from vbench.engine.precision import resolve_device
from vbench.errors import one_line
from vbench.models import registry
from vbench.parse import parse_list, positive_int
from vbench.suites import load_suite

BACKBONES = "vit-small,lkca-b,mobilevitv2-050,resnet56-cifar"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=None)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES.names()))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200, help="single queries per round at batch 1")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per round at a larger batch")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--exporter", default="dynamo", choices=EXPORTERS)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--registry", action="store_true", help="export every classification backbone instead")
    parser.add_argument("--exporters", default=",".join(EXPORTERS), help="with --registry")
    return parser.parse_args()


# CIFAR-10's normalisation, as the cifar10 suite's pipeline applies it
normalize = BatchedPipeline(load_suite("cifar10"), torch.device("cpu")).normalize


def random_images(count: int, seed: int) -> torch.Tensor:
    return cifar_shaped(count, seed)[0]


def subject_of(name: str, device, threads: int, exporter: str, calibration_images: int, workdir: Path) -> Subject:
    spec = registry.get_backbone(name)
    torch.manual_seed(0)
    model = spec.build(32, 10).eval()
    transformer = spec.variant("classification").recipe_kind == "transformer"
    return Subject(name, model, 32, device, threads, transformer, workdir,
                   once(lambda: export_onnx(model, 32, workdir / f"{name}.onnx", exporter)),
                   once(lambda: calibration_set(random_images(4 * calibration_images, seed=1), normalize,
                                                calibration_images)))


def prepare_settings(subject: Subject, runtimes: list[str], precisions: list[str], device, hardware,
                     console: Console) -> tuple[dict, dict]:
    """``{(runtime, precision): predictor}`` and ``{(runtime, precision): why not}``."""
    ready, refused = {}, {}
    for runtime_name in runtimes:
        runtime = RUNTIMES.get(runtime_name)
        for precision in precisions:
            reason = runtime.unsupported(precision, device, hardware)
            if reason is None:
                started = time.perf_counter()
                try:
                    ready[(runtime_name, precision)] = runtime.prepare(subject, precision)
                except Exception as exc:  # noqa: BLE001 - reported in the matrix; the others are timed
                    reason = f"failed: {one_line(exc, 200)}"
                else:
                    console.print(f"{subject.name}: {runtime_name} {precision} ready in "
                                  f"{time.perf_counter() - started:.1f} s", highlight=False)
            if reason is not None:
                refused[(runtime_name, precision)] = reason
    return ready, refused


def time_backbone(subject: Subject, ready: dict, batch_sizes: list[int], args, console: Console) -> dict:
    """``{(runtime, precision, batch): [Timing per round]}``, the settings interleaved in every round."""
    images = normalize(random_images(max(batch_sizes), seed=2))
    batches = {size: batch_of(images, size) for size in batch_sizes}
    for predict in ready.values():  # warm-up (and compiling) outside the rounds
        for batch in batches.values():
            predict(batch)
    timings: dict[tuple, list] = {}
    for round_index in range(args.rounds):
        for (runtime, precision), predict in ready.items():
            for size, batch in batches.items():
                timing = latency(predict, batch, args.queries) if size == 1 else \
                    throughput(predict, batch, args.seconds)
                timings.setdefault((runtime, precision, size), []).append(timing)
        console.print(f"{subject.name}: round {round_index + 1}/{args.rounds}", highlight=False)
    return timings


def speed_table(results: dict, device, threads: int, args) -> Table:
    table = Table(title=f"Inference on {device}, {threads} threads, CIFAR-shaped 32x32, {args.rounds} interleaved rounds",
                  caption="median over rounds; batch 1: latency of single queries (p50/p90 of each round's "
                          f"{args.queries}); larger: back-to-back batches for {args.seconds:g} s; "
                          "ratio of images/s to torch eager fp32 at the same batch")
    for column in ("backbone", "runtime", "precision", "batch", "p50 ms", "p90 ms", "img/s", "vs torch fp32"):
        table.add_column(column, justify="left" if column in ("backbone", "runtime", "precision") else "right")
    for name, timings in results.items():
        for (runtime, precision, size), rounds in timings.items():
            rate = statistics.median(t.images_per_s for t in rounds)
            base = timings.get(("torch", "fp32", size))
            ratio = f"{rate / statistics.median(t.images_per_s for t in base):.2f}x" if base else "-"
            table.add_row(name, runtime, precision, str(size), f"{statistics.median(t.latency_p50_ms for t in rounds):.3f}",
                          f"{statistics.median(t.latency_p90_ms for t in rounds):.3f}", f"{rate:.0f}", ratio)
    return table


def support_table(refused: dict) -> Table:
    table = Table(title="Unsupported or failed here")
    for column in ("backbone", "runtime", "precision", "why"):
        table.add_column(column)
    for name, reasons in refused.items():
        for (runtime, precision), reason in reasons.items():
            table.add_row(name, runtime, precision, reason)
    return table


def speed(args, console: Console) -> None:
    device = resolve_device(args.device)
    hardware = fingerprint(device)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    runtimes = [RUNTIMES.resolve(name) for name in parse_list(args.runtimes, "--runtimes")]
    precisions = parse_list(args.precisions, "--precisions", choices=PRECISIONS)
    batch_sizes = sorted(parse_list(args.batch_sizes, "--batch-sizes", positive_int))
    console.print(f"machine {hardware.id}: {hardware.text()}; {threads} threads", highlight=False)
    results, refused = {}, {}
    with tempfile.TemporaryDirectory(prefix="vbench-bench-deploy-") as workdir:
        for name in parse_list(args.backbones or BACKBONES, "--backbones"):
            subject = subject_of(name, device, threads, args.exporter, args.calibration_images, Path(workdir))
            ready, refused[name] = prepare_settings(subject, runtimes, precisions, device, hardware, console)
            results[name] = time_backbone(subject, ready, batch_sizes, args, console)
    console.print(speed_table(results, device, threads, args))
    console.print(support_table(refused))


def registry_walk(args, console: Console) -> None:
    # lazy: optional dependencies (vbench[deploy]), only for --registry
    import onnxruntime
    import openvino

    names = [spec.name for spec in registry.select_backbones(args.backbones or "*", task="classification")]
    exporters = parse_list(args.exporters, "--exporters", choices=EXPORTERS)
    table = Table(title="Every classification backbone at its smallest size: ONNX export, ONNX Runtime and OpenVINO "
                        "against PyTorch (max |logit difference|, batch of 3)")
    for column in ("backbone", "size", *[f"{e}: {what}" for e in exporters for what in ("s", "ORT", "OpenVINO")]):
        table.add_column(column, justify="left" if column == "backbone" else "right")
    failures = []
    with tempfile.TemporaryDirectory(prefix="vbench-registry-") as workdir:
        for name in names:
            size, model, reason = smallest_model(name)
            if model is None:
                failures.append(f"{name}: builds at none of {SMALLEST_SIZES}: {reason}")
                table.add_row(name, "-", *["-"] * 3 * len(exporters))
                continue
            batch = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                expected = model(batch).numpy()
            cells = []
            for exporter in exporters:
                try:
                    export = export_onnx(model, size, Path(workdir) / f"{name}-{exporter}.onnx", exporter)
                    session = onnxruntime.InferenceSession(str(export.path), providers=["CPUExecutionProvider"])
                    ort_out = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
                    compiled = openvino_core().compile_model(openvino.convert_model(str(export.path)), "CPU",
                                                             {"INFERENCE_PRECISION_HINT": "f32"})
                    ov_out = compiled(batch.numpy())[0]
                    cells += [f"{export.seconds:.1f}", f"{abs(ort_out - expected).max():.1e}",
                              f"{abs(ov_out - expected).max():.1e}"]
                except Exception as exc:  # noqa: BLE001 - listed with its reason; the others go on
                    failures.append(f"{name} ({exporter}): {one_line(exc, 200)}")
                    cells += ["failed", "-", "-"]
            table.add_row(name, str(size), *cells)
            console.print(f"{name}: {' '.join(cells)}", highlight=False)
    console.print(table)
    console.print("\n".join(failures) if failures else "every backbone exported with every exporter", highlight=False)


def main() -> None:
    args = parse_args()
    console = Console()
    registry.load_all()
    if args.registry:
        registry_walk(args, console)
    else:
        speed(args, console)


if __name__ == "__main__":
    main()
