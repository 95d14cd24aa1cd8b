"""End to end: `vbench run/report/plot` on the ADE20K fixture, on the CPU, through the real loader."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from vbench.cli import app
from vbench.segmentation.ade20k import write_ade20k_fixture
from vbench.store import open_store

REPO = Path(__file__).resolve().parent.parent
TINY = ["img_size=32", "scale=[64, 32]", "batch_size=2", "num_workers=0", "warmup_iters=1", "eval_limit=1"]


def sets(*extra: str) -> list[str]:
    return [arg for assignment in (*TINY, *extra) for arg in ("--set", assignment)]


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    """The fixture tree and a store holding lkca-s and vit-s under UPerNet (2 iterations, evaluated
    at 1 and 2) and FPN (1 iteration)."""
    root = tmp_path_factory.mktemp("seg-cli")
    write_ade20k_fixture(root / "data", n_train=4, n_val=2, size=(40, 56))
    db = root / "runs.db"
    runner = CliRunner()
    common = ["run", "--suite", "ade20k", "--backbones", "lkca-s,vit-s", "--data-root", str(root / "data"),
              "--db", str(db), "--device", "cpu"]
    upernet = runner.invoke(app, [*common, *sets("head=upernet", "iterations=2", "eval_at=[1, 2]")])
    assert upernet.exit_code == 0, upernet.output
    fpn = runner.invoke(app, [*common, *sets("head=fpn", "iterations=1", "eval_at=[1]")])
    assert fpn.exit_code == 0, fpn.output
    return {"root": root, "db": db, "common": common, "runner": runner, "outputs": (upernet.output, fpn.output)}


def test_run_leaves_done_rows_with_metrics_per_evaluated_iteration(ade):
    store = open_store(f"sqlite:///{ade['db']}", create=False)
    runs = store.list_runs(task="segmentation")
    assert [(r.backbone, r.metrics["head"], r.status) for r in runs] == [
        ("lkca-s-seg", "upernet", "done"), ("vit-s-seg", "upernet", "done"),
        ("lkca-s-seg", "fpn", "done"), ("vit-s-seg", "fpn", "done")]
    for run in runs:
        epochs = store.epochs(run.id)
        expected = [1, 2] if run.metrics["head"] == "upernet" else [1]
        assert [e.epoch for e in epochs] == expected and run.epochs_done == expected[-1]
        for epoch in epochs:
            assert set(epoch.metrics) >= {"aAcc", "mIoU", "mAcc"}
            assert 0 <= epoch.metrics["aAcc"] <= 100 and epoch.train_loss > 0 and epoch.lr > 0
        final = epochs[-1].metrics
        assert (run.metrics["aAcc"], run.metrics["mIoU"], run.metrics["iteration"]) == \
            (final["aAcc"], final["mIoU"], expected[-1])
        assert run.task == "segmentation" and run.dataset == "ade20k" and run.epochs == expected[-1]
        # params of the whole segmentor: UPerNet's auxiliary FCN head counts, FPN has none
        assert run.params > 20e6 and run.flops > 0
        if run.metrics["head"] == "upernet":
            assert run.params > run.metrics["params_without_aux"]
        else:
            assert run.params == run.metrics["params_without_aux"]
    upernet_vit, fpn_vit = runs[1], runs[3]
    assert upernet_vit.params > fpn_vit.params and upernet_vit.recipe_hash != fpn_vit.recipe_hash
    store.close()


def test_finished_runs_are_skipped(ade):
    result = ade["runner"].invoke(app, [*ade["common"], *sets("head=fpn", "iterations=1", "eval_at=[1]")])
    assert result.exit_code == 0, result.output
    assert result.output.count("already done") == 2
    engine = create_engine(f"sqlite:///{ade['db']}")
    with engine.connect() as connection:
        assert connection.execute(text("select count(*) from runs")).scalar() == 4
    engine.dispose()


def test_report_renders_tables_6_7(ade):
    result = ade["runner"].invoke(app, ["report", "--suite", "ade20k", "--db", str(ade["db"]), "--compare", "paper"])
    assert result.exit_code == 0, result.output
    assert "| Backbone   |   Iteration | Algorithm   |   aAcc(%) |   mIoU(%) | # Params   | Flops   |" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("| LKCA-S") or line.startswith("| ViT-S")]
    assert len(lines) == 6   # (2 UPerNet evaluations + 1 FPN) x 2 backbones
    assert sum("UPerNet" in line for line in lines) == 4 and sum("FPN" in line for line in lines) == 2
    assert "paper mIoU(%)" in result.output
    csv = ade["runner"].invoke(app, ["report", "--db", str(ade["db"]), "--format", "csv"])
    assert csv.exit_code == 0 and csv.output.splitlines()[0] == "Backbone,Iteration,Algorithm,aAcc(%),mIoU(%),# Params,Flops"
    as_json = ade["runner"].invoke(app, ["report", "--db", str(ade["db"]), "--format", "json"])
    assert len(json.loads(as_json.output)["rows"]) == 6


def test_plot_writes_the_miou_chart(ade, tmp_path):
    result = ade["runner"].invoke(app, ["plot", "--db", str(ade["db"]), "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ade20k-miou.png").stat().st_size > 1000


@pytest.mark.parametrize("backbones, data, message", [
    ("cait-t", True, "classification-only"),
    ("vit-s", False, "ADE"),
])
def test_bad_input_is_exit_2_and_leaves_the_store_unchanged(ade, tmp_path, backbones, data, message):
    before = ade["db"].read_bytes()
    data_root = ade["root"] / "data" if data else tmp_path / "nothing"
    process = subprocess.run(
        [sys.executable, "-m", "vbench", "run", "--suite", "ade20k", "--backbones", backbones, "--data-root",
         str(data_root), "--db", str(ade["db"]), "--device", "cpu", *sets("iterations=1", "eval_at=[1]")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stdout + process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert ade["db"].read_bytes() == before
    engine = create_engine(f"sqlite:///{ade['db']}")
    with engine.connect() as connection:
        assert connection.execute(text("select count(*) from runs")).scalar() == 4
    engine.dispose()


def test_a_version_1_store_gains_the_epoch_metrics_column(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    open_store(url).close()
    with sqlite3.connect(tmp_path / "old.db") as connection:   # what a version 1 store looks like
        connection.execute("ALTER TABLE epochs DROP COLUMN metrics")
        connection.execute("DELETE FROM schema_info")
        connection.execute("INSERT INTO schema_info VALUES (1)")
    store = open_store(url)
    run_id = store.start_run(suite="s", backbone="b", seed=0, recipe_hash="h")
    store.add_epoch(run_id, {"epoch": 2, "metrics": {"mIoU": 1.5}})
    assert store.epochs(run_id)[0].metrics == {"mIoU": 1.5} and store.schema_version() == 2
    store.close()
