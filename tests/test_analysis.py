"""`vbench erf`, `vbench shape-bias` and `vbench calibration` end to end on runs of the real digits (the README's
main job, cut to 2 epochs: the models learn, to 71-88% top-1), their reports in every format, `vbench compare`'s calibration, the
per-class errors of `vbench runs show` and the leaderboard's pages; and the README section's commands."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import readme
from cli import run_cli
from plugins import FAST, write_plugin
from services import console_errors

from vbench.analysis.shape_bias import STIMULUS_CATEGORIES
from vbench.data.fixtures import write_image_folder, write_image_folder_suite
from vbench.reporting.calibration import calibration_metrics, temperature_scaled
from vbench.reporting.render import FORMATS
from vbench.store import open_store
from vbench.store.artifacts import predictions_path
from vbench.store.predictions import ClassificationPredictions, load_predictions, save_predictions

HEADING = "## What large kernels see"
FAST_DIGITS = ["--epochs", "2", "--set", "warmup_epochs=1"]  # 71-88% top-1: models that have learned


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """ViT/0.5M and ViT/0.5M-LKCA on digits, then the README section's commands on their store."""
    folder = tmp_path_factory.mktemp("analysis")
    db = folder / "results" / "vbench.db"
    result = run_cli("run", "--suite", "digits", "--backbones", "vit-0.5m,vit-0.5m-lkca", *FAST_DIGITS, cwd=folder)
    assert result.code == 0, result.out + result.err
    outputs = {}
    for command in readme.commands(HEADING):
        extra = ["--format", "json"] if command[0] == "report" else []
        done = run_cli(*command, *extra, cwd=folder)
        assert done.code == 0, f"{command}: {done.out}{done.err}"
        outputs[command[0]] = done.out
    return {"folder": folder, "db": db, "store": open_store(str(db), write=False), "outputs": outputs}


def evaluations(trained, kind: str) -> dict:
    store = trained["store"]
    runs = {run.id: run for run in store.list_runs()}
    return {(runs[e.run_id].backbone, e.condition): e.metrics for e in store.evaluations(kind)}


def test_the_readme_section_runs_every_analysis(trained):
    commands = [command[0] for command in readme.commands(HEADING)]
    assert commands == ["erf", "shape-bias", "calibration", "report"]
    report = json.loads(trained["outputs"]["report"])
    keys = {section["key"] for section in report["sections"]}
    assert keys == {"digits/erf", "digits/shape-bias", "digits/calibration"}
    assert (trained["folder"] / "results" / "plots" / "digits_erf_trained.png").read_bytes()[:4] == b"\x89PNG"


def test_erf_is_stored_per_run_with_repLKNet_area_ratios(trained):
    found = evaluations(trained, "erf")
    assert set(found) == {("vit-0.5m", "trained"), ("vit-0.5m-lkca", "trained")}
    for metrics in found.values():
        matrix = np.asarray(metrics["matrix"])
        assert matrix.shape == (8, 8) and metrics["map_size"] == [8, 8] and metrics["images"] == 50
        ratios = [metrics[f"area_ratio_{t}"] for t in (20, 30, 50, 99)]
        assert all(0 < a <= b <= 1 for a, b in zip(ratios, ratios[1:]))  # a higher threshold needs more area
        assert (matrix >= 0).all() and matrix.sum() > 0
    assert found[("vit-0.5m-lkca", "trained")]["kernel_size"] == 15 and found[("vit-0.5m", "trained")]["kernel_size"] is None


def test_erf_of_the_initial_weights_and_kept_results(trained):
    """LKCA's kernel starts at zero: at initialisation its central token sees only itself; training widens it."""
    common = ["erf", "--suite", "digits", "--db", trained["db"], "--output-dir", trained["folder"] / "plots"]
    result = run_cli(*common, "--init")
    assert result.code == 0, result.err
    found = evaluations(trained, "erf")
    initial = np.asarray(found[("vit-0.5m-lkca", "init")]["matrix"])
    assert np.count_nonzero(initial) == 1 and initial[4, 4] > 0
    assert np.count_nonzero(np.asarray(found[("vit-0.5m-lkca", "trained")]["matrix"])) > 1
    again = run_cli(*common)
    assert again.code == 0 and "0 measured now, 2 kept from before" in again.out
    assert (trained["folder"] / "plots" / "digits_erf_trained.svg").is_file()


def test_shape_bias_counts_decisions_on_hybrids(trained):
    found = evaluations(trained, "shape-bias")
    assert set(found) == {("vit-0.5m", "hybrid:1"), ("vit-0.5m-lkca", "hybrid:1")}
    for metrics in found.values():
        assert metrics["images"] == 500 and metrics["sigma"] == 1.0
        assert metrics["shape"] + metrics["texture"] + metrics["other"] == metrics["counted"] <= 500
        assert metrics["counted"] > 100 and 0 < metrics["shape_bias"] < 1
        assert metrics["shape_bias"] == pytest.approx(metrics["shape"] / (metrics["shape"] + metrics["texture"]))
    assert found[("vit-0.5m-lkca", "hybrid:1")]["kernel_size"] == 15


