"""`vbench robustness` and `vbench report --robustness` end to end: runs trained on the CIFAR-10 fixture,
evaluated on generated corruptions (and on a released CIFAR-10-C layout), then reported with mCE."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from cli import run_cli
from plugins import FAST, write_plugin

from vbench.data.fixtures import write_fixture
from vbench.robustness.corruptions import CORRUPTIONS
from vbench.robustness.fixtures import write_cifar_c
from vbench.robustness.metrics import robustness_summary
from vbench.store import open_store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    plugin = write_plugin(root)
    fixture = write_fixture("cifar10", root / "data", per_batch=8, num_test=12)
    db = root / "runs.db"
    result = run_cli("run", "--suite", "cifar10", "--backbones", "tiny-test,tiny-wide", "--plugin", plugin,
                     "--epochs", "1", "--data-root", fixture.root, "--db", db, "--batch-size", "10", *FAST)
    assert result.code == 0, result.out + result.err
    common = ["--suite", "cifar10", "--data-root", fixture.root, "--db", db, "--plugin", plugin]
    evaluated = run_cli("robustness", *common, "--severities", "1,5")
    assert evaluated.code == 0, evaluated.out + evaluated.err
    return {"db": db, "plugin": plugin, "common": common, "root": root, "output": evaluated.out}


def test_every_corruption_and_severity_is_kept_per_run(trained):
    store = open_store(str(trained["db"]), write=False)
    evaluations = store.evaluations("corruption")
    assert len(evaluations) == 2 * 15 * 2
    assert {e.condition for e in evaluations} == {f"{c}/{s}" for c in CORRUPTIONS for s in (1, 5)}
    assert all(0 <= e.metrics["top1"] <= 100 and e.metrics["source"] == "generated" for e in evaluations)
    assert "60 evaluated now, 0 kept from before" in trained["output"]


def test_an_interrupted_or_repeated_evaluation_keeps_what_is_done(trained):
    again = run_cli("robustness", *trained["common"], "--severities", "1,5", "--corruptions", "fog,snow")
    assert again.code == 0 and "0 evaluated now, 8 kept from before" in again.out
    assert len(open_store(str(trained["db"]), write=False).evaluations("corruption")) == 60


def test_report_lists_every_corruption_and_the_mce(trained):
    result = run_cli("report", "--robustness", "--reference", "tiny-test", "--db", trained["db"], "--plugin",
                     trained["plugin"])
    assert result.code == 0, result.err
    for name in CORRUPTIONS:
        assert name in result.out
    assert "mCE" in result.out and "rel. mCE" in result.out
    payload = json.loads(run_cli("report", "--robustness", "--reference", "tiny-test", "--db", trained["db"],
                                 "--plugin", trained["plugin"], "--format", "json").out)
    rows = {r["backbone"]: r for r in payload["sections"][0]["rows"]}
    store = open_store(str(trained["db"]), write=False)
    runs = {run.id: run for run in store.list_runs()}
    frame = pd.DataFrame([{"backbone": runs[e.run_id].backbone, "corruption": e.condition.split("/")[0],
                           "severity": int(e.condition.split("/")[1]), "accuracy": e.metrics["top1"]}
                          for e in store.evaluations("corruption")])
    clean = {run.backbone: run.metrics["top1"] for run in runs.values()}
    expected = robustness_summary(frame, clean, "tiny-test").set_index("backbone")
    assert rows["tiny-wide"]["mce"] == pytest.approx(expected.loc["tiny-wide", "mce"], rel=1e-6)
    assert rows["tiny-test"]["mce"] == pytest.approx(100.0)
    assert rows["tiny-wide"]["relative_mce"] == pytest.approx(expected.loc["tiny-wide", "relative_mce"], rel=1e-6)


def test_plot_adds_accuracy_against_severity(trained, tmp_path):
    result = run_cli("plot", "--db", trained["db"], "--output-dir", tmp_path, "--plugin", trained["plugin"])
    assert result.code == 0, result.err
    assert (tmp_path / "cifar10_acc_vs_severity.png").read_bytes()[:4] == b"\x89PNG"


def test_the_released_cifar_10_c_files_are_read_when_present(trained, tmp_path):
    written = write_cifar_c(trained["root"] / "data", corruptions=["fog"], per_severity=6)
    result = run_cli("robustness", *trained["common"], "--corruptions", "fog", "--severities", "2")
    assert result.code == 0, result.err
    store = open_store(str(trained["db"]), write=False)
    [first, second] = [e for e in store.evaluations("corruption") if e.condition == "fog/2"]
    assert first.metrics["source"] == "released"
    images, labels = written["fog", 2]
    assert len(labels) == 6


@pytest.mark.parametrize("args, message", [
    (["--corruptions", "rain"], "unknown corruption 'rain'"),
    (["--severities", "0,6"], "severity"),
    (["--suite", "svhn"], "no finished runs of suite 'svhn'"),
])
def test_bad_input_is_one_line(trained, args, message):
    base = dict(zip(trained["common"][::2], trained["common"][1::2]))
    base.update(dict(zip(args[::2], args[1::2])))
    result = run_cli("robustness", *[item for pair in base.items() for item in pair])
    assert result.code == 2 and message in result.error_line


def test_calibration_is_kept_per_corruption_and_severity(trained):
    """ECE, NLL and Brier before and after temperature scaling, with the clean split's temperature, on every
    (corruption, severity); `vbench report --calibration` shows them per severity."""
    evaluations = open_store(str(trained["db"]), write=False).evaluations("corruption")
    fresh = [e for e in evaluations if "ece" in e.metrics]
    assert fresh and all(0 <= e.metrics["ece"] <= 1 and e.metrics["nll_ts"] > 0 and e.metrics["temperature"] > 0
                         for e in fresh)
    temperatures = {}
    for evaluation in fresh:  # one clean temperature per run, whatever the corruption
        temperatures.setdefault(evaluation.run_id, set()).add(evaluation.metrics["temperature"])
    assert all(len(found) == 1 for found in temperatures.values())
    result = run_cli("report", "--calibration", "--db", trained["db"], "--plugin", trained["plugin"], "--format", "json")
    assert result.code == 0, result.err
    [section] = json.loads(result.out)["sections"]
    assert section["key"] == "cifar10/calibration-shift" and {row["severity"] for row in section["rows"]} == {1, 5}
