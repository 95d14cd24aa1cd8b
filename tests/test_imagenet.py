"""The imagenet and imagenet-100 suites: DeiT's recipe as timm runs it, timm's evaluation protocol, ImageNet-100's
class list, a streamed run on a small ImageNet-layout tree and its report, and every backbone at 224."""

from __future__ import annotations

import json

import pytest
from cli import run_cli
from PIL import Image
from timm.data import create_transform

from vbench.data import folders
from vbench.data.fixtures import write_imagenet
from vbench.data.stream import timm_eval_transform, timm_train_transform
from vbench.errors import VbenchError
from vbench.suites import load_suite

ENV = {"VBENCH_DATA_WORKERS": "0"}


def test_the_imagenet_suites_hold_deits_recipe_as_timm_runs_it():
    suite = load_suite("imagenet")
    recipe = suite.recipe
    assert (suite.kind, suite.img_size, suite.num_classes, suite.stream) == ("imagenet", 224, 1000, True)
    assert (recipe.epochs, recipe.warmup_epochs, recipe.optimizer, recipe.weight_decay, recipe.drop_path) == \
        (300, 5, "adamw", 0.05, 0.1)
    assert (recipe.mixup_alpha, recipe.cutmix_alpha, recipe.mix_prob, recipe.erasing_prob, recipe.aug_repeats,
            recipe.label_smoothing, recipe.autoaugment) == (0.8, 1.0, 1.0, 0.25, 3, 0.1, "rand-m9-mstd0.5-inc1")
    assert recipe.scaled_lr == pytest.approx(1e-3)  # 5e-4 x 1024 / 512
    assert load_suite("imagenet", overrides={"batch_size": 256}).recipe.scaled_lr == pytest.approx(2.5e-4)
    # the transforms are timm's own, built as timm's train.py builds them (erasing and normalising on the batch)
    timm_train = create_transform(224, is_training=True, auto_augment="rand-m9-mstd0.5-inc1", interpolation="bicubic",
                                  re_prob=0.25, re_mode="pixel", use_prefetcher=True)
    assert str(timm_train_transform(suite)) == str(timm_train)
    timm_eval = create_transform(224, crop_pct=0.875, interpolation="bicubic", use_prefetcher=True)
    assert str(timm_eval_transform(suite)) == str(timm_eval)
    image = Image.new("RGB", (500, 375))
    assert tuple(timm_eval_transform(suite)(image).shape) == (3, 224, 224)


def test_imagenet_100_is_cmcs_class_list_taken_out_of_an_imagenet_folder(tmp_path):
    suite = load_suite("imagenet-100")
    wnids = folders.read_class_list(suite.classes)
    assert suite.num_classes == 100 == len(set(wnids)) and wnids[:2] == ["n02869837", "n01749939"]
    assert set(wnids) <= set(folders.imagenet_wnids())
    extra = [w for w in folders.imagenet_wnids() if w not in wnids][:2]
    for split in ("train", "val"):
        for wnid in wnids + extra:
            (tmp_path / split / wnid).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / split / wnid / f"{wnid}.JPEG")
    paths, labels = folders.split_files("imagenet", tmp_path, "test", 100, suite.classes)
    assert len(paths) == 100 and labels == list(range(100))
    assert [p.parent.name for p in paths] == sorted(wnids)
    (tmp_path / "train" / wnids[5] / f"{wnids[5]}.JPEG").unlink()
    (tmp_path / "train" / wnids[5]).rmdir()
    with pytest.raises(VbenchError, match="lacks 1 of the suite's 100 classes"):
        folders.split_files("imagenet", tmp_path, "train", 100, suite.classes)


@pytest.fixture(scope="module")
def imagenet_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imagenet")
    write_imagenet(folder / "data", num_classes=3, train_per_class=4, val_per_class=2, sizes=(64, 160))
    suite = folder / "imagenet-3.toml"
    suite.write_text('include = "imagenet"\nname = "imagenet-3"\nnum_classes = 3\n')
    ran = run_cli("run", "--suite", suite, "--data-root", folder / "data", "--backbones", "vit-0.5m", "--epochs", "1",
                  "--batch-size", "6", "--db", folder / "r.db", env=ENV, cwd=folder)
    assert ran.code == 0, ran.out + ran.err
    return folder, suite, ran


