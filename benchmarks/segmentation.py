"""Training speed and peak memory of LKCA-B and ViT-B under UPerNet, and LKCA's conv vs matrix view.

Setting of the paper's Table 6 on a GPU: 512x512 crops (token grid s = 32, LKCA kernel 63x63),
batch 8, float32, AdamW, one full training iteration (forward, both losses, backward, step) on
synthetic normalised images and labels (data loading excluded). Peak memory is
``torch.cuda.max_memory_allocated``. LKCA-B runs in both views of the operator (conv: one 63x63
convolution per channel; matrix: one (N x N) @ (N x C) product per image, N = 1024), and the bare
operator is timed too (forward + backward on B x 1024 x 768 tokens).

Without a GPU the same measurement runs in a reduced setting (default: 128x128 crops, i.e. s = 8,
batch 2) and peak memory is the maximum resident set (``ru_maxrss``) of a fresh process per case,
Python and torch included; those numbers say nothing about GPU speed. Not a test: run by hand
(``python benchmarks/segmentation.py``) or through ``vbench bench segmentation``.
"""

from __future__ import annotations

import gc
import multiprocessing
import resource

import torch
from _timing import argument_parser, median_ms
from vbench.backbones.lkca import lkca_conv, lkca_matrix

from vbench.models import registry
from vbench.recipes import OptimizerConfig
from vbench.segmentation.heads import Segmentor, segmentation_losses
from vbench.tasks.segmentation import build_optimizer

CASES = (("vit-b", "auto"), ("lkca-b", "conv"), ("lkca-b", "matrix"))


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_segmentor(backbone: str, crop: int, **overrides) -> Segmentor:
    """UPerNet over ``backbone``'s encoder at ``crop``, with backbone keywords (the LKCA view)."""
    spec = registry.get_backbone(backbone)
    variant = spec.variant("segmentation")
    encoder = spec.build(img_size=crop, num_classes=150, task="segmentation", **overrides)
    return Segmentor(encoder, variant.features.channels, "upernet", 150, size_divisor=variant.features.size_divisor,
                     recipe_kind=variant.recipe_kind)


def train_speed(backbone: str, view: str, crop: int, batch: int, device: torch.device, warmup: int,
                iterations: int) -> dict:
    overrides = {} if backbone.startswith("vit") else {"lkca_view": view}
    torch.manual_seed(0)
    segmentor = build_segmentor(backbone, crop, **overrides).to(device).train()
    optimizer = build_optimizer(segmentor, OptimizerConfig())
    images = torch.randn(batch, 3, crop, crop, device=device)
    labels = torch.randint(0, 150, (batch, crop, crop), device=device)
    labels[:, : crop // 8] = 255

    def step() -> None:
        losses = segmentation_losses(segmentor(images), labels, segmentor.aux_weight)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = median_ms(step, device, iterations, warmup=warmup) / 1e3
    return {"backbone": backbone, "view": view if overrides else "-", "crop": crop, "batch": batch,
            "iter_per_s": 1 / seconds, "img_per_s": batch / seconds, "peak_mib": _peak_mib(device)}


def operator_speed(grid: int, dim: int, batch: int, device: torch.device, repeats: int) -> dict:
    values = torch.randn(batch, grid * grid, dim, device=device, requires_grad=True)
    kernel = torch.randn(2 * grid - 1, 2 * grid - 1, device=device, requires_grad=True)
    result = {}
    for view, operator in (("conv", lkca_conv), ("matrix", lkca_matrix)):
        result[view] = median_ms(
            lambda: operator(values, kernel, (grid, grid)).sum().backward(), device, repeats, warmup=1
        )
    return result


def main(argv=None) -> list[dict]:
    parser = argument_parser(__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--crop", type=int, help="default 512 on a GPU, 128 on the CPU")
    parser.add_argument("--batch", type=int, help="default 8 on a GPU, 2 on the CPU")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iterations", type=int, help="timed iterations (median); default 20 on a GPU, 3 on the CPU")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    crop, batch = args.crop or (512 if gpu else 128), args.batch or (8 if gpu else 2)
    iterations = args.iterations or (20 if gpu else 3)
    where = torch.cuda.get_device_name(device) if gpu else "CPU (reduced setting, not the paper's)"
    print(f"device: {where}; UPerNet, float32, crop {crop} (grid s = {crop // 16}), batch {batch}, "
          f"median of {iterations} after {args.warmup} warm-up iterations")
    rows = []
    print(f"{'backbone':<8}{'view':>8}{'iter/s':>9}{'img/s':>8}{'peak MiB':>10}")
    spawn = multiprocessing.get_context("spawn")
    for backbone, view in CASES:
        case = (backbone, view, crop, batch, device, args.warmup, iterations)
        if gpu:
            row = train_speed(*case)
            gc.collect()
            torch.cuda.empty_cache()
        else:   # a fresh process per case, so that ru_maxrss is this case's peak
            with spawn.Pool(1) as pool:
                row = pool.apply(train_speed, case)
        rows.append(row)
        print(f"{row['backbone']:<8}{row['view']:>8}{row['iter_per_s']:>9.3f}{row['img_per_s']:>8.2f}"
              f"{row['peak_mib']:>10.0f}", flush=True)
    grid = crop // 16
    op = operator_speed(grid, 768, batch, device, repeats=max(iterations, 5))
    print(f"LKCA operator alone, s = {grid} (N = {grid * grid}), C = 768, batch {batch}, forward+backward: "
          f"conv {op['conv']:.2f} ms, matrix {op['matrix']:.2f} ms")
    rows.append({"operator_grid": grid, **op})
    return rows


if __name__ == "__main__":
    main()
