"""`vbench report`, `vbench plot` and `vbench runs` on stores filled with known rows: the paper's layout, gains
only between runs of one experiment, notes on recipe and data, and one valid document per format."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pandas as pd
import pytest
from cli import run_cli
from scipy import stats

from vbench.reporting.paper import table_names
from vbench.store import open_store
from vbench.suites import load_suite

# suite, backbone, paper names, seed, top-1, recipe (r1: the paper's; r0: 1 epoch), status
ROWS = [
    ("cifar10", "vit-small", ["ViT", "ViT-Small"], 0, 93.0, "r1", "done"),
    ("cifar10", "vit-small", ["ViT", "ViT-Small"], 1, 93.5, "r1", "done"),
    ("cifar10", "vit-small", ["ViT", "ViT-Small"], 2, 92.5, "r1", "done"),
    ("cifar10", "lkca-b", ["ViT-LKCA", "LKCA-B"], 0, 94.0, "r1", "done"),
    ("cifar10", "lkca-b", ["ViT-LKCA", "LKCA-B"], 1, 94.25, "r1", "done"),
    ("cifar10", "lkca-b", ["ViT-LKCA", "LKCA-B"], 2, 94.5, "r1", "done"),
    ("cifar10", "lkca-b", ["ViT-LKCA", "LKCA-B"], 3, 10.0, "r1", "failed"),  # not counted
    ("cifar10", "lkca-t", ["ViT/1M-LKCA", "LKCA-T"], 0, 50.0, "r1", "done"),  # rerun below wins
    ("cifar10", "lkca-t", ["ViT/1M-LKCA", "LKCA-T"], 0, 92.0, "r1", "done"),
    ("cifar10", "vit-lite", ["ViT/1M", "ViT-Lite"], 0, 60.0, "r0", "done"),  # older recipe: not shown
    ("cifar10", "vit-lite", ["ViT/1M", "ViT-Lite"], 0, 91.0, "r1", "done"),
    ("cifar10", "vit-lite", ["ViT/1M", "ViT-Lite"], 1, 90.0, "r1", "done"),
    ("cifar10", "mine", [], 0, 42.0, "r1", "done"),
    ("cifar100", "lkca-t", ["ViT/1M-LKCA", "LKCA-T"], 0, 73.0, "r1", "done"),
    ("cifar100", "vit-lite", ["ViT/1M", "ViT-Lite"], 0, 71.0, "r1", "done"),
    ("svhn", "lkca-t", ["ViT/1M-LKCA", "LKCA-T"], 0, 97.0, "r1", "done"),
]
PARAMS = {"vit-small": 2_692_426, "lkca-b": 2_691_520, "lkca-t": 1_030_000, "vit-lite": 1_060_000, "mine": 618}
PAPER_COUNTER = {"vit-small": 174_252_790, "lkca-b": 170_806_450}  # reference-models.csv's paper_convention_macs
FLOPS = {"vit-small": 188_837_000, "lkca-b": 201_576_000, "lkca-t": 70_000_000, "vit-lite": 75_500_000, "mine": 1_000_000}


def add_run(store, suite, backbone, names, seed, top1, recipe_name="r1", status="done", data_id=None, **changes):
    epochs = 1 if recipe_name == "r0" else 100
    recipe = load_suite(suite, overrides={"epochs": epochs}, sets=[f"{k}={v}" for k, v in changes.items()]).recipe
    return store.start_run(
        task="classification", suite=suite, dataset=suite, backbone=backbone, paper_names=names, seed=seed,
        recipe={**recipe.to_dict(), "seed": seed}, recipe_hash=recipe.key_hash(), data_id=data_id or f"data-{suite}",
        data={"root": f"/data/{suite}", "sizes": {"train": 50000, "test": 10000}, "limit": None}, status=status,
        metrics={"top1": top1, "top5": 99.0}, params=PARAMS.get(backbone, 1000), flops=FLOPS.get(backbone, 1000),
        counts={"flops_paper_counter": PAPER_COUNTER.get(backbone)}, step_unit="epoch", steps=epochs,
        steps_done=epochs, settings={"precision": "fp32"})


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "runs.db"
    store = open_store(str(path))
    for row in ROWS:
        add_run(store, *row)
    store.close()
    return path


PAPER_HASH = load_suite("cifar10").recipe.key_hash()[:8]
NOTE = ("Acc: top-1 (%) on the test split, mean ± std over n seeds; (+x.xx): gain of an LKCA model over its ViT "
        "partner trained with the same recipe and data; # Params in M; Flops in M, fvcore multiply-accumulates (the "
        "paper's counter leaves out the attention matmuls, so its Flops are lower); Recipe: the recipe's hash.")

# ViT-LKCA over ViT, paired by seed: scipy's interval and p-value, as the report must print them
_LKCA_GAIN = stats.ttest_rel([94.0, 94.25, 94.5], [93.0, 93.5, 92.5])
_CI = _LKCA_GAIN.confidence_interval(0.95)
GAIN_CELL = f"[{_CI.low:+.2f}, {_CI.high:+.2f}], p={_LKCA_GAIN.pvalue:.4f}"

MARKDOWN_CIFAR10 = f"""\
## cifar10 (CIFAR-10)

