"""``vbench robustness --suite imagenet``: ImageNet-C, -A, -R, -Sketch and V2 read from tiny trees in their release
layouts, A and R with the logits masked to their classes, mCE against AlexNet's published errors."""

from __future__ import annotations

import shutil

import pytest
import torch
from cli import run_cli

from vbench.data.fixtures import write_imagenet
from vbench.robustness.fixtures import write_imagenet_test_sets
from vbench.robustness.imagenet import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    KIND_C,
    KIND_SETS,
    Tally,
    alexnet_corruption_errors,
)
from vbench.store import open_store

# ImageNet classes: tench (in neither A nor R), goldfish (R only), robin (A only)
WNIDS = ["n01440764", "n01443537", "n01558993"]
ENV = {"VBENCH_DATA_WORKERS": "0"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inet-robust")
    write_imagenet(folder / "data" / "imagenet", wnids=WNIDS, train_per_class=4, val_per_class=2, sizes=(40, 64))
    written = write_imagenet_test_sets(folder / "data", WNIDS, per_class=2, size=40)
    suite = folder / "imagenet-3.toml"
    suite.write_text('include = "imagenet"\nname = "imagenet-3"\nnum_classes = 3\nimg_size = 32\n')
    ran = run_cli("run", "--suite", suite, "--data-root", folder / "data", "--backbones", "vit-0.5m", "--epochs", "1",
                  "--batch-size", "6", "--db", folder / "r.db", env=ENV, cwd=folder)
    assert ran.code == 0, ran.out + ran.err
    return folder, suite, written


def test_every_set_present_is_evaluated_once_and_kept(trained):
    folder, suite, written = trained
    assert written == {"imagenet-a": 2, "imagenet-r": 2, "sketch": 6, "imagenetv2-matched-frequency-format-val": 6,
                       "ImageNet-C": 60}
    command = ("robustness", "--suite", suite, "--data-root", folder / "data", "--corruptions", "fog,jpeg_compression",
               "--db", folder / "r.db")
    first = run_cli(*command, env=ENV, cwd=folder)
    assert first.code == 0, first.out + first.err
    assert "1 runs: 14 evaluated now, 0 kept from before" in first.out
    for title in ("ImageNet-A", "ImageNet-R", "ImageNet-Sketch", "ImageNetV2", "ImageNet-C"):
        assert title in first.out
    store = open_store(str(folder / "r.db"), write=False)
    sets = {e.condition: e.metrics for e in store.evaluations(KIND_SETS)}
    assert {name: m["images"] for name, m in sets.items()} == {
        "imagenet-a": 2, "imagenet-r": 2, "imagenet-sketch": 6, "imagenet-v2": 6}
    # A and R hold one of the model's classes each: masked to it, every image is right
    assert sets["imagenet-a"]["top1"] == 100.0 and sets["imagenet-r"]["top1"] == 100.0
    corrupted = {e.condition: e.metrics for e in store.evaluations(KIND_C)}
    assert sorted(corrupted) == sorted(f"{c}/{s}" for c in ("fog", "jpeg_compression") for s in range(1, 6))
    again = run_cli(*command, env=ENV, cwd=folder)
    assert "1 runs: 0 evaluated now, 14 kept from before" in again.out

    report = run_cli("report", "--robustness", "--suite", "imagenet-3", "--format", "json", "--db", folder / "r.db")
    assert report.code == 0, report.err
    import json

    [section] = [s for s in json.loads(report.out)["sections"] if s["key"] == "imagenet-3/imagenet-sets"]
    [record] = section["rows"]
    [run] = store.list_runs()
    errors = {c: {s: 100.0 - corrupted[f"{c}/{s}"]["top1"] for s in range(1, 6)} for c in ("fog", "jpeg_compression")}
    ces = [sum(e.values()) / 5 / ALEXNET_ERRORS[c] * 100 for c, e in errors.items()]
    assert record["mce"] == pytest.approx(sum(ces) / 2) and record["reference"] == "AlexNet (published)"
    assert record["imagenet-a"] == 100.0 and record["clean_accuracy"] == pytest.approx(run.metrics["top1"])
    table = run_cli("report", "--robustness", "--suite", "imagenet-3", "--db", folder / "r.db")
    assert "ImageNet-Sketch" in table.out and "mCE" in table.out


def test_no_test_set_under_the_data_root_is_one_line(trained, tmp_path):
    folder, suite, _ = trained
    shutil.copytree(folder / "data" / "imagenet", tmp_path / "data" / "imagenet")  # the same data, times kept
    result = run_cli("robustness", "--suite", suite, "--data-root", tmp_path / "data", "--db", folder / "r.db", env=ENV)
    assert result.code == 2 and result.error_line.startswith(
        f"error: none of ImageNet's test sets is under {tmp_path / 'data'} or {tmp_path}; expected any of: ImageNet-A "
        "(imagenet-a/)"), result.err


def test_masking_and_alexnet_errors():
    tally = Tally(torch.tensor([1, 3]))
    logits = torch.tensor([[9.0, 1.0, 0.0, 2.0], [9.0, 0.0, 5.0, 1.0]])
    tally.add(logits, torch.tensor([3, 3]))  # class 0 and 2 are masked away: 3 wins, then 3 again
    assert tally.metrics(0)["top1"] == 100.0
    rows = alexnet_corruption_errors({"fog": {s: 81.9324 for s in range(1, 6)}, "snow": {1: 50.0}}, ALEXNET_CLEAN_ERROR)
    assert rows == {"fog": {"ce": pytest.approx(100.0), "relative_ce": pytest.approx(100.0)}}  # snow: not all severities
