"""`vbench report`, `vbench plot` and `vbench runs` on a store filled with known rows."""

from __future__ import annotations

import pytest

from vbench.store import open_store

# suite, dataset, backbone, paper names, seed, top-1, recipe hash, status
ROWS = [
    ("cifar10", "cifar10", "vit-small", ["ViT", "ViT-Small"], 0, 93.0, "r1", "done"),
    ("cifar10", "cifar10", "vit-small", ["ViT", "ViT-Small"], 1, 93.5, "r1", "done"),
    ("cifar10", "cifar10", "vit-small", ["ViT", "ViT-Small"], 2, 92.5, "r1", "done"),
    ("cifar10", "cifar10", "lkca-b", ["ViT-LKCA", "LKCA-B"], 0, 94.0, "r1", "done"),
    ("cifar10", "cifar10", "lkca-b", ["ViT-LKCA", "LKCA-B"], 1, 94.25, "r1", "done"),
    ("cifar10", "cifar10", "lkca-b", ["ViT-LKCA", "LKCA-B"], 2, 94.5, "r1", "done"),
    ("cifar10", "cifar10", "lkca-b", ["ViT-LKCA", "LKCA-B"], 3, 10.0, "r1", "failed"),  # not counted
    ("cifar10", "cifar10", "lkca-t", ["ViT/1M-LKCA", "LKCA-T"], 0, 50.0, "r1", "done"),  # rerun below wins
    ("cifar10", "cifar10", "lkca-t", ["ViT/1M-LKCA", "LKCA-T"], 0, 92.0, "r1", "done"),
    ("cifar10", "cifar10", "vit-lite", ["ViT/1M", "ViT-Lite"], 0, 60.0, "r0", "done"),  # older recipe: not counted
    ("cifar10", "cifar10", "vit-lite", ["ViT/1M", "ViT-Lite"], 0, 91.0, "r1", "done"),
    ("cifar10", "cifar10", "vit-lite", ["ViT/1M", "ViT-Lite"], 1, 90.0, "r1", "done"),
    ("cifar10", "cifar10", "mine", [], 0, 42.0, "r1", "done"),
    ("cifar100", "cifar100", "lkca-t", ["ViT/1M-LKCA", "LKCA-T"], 0, 73.0, "r1", "done"),
    ("cifar100", "cifar100", "vit-lite", ["ViT/1M", "ViT-Lite"], 0, 71.0, "r1", "done"),
    ("svhn", "svhn", "lkca-t", ["ViT/1M-LKCA", "LKCA-T"], 0, 97.0, "r1", "done"),
]
PARAMS = {"vit-small": 2_692_426, "lkca-b": 2_691_520, "lkca-t": 1_030_000, "vit-lite": 1_060_000, "mine": 12_345}
FLOPS = {"vit-small": 188_837_000, "lkca-b": 201_576_000, "lkca-t": 70_000_000, "vit-lite": 75_500_000, "mine": 1_000_000}

NOTE = (
    "Acc: top-1 (%) on the test split, mean ± std over n seeds; (+x.xx): gain of an LKCA model over its ViT "
    "partner; # Params in M; Flops in M, fvcore multiply-accumulates (the paper's counter leaves out the "
    "attention matmuls, so its Flops are lower)."
)

MARKDOWN_ALL = f"""\
## cifar10 (CIFAR-10)

| Model       |                  Acc |   n |   # Params |   Flops |
|:------------|---------------------:|----:|-----------:|--------:|
| ViT         |         93.00 ± 0.50 |   3 |       2.69 |  188.84 |
| ViT-LKCA    | 94.25 ± 0.25 (+1.25) |   3 |       2.69 |  201.58 |
| ViT/1M      |         90.50 ± 0.71 |   2 |       1.06 |   75.50 |
| ViT/1M-LKCA |        92.00 (+1.50) |   1 |       1.03 |   70.00 |
| mine        |                42.00 |   1 |       0.01 |    1.00 |

## cifar100 (CIFAR-100)

| Model       |           Acc |   n |   # Params |   Flops |
|:------------|--------------:|----:|-----------:|--------:|
| ViT/1M      |         71.00 |   1 |       1.06 |   75.50 |
| ViT/1M-LKCA | 73.00 (+2.00) |   1 |       1.03 |   70.00 |

## svhn (SVHN)

| Model   |   Acc |   n |   # Params |   Flops |
|:--------|------:|----:|-----------:|--------:|
| LKCA-T  | 97.00 |   1 |       1.03 |   70.00 |

## CIFAR-10 / CIFAR-100 / SVHN (Table 4)

| Model     |           CIFAR-10 |   CIFAR-100 |        SVHN |   # Params |   Flops |
|:----------|-------------------:|------------:|------------:|-----------:|--------:|
| ViT-Lite  | 90.50 ± 0.71 (n=2) | 71.00 (n=1) |           - |       1.06 |   75.50 |
| LKCA-T    |        92.00 (n=1) | 73.00 (n=1) | 97.00 (n=1) |       1.03 |   70.00 |
| ViT-Small | 93.00 ± 0.50 (n=3) |           - |           - |       2.69 |  188.84 |
| LKCA-B    | 94.25 ± 0.25 (n=3) |           - |           - |       2.69 |  201.58 |
| mine      |        42.00 (n=1) |           - |           - |       0.01 |    1.00 |

{NOTE}
"""

