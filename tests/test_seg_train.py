import math

import numpy as np
import pytest
import torch

from vbench.errors import VbenchError
from vbench.segmentation.ade20k import IGNORE_INDEX, load_label, write_ade20k_fixture
from vbench.segmentation.recipe import OptimizerConfig, load_segmentation_suite
from vbench.segmentation.run import run_segmentation, segmentation_datasets, suite_segmentor
from vbench.segmentation.train import build_optimizer, learning_rate, train_segmentor

TINY_SETS = ["img_size=32", "scale=[64, 32]", "batch_size=2", "num_workers=0", "warmup_iters=1"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ade")
    write_ade20k_fixture(root, n_train=4, n_val=2, size=(40, 56))
    return root


def test_builtin_suite_states_the_toolbox_recipe():
    suite = load_segmentation_suite("ade20k")
    recipe = suite.recipe
    assert (suite.task, suite.kind, suite.num_classes, suite.img_size) == ("segmentation", "ade20k", 150, 512)
    assert recipe.scale == (2048, 512) and recipe.ratio_range == (0.5, 2.0) and recipe.cat_max_ratio == 0.75
    assert recipe.eval_at == (2000, 4000, 8000, 10000, 16000, 20000) and recipe.iterations == 20000
    assert recipe.batch_size == 16 and recipe.aux_weight == 0.4
    adamw, sgd = recipe.optimizer_for("transformer"), recipe.optimizer_for("cnn")
    assert (adamw.name, adamw.lr, adamw.weight_decay, adamw.warmup_iters, adamw.power, adamw.min_lr) == \
        ("adamw", 6e-5, 0.01, 1500, 1.0, 0.0)
    assert (sgd.name, sgd.lr, sgd.momentum, sgd.weight_decay, sgd.warmup_iters, sgd.min_lr) == \
        ("sgd", 0.01, 0.9, 5e-4, 0, 1e-4)
    assert "mmseg" in adamw.source or "configs/" in adamw.source


def test_sets_change_the_recipe_and_its_hash():
    base = load_segmentation_suite("ade20k")
    changed = load_segmentation_suite("ade20k", sets=["iterations=4", "eval_at=[2, 4]", "cnn.lr=0.02", "head=fpn"])
    assert changed.recipe.eval_at == (2, 4) and changed.recipe.head == "fpn"
    assert changed.recipe.optimizer_for("cnn").lr == 0.02 and changed.recipe.optimizer_for("transformer").lr == 6e-5
    assert changed.recipe.hash() != base.recipe.hash()
    assert load_segmentation_suite("ade20k").recipe.hash() == base.recipe.hash()
    for bad in ("head=deeplab", "eval_at=[5]", "scale=[512]", "colour=1", "transformer.name=adam"):
        with pytest.raises(VbenchError):
            load_segmentation_suite("ade20k", sets=["iterations=4", "eval_at=[4]", bad])


def test_learning_rate_schedule_is_warmup_then_poly():
    config = OptimizerConfig(lr=1.0, warmup_iters=10, warmup_ratio=0.0, power=1.0, min_lr=0.0)
    assert [learning_rate(config, i, 20) for i in (0, 5, 10, 15)] == pytest.approx([0.0, 0.5, 1.0, 0.5])
    sgd = OptimizerConfig(name="sgd", lr=0.01, warmup_iters=0, power=0.9, min_lr=1e-4)
    assert learning_rate(sgd, 50, 100) == pytest.approx((0.01 - 1e-4) * 0.5 ** 0.9 + 1e-4)
    assert learning_rate(sgd, 0, 100) == pytest.approx(0.01)


def test_optimizer_exempts_the_configured_keys_from_weight_decay():
    suite = load_segmentation_suite("ade20k", sets=TINY_SETS)
    segmentor = suite_segmentor(suite, "vit-s")
    optimizer = build_optimizer(segmentor, suite.recipe.optimizer_for("transformer"))
    assert isinstance(optimizer, torch.optim.AdamW)
    exempt = {id(p) for p in optimizer.param_groups[1]["params"]}
    names = {name for name, p in segmentor.named_parameters() if id(p) in exempt}
    assert "backbone.pos_embed" in names and "backbone.cls_token" in names
    assert "backbone.blocks.0.norm1.weight" in names and "decode_head.bottleneck.bn.weight" not in names
    assert optimizer.param_groups[1]["weight_decay"] == 0.0 and optimizer.param_groups[0]["weight_decay"] == 0.01


def test_tiny_training_run_evaluates_at_the_listed_iterations(data_root):
    suite = load_segmentation_suite("ade20k", overrides={"data_root": str(data_root)},
                                    sets=TINY_SETS + ["iterations=3", "eval_at=[2, 3]"])
    seen = []
    evaluations = run_segmentation(suite, "lkca-s", on_eval=seen.append)
    assert [e.iteration for e in evaluations] == [2, 3] and seen == evaluations
    val_labels = sorted((data_root / "ADEChallengeData2016" / "annotations" / "validation").glob("*.png"))
    counted = sum(int((load_label(path) != IGNORE_INDEX).sum()) for path in val_labels)
    for evaluation in evaluations:
        scores = evaluation.scores
        assert scores.label.sum() == counted      # metrics count the original pixels
        assert 0 <= scores.aAcc <= 100 and not math.isnan(scores.mIoU)
        assert math.isfinite(evaluation.train_loss) and evaluation.lr > 0


def test_tiny_cnn_run_uses_sgd_and_the_fpn_head(data_root):
    suite = load_segmentation_suite("ade20k", overrides={"data_root": str(data_root)},
                                    sets=TINY_SETS + ["iterations=2", "eval_at=[2]", "head=fpn", "eval_limit=1",
                                                      "cnn.warmup_iters=0"])
    evaluations = run_segmentation(suite, "resnet-50")
    assert len(evaluations) == 1
    first = load_label(sorted((data_root / "ADEChallengeData2016" / "annotations" / "validation").glob("*.png"))[0])
    assert evaluations[0].scores.label.sum() == int(np.sum(first != IGNORE_INDEX))
    # SGD, no warm-up, poly 0.9 down to 1e-4 over 2 iterations: the second step runs at lr(1)
    assert evaluations[0].lr == pytest.approx((0.01 - 1e-4) * 0.5 ** 0.9 + 1e-4)


def test_interrupted_run_resumes_to_the_same_weights(data_root, tmp_path):
    suite = load_segmentation_suite("ade20k", overrides={"data_root": str(data_root)},
                                    sets=TINY_SETS + ["iterations=3", "eval_at=[1, 3]", "head=fpn", "eval_limit=1"])

    def segmentor():
        torch.manual_seed(0)
        return suite_segmentor(suite, "resnet50")

    train_ds, val_ds = segmentation_datasets(suite)
    straight = segmentor()
    straight_evaluations = train_segmentor(straight, train_ds, val_ds, suite.recipe, "cpu")

    class Interrupt(Exception):
        pass

    def interrupt(evaluation):
        raise Interrupt

    checkpoint = tmp_path / "run.ckpt"
    with pytest.raises(Interrupt):
        train_segmentor(segmentor(), train_ds, val_ds, suite.recipe, "cpu", on_eval=interrupt, checkpoint=checkpoint)
    resumed, seen = segmentor(), []
    evaluations = train_segmentor(resumed, train_ds, val_ds, suite.recipe, "cpu", on_eval=seen.append,
                                  checkpoint=checkpoint)
    assert [e.iteration for e in evaluations] == [1, 3] and [e.iteration for e in seen] == [3]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert evaluations[-1].scores.mIoU == straight_evaluations[-1].scores.mIoU


def test_the_general_suite_loader_and_cli_take_the_segmentation_suite():
    import json

    from typer.testing import CliRunner

    from vbench.cli import app
    from vbench.suites import load_suite

    suite = load_suite("ade20k", overrides={"seed": 3, "epochs": None}, sets=["iterations=8", "eval_at=[8]"])
    assert (suite.task, suite.recipe.seed, suite.recipe.iterations) == ("segmentation", 3, 8)
    with pytest.raises(VbenchError, match="epochs"):
        load_suite("ade20k", overrides={"epochs": 3})
    result = CliRunner().invoke(app, ["list", "suites", "--json"])
    assert result.exit_code == 0, result.output
    row = next(row for row in json.loads(result.stdout) if row["name"] == "ade20k")
    assert (row["task"], row["iterations"], row["num_classes"], row["epochs"]) == ("segmentation", 20000, 150, None)
