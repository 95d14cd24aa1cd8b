"""Augmented images per second: the batched recipe against the reference (PIL + DataLoader) pipeline.

One CIFAR-shaped epoch pass of random uint8 data through each pipeline (the cifar10 suite's full
recipe: crop, flip, AutoAugment, normalise, erasing, Mixup/CutMix), for each ``augment_impl`` (the
authors' ops and erasing, torchvision's), on CPU and, when there is one, on CUDA with the training
split resident on the GPU. Not a test; run it as

    python3 benchmarks/pipeline.py [--images 50000] [--devices cpu,cuda] [--impls authors,torchvision]
                                   [--workers 4] [--threads N]

``--images`` is the size of the fake training set; one pass (``repeats = 1``) is timed, so the count
of augmented images equals it (minus the dropped last partial batch).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import argument_parser  # noqa: E402

from vbench.data.augment import BatchedPipeline  # noqa: E402
from vbench.data.reference_pipeline import ReferencePipeline  # noqa: E402
from vbench.suites import load_suite  # noqa: E402


def time_epoch(recipe, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[int, float]:
    """(images augmented, seconds) for one pass; waits for the device before stopping the clock."""
    count = 0
    start = time.perf_counter()
    for batch in recipe.train_batches(images, labels, seed=0, epoch=0):
        count += len(batch.x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count, time.perf_counter() - start


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--images", type=int, default=50_000, help="training images in the fake CIFAR-shaped split")
    parser.add_argument("--reference-images", type=int, default=None, help="fewer images for the slow reference pipeline")
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the reference pipeline (the paper: 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU")
    parser.add_argument("--suite", default="cifar10")
    parser.add_argument("--impls", default="authors,torchvision", help="augment_impl values to time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base_suite = load_suite(args.suite, overrides={"repeats": 1})
    size = base_suite.img_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, size, size), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, base_suite.num_classes, (args.images,), generator=generator)
    reference_count = args.reference_images or args.images

    rows = []
    for device_name in args.devices.split(","):
        device = torch.device(device_name)
        resident_images, resident_labels = images.to(device), labels.to(device)  # the engine keeps the split here
        for impl in args.impls.split(","):
            suite = base_suite.with_overrides(augment_impl=impl)
            batched = BatchedPipeline(suite, device)
            next(iter(batched.train_batches(resident_images[:2048], resident_labels[:2048], 0, 1)))  # warm-up
            count, seconds = time_epoch(batched, resident_images, resident_labels, device)
            rows.append({"pipeline": "batched", "impl": impl, "device": device_name, "images": count,
                         "seconds": seconds, "images_per_s": count / seconds})
            reference = ReferencePipeline(suite, device, num_workers=args.workers)
            count, seconds = time_epoch(reference, images[:reference_count], labels[:reference_count], device)
            rows.append({"pipeline": "reference", "impl": impl, "device": device_name, "images": count,
                         "seconds": seconds, "images_per_s": count / seconds})

    context = {"torch_threads": torch.get_num_threads(), "suite": base_suite.name, "img_size": size,
               "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    if args.json:
        print(json.dumps({"context": context, "rows": rows}, indent=2))
        return
    table = Table(title=f"Augmented {size}x{size} images per second ({base_suite.name} recipe, one pass)",
                  caption=f"torch threads {context['torch_threads']}; reference: {args.workers} DataLoader workers; "
                          "speed-up: against the reference pipeline of the same impl and device")
    for column in ("pipeline", "augment_impl", "device", "images", "seconds", "images/s", "speed-up"):
        table.add_column(column, justify="left" if column in ("pipeline", "augment_impl", "device") else "right")
    for row in rows:
        reference_rate = next(r["images_per_s"] for r in rows if r["device"] == row["device"]
                              and r["impl"] == row["impl"] and r["pipeline"] == "reference")
        table.add_row(row["pipeline"], row["impl"], row["device"], f"{row['images']:,}", f"{row['seconds']:.2f}",
                      f"{row['images_per_s']:,.0f}", f"{row['images_per_s'] / reference_rate:.1f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