MARKDOWN_CIFAR10_PAPER = f"""\
## cifar10 (CIFAR-10)

| Model       |                  Acc |   n |   Paper Acc |   Δ Acc |   # Params |   Paper # Params |   Flops |   Paper Flops |
|:------------|---------------------:|----:|------------:|--------:|-----------:|-----------------:|--------:|--------------:|
| ViT         |         93.00 ± 0.50 |   3 |       93.36 |   -0.36 |       2.69 |             2.69 |  188.84 |        174.25 |
| ViT-LKCA    | 94.25 ± 0.25 (+1.25) |   3 |       94.11 |   +0.14 |       2.69 |             2.69 |  201.58 |        170.81 |
| ViT/1M      |         90.50 ± 0.71 |   2 |       91.16 |   -0.66 |       1.06 |             1.06 |   75.50 |         68.36 |
| ViT/1M-LKCA |        92.00 (+1.50) |   1 |       92.49 |   -0.49 |       1.03 |             1.03 |   70.00 |         64.82 |
| mine        |                42.00 |   1 |           - |       - |       0.01 |                - |    1.00 |             - |

{NOTE}
"""

LATEX_CIFAR10_PAPER = f"""\
\\begin{{table}}
\\caption{{cifar10 (CIFAR-10)}}
\\begin{{tabular}}{{lrrrrrrrr}}
\\toprule
Model & Acc & n & Paper Acc & $\\Delta$ Acc & \\# Params & Paper \\# Params & Flops & Paper Flops \\\\
\\midrule
ViT & 93.00 $\\pm$ 0.50 & 3 & 93.36 & -0.36 & 2.69 & 2.69 & 188.84 & 174.25 \\\\
ViT-LKCA & 94.25 $\\pm$ 0.25 (+1.25) & 3 & 94.11 & +0.14 & 2.69 & 2.69 & 201.58 & 170.81 \\\\
ViT/1M & 90.50 $\\pm$ 0.71 & 2 & 91.16 & -0.66 & 1.06 & 1.06 & 75.50 & 68.36 \\\\
ViT/1M-LKCA & 92.00 (+1.50) & 1 & 92.49 & -0.49 & 1.03 & 1.03 & 70.00 & 64.82 \\\\
mine & 42.00 & 1 & - & - & 0.01 & - & 1.00 & - \\\\
\\bottomrule
\\end{{tabular}}
\\end{{table}}

% {NOTE}
"""

CSV_CIFAR10_PAPER = """\
suite,dataset,model,backbone,n,seeds,acc_mean,acc_std,gain,partner,top5_mean,params_m,flops_m,paper_acc,acc_diff,paper_params_m,paper_flops_m
cifar10,cifar10,ViT,vit-small,3,0 1 2,93.0000,0.5000,,,99.0000,2.6924,188.8370,93.3600,-0.3600,2.6900,174.2500
cifar10,cifar10,ViT-LKCA,lkca-b,3,0 1 2,94.2500,0.2500,1.2500,vit-small,99.0000,2.6915,201.5760,94.1100,0.1400,2.6900,170.8100
cifar10,cifar10,ViT/1M,vit-lite,2,0 1,90.5000,0.7071,,,99.0000,1.0600,75.5000,91.1600,-0.6600,1.0600,68.3600
cifar10,cifar10,ViT/1M-LKCA,lkca-t,1,0,92.0000,,1.5000,vit-lite,99.0000,1.0300,70.0000,92.4900,-0.4900,1.0300,64.8200
cifar10,cifar10,mine,mine,1,0,42.0000,,,,99.0000,0.0123,1.0000,,,,
"""


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = open_store(url)
    for suite, dataset, backbone, names, seed, top1, recipe_hash, status in ROWS:
        store.start_run(suite=suite, dataset=dataset, backbone=backbone, paper_names=names, seed=seed,
                        recipe_hash=recipe_hash, status=status, top1=top1, top5=99.0,
                        params=PARAMS[backbone], flops=FLOPS[backbone], epochs=1, epochs_done=1)
    store.close()
    return url


def test_markdown_of_every_suite_with_gains_std_and_table4(db, vbench_cli):
    code, out, err = vbench_cli("report", "--db", db, "--format", "markdown")
    assert code == 0, err
    assert out == MARKDOWN_ALL


