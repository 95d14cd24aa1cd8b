"""Segmentation (Tables 6-7) through the same Runner: the segmentors, the mmseg recipe, tiny runs on the ADE20K
fixture with resume, and the Tables 6-7 report."""

from __future__ import annotations

import math

import pytest
import readme
import torch
from cli import run_cli
from plugins import SEG_TINY

from vbench.errors import VbenchError
from vbench.models import registry
from vbench.models.measure import count_flops, count_params
from vbench.segmentation.ade20k import IGNORE_INDEX, load_label, write_ade20k_fixture
from vbench.segmentation.heads import Segmentor
from vbench.store import open_store
from vbench.suites import load_suite
from vbench.tasks.segmentation import SegmentationTask, build_optimizer

TINY = SEG_TINY


def sets(*extra: str) -> list[str]:
    return [arg for assignment in (*TINY, *extra) for arg in ("--set", assignment)]


def segmentor(name: str, head: str = "upernet", crop: int = 512, **changes) -> Segmentor:
    suite = load_suite("ade20k", sets=[f"img_size={crop}", f"head={head}", *(f"{k}={v}" for k, v in changes.items())])
    return SegmentationTask(suite, torch.device("cpu")).build_model(registry.get_backbone(name))


# --- the segmentors -----------------------------------------------------------------------------------
def test_vit_b_upernet_has_the_published_size():
    with torch.device("meta"):  # no weights are filled: counting only
        model = segmentor("vit-b")
    assert count_params(model) == pytest.approx(0.144e9, rel=0.02)
    assert count_params(model.auxiliary_head) == 768 * 256 * 9 + 2 * 256 + 256 * 150 + 150


def test_lkca_replaces_msa_and_keeps_the_grid_kernel():
    with torch.device("meta"):
        vit, lkca = segmentor("vit-s", "fpn"), segmentor("lkca-s", "fpn")
    kernels = [m.kernel for m in lkca.backbone.modules() if hasattr(m, "kernel")]
    assert len(kernels) == 12 and kernels[0].shape == (63, 63)
    dim = 384
    msa_layer = 4 * dim * dim + 4 * dim  # qkv with bias + proj
    lkca_layer = 2 * dim * dim + dim + 63 * 63  # v without bias + proj + kernel
    class_token = 2 * dim  # the token and its position embedding
    assert count_params(vit) - count_params(lkca) == 12 * (msa_layer - lkca_layer) + class_token


def test_heads_keep_mmseg_module_names_and_the_aux_weight_reaches_the_segmentor():
    with torch.device("meta"):
        upernet, fpn = segmentor("resnet50", crop=64, aux_weight=0.1), segmentor("resnet50", "fpn", crop=64)
    upernet_keys, fpn_keys = set(upernet.state_dict()), set(fpn.state_dict())
    for key in ("decode_head.psp_modules.3.1.conv.weight", "decode_head.bottleneck.bn.weight",
                "decode_head.lateral_convs.2.conv.weight", "decode_head.fpn_convs.0.conv.weight",
                "decode_head.fpn_bottleneck.conv.weight", "decode_head.conv_seg.weight",
                "auxiliary_head.convs.0.conv.weight", "auxiliary_head.conv_seg.bias"):
        assert key in upernet_keys, key
    for key in ("neck.lateral_convs.3.conv.bias", "neck.fpn_convs.0.conv.weight",
                "decode_head.scale_heads.3.4.conv.weight", "decode_head.conv_seg.weight"):
        assert key in fpn_keys, key
    assert upernet.decode_head.psp_modules[3][0].output_size == 6
    assert upernet.auxiliary_head.in_index == 2 and upernet.aux_weight == 0.1  # --set aux_weight reaches it
    assert upernet.decode_head.conv_seg.in_channels == 512 and fpn.decode_head.conv_seg.in_channels == 128
    assert upernet.recipe_kind == "cnn" and upernet.size_divisor == 32


def test_segmentor_flops_have_no_uncounted_ops():
    flops = count_flops(segmentor("vit-s", crop=64), 64)
    assert flops.complete, flops.uncounted_ops
    assert flops.by_operator["upsample_bilinear2d"] > 0 and flops.by_operator["adaptive_avg_pool2d"] > 0


def test_a_segmentor_runs_at_any_input_size():
    model = segmentor("lkca-s", crop=32).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 40, 56))  # not a multiple of the patch, another grid
    assert logits.shape == (1, 150, 40, 56)


def test_head_checks():
    backbone = registry.create_backbone("resnet50", img_size=32, task="segmentation")
    with pytest.raises(VbenchError, match="four-level feature pyramid"):
        Segmentor(backbone, (8, 8), "upernet", 150)
    with pytest.raises(VbenchError, match="unknown segmentation head"):
        Segmentor(backbone, (256, 512, 1024, 2048), "deeplab", 150)


