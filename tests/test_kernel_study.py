"""The kernel-size study's mixers (benchmarks/kernels.py): each sees exactly a k x k window."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
from vbench.backbones.large_kernel_attention import LKA, LSKA

KERNELS = (7, 11, 23, 35, 53)
BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "kernels.py"


def window_of(attention: torch.nn.Module, size: int = 61) -> tuple[int, int]:
    """Height and width of the pixels that an impulse at the centre reaches through the depthwise convs."""
    convs = [m for name, m in attention.named_children() if name != "conv1"]
    with torch.no_grad():
        for conv in convs:
            conv.weight.fill_(1.0)
            conv.bias.zero_()
        picture = torch.zeros(1, 1, size, size)
        picture[..., size // 2, size // 2] = 1.0
        for conv in convs:
            picture = torch.nn.functional.conv2d(
                picture, conv.weight[:1], padding=conv.padding, dilation=conv.dilation
            )
    rows, cols = torch.nonzero(picture[0, 0], as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("kernel", KERNELS)
def test_lka_and_lska_see_a_k_by_k_window(kernel):
    assert window_of(LKA(2, kernel)) == (kernel, kernel)
    assert window_of(LSKA(2, kernel)) == (kernel, kernel)


def test_lska_needs_fewer_weights_than_lka_from_k_11():
    for kernel in KERNELS[1:]:
        lka, lska = LKA(4, kernel), LSKA(4, kernel)
        assert sum(p.numel() for p in lska.parameters()) < sum(p.numel() for p in lka.parameters())


def test_benchmark_writes_its_table_csv_and_plots(tmp_path):
    spec = importlib.util.spec_from_file_location("kernels_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--kernels", "7,23", "--dim", "8", "--grid", "12", "--batch", "1", "--rounds", "1",
                        "--mixers", "lka,lska,lkca-matrix,lkca-conv", "--no-memory", "--output", str(tmp_path),
                        "--erf-grid", "32", "--erf-samples", "2"])
    assert {(row["mixer"], row["kernel"]) for row in rows} == {
        (mixer, kernel) for mixer in ("lka", "lska", "lkca-matrix", "lkca-conv") for kernel in (7, 23)
    }
    by_key = {(row["mixer"], row["kernel"]): row for row in rows}
    # LKCA of kernel k holds a k x k kernel; its conv view's FLOPs grow with k, the matrix view's do not
    assert by_key[("lkca-conv", 23)]["params"] - by_key[("lkca-conv", 7)]["params"] == 23 * 23 - 7 * 7
    assert by_key[("lkca-conv", 23)]["flops"] > by_key[("lkca-conv", 7)]["flops"]
    assert by_key[("lkca-matrix", 23)]["flops"] == by_key[("lkca-matrix", 7)]["flops"]
    assert by_key[("lska", 23)]["flops"] < by_key[("lka", 23)]["flops"]
    with open(tmp_path / "kernels-cpu.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 8
    assert (tmp_path / "kernels-cpu.png").stat().st_size > 0 and (tmp_path / "kernels-cpu.svg").stat().st_size > 0
    # the ERF at initialisation: every mixer's 99% square widens with the kernel; both LKCA views agree
    for mixer in ("lka", "lska", "lkca-matrix", "lkca-conv"):
        assert by_key[(mixer, 23)]["erf_99"] > by_key[(mixer, 7)]["erf_99"] > 0
    assert all(by_key[("lkca-conv", k)][f"erf_{t}"] == by_key[("lkca-matrix", k)][f"erf_{t}"]
               for k in (7, 23) for t in (20, 30, 50, 99))
    assert (tmp_path / "kernels-cpu-erf.png").stat().st_size > 0