def test_calibration_before_and_after_temperature_scaling(trained):
    """The target: on every run of the fixtures, ECE after temperature scaling is not above ECE before."""
    found = evaluations(trained, "calibration")
    store = trained["store"]
    assert len(found) == 2
    for run in store.list_runs():
        metrics = found[(run.backbone, "clean")]
        assert metrics["ece_ts"] <= metrics["ece"], (run.backbone, metrics)
        assert metrics["nll_ts"] <= metrics["nll"] + 1e-9
        predictions = load_predictions(predictions_path(store, run.id))
        expected = temperature_scaled(predictions.class_probabilities(), predictions.labels.astype(int))
        assert metrics["ece"] == pytest.approx(expected["ece"]) and metrics["temperature"] == pytest.approx(expected["temperature"])
        assert metrics["source"] == "predictions" and metrics["held_out_images"] + metrics["fit_images"] == 500


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_report_format(trained, fmt):
    result = run_cli("report", "--erf", "--shape-bias", "--calibration", "--db", trained["db"], "--format", fmt)
    assert result.code == 0, result.err
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.out)))
        assert {row["section"] for row in rows} == {"digits/erf", "digits/shape-bias", "digits/calibration"}
        calibration = [row for row in rows if row["section"] == "digits/calibration"]
        stored = evaluations(trained, "calibration")
        assert sorted(float(row["ece"]) for row in calibration) == pytest.approx(
            sorted(100 * m["ece"] for m in stored.values()), abs=1e-4)
    elif fmt == "json":
        json.loads(result.out)
    else:
        assert "effective receptive fields" in result.out and "ViT/0.5M-LKCA" in result.out


def test_compare_also_compares_ece_and_nll(trained):
    result = run_cli("compare", "vit-0.5m-lkca", "vit-0.5m", "--suite", "digits", "--db", trained["db"], "--format",
                     "json")
    assert result.code == 0, result.err
    section = next(s for s in json.loads(result.out)["sections"] if s["key"] == "calibration")
    rows = {row["metric"]: row for row in section["rows"]}
    store = trained["store"]
    by_name = {run.backbone: run for run in store.list_runs()}
    for name, side in (("vit-0.5m-lkca", "mean_a"), ("vit-0.5m", "mean_b")):
        predictions = load_predictions(predictions_path(store, by_name[name].id))
        expected = calibration_metrics(predictions.class_probabilities(), predictions.labels.astype(int))
        assert rows["ece"][side] == pytest.approx(100 * expected["ece"], rel=1e-5)
        assert rows["nll"][side] == pytest.approx(expected["nll"], rel=1e-5)


def test_runs_show_lists_the_worst_classes(trained):
    store = trained["store"]
    run = store.list_runs()[0]
    shown = run_cli("runs", "show", str(run.id), "--db", trained["db"])
    assert shown.code == 0 and "Worst classes" in shown.out
    record = json.loads(run_cli("runs", "show", str(run.id), "--db", trained["db"], "--json").out)
    predictions = load_predictions(predictions_path(store, run.id))
    accuracy = [100 * np.mean(predictions.correct[predictions.labels == c]) for c in range(10)]
    assert record["per_class"]["accuracy"] == pytest.approx(accuracy, abs=1e-3)
    worst = record["per_class"]["worst"]
    assert [row["accuracy"] for row in worst] == pytest.approx(sorted(accuracy)[:5], abs=1e-3)


@pytest.fixture(scope="module")
def site(trained):
    built = run_cli("leaderboard", "--db", trained["db"], "--output", trained["folder"] / "site")
    assert built.code == 0, built.err
    return trained["folder"] / "site"


def test_plot_and_leaderboard_show_the_analyses(trained, site, tmp_path):
    drawn = run_cli("plot", "--db", trained["db"], "--output-dir", tmp_path / "plots")
    assert drawn.code == 0, drawn.err
    assert (tmp_path / "plots" / "digits_erf_trained.png").is_file()
    assert "digits: effective receptive fields" in (site / "receptive-fields.html").read_text()
    assert "digits: shape bias" in (site / "shape-bias.html").read_text()
    assert "digits: calibration" in (site / "calibration.html").read_text()
    page = (site / "runs" / f"{trained['store'].list_runs()[0].id}.html").read_text()
    assert 'id="confusion"' in page and "Worst classes" in page


def test_the_pages_draw_their_heatmaps_in_a_browser(chrome, site, trained):
    from selenium.webdriver.common.by import By

    run_page = f"runs/{trained['store'].list_runs()[0].id}.html"
    for page, charts in (("receptive-fields.html", 2), ("shape-bias.html", 1), ("calibration.html", 0), (run_page, 2)):
        chrome.get((site / page).as_uri())
        assert chrome.find_element(By.TAG_NAME, "table").is_displayed()
        assert len(chrome.find_elements(By.CSS_SELECTOR, "div[data-spec] .main-svg")) >= charts, page
        assert console_errors(chrome) == [], page