| Model       |                  Acc |   n |           Gain 95% CI, p |   # Params |   Flops |   Epochs | Recipe   |
|:------------|---------------------:|----:|-------------------------:|-----------:|--------:|---------:|:---------|
| ViT         |         93.00 ± 0.50 |   3 |                        - |       2.69 |  188.84 |      100 | {PAPER_HASH} |
| ViT-LKCA    | 94.25 ± 0.25 (+1.25) |   3 | {GAIN_CELL} |       2.69 |  201.58 |      100 | {PAPER_HASH} |
| ViT/1M      |         90.50 ± 0.71 |   2 |                        - |       1.06 |   75.50 |      100 | {PAPER_HASH} |
| ViT/1M-LKCA |        92.00 (+1.50) |   1 |                        - |       1.03 |   70.00 |      100 | {PAPER_HASH} |
| mine        |                42.00 |   1 |                        - |     0.0006 |    1.00 |      100 | {PAPER_HASH} |

Recipe {PAPER_HASH} (100 epochs, augment_impl authors): the paper's recipe.

Data data-cif: 50000 train / 10000 test images from /data/cifar10.

Gains from a single seed on a side carry no interval: one seed allows none (`vbench compare` still tests them on the per-image predictions).

{NOTE}

1 finished run of other recipes, data or precisions are not shown (only runs of one experiment are averaged; `vbench runs` lists them).
"""


def test_markdown_in_the_papers_layout_with_gains_std_notes(db):
    result = run_cli("report", "--db", db, "--suite", "cifar10")
    assert result.code == 0, result.err
    assert result.out == MARKDOWN_CIFAR10


def test_table4_pivots_the_three_datasets(db):
    result = run_cli("report", "--db", db)
    assert result.code == 0
    table4 = result.out.split("## CIFAR-10 / CIFAR-100 / SVHN (Table 4)")[1]
    assert "| LKCA-T    |        92.00 (n=1) | 73.00 (n=1) | 97.00 (n=1) |" in table4
    assert "| ViT-Lite  | 90.50 ± 0.71 (n=2) | 71.00 (n=1) |           - |" in table4


def test_beside_the_paper_like_with_like(db):
    payload = json.loads(run_cli("report", "--db", db, "--suite", "cifar10", "--compare", "paper", "--format", "json").out)
    rows = {r["model"]: r for r in payload["sections"][0]["rows"]}
    vit = rows["ViT"]
    interval = stats.ttest_1samp([93.0, 93.5, 92.5], 0).confidence_interval(0.95)
    assert (vit["paper_acc"], vit["acc_diff"]) == (93.36, pytest.approx(-0.36))
    assert vit["paper_in_ci"] == (interval.low <= 93.36 <= interval.high) and vit["acc_ci_low"] == pytest.approx(interval.low)
    assert rows["ViT/1M-LKCA"]["paper_in_ci"] is None  # one seed: no interval
    # the paper's Flops beside our count made with the paper's counter
    assert vit["flops_paper_counter_m"] == pytest.approx(174.25279) and vit["paper_flops_m"] == 174.25
    markdown = run_cli("report", "--db", db, "--suite", "cifar10", "--compare", "paper").out
    header = markdown.splitlines()[2]
    assert "Paper in 95% CI |" in header and "Flops (paper's counter) |" in header and "| Paper recipe   |" in header
    assert "Paper in 95% CI: whether the published accuracy lies inside the t interval" in markdown


def test_fewer_than_three_seeds_is_noted(tmp_path):
    store = open_store(str(tmp_path / "runs.db"))
    for seed, (vit, lkca) in enumerate([(90.0, 91.0), (91.0, 91.5)]):
        add_run(store, "cifar10", "vit-lite", ["ViT/1M"], seed, vit)
        add_run(store, "cifar10", "lkca-t", ["ViT/1M-LKCA"], seed, lkca)
    store.close()
    result = run_cli("report", "--db", tmp_path / "runs.db")
    assert "Some gains rest on fewer than 3 seeds a side" in result.out
    assert "one seed allows none" not in result.out
    expected = stats.ttest_rel([91.0, 91.5], [90.0, 91.0])
    assert f"p={expected.pvalue:.4f}" in result.out


def test_gains_only_between_runs_of_one_experiment(tmp_path):
    store = open_store(str(tmp_path / "runs.db"))
    add_run(store, "cifar10", "vit-0.5m", ["ViT/0.5M"], 0, 80.0, batch_size=32, lr=1e-3)
    add_run(store, "cifar10", "vit-0.5m-lkca", ["ViT/0.5M-LKCA"], 0, 81.0, batch_size=64, lr=5e-4)
    add_run(store, "cifar10", "vit-lite", ["ViT/1M"], 0, 80.0)
    add_run(store, "cifar10", "lkca-t", ["ViT/1M-LKCA"], 0, 82.0, data_id="other-data")
    store.close()
    result = run_cli("report", "--db", tmp_path / "runs.db", "--compare", "paper")
    assert result.code == 0, result.err
    assert "81.00 (no gain: recipe differs from vit-0.5m's)" in result.out
    assert "82.00 (no gain: data differs from vit-lite's)" in result.out
    assert "+1.00" not in result.out and "+2.00" not in result.out
    assert "differs from the paper's: batch_size 32 instead of 128" in result.out
    assert "batch_size 64 instead of 128, lr 0.0005 instead of 0.001" in result.out
    assert "Rows with Paper recipe 'no' were not trained with the paper's recipe" in result.out
    records = json.loads(run_cli("report", "--db", tmp_path / "runs.db", "--format", "json").out)["sections"][0]["rows"]
    lkca = next(r for r in records if r["backbone"] == "vit-0.5m-lkca")
    assert lkca["gain"] is None and lkca["gain_note"] == "no gain: recipe differs from vit-0.5m's"
    assert lkca["epochs"] == 100 and len(lkca["recipe_hash"]) == 16


@pytest.fixture(scope="module")
def mixed_db(db, tmp_path_factory):
    """Classification runs and a segmentation run in one store."""
    path = tmp_path_factory.mktemp("mixed") / "runs.db"
    shutil.copy(db, path)
    store = open_store(str(path))
    recipe = load_suite("ade20k", sets=["iterations=2", "eval_at=[1, 2]"]).recipe
    run_id = store.start_run(task="segmentation", suite="ade20k", dataset="ade20k", backbone="lkca-s",
                             paper_names=["LKCA-S"], seed=0, recipe={**recipe.to_dict(), "seed": 0},
                             recipe_hash=recipe.key_hash(), data_id="ade", data={"sizes": {"train": 4, "test": 2}},
                             status="done", metrics={"mIoU": 12.5, "aAcc": 50.0, "mAcc": 20.0}, params=54_050_100,
                             flops=1_033_600_000, step_unit="iteration", steps=2, steps_done=2)
    store.replace_steps(run_id, [(1, {"mIoU": 10.0, "aAcc": 40.0, "mAcc": 15.0, "top10_mIoU": 30.0, "train_loss": 5.0}),
                                 (2, {"mIoU": 12.5, "aAcc": 50.0, "mAcc": 20.0, "top10_mIoU": 33.0, "train_loss": 4.0})])
    store.close()
    return path


def test_one_json_document_with_a_section_per_table(mixed_db):
    payload = json.loads(run_cli("report", "--db", mixed_db, "--format", "json").out)
    assert [s["key"] for s in payload["sections"]] == ["cifar10", "cifar100", "svhn", "table4", "ade20k"]
    seg = payload["sections"][-1]
    assert seg["task"] == "segmentation" and [r["iteration"] for r in seg["rows"]] == [1, 2]
    assert seg["rows"][1]["mIoU"] == 12.5 and seg["rows"][1]["params_m"] == pytest.approx(54.0501)


def test_one_csv_table_with_a_task_column(mixed_db):
    frame = pd.read_csv(io.StringIO(run_cli("report", "--db", mixed_db, "--format", "csv").out))
    assert list(frame.columns[:3]) == ["task", "section", "suite"]
    assert set(frame["task"]) == {"classification", "segmentation"}
    assert len(frame) == 5 + 2 + 1 + 2  # the suites' rows; the Table 4 pivot is a view of them
    assert pd.api.types.is_float_dtype(frame["params_m"]) and {"recipe_hash", "epochs"} <= set(frame.columns)
    segmentation = frame[frame["task"] == "segmentation"]
    assert list(segmentation["top-10 mIoU"]) == [30.0, 33.0] and (segmentation["top-10 mIoU"] >= segmentation["mIoU"]).all()


def test_one_html_page(mixed_db):
    page = run_cli("report", "--db", mixed_db, "--format", "html").out
    assert page.count("<html>") == 1 and page.count("</html>") == 1 and page.rstrip().endswith("</html>")
    assert page.index("ADE20K") < page.index("</body>") and "<td>LKCA-S</td>" in page


def test_latex_is_a_document_that_compiles(mixed_db, tmp_path):
    result = run_cli("report", "--db", mixed_db, "--compare", "paper", "--format", "latex",
                     "--output", tmp_path / "report.tex")
    assert result.code == 0 and result.out == ""
    tex = (tmp_path / "report.tex").read_text()
    assert tex.startswith("\\documentclass{article}") and tex.rstrip().endswith("\\end{document}")
    assert "\\#" in tex and "\\%" in tex and "aAcc(\\%)" in tex and "$\\pm$" in tex
    if shutil.which("pdflatex") is None:
        pytest.skip("no pdflatex here (apt-get install texlive-latex-base); the escaping was checked")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "report.pdf").stat().st_size > 1000


def test_backbone_filter_resolves_aliases_and_patterns(db):
    payload = json.loads(run_cli("report", "--db", db, "--backbones", "vit,vit-lkca", "--format", "json").out)
    [section] = payload["sections"]
    assert [(r["model"], r["n"], r["acc_mean"], r["acc_std"], r["gain"]) for r in section["rows"]] == [
        ("ViT", 3, 93.0, 0.5, None), ("ViT-LKCA", 3, 94.25, 0.25, 1.25)]
    pattern = json.loads(run_cli("report", "--db", db, "--backbones", "lkca-*", "--suite", "cifar10",
                                 "--format", "json").out)
    assert [r["backbone"] for r in pattern["sections"][0]["rows"]] == ["lkca-b", "lkca-t"]


@pytest.mark.parametrize("args, message", [
    (["--format", "docx"], "unknown --format 'docx'"),
    (["--compare", "swin"], "unknown --compare 'swin'"),
    (["--suite", "cifar-10"], "unknown suite 'cifar-10'; did you mean cifar10"),
    (["--suite", "smoke"], "no finished runs for suite 'smoke'"),
])
def test_report_bad_input(db, args, message):
    result = run_cli("report", "--db", db, *args)
    assert result.code == 2 and result.out == "" and result.error_line.startswith(f"error: {message}")


def test_report_of_missing_database_creates_nothing(tmp_path):
    result = run_cli("report", "--db", tmp_path / "none.db")
    assert result.code == 2 and "no run store" in result.error_line
    assert list(tmp_path.iterdir()) == []


def test_plot_writes_png_and_svg_per_suite(db, tmp_path):
    out_dir = tmp_path / "plots"
    result = run_cli("plot", "--db", db, "--output-dir", out_dir)
    assert result.code == 0, result.err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(f"{suite}_acc_vs_{axis}.{ext}" for suite in ("cifar10", "cifar100", "svhn")
                           for axis in ("params", "flops") for ext in ("png", "svg"))
    assert (out_dir / "cifar10_acc_vs_params.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (out_dir / "cifar10_acc_vs_flops.svg").read_text()
    # measured points labelled by their paper names, and the paper's own points (ViT/8M is only in the paper)
    assert "ViT-LKCA" in svg and "ViT/1M-LKCA" in svg and "ViT/8M" in svg and "mine" in svg


def test_runs_lists_filters_and_deletes(db, tmp_path):
    path = tmp_path / "runs.db"
    shutil.copy(db, path)
    result = run_cli("runs", "--db", path, "--status", "failed")
    assert result.code == 0 and "lkca-b" in result.out and "top-1 10.00" in result.out and "93.00" not in result.out
    result = run_cli("runs", "--db", path, "--suite", "svhn")
    assert result.code == 0 and "97.00" in result.out and "lkca-t" in result.out and "vit-lite" not in result.out
    result = run_cli("runs", "--db", path, "--backbones", "vit")  # an alias resolves
    assert result.code == 0 and "vit-small" in result.out and "lkca-b" not in result.out
    result = run_cli("runs", "rm", "1", "--db", path)
    assert result.code == 0, result.err
    store = open_store(str(path), write=False)
    assert [r.id for r in store.list_runs()][:2] == [2, 3] and len(store.list_runs()) == len(ROWS) - 1
    result = run_cli("runs", "rm", "1", "--db", path)
    assert result.code == 2 and result.error_line.startswith("error: no run with id 1")


@pytest.mark.parametrize("dataset, rows, names", [
    ("tiny-imagenet", [(["ViT/1M-LKCA", "LKCA-T"], "lkca-t"), (["ViT/1M", "ViT-Lite"], "vit-lite")], ["ViT/1M-LKCA", "ViT/1M"]),
    ("tiny-imagenet", [(["ViT/1M-LKCA", "LKCA-T"], "lkca-t"), (["Swin-T"], "swin-t")], ["LKCA-T", "Swin-T"]),
    ("cifar10", [(["ViT/1M-LKCA", "LKCA-T"], "lkca-t"), (["CaiT-T"], "cait-t")], ["LKCA-T", "CaiT-T"]),
    ("cifar100", [(["ViT-LKCA", "LKCA-B"], "lkca-b"), (["ViT", "ViT-Small"], "vit-small")], ["ViT-LKCA", "ViT"]),
    ("svhn", [(["ViT/1M-LKCA", "LKCA-T"], "lkca-t")], ["LKCA-T"]),
    ("digits", [(["ViT/0.5M-LKCA"], "vit-0.5m-lkca"), ([], "my-net")], ["ViT/0.5M-LKCA", "my-net"]),
])
def test_a_model_goes_by_its_name_in_the_table_its_rows_mirror(dataset, rows, names):
    """Tables 1-3 set each LKCA model beside its ViT, Tables 4-5 beside the baselines, under other names."""
    assert table_names(dataset, rows) == names