def test_optimizer_exempts_the_configured_keys_from_weight_decay():
    model = segmentor("vit-s", crop=64)
    optimizer = build_optimizer(model, load_suite("ade20k").recipe.optimizer_for("transformer"))
    assert isinstance(optimizer, torch.optim.AdamW)
    exempt = {id(p) for p in optimizer.param_groups[1]["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in exempt}
    assert "backbone.pos_embed" in names and "backbone.cls_token" in names
    assert "backbone.blocks.0.norm1.weight" in names and "decode_head.bottleneck.bn.weight" not in names
    assert optimizer.param_groups[1]["weight_decay"] == 0.0 and optimizer.param_groups[0]["weight_decay"] == 0.01


def test_builtin_suite_states_the_toolbox_recipe():
    suite = load_suite("ade20k")
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
    assert "configs/" in adamw.source
    with pytest.raises(VbenchError, match="unknown key 'recipe.epochs'"):
        load_suite("ade20k", overrides={"epochs": 3})


def test_sets_change_the_recipe_and_its_hash():
    base = load_suite("ade20k")
    changed = load_suite("ade20k", sets=["iterations=4", "eval_at=[2, 4]", "cnn.lr=0.02", "head=fpn", "aux_weight=0.1"])
    assert changed.recipe.key_hash() != base.recipe.key_hash()
    assert changed.recipe.optimizer_for("cnn").lr == 0.02 and changed.recipe.optimizer_for("transformer").lr == 6e-5
    assert changed.recipe.evaluation_points == (2, 4) and changed.recipe.aux_weight == 0.1
    assert load_suite("ade20k", sets=["iterations=5", "eval_at=[2]"]).recipe.evaluation_points == (2, 5)


# --- tiny runs on the fixture, through `vbench run` ------------------------------------------------
@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    """The fixture tree and a store holding lkca-s and vit-s under UPerNet (2 iterations, evaluated at 1 and
    2) and FPN (1 iteration), trained by the README's command ("## Segmentation (ADE20K, Tables 6-7)"); a later
    `--set head=...` overrides the README's."""
    root = tmp_path_factory.mktemp("seg-cli")
    write_ade20k_fixture(root / "data", n_train=4, n_val=2, size=(40, 56))
    db = root / "runs.db"
    readme_run = readme.commands("## Segmentation (ADE20K, Tables 6-7)")[0]
    assert readme_run == ["run", "--suite", "ade20k", "--backbones", "lkca-s,vit-s", "--set", "head=upernet"]
    common = [*readme_run, "--data-root", root / "data", "--db", db, "--device", "cpu"]
    upernet = run_cli(*common, *sets("head=upernet", "iterations=2", "eval_at=[1, 2]"))
    assert upernet.code == 0, upernet.out + upernet.err
    fpn = run_cli(*common, *sets("head=fpn", "iterations=1", "eval_at=[1]"))
    assert fpn.code == 0, fpn.out + fpn.err
    return {"root": root, "db": db, "common": common, "outputs": (upernet.out, fpn.out)}


def test_runs_leave_done_rows_with_metrics_per_evaluated_iteration(ade):
    store = open_store(str(ade["db"]), write=False)
    runs = store.list_runs(task="segmentation")
    assert [(r.backbone, r.recipe["head"], r.status) for r in runs] == [
        ("lkca-s", "upernet", "done"), ("vit-s", "upernet", "done"), ("lkca-s", "fpn", "done"), ("vit-s", "fpn", "done")]
    val_labels = sorted((ade["root"] / "data" / "ADEChallengeData2016" / "annotations" / "validation").glob("*.png"))
    for run in runs:
        steps = store.steps(run.id)
        expected = [1, 2] if run.recipe["head"] == "upernet" else [1]
        assert [s.step for s in steps] == expected and run.steps_done == expected[-1] and run.step_unit == "iteration"
        for step in steps:
            assert {"aAcc", "mIoU", "mAcc", "top10_mIoU"} <= set(step.metrics)
            assert 0 <= step.metrics["aAcc"] <= 100 and step.metrics["train_loss"] > 0 and step.metrics["lr"] > 0
            assert math.isfinite(step.metrics["train_loss"])
        assert run.metrics == {k: steps[-1].metrics[k] for k in ("mIoU", "aAcc", "mAcc")}
        # params of the whole segmentor: UPerNet's auxiliary FCN head counts, FPN has none
        assert run.params > 20e6 and run.flops > 0
        aux = run.params - run.counts["params_without_aux"]
        assert (aux > 0) == (run.recipe["head"] == "upernet")
    assert len(val_labels) == 2


def test_finished_runs_are_skipped(ade):
    again = run_cli(*ade["common"], *sets("head=fpn", "iterations=1", "eval_at=[1]"))
    assert again.code == 0 and again.out.count("already done") == 2


def test_report_renders_tables_6_7(ade):
    readme_report = readme.commands("## Segmentation (ADE20K, Tables 6-7)")[1]
    assert readme_report == ["report", "--suite", "ade20k", "--compare", "paper"]
    result = run_cli(*readme_report, "--db", ade["db"])
    assert result.code == 0, result.err
    assert "| Backbone " in result.out and "UPerNet" in result.out and "FPN" in result.out and "LKCA-S" in result.out
    assert "-seg" not in result.out  # no -seg names in user-facing output
    csv = run_cli("report", "--db", ade["db"], "--format", "csv")
    import io

    import pandas as pd

    frame = pd.read_csv(io.StringIO(csv.out))
    assert set(frame["task"]) == {"segmentation"} and pd.api.types.is_float_dtype(frame["params_m"])


def test_plot_writes_the_miou_chart(ade, tmp_path):
    result = run_cli("plot", "--db", ade["db"], "--output-dir", tmp_path)
    assert result.code == 0, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ade20k_miou_vs_iterations.png",
                                                          "ade20k_miou_vs_iterations.svg"]


@pytest.mark.parametrize("backbones, data, message", [
    ("vit-s", False, "ADE20K not found"),
    ("cait-t", True, "backbone 'cait-t' has no segmentation model; its tasks: classification"),
    ("nope", True, "unknown backbone 'nope'"),
])
def test_bad_input_is_exit_2_and_leaves_the_store_unchanged(ade, tmp_path, backbones, data, message):
    before = open_store(str(ade["db"]), write=False).list_runs()
    root = ade["root"] / "data" if data else tmp_path / "empty"
    result = run_cli("run", "--suite", "ade20k", "--backbones", backbones, "--data-root", root, "--db", ade["db"],
                     *sets("iterations=1", "eval_at=[1]"))
    assert result.code == 2 and message in result.error_line
    assert [r.id for r in open_store(str(ade["db"]), write=False).list_runs()] == [r.id for r in before]


def test_an_interrupted_segmentation_run_resumes_to_the_same_weights(tmp_path):
    write_ade20k_fixture(tmp_path / "data", n_train=4, n_val=2, size=(40, 56))

    def command(db) -> list:
        return ["run", "--suite", "ade20k", "--backbones", "resnet50", "--data-root", tmp_path / "data", "--db", db,
                *sets("head=fpn", "iterations=3", "eval_at=[1, 2]")]

    whole, broken = tmp_path / "whole" / "runs.db", tmp_path / "broken" / "runs.db"
    assert run_cli(*command(whole)).code == 0
    from unittest import mock

    from vbench.tasks import segmentation

    calls = {"n": 0}
    original = segmentation.SegmentationTask.train_step

    def interrupting(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 3:  # in the third iteration, after the evaluations at 1 and 2
            raise KeyboardInterrupt
        return original(self, model, batch)

    with mock.patch.object(segmentation.SegmentationTask, "train_step", interrupting):
        assert run_cli(*command(broken)).code == 130
    resumed = run_cli(*command(broken))
    assert resumed.code == 0 and "resuming run 1 from its checkpoint after iteration 2" in resumed.out
    states = [torch.load(sorted((db.parent / "checkpoints").glob("*/run-1.pt"))[0], weights_only=False) for db in (whole, broken)]
    for key, value in states[0]["model"].items():
        assert torch.equal(value, states[1]["model"][key]), key
    metrics = [open_store(str(db), write=False).list_runs()[0].metrics for db in (whole, broken)]
    assert metrics[0] == metrics[1]


def test_evaluation_counts_the_original_pixels(tmp_path):
    write_ade20k_fixture(tmp_path / "data", n_train=2, n_val=2, size=(40, 56))
    suite = load_suite("ade20k", overrides={"data_root": str(tmp_path / "data")},
                       sets=["img_size=32", "scale=[64, 32]", "num_workers=0"])
    task = SegmentationTask(suite, torch.device("cpu"))
    task.prepare()
    from vbench.tasks.segmentation import evaluate_segmentor

    scores = evaluate_segmentor(task.build_model(registry.get_backbone("resnet50")), task.val_set, "cpu", 150).compute()
    labels = sorted((tmp_path / "data" / "ADEChallengeData2016" / "annotations" / "validation").glob("*.png"))
    assert scores.label.sum() == sum(int((load_label(path) != IGNORE_INDEX).sum()) for path in labels)
