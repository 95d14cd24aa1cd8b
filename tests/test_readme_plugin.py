"""The README's "Your own backbone" example, taken from README.md as it stands and run through the CLI as the
README shows it: listed and measured, trained on CIFAR-10, and its encoder trained under a segmentation head."""

from __future__ import annotations

import json
import re

import readme
import torch
from cli import run_cli
from plugins import FAST

from vbench.data.fixtures import write_fixture
from vbench.models import registry
from vbench.segmentation.ade20k import write_ade20k_fixture
from vbench.store import open_store


def readme_plugin() -> str:
    return re.search(r"```python\n(# my_models\.py\n.*?)```", readme.section("### Your own backbone"), re.S).group(1)


def test_the_readme_plugin_example_lists_measures_and_trains(tmp_path):
    (tmp_path / "my_models.py").write_text(readme_plugin())
    listed, classify, segment = readme.commands("### Your own backbone")
    assert listed[:3] == ["list", "backbones", "my-net"] and classify[:2] == ["run", "--suite"]

    result = run_cli(*listed, cwd=tmp_path)
    assert result.code == 0, result.err
    assert "my-net" in result.out and "segmentation" in result.out and "FLOPs" in result.out
    measured = run_cli(*listed, "--json", cwd=tmp_path)
    [row] = json.loads(measured.out)
    assert row["tasks"] == ["classification", "segmentation"] and row["params"] > 0 and row["flops"] > 0
    assert row["error"] is None and row["flops_complete"]

    # the encoder returns the four maps it declares
    spec = registry.get_backbone("my-net")
    features = spec.variant("segmentation").features
    maps = spec.build(64, 150, task="segmentation")(torch.zeros(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == list(features.channels)
    assert [64 // m.shape[2] for m in maps] == list(features.strides)

    cifar = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    db = tmp_path / "runs.db"
    result = run_cli(*classify, "--data-root", cifar.root, "--db", db, "--batch-size", "10", *FAST, cwd=tmp_path)
    assert result.code == 0, result.out + result.err

    write_ade20k_fixture(tmp_path / "ade", n_train=2, n_val=1, size=(40, 56))
    tiny = ["iterations=1", "eval_at=[1]", "batch_size=2", "num_workers=0", "img_size=64", "scale=[64, 64]"]
    result = run_cli(*segment, "--data-root", tmp_path / "ade", "--db", db,
                     *[arg for item in tiny for arg in ("--set", item)], cwd=tmp_path)
    assert result.code == 0, result.out + result.err

    runs = open_store(str(db), write=False).list_runs()
    assert [(r.backbone, r.task, r.status, r.family) for r in runs] == [
        ("my-net", "classification", "done", "mine"), ("my-net", "segmentation", "done", "mine")]
    assert runs[0].steps_done == 1 and runs[1].recipe["head"] == "fpn" and "mIoU" in runs[1].metrics
