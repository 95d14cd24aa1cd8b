import pandas as pd

from vbench.segmentation.report import (
    COLUMNS, flops_text, params_text, paper_segmentation_rows, plot_miou, render, segmentation_table,
    size_comparison,
)

RECORDS = [
    {"backbone": "lkca-s-seg", "paper_names": ["LKCA-S"], "head": "fpn", "iteration": 20000, "aAcc": 60.123,
     "mIoU": 38.456, "params": 28_775_970, "flops": 80_123_000_000},
    {"backbone": "vit-b-seg", "paper_names": ["ViT-B"], "head": "upernet", "iteration": 2000, "aAcc": 41.0,
     "mIoU": 21.0, "params": 144_173_612, "flops": 443_890_000_000},
    {"backbone": "vit-b-seg", "paper_names": ["ViT-B"], "head": "upernet", "iteration": 4000, "aAcc": 47.0,
     "mIoU": 27.5, "params": 144_173_612, "flops": 443_890_000_000},
    {"backbone": "my-net", "paper_names": [], "head": "upernet", "iteration": 4000, "aAcc": 1.0, "mIoU": 0.5,
     "params": None, "flops": None},
]


def test_sizes_print_as_the_paper_prints_them():
    assert params_text(144_173_612) == "0.144G" and params_text(57_660_000) == "57.66M"
    assert flops_text(237_090_000_000) == "0.237T" and flops_text(67_250_000_000) == "67.25G"
    assert params_text(None) == ""


def test_paper_tables_6_and_7_are_read_whole():
    paper = paper_segmentation_rows()
    assert len(paper) == 24   # 8 rows of Table 6, 16 of Table 7
    vit_b = paper[(paper["model"] == "ViT-B") & (paper["iterations"] == 2000)].iloc[0]
    assert (vit_b["aAcc"], vit_b["mIoU"], vit_b["params"]) == (40.9, 22.28, "0.144G")


def test_table_6_7_layout_with_the_published_numbers():
    frame = segmentation_table(RECORDS, compare_paper=True)
    assert list(frame.columns[:7]) == COLUMNS
    assert frame["Iteration"].tolist() == [2000, 4000, 4000, 20000]
    first = frame.iloc[0]
    assert (first["Backbone"], first["Algorithm"], first["# Params"], first["Flops"]) == ("ViT-B", "UPerNet", "0.144G", "0.444T")
    assert (first["paper aAcc(%)"], first["paper mIoU(%)"], first["paper Flops"]) == (40.9, 22.28, "0.108T")
    lkca = frame[frame["Backbone"] == "LKCA-S"].iloc[0]
    assert (lkca["Algorithm"], lkca["paper mIoU(%)"], lkca["paper # Params"]) == ("FPN", 41.81, "30.18M")
    unknown = frame[frame["Backbone"] == "my-net"].iloc[0]
    assert pd.isna(unknown["paper mIoU(%)"]) and unknown["# Params"] == ""
    text = render(frame)
    assert "| Backbone" in text and "0.144G" in text and "mmseg" in text
    assert "Backbone,Iteration,Algorithm" in render(segmentation_table(RECORDS), "csv")


def test_size_comparison_lists_ours_beside_the_published():
    frame = size_comparison([{"paper_names": ["ResNet-50"], "head": "upernet", "params": 66_497_000,
                              "params_without_aux": 64_099_000, "flops": 237_090_000_000}])
    row = frame.iloc[0]
    assert (row["# Params"], row["# Params w/o aux"], row["paper # Params"], row["paper Flops"]) == \
        ("66.50M", "64.10M", "64.12M", "0.238T")


def test_miou_plot_is_written(tmp_path):
    path = plot_miou(RECORDS, tmp_path / "plots" / "ade20k-miou.png")
    assert path.is_file() and path.stat().st_size > 1000