def test_no_finished_runs_is_one_line_and_writes_nothing(trained):
    before = len(trained["store"].evaluations())
    for command in (["erf"], ["shape-bias"], ["calibration"]):
        result = run_cli(*command, "--suite", "smoke", "--db", trained["db"])
        assert result.code == 2 and "no finished runs of suite 'smoke'" in result.error_line
    assert len(trained["store"].evaluations()) == before


def test_a_backbone_without_a_feature_map_is_refused(tmp_path):
    plugin = write_plugin(tmp_path)
    db = tmp_path / "tiny.db"
    trained = run_cli("run", "--suite", "digits", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "1",
                      "--limit", "64", "--db", db, *FAST)
    assert trained.code == 0, trained.err
    result = run_cli("erf", "--suite", "digits", "--db", db, "--plugin", plugin, "--limit", "64")
    assert result.code == 2 and "backbone 'tiny-test' declares no last feature map" in result.error_line
    assert open_store(str(db), write=False).evaluations() == []


@pytest.fixture(scope="module")
def sixteen_classes(tmp_path_factory):
    """A run of a suite of model-vs-human's 16 categories (an image folder), for cue-conflict stimuli."""
    folder = tmp_path_factory.mktemp("stimuli")
    images = write_image_folder(folder / "images", classes=STIMULUS_CATEGORIES, train_per_class=2, test_per_class=1)
    suite = write_image_folder_suite(folder / "cue16.toml", images.root, num_classes=16, epochs=1)
    db = folder / "runs.db"
    result = run_cli("run", "--suite", suite, "--backbones", "vit-0.5m", "--db", db, "--batch-size", "8", *FAST)
    assert result.code == 0, result.out + result.err
    return {"folder": folder, "suite": suite, "db": db}


def write_stimuli(folder, names: dict[str, list[str]]):
    from PIL import Image

    for category, files in names.items():
        (folder / category).mkdir(parents=True, exist_ok=True)
        for name in files:
            if name.endswith(".png"):
                Image.fromarray(np.full((24, 24, 3), 90, dtype=np.uint8)).save(folder / category / name)
            else:
                (folder / category / name).write_text("not an image")
    return folder


def test_stimuli_in_the_model_vs_human_layout(sixteen_classes):
    stimuli = write_stimuli(sixteen_classes["folder"] / "cue-conflict", {
        "airplane": ["airplane1-bear2.png", "airplane2-airplane1.png"], "cat": ["cat3-knife1.png"]})
    result = run_cli("shape-bias", "--suite", sixteen_classes["suite"], "--db", sixteen_classes["db"], "--stimuli",
                     stimuli)
    assert result.code == 0, result.out + result.err
    [evaluation] = open_store(str(sixteen_classes["db"]), write=False).evaluations("shape-bias")
    metrics = evaluation.metrics
    assert evaluation.condition == "stimuli:cue-conflict" and metrics["images"] == 2
    assert metrics["same_category_left_out"] == 1 and metrics["counted"] == 2


@pytest.mark.parametrize("files, message", [
    ({"airplane": ["dog1-bear2.png"]}, "is not named <shape><i>-<texture><j> with the shape 'airplane'"),
    ({"zebra": ["zebra1-bear2.png"]}, "is not a folder named after one of the 16 categories"),
    ({"airplane": ["airplane1-bear2.txt"]}, "is not named"),
])
def test_stimuli_in_the_wrong_layout_are_one_line(sixteen_classes, tmp_path, files, message):
    stimuli = write_stimuli(tmp_path / "bad", files)
    result = run_cli("shape-bias", "--suite", sixteen_classes["suite"], "--db", sixteen_classes["db"], "--stimuli",
                     stimuli)
    assert result.code == 2 and message in result.error_line


def test_stimuli_need_a_model_of_the_16_categories(trained, tmp_path):
    result = run_cli("shape-bias", "--suite", "digits", "--db", trained["db"], "--stimuli", tmp_path)
    assert result.code == 2 and "needs a suite of the 16 categories" in result.error_line


def test_calibration_of_a_run_whose_predictions_predate_probabilities(trained):
    """A predictions file of format 1 (no probabilities): the run is evaluated again from its final weights."""
    store = trained["store"]
    run = store.list_runs()[0]
    path = predictions_path(store, run.id)
    original = path.read_bytes()
    kept = load_predictions(path)
    try:
        save_predictions(path, ClassificationPredictions.from_top_k(kept.top_k, kept.labels, kept.meta))
        result = run_cli("calibration", "--suite", "digits", "--db", trained["db"])
        assert result.code == 0, result.err
        assert "1 from their final weights" in result.out
        metrics = evaluations(trained, "calibration")[(run.backbone, "clean")]
        expected = temperature_scaled(kept.class_probabilities(), kept.labels.astype(int))
        assert metrics["source"] == "weights" and metrics["ece"] == pytest.approx(expected["ece"], abs=2e-3)
    finally:
        path.write_bytes(original)
        run_cli("calibration", "--suite", "digits", "--db", trained["db"])  # as the other tests found it
