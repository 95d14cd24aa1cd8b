"""Kernel-size study: LKA, LSKA and LKCA token mixers at kernel sizes 7, 11, 23, 35 and 53 (LSKA's set).

One fixed width and token grid for every point (default: width 64, a 32x32 grid, batch 8, float32).
Each mixer is the one our chassis uses, tokens (B, N, C) in and out:
- lka:  VAN's spatial attention (1x1, GELU, LKA, 1x1) with LKA at kernel size k, decomposed as the LSKA
        paper decomposes it: a local depthwise conv plus a dilated depthwise conv whose receptive field
        is k (7: 3 + 3 d2, 11: 3 + 5 d2, 23: 5 + 7 d3, 35: 5 + 11 d3, 53: 5 + 17 d3), full 2-D kernels;
- lska: the same with every 2-D depthwise kernel split into a (1 x n) and an (n x 1) kernel;
- lkca-conv / lkca-matrix: LKCA (value projection, one shared k x k kernel over the grid, output
        projection) in its two views. LKCA's kernel is (2s-1) x (2s-1) for its training grid s, so the
        LKCA of kernel size k is the module built for grid (k+1)/2 run on the fixed grid, which is what
        LKCA does on a larger grid (segmentation): the k x k kernel, zero padded, slides over it. The
        32x32 grid is the smallest power of two whose 2s-1 = 63 holds every k up to 53, so no kernel
        is cut. The matrix view (vbench's default on CPU and GPU) unfolds the kernel to an N x N matrix,
        so its cost does not grow with k; the conv view's does (k^2 per pixel) and is left out by
        default because on a CPU it takes most of a minute per step at k = 53 (``--mixers`` adds it).

Measured per point: trainable parameters; fvcore FLOPs (multiply-accumulates) of one sample;
forward+backward time, the median over interleaved rounds (every point once per round, so machine
noise spreads over all points); peak memory of one forward+backward: on the CPU the growth of the peak
resident set (VmHWM) of a fresh process per point over its resident set before the step (after a
batch-1 warm-up, with glibc's mmap threshold fixed at 64 KiB so that freed buffers leave the resident
set), on a GPU the growth of torch.cuda.max_memory_allocated; and the effective receptive field at initialisation
(``vbench.analysis.erf``, RepLKNet's method): random tokens on a larger grid (default 64x64, so that even k = 53
fits inside it), the gradient of the central output token's ReLU-ed channels summed, its high-contribution area
ratios at t = 20%, 30%, 50% and 99% (the share of the grid inside the smallest centred square holding more than t
of the log-scaled scores). Prints the tables, writes a CSV, a 2x2 plot of the costs and a plot of the ERF ratios
(PNG, SVG).

    python benchmarks/kernels.py [--dim 64] [--grid 32] [--batch 8] [--rounds 7] [--device cpu] [--threads 1]
                                 [--erf-grid 64] [--erf-samples 8] [--no-erf]
    vbench bench kernels -- --rounds 7
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from _timing import argument_parser, sync  # noqa: E402
from vbench.backbones.large_kernel_attention import LKA, LSKA, SpatialAttentionMixer  # noqa: E402
from vbench.backbones.lkca import LKCA  # noqa: E402

from vbench.analysis.erf import THRESHOLDS, contribution_scores, erf_summary, threshold_key  # noqa: E402
from vbench.errors import VbenchError  # noqa: E402
from vbench.parse import parse_list, positive_int  # noqa: E402

KERNELS = (7, 11, 23, 35, 53)
MIXERS = ("lka", "lska", "lkca-matrix", "lkca-conv")
DEFAULT_MIXERS = ("lka", "lska", "lkca-matrix")  # the conv view at k = 53 takes most of a minute per step on a CPU
QUANTITIES = (("params", "parameters"), ("flops", "FLOPs (MACs, one sample)"), ("time_ms", "forward+backward (ms)"),
              ("memory_mb", "peak memory of fwd+bwd (MB)"))


def build_mixer(mixer: str, kernel: int, dim: int, grid: int) -> nn.Module:
    if mixer == "lka":
        return SpatialAttentionMixer(dim, grid, LKA(dim, kernel))
    if mixer == "lska":
        return SpatialAttentionMixer(dim, grid, LSKA(dim, kernel))
    if mixer in ("lkca-conv", "lkca-matrix"):
        module = LKCA(dim, (kernel + 1) // 2, heads=1, view=mixer.split("-")[1])
        nn.init.normal_(module.kernel, std=0.02)  # zeros at init would make the backward trivial
        return module
    raise VbenchError(f"unknown mixer {mixer!r}; choose from {', '.join(MIXERS)}")


class OnGrid(nn.Module):
    """Calls a mixer with the fixed grid (fvcore traces ``forward(tokens)`` only)."""

    def __init__(self, mixer: nn.Module, grid: int):
        super().__init__()
        self.mixer, self.grid = mixer, grid

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mixer(tokens, hw=(self.grid, self.grid))


def make_point(mixer: str, kernel: int, args, device: torch.device):
    torch.manual_seed(0)
    module = OnGrid(build_mixer(mixer, kernel, args.dim, args.grid), args.grid).to(device)
    tokens = torch.randn(args.batch, args.grid * args.grid, args.dim, device=device, requires_grad=True)

    def step():
        module(tokens).sum().backward()

    return module, tokens, step


def count_flops(module: nn.Module, args) -> int:
    import warnings

    from vbench.models.measure import flop_analysis

    sample = torch.zeros(1, args.grid * args.grid, args.dim)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return int(flop_analysis(module.cpu().eval(), (sample,)).total())


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_memory(mixer: str, kernel: int, args) -> dict:
    """In a fresh process: one forward+backward at batch 1 first (loads the code paths, creates the
    parameter gradients), then the growth of the peak resident set over one at the full batch."""
    torch.manual_seed(0)
    module = OnGrid(build_mixer(mixer, kernel, args.dim, args.grid), args.grid)
    module(torch.randn(1, args.grid * args.grid, args.dim, requires_grad=True)).sum().backward()
    tokens = torch.randn(args.batch, args.grid * args.grid, args.dim, requires_grad=True)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    module(tokens).sum().backward()
    peak = _status_kb("VmHWM")
    return {"rss_before_mb": before / 1024, "peak_rss_mb": peak / 1024, "memory_mb": (peak - before) / 1024}


def cpu_memory(mixer: str, kernel: int, args) -> dict:
    command = [sys.executable, __file__, "--child-memory", mixer, str(kernel), "--dim", str(args.dim), "--grid",
               str(args.grid), "--batch", str(args.batch), "--threads", str(args.threads)]
    # A fixed mmap threshold makes glibc return every freed buffer of 64 KiB or more to the system, so the
    # peak RSS follows the live tensors; with its adaptive threshold the same point varied by ~30%.
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return json.loads(result.stdout.strip().splitlines()[-1])


def cuda_memory(step, device: torch.device) -> dict:
    step()
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    sync(device)
    return {"memory_mb": (torch.cuda.max_memory_allocated(device) - before) / 2**20}


def erf_key(threshold: float) -> str:
    return f"erf_{round(threshold * 100)}"


def mixer_erf(mixer: str, kernel: int, args) -> dict:
    """The ERF area ratios (%) of one mixer at initialisation, on random tokens of an ``erf_grid`` grid."""
    torch.manual_seed(0)
    grid, samples = args.erf_grid, args.erf_samples
    module = build_mixer_on_cpu(mixer, kernel, args)
    inputs = torch.randn(samples, args.dim, grid, grid, requires_grad=True)
    outputs = module.mixer(inputs.flatten(2).transpose(1, 2), hw=(grid, grid))
    output_map = outputs.transpose(1, 2).reshape(samples, -1, grid, grid)
    matrix = contribution_scores(output_map, inputs).mean(dim=0).double().numpy()
    summary = erf_summary(matrix)
    return {erf_key(t): 100.0 * summary[threshold_key(t)] for t in THRESHOLDS}


def interleaved_times(points: dict, device: torch.device, rounds: int, warmup: int = 2) -> dict:
    """Median milliseconds per point; each round times every point once, in a rotated order."""
    keys = list(points)
    for key in keys:
        for _ in range(warmup):
            points[key]()
    sync(device)
    times = {key: [] for key in keys}
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            start = time.perf_counter()
            points[key]()
            sync(device)
            times[key].append((time.perf_counter() - start) * 1e3)
    return {key: statistics.median(values) for key, values in times.items()}


def run(args) -> list[dict]:
    device = torch.device(args.device)
    rows, steps = [], {}
    for mixer in args.mixers:
        for kernel in args.kernels:
            module, _, step = make_point(mixer, kernel, args, device)
            params = sum(p.numel() for p in module.parameters() if p.requires_grad)
            flops = count_flops(build_mixer_on_cpu(mixer, kernel, args), args)
            rows.append({"device": device.type, "mixer": mixer, "kernel": kernel, "dim": args.dim, "grid": args.grid,
                         "batch": args.batch, "threads": args.threads if device.type == "cpu" else "",
                         "params": params, "flops": flops})
            steps[(mixer, kernel)] = step
    medians = interleaved_times(steps, device, args.rounds)
    for row in rows:
        key = (row["mixer"], row["kernel"])
        row["time_ms"] = medians[key]
        if args.memory:
            row.update(cpu_memory(*key, args) if device.type == "cpu" else cuda_memory(steps[key], device))
        if args.erf:
            row.update(mixer_erf(*key, args), erf_grid=args.erf_grid)
    return rows


def build_mixer_on_cpu(mixer: str, kernel: int, args) -> nn.Module:
    torch.manual_seed(0)
    return OnGrid(build_mixer(mixer, kernel, args.dim, args.grid), args.grid)


def ratios(rows: list[dict], kernel: int, numerator: str = "lka", denominator: str = "lska") -> dict:
    by_key = {(row["mixer"], row["kernel"]): row for row in rows}
    top, bottom = by_key.get((numerator, kernel)), by_key.get((denominator, kernel))
    if not top or not bottom:
        return {}
    return {name: top[name] / bottom[name] for name, _ in QUANTITIES if name in top and bottom.get(name)}


def print_table(rows: list[dict], args) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (f"Token mixers by kernel size: width {args.dim}, grid {args.grid}x{args.grid}, batch {args.batch}, "
             f"{args.device}" + (f", {args.threads} thread(s)" if args.device == "cpu" else ""))
    table = Table(title=title)
    for column in ("mixer", "k", "params", "MFLOPs", "fwd+bwd ms", "peak MB"):
        table.add_column(column, justify="left" if column == "mixer" else "right")
    for row in rows:
        table.add_row(row["mixer"], str(row["kernel"]), f"{row['params']:,}", f"{row['flops'] / 1e6:.1f}",
                      f"{row['time_ms']:.1f}", f"{row['memory_mb']:.1f}" if "memory_mb" in row else "-")
    console = Console()
    console.print(table)
    for kernel in args.kernels:
        ratio = ratios(rows, kernel)
        if ratio:
            console.print(f"LKA / LSKA at k={kernel}: " + ", ".join(f"{name} {value:.2f}x" for name, value in ratio.items()))
    if args.erf:
        erf = Table(title=f"ERF at initialisation: high-contribution area ratio (% of a {args.erf_grid}x{args.erf_grid} "
                          f"grid), {args.erf_samples} random inputs")
        for column in ("mixer", "k", *(f"t={round(t * 100)}%" for t in THRESHOLDS)):
            erf.add_column(column, justify="left" if column == "mixer" else "right")
        for row in rows:
            erf.add_row(row["mixer"], str(row["kernel"]), *(f"{row[erf_key(t)]:.2f}" for t in THRESHOLDS))
        console.print(erf)
        for mixer in dict.fromkeys(row["mixer"] for row in rows):
            console.print(f"{mixer}: ERF ratio grows with k at every threshold: {grows_with_kernel(rows, mixer)}")


def grows_with_kernel(rows: list[dict], mixer: str) -> bool:
    """Whether the mixer's ERF area ratio rises from each kernel size to the next, at every threshold."""
    points = sorted((row["kernel"], row) for row in rows if row["mixer"] == mixer)
    return all(b[erf_key(t)] > a[erf_key(t)] for t in THRESHOLDS for (_, a), (_, b) in zip(points, points[1:]))