def test_an_imagenet_run_streams_the_tree_and_gets_an_imagenet_section(imagenet_run):
    folder, _, ran = imagenet_run
    assert "suite imagenet-3: 12 train / 6 test images, 1 epoch (0 warm-up epochs) of 2 steps" in ran.out
    report = run_cli("report", "--format", "json", "--db", folder / "r.db")
    [section] = json.loads(report.out)["sections"]
    assert section["key"] == "imagenet:imagenet-3" and section["title"] == "imagenet-3 (ImageNet)"
    assert section["columns"] == ["Model", "Top-1", "Top-5", "n", "# Params", "GFLOPs", "img/s", "Input", "Epochs",
                                  "Recipe"]
    [row] = section["rows"]
    assert row["img_size"] == 224 and row["flops_m"] > 40 and row["images_per_s"] > 0  # FLOPs counted at 224
    assert any("differs from DeiT's (the imagenet suite's): batch_size 6 instead of 1024, epochs 1 instead of 300"
               in note for note in section["notes"])
    site = run_cli("leaderboard", "--output", folder / "site", "--db", folder / "r.db")
    assert site.code == 0, site.err
    page = (folder / "site" / "imagenet.html").read_text()
    assert "imagenet-3 (ImageNet)" in page and "GFLOPs" in page
    assert "imagenet-3" not in (folder / "site" / "index.html").read_text().split("<main")[-1]


def test_every_backbone_runs_at_224_or_says_in_one_line_why_not():
    """Every classification backbone built at 224 and run forward on the meta device (shapes, no arithmetic: the
    plan of `vbench run --suite imagenet` builds and measures them the same way, on real tensors), or refused in
    one line naming the sizes it runs at."""
    import torch

    from vbench.models import registry

    built_in = [spec for spec in registry.list_backbones(task="classification")  # not a test's plugin left loaded
                if spec.variant("classification").module.startswith("vbench.backbones.")]
    refused = {}
    for spec in built_in:
        try:
            with torch.device("meta"):
                logits = spec.build(224, 10).eval()(torch.empty(2, 3, 224, 224))
        except VbenchError as exc:
            refused[spec.name] = str(exc)
            continue
        assert tuple(logits.shape) == (2, 10), spec.name
    assert refused and all(message == f"{name} cannot run on 224x224 images; use an image size " + message.split(
        "; use an image size ")[1] and "\n" not in message for name, message in refused.items())
    assert len(refused) < len(built_in) / 4


def test_the_readme_imagenet_commands(tmp_path):
    """The README's ImageNet commands on a 1000-class tree (one tiny JPEG a class and split; the first 12 images)
    with a few images of each test set beside it."""
    import readme

    from vbench.robustness.fixtures import write_imagenet_test_sets

    write_imagenet(tmp_path / "data" / "imagenet", num_classes=1000, train_per_class=1, val_per_class=1, sizes=(16, 24))
    write_imagenet_test_sets(tmp_path / "data", ["n01440764", "n01443537", "n01558993"], per_class=1, size=16,
                             corruptions=("fog",))
    run, robustness, report = (
        [word.replace("/data/imagenet", str(tmp_path / "data" / "imagenet")) for word in command]
        for command in readme.commands("### ImageNet"))
    assert run[:3] == ["run", "--suite", "imagenet"] and robustness[:3] == ["robustness", "--suite", "imagenet"]
    trained = run_cli(*run, "--limit", "12", "--epochs", "1", "--batch-size", "6", env=ENV, cwd=tmp_path)
    assert trained.code == 0, trained.out + trained.err
    evaluated = run_cli(*robustness, "--limit", "12", "--corruptions", "fog", env=ENV, cwd=tmp_path)
    assert evaluated.code == 0 and "1 runs: 9 evaluated now" in evaluated.out, evaluated.out + evaluated.err
    shown = run_cli(*report, cwd=tmp_path)
    assert shown.code == 0 and "imagenet: ImageNet test sets" in shown.out and "ImageNet-C mCA" in shown.out
