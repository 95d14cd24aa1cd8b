"""Forward+backward time of the LKCA operator's two views against scaled_dot_product_attention.

At the widths of LKCA-T/B/L (136, 210, 360), batch 128, an 8x8 token grid (N = 64), on the CPU and,
when one is present, on a GPU. Not a test: run by hand (``python benchmarks/lkca_op.py``) or through
``vbench bench lkca-op``. The faster view per device is the default of ``lkca_view="auto"``
(``backbones.lkca.FASTER_VIEW``).

Measured on the 2-core CPU sandbox (torch 2.15, float32, batch 128, N = 64, median of 5 after 2
warm-ups, machine shared with other jobs, so absolute numbers are noisy; the ratio is not):
    model   width   conv ms  matrix ms  sdpa ms
    LKCA-T    136    724.79      37.20   112.58
    LKCA-B    210   1148.05      95.97   143.14
    LKCA-L    360   2551.87     169.66   352.15
The matrix view is 12-20x faster than the conv view on the CPU. GPU figures are still owed (no GPU
was lent when this was written); the matrix view is the GPU default because it is one batched matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _timing import argument_parser, median_ms
from vbench.backbones.lkca import lkca_conv, lkca_matrix

WIDTHS = {"LKCA-T": (136, 8), "LKCA-B": (210, 10), "LKCA-L": (360, 8)}


def bench_width(dim: int, heads: int, batch: int, grid: int, device: torch.device, repeats: int) -> dict:
    tokens = grid * grid
    values = torch.randn(batch, tokens, dim, device=device, requires_grad=True)
    kernel = torch.randn(2 * grid - 1, 2 * grid - 1, device=device, requires_grad=True)
    q, k, v = (torch.randn(batch, heads, tokens, dim // heads, device=device, requires_grad=True) for _ in range(3))

    def step(forward):
        def run():
            forward().sum().backward()
        return run

    return {
        "conv": median_ms(step(lambda: lkca_conv(values, kernel, (grid, grid))), device, repeats),
        "matrix": median_ms(step(lambda: lkca_matrix(values, kernel, (grid, grid))), device, repeats),
        "sdpa": median_ms(step(lambda: F.scaled_dot_product_attention(q, k, v)), device, repeats),
    }


def main(argv=None) -> list[dict]:
    parser = argument_parser(__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", action="append", help="cpu and/or cuda (default: all present)")
    args = parser.parse_args(argv)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    print(f"{'device':<8}{'model':<8}{'width':>6}{'conv ms':>10}{'matrix ms':>11}{'sdpa ms':>9}  faster view")
    for device_name in devices:
        device = torch.device(device_name)
        for model, (dim, heads) in WIDTHS.items():
            result = bench_width(dim, heads, args.batch, args.grid, device, args.repeats)
            faster = min(("conv", "matrix"), key=result.get)
            rows.append({"device": device_name, "model": model, "width": dim, **result, "faster": faster})
            print(f"{device_name:<8}{model:<8}{dim:>6}{result['conv']:>10.2f}{result['matrix']:>11.2f}"
                  f"{result['sdpa']:>9.2f}  {faster}")
    return rows


if __name__ == "__main__":
    main()