def write_outputs(rows: list[dict], output: Path, device: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output.mkdir(parents=True, exist_ok=True)
    csv_path = output / f"kernels-{device}.csv"
    fields = list(rows[0])
    for row in rows:
        fields += [name for name in row if name not in fields]
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    figure, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for axis, (quantity, label) in zip(axes.flat, QUANTITIES):
        if quantity not in rows[0]:
            axis.set_visible(False)
            continue
        for mixer in dict.fromkeys(row["mixer"] for row in rows):
            points = [(row["kernel"], row[quantity]) for row in rows if row["mixer"] == mixer]
            axis.plot(*zip(*points), marker="o", label=mixer)
        axis.set_xlabel("kernel size k")
        axis.set_ylabel(label)
        if quantity == "memory_mb":
            axis.set_ylim(bottom=0)  # the spread is a few MB: a log axis would magnify it
        else:
            axis.set_yscale("log")
        axis.set_xticks(sorted({row["kernel"] for row in rows}))
        axis.grid(True, alpha=0.3)
    axes.flat[0].legend()
    first = rows[0]
    figure.suptitle(f"Kernel-size study, width {first['dim']}, grid {first['grid']}x{first['grid']}, batch "
                    f"{first['batch']}, {device}")
    figure.tight_layout()
    written = [csv_path]
    for extension in ("png", "svg"):
        path = output / f"kernels-{device}.{extension}"
        figure.savefig(path)
        written.append(path)
    plt.close(figure)
    if erf_key(THRESHOLDS[0]) in rows[0]:
        written += erf_figure(plt, rows, output, device)
    return written


def erf_figure(plt, rows: list[dict], output: Path, device: str) -> list[Path]:
    figure, axes = plt.subplots(1, len(THRESHOLDS), figsize=(4 * len(THRESHOLDS), 3.6), layout="constrained")
    for axis, threshold in zip(axes, THRESHOLDS):
        for mixer in dict.fromkeys(row["mixer"] for row in rows):
            points = [(row["kernel"], row[erf_key(threshold)]) for row in rows if row["mixer"] == mixer]
            axis.plot(*zip(*points), marker="o", label=mixer)
        axis.set_title(f"t = {round(threshold * 100)}%")
        axis.set_xlabel("kernel size k")
        axis.set_ylabel("area ratio (% of the grid)")
        axis.set_xticks(sorted({row["kernel"] for row in rows}))
        axis.grid(True, alpha=0.3)
    axes[0].legend()
    figure.suptitle(f"ERF at initialisation, grid {rows[0]['erf_grid']}x{rows[0]['erf_grid']}, {device}")
    written = []
    for extension in ("png", "svg"):
        path = output / f"kernels-{device}-erf.{extension}"
        figure.savefig(path)
        written.append(path)
    plt.close(figure)
    return written


def parse_args(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--kernels", type=lambda text: parse_list(text, "--kernels", positive_int, example="7,11,23"),
                        default=list(KERNELS))
    parser.add_argument("--mixers", type=lambda text: parse_list(text, "--mixers", choices=MIXERS, example="lka,lska"),
                        default=list(DEFAULT_MIXERS),
                        help=f"comma-separated, from {', '.join(MIXERS)} (default: {', '.join(DEFAULT_MIXERS)})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1: steadier on a shared machine)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory points")
    parser.add_argument("--erf-grid", type=int, default=64, help="token grid of the ERF points (default 64)")
    parser.add_argument("--erf-samples", type=int, default=8, help="random inputs the ERF is averaged over")
    parser.add_argument("--no-erf", dest="erf", action="store_false", help="skip the ERF points")
    parser.add_argument("--output", type=Path, default=Path("results/bench/kernels"))
    parser.add_argument("--child-memory", nargs=2, metavar=("MIXER", "KERNEL"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child_memory:
        print(json.dumps(child_memory(args.child_memory[0], int(args.child_memory[1]), args)))
        return []
    if args.device == "cuda" and not torch.cuda.is_available():
        raise VbenchError("--device cuda: torch sees no GPU here; use --device cpu")
    rows = run(args)
    print_table(rows, args)
    for path in write_outputs(rows, args.output, args.device):
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
