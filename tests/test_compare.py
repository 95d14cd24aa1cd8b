"""`vbench compare`: intervals and tests between two backbones, checked against scipy on the stored runs and
per-image predictions; and the report's intervals and notes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli import run_cli
from plugins import FAST, write_plugin
from scipy import stats

from vbench.data.fixtures import write_fixture
from vbench.reporting.calibration import calibration_metrics
from vbench.store import open_store
from vbench.store.artifacts import predictions_path
from vbench.store.predictions import load_predictions


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """tiny-test and tiny-wide, seeds 0 and 1, one epoch each on the CIFAR-10 fixture."""
    root = tmp_path_factory.mktemp("compare")
    plugin = write_plugin(root)
    fixture = write_fixture("cifar10", root / "data", per_batch=12, num_test=60)
    db = root / "runs.db"
    result = run_cli("run", "--suite", "cifar10", "--backbones", "tiny-test,tiny-wide", "--seeds", "0,1", "--plugin",
                     plugin, "--epochs", "2", "--data-root", fixture.root, "--db", db, "--batch-size", "12", *FAST)
    assert result.code == 0, result.out + result.err
    return {"db": db, "plugin": plugin, "root": root}


def compare(trained, *args):
    return run_cli("compare", "tiny-test", "tiny-wide", "--suite", "cifar10", "--db", trained["db"], "--plugin",
                   trained["plugin"], *args)


def stored(trained) -> tuple[dict, dict]:
    store = open_store(str(trained["db"]), write=False)
    runs = {(r.backbone, r.seed): r for r in store.list_runs(status="done")}
    return runs, {key: load_predictions(predictions_path(store, run.id)) for key, run in runs.items()}


def test_paired_interval_and_per_image_tests_agree_with_scipy(trained):
    result = compare(trained, "--format", "json")
    assert result.code == 0, result.err
    seeds_section, images_section, calibration_section = json.loads(result.out)["sections"]
    [summary] = seeds_section["rows"]
    runs, predictions = stored(trained)
    a = [runs["tiny-test", s].metrics["top1"] for s in (0, 1)]
    b = [runs["tiny-wide", s].metrics["top1"] for s in (0, 1)]
    expected = stats.ttest_rel(a, b)
    interval = expected.confidence_interval(0.95)
    assert summary["method"] == "paired" and summary["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    if np.isfinite(expected.pvalue):
        assert summary["ci_low"] == pytest.approx(interval.low) and summary["ci_high"] == pytest.approx(interval.high)
        assert summary["p_value"] == pytest.approx(expected.pvalue)
    for pair in images_section["rows"]:
        seed = pair["seed_a"]
        right_a, right_b = predictions["tiny-test", seed].correct, predictions["tiny-wide", seed].correct
        only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
        assert (pair["only_a_correct"], pair["only_b_correct"], pair["images"]) == (only_a, only_b, 60)
        p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        assert pair["mcnemar_p"] == pytest.approx(p)
        assert pair["difference"] == pytest.approx(100 * (right_a.mean() - right_b.mean()))
        assert pair["low"] <= pair["difference"] <= pair["high"]
    assert compare(trained, "--format", "json").out == result.out  # the bootstrap is seeded
    ece = {row["metric"]: row for row in calibration_section["rows"]}["ece"]
    per_run = {key: 100 * calibration_metrics(p.class_probabilities(), p.labels.astype(int))["ece"]
               for key, p in predictions.items()}
    a, b = [per_run["tiny-test", s] for s in (0, 1)], [per_run["tiny-wide", s] for s in (0, 1)]
    assert ece["method"] == "paired" and ece["mean_a"] == pytest.approx(np.mean(a), rel=1e-5)
    assert ece["difference"] == pytest.approx(np.mean(a) - np.mean(b), rel=1e-5, abs=1e-9)


def test_a_single_seed_is_answered_from_the_predictions(trained):
    result = compare(trained, "--seeds", "1")
    assert result.code == 0, result.err
    assert "No interval over seeds: a t interval needs at least 2 seeds on each side" in result.out
    assert "McNemar p" in result.out and "1 / 1" in result.out


def test_welch_when_the_seeds_differ(trained):
    payload = json.loads(run_cli("compare", "tiny-test", "tiny-wide", "--suite", "cifar10", "--db", trained["db"],
                                 "--plugin", trained["plugin"], "--format", "json").out)
    assert payload["sections"][0]["rows"][0]["method"] == "paired"
    from vbench.reporting.stats import seed_difference

    welch = seed_difference({0: 10.0, 1: 12.0}, {2: 9.0, 3: 9.5, 4: 10.5})
    expected = stats.ttest_ind([10.0, 12.0], [9.0, 9.5, 10.5], equal_var=False)
    assert welch.method == "welch" and welch.p_value == pytest.approx(expected.pvalue)


@pytest.mark.parametrize("args, message", [
    (["tiny-test", "nope-net"], "unknown backbone 'nope-net'"),
    (["tiny-test", "tiny-nan"], "no finished runs of 'tiny-nan' on suite 'cifar10'"),
    (["tiny-test", "tiny-test"], "are the same backbone"),
])
def test_compare_bad_input(trained, args, message):
    result = run_cli("compare", *args, "--suite", "cifar10", "--db", trained["db"], "--plugin", trained["plugin"])
    assert result.code == 2 and message in result.error_line