def test_markdown_latex_csv_beside_the_paper(db, tmp_path, vbench_cli):
    for fmt, expected in (("markdown", MARKDOWN_CIFAR10_PAPER), ("latex", LATEX_CIFAR10_PAPER),
                          ("csv", CSV_CIFAR10_PAPER)):
        code, out, err = vbench_cli("report", "--db", db, "--suite", "cifar10", "--compare", "paper",
                                "--format", fmt)
        assert code == 0, err
        assert out == expected, fmt
    target = tmp_path / "report.tex"
    code, out, _ = vbench_cli("report", "--db", db, "--suite", "cifar10", "--compare", "paper",
                          "--format", "latex", "--output", str(target))
    assert code == 0 and out == "" and target.read_text() == LATEX_CIFAR10_PAPER


def test_backbone_filter_json_and_html(db, vbench_cli):
    import json

    # aliases resolve through the registry: vit -> vit-small, vit-lkca -> lkca-b
    code, out, _ = vbench_cli("report", "--db", db, "--backbones", "vit,vit-lkca", "--format", "json")
    assert code == 0
    payload = json.loads(out)
    assert payload["table4"] is None  # one dataset only
    [suite] = payload["suites"]
    assert [(r["model"], r["n"], r["acc_mean"], r["acc_std"], r["gain"]) for r in suite["rows"]] == [
        ("ViT", 3, 93.0, 0.5, None), ("ViT-LKCA", 3, 94.25, 0.25, 1.25)]
    code, out, _ = vbench_cli("report", "--db", db, "--suite", "svhn", "--format", "html")
    assert code == 0 and "<td>LKCA-T</td>" in out and "<td>97.00</td>" in out


def test_report_names_the_augmentation_of_the_runs(tmp_path, vbench_cli):
    """The recipe's augment_impl shows in the suite's title and JSON rows (runs stored before the key: torchvision)."""
    import json

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = open_store(url)
    for backbone, recipe in (("lkca-t", {"augment_impl": "authors"}), ("vit-lite", {"epochs": 100})):
        store.start_run(suite="cifar10", dataset="cifar10", backbone=backbone, paper_names=[], seed=0, recipe=recipe,
                        recipe_hash="r1", status="done", top1=90.0, top5=99.0, params=1, flops=1, epochs=1, epochs_done=1)
    store.close()
    code, out, err = vbench_cli("report", "--db", url, "--format", "markdown")
    assert code == 0, err
    assert out.startswith("## cifar10 (CIFAR-10), augment_impl authors + torchvision\n")
    code, out, err = vbench_cli("report", "--db", url, "--format", "json")
    rows = json.loads(out)["suites"][0]["rows"]
    assert {row["backbone"]: row["augment_impl"] for row in rows} == {"lkca-t": "authors", "vit-lite": "torchvision"}


@pytest.mark.parametrize("args, message", [
    (["--format", "docx"], "unknown --format 'docx'"),
    (["--compare", "swin"], "unknown --compare 'swin'"),
    (["--suite", "nope"], "no finished runs for suite 'nope'"),
])
def test_report_bad_input(db, args, message, vbench_cli):
    code, out, err = vbench_cli("report", "--db", db, *args)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_report_of_missing_database_creates_nothing(tmp_path, vbench_cli):
    code, _, err = vbench_cli("report", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no run store" in err
    assert list(tmp_path.iterdir()) == []


def test_plot_writes_png_and_svg_per_suite(db, tmp_path, vbench_cli):
    out_dir = tmp_path / "plots"
    code, out, err = vbench_cli("plot", "--db", db, "--output-dir", str(out_dir))
    assert code == 0, err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(f"{suite}_acc_vs_{axis}.{ext}" for suite in ("cifar10", "cifar100", "svhn")
                           for axis in ("params", "flops") for ext in ("png", "svg"))
    assert (out_dir / "cifar10_acc_vs_params.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (out_dir / "cifar10_acc_vs_flops.svg").read_text()
    # measured points labelled by their paper names, and the paper's own points (ViT/8M is only in the paper)
    assert "ViT-LKCA" in svg and "ViT/1M-LKCA" in svg and "ViT/8M" in svg and "mine" in svg


def test_runs_lists_filters_and_deletes(db, tmp_path, vbench_cli):
    code, out, _ = vbench_cli("runs", "--db", db, "--status", "failed")
    assert code == 0 and "lkca-b" in out and "10.00" in out and "93.00" not in out
    code, out, _ = vbench_cli("runs", "--db", db, "--suite", "svhn")
    assert code == 0 and "97.00" in out and "lkca-t" in out and "vit-lite" not in out
    code, out, err = vbench_cli("runs", "rm", "1", "--db", db)
    assert code == 0, err
    store = open_store(db)
    assert [r.id for r in store.list_runs()][:2] == [2, 3] and len(store.list_runs()) == len(ROWS) - 1
    code, _, err = vbench_cli("runs", "rm", "1", "--db", db)
    assert code == 2 and err.startswith("error: no run with id 1")
