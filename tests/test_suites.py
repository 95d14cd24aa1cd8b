"""Suites: one TOML reader with include, the recipe picked by task, one coercer, the warm-up rule, and
every recipe field reaching what a run builds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cli import run_cli

from vbench.errors import VbenchError
from vbench.paths import default_data_root
from vbench.recipes import ClassificationRecipe, SegmentationRecipe
from vbench.suites import builtin_suites, load_suite


def test_builtin_suites():
    assert builtin_suites() == ["ade20k", "cifar10", "cifar100", "digits", "imagenet", "imagenet-100", "smoke", "svhn",
                                "tiny-imagenet"]


@pytest.mark.parametrize("name, kind, img_size, classes, policy", [
    ("cifar10", "cifar10", 32, 10, "cifar10"),
    ("cifar100", "cifar100", 32, 100, "cifar10"),
    ("svhn", "svhn", 32, 10, "svhn"),
    ("tiny-imagenet", "tiny-imagenet", 64, 200, "imagenet"),
])
def test_paper_suites_are_a_few_lines_over_the_shared_paper_recipe(name, kind, img_size, classes, policy):
    suite = load_suite(name)
    assert (suite.kind, suite.img_size, suite.num_classes, suite.task) == (kind, img_size, classes, "classification")
    assert suite.root is None
    assert suite.recipe == ClassificationRecipe(autoaugment=policy)  # the paper's recipe, as recipe.md states it
    assert 'include = "_paper.toml"' in Path(suite.path).read_text()
    assert len(Path(suite.path).read_text().splitlines()) < 20


def test_include_merges_tables_key_by_key_and_finds_builtins(tmp_path):
    (tmp_path / "base.toml").write_text('include = "cifar10"\n[recipe]\nlr = 5e-4\nepochs = 30\n')
    (tmp_path / "mine.toml").write_text('include = "base.toml"\nname = "mine"\n[recipe]\nbatch_size = 64\n')
    suite = load_suite(str(tmp_path / "mine.toml"))
    assert (suite.name, suite.kind, suite.recipe.lr, suite.recipe.batch_size) == ("mine", "cifar10", 5e-4, 64)
    assert suite.recipe.autoaugment == "cifar10" and suite.recipe.epochs == 30
    assert suite.recipe.warmup_epochs == 3  # follows the epochs: 10% of 30


def test_include_cycles_and_missing_includes_are_one_error(tmp_path):
    (tmp_path / "a.toml").write_text('include = "b.toml"\n')
    (tmp_path / "b.toml").write_text('include = "a.toml"\n')
    with pytest.raises(VbenchError, match="include cycle"):
        load_suite(str(tmp_path / "a.toml"))
    (tmp_path / "c.toml").write_text('include = "nowhere.toml"\n')
    with pytest.raises(VbenchError, match="include 'nowhere.toml' is neither a file beside it nor a built-in suite"):
        load_suite(str(tmp_path / "c.toml"))


# --- warm-up follows the epochs ---------------------------------------------------------------------
@pytest.mark.parametrize("epochs, warmup", [(100, 10), (30, 3), (10, 1), (9, 0), (2, 0), (1, 0)])
def test_warmup_is_the_papers_share_of_the_epochs(epochs, warmup):
    assert load_suite("cifar10", overrides={"epochs": epochs}).recipe.warmup_epochs == warmup
    assert load_suite("cifar10", sets=[f"epochs={epochs}"]).recipe.warmup_epochs == warmup


def test_an_explicit_warmup_is_kept_where_it_is_set_with_or_after_the_epochs(tmp_path):
    assert load_suite("cifar10", sets=["epochs=20", "warmup_epochs=5"]).recipe.warmup_epochs == 5
    (tmp_path / "s.toml").write_text('include = "cifar10"\n[recipe]\nepochs = 20\nwarmup_epochs = 4\n')
    assert load_suite(str(tmp_path / "s.toml")).recipe.warmup_epochs == 4
    # the command line changes the epochs again: the file's warm-up no longer fits, so it follows
    assert load_suite(str(tmp_path / "s.toml"), overrides={"epochs": 50}).recipe.warmup_epochs == 5


def test_a_warmup_not_shorter_than_the_training_names_both_keys(tmp_path):
    with pytest.raises(VbenchError, match=r"recipe.warmup_epochs \(10\) must be shorter than recipe.epochs \(10\)"):
        load_suite("cifar10", sets=["epochs=10", "warmup_epochs=10"])
    (tmp_path / "s.toml").write_text('include = "cifar10"\n[recipe]\nepochs = 5\nwarmup_epochs = 5\n')
    with pytest.raises(VbenchError, match=f"{tmp_path / 's.toml'}: recipe.warmup_epochs"):
        load_suite(str(tmp_path / "s.toml"))


# --- overrides and the one coercer -----------------------------------------------------------------
def test_overrides_and_sets():
    suite = load_suite("cifar10", overrides={"epochs": 2, "batch_size": 64, "lr": None, "seed": 3, "data_root": "/data/here"},
                       sets=["lr=5e-4", "recipe.autoaugment=svhn", "mix_prob = 0", "autoaugment=\"none\""])
    assert suite.recipe.epochs == 2 and suite.recipe.batch_size == 64 and suite.recipe.seed == 3
    assert suite.recipe.lr == 5e-4 and suite.recipe.mix_prob == 0.0 and isinstance(suite.recipe.mix_prob, float)
    assert suite.recipe.autoaugment == "none"  # the later --set wins
    assert suite.root == "/data/here"
    assert suite.recipe.key_hash() != load_suite("cifar10").recipe.key_hash()


def test_recipe_hash_leaves_out_the_seed_only():
    recipe = ClassificationRecipe()
    assert recipe.key_hash() == dataclasses.replace(recipe, seed=5).key_hash() and len(recipe.key_hash()) == 16
    assert ClassificationRecipe(lr=1e-3).hash() == ClassificationRecipe(lr=0.001).hash()
    assert recipe.key_hash() != dataclasses.replace(recipe, lr=5e-4).key_hash()


@pytest.mark.parametrize("assignment, message", [
    ("epochs=ten", r"--set: key 'recipe.epochs' must be an integer, got string 'ten'"),
    ("epochs=2.5", r"key 'recipe.epochs' must be an integer"),
    ("lr=true", r"key 'recipe.lr' must be a number, got boolean"),
    ("learning_rate=1", r"unknown classification recipe key 'learning_rate'"),
    ("hflip=1.5", r"key 'recipe.hflip' must lie in \[0, 1\]"),
    ("autoaugment=cifar11", r"key 'recipe.autoaugment' must be one of cifar10, svhn, imagenet, none"),
    ("epochs", r"is not key=value"),
])
def test_bad_set_is_one_error_naming_the_key(assignment, message):
    with pytest.raises(VbenchError, match=message) as info:
        load_suite("cifar10", sets=[assignment])
    assert "\n" not in str(info.value)


def test_segmentation_sets_reach_nested_optimiser_tables():
    suite = load_suite("ade20k", sets=["transformer.lr=1e-4", "warmup_iters=0", "img_size=64", "head=fpn"])
    assert isinstance(suite.recipe, SegmentationRecipe) and suite.img_size == 64 and suite.recipe.head == "fpn"
    assert suite.recipe.optimizer["transformer"].lr == 1e-4 and suite.recipe.optimizer["cnn"].lr == 0.01
    assert {kind: o.warmup_iters for kind, o in suite.recipe.optimizer.items()} == {"transformer": 0, "cnn": 0}
    with pytest.raises(VbenchError, match=r"key 'recipe.optimizer.transformer.betas' must be a list of 2"):
        load_suite("ade20k", sets=["transformer.betas=[0.9]"])
    with pytest.raises(VbenchError, match="img_size' must be a multiple of 32"):
        load_suite("ade20k", sets=["img_size=40"])
    with pytest.raises(VbenchError, match=r"recipe.eval_at must list iterations in 1..2"):
        load_suite("ade20k", sets=["iterations=2"])


def test_unknown_suite_lists_the_builtins():
    with pytest.raises(VbenchError, match="unknown suite 'cifar-10'.*cifar10, cifar100, digits, imagenet, imagenet-100, smoke, svhn, tiny-imagenet"):
        load_suite("cifar-10")
    with pytest.raises(VbenchError, match="does not exist"):
        load_suite("/no/such/suite.toml")


GOOD_FILE = """
name = "mine"
kind = "image-folder"
root = "pictures"
img_size = 48
num_classes = 5
mean = [0.5, 0.5, 0.5]
std = [0.2, 0.2, 0.2]

[recipe]
epochs = 3
lr = 1
"""


def test_user_suite_file_relative_root_and_int_as_float(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD_FILE)
    suite = load_suite(str(path))
    assert suite.name == "mine" and suite.kind == "image-folder" and suite.img_size == 48
    assert suite.root == str((tmp_path / "pictures").resolve())  # relative to the suite file
    assert suite.recipe.epochs == 3 and suite.recipe.lr == 1.0 and isinstance(suite.recipe.lr, float)
    assert suite.recipe.batch_size == 128 and suite.recipe.warmup_epochs == 0


@pytest.mark.parametrize("edit, message", [
    (("epochs = 3", "epocs = 3"), r"unknown key 'recipe.epocs'"),
    (("epochs = 3", 'epochs = "3"'), r"key 'recipe.epochs' must be an integer, got string '3'"),
    (("img_size = 48", "img_size = 48.0"), r"key 'img_size' must be an integer, got number 48.0"),
    (('name = "mine"', 'name = "mine"\ncolour = "red"'), r"unknown key 'colour'"),
    (("mean = [0.5, 0.5, 0.5]", "mean = [0.5, 0.5]"), r"'mean' must be a list of 3"),
    (('kind = "image-folder"', 'kind = "imagenet-22k"'), r"'kind' must be one of"),
    (('root = "pictures"\n', ""), r"kind 'image-folder' needs key 'root'"),
    (("num_classes = 5\n", ""), r"missing required key 'num_classes'"),
    (("[recipe]", "[recipe"), r"not valid TOML"),
    (('name = "mine"', 'name = "mine"\ntask = "detection"'), r"unknown task 'detection'"),
])
def test_bad_suite_file_is_one_error_naming_key_and_file(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD_FILE.replace(*edit))
    with pytest.raises(VbenchError, match=message) as info:
        load_suite(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("VBENCH_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("VBENCH_DATA")
    assert default_data_root() == Path.home() / ".cache" / "vbench" / "data"


def test_cli_list_suites_json_and_table():
    result = run_cli("list", "suites", "--json")
    assert result.code == 0, result.err
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert set(rows) == set(builtin_suites())
    tiny = rows["tiny-imagenet"]
    assert (tiny["kind"], tiny["img_size"], tiny["num_classes"], tiny["steps"], tiny["step_unit"]) == \
        ("tiny-imagenet", 64, 200, 100, "epoch")
    assert (rows["ade20k"]["task"], rows["ade20k"]["steps"], rows["ade20k"]["step_unit"]) == \
        ("segmentation", 20000, "iteration")
    table = run_cli("list", "suites")
    assert table.code == 0 and "tiny-imagenet" in table.out and "20000 iterations" in table.out


# --- every recipe field reaches what a run builds --------------------------------------------------
class Tracked:
    """A recipe that records which of its fields are read (properties and methods read through it too)."""

    def __init__(self, recipe):
        object.__setattr__(self, "_recipe", recipe)
        object.__setattr__(self, "read", set())
        object.__setattr__(self, "children", {})

    def __getattr__(self, name):
        recipe = object.__getattribute__(self, "_recipe")
        attribute = getattr(type(recipe), name, None)
        if isinstance(attribute, property):
            return attribute.fget(self)
        if callable(attribute):
            return attribute.__get__(self)
        if name in {f.name for f in dataclasses.fields(recipe)}:
            self.read.add(name)
            value = getattr(recipe, name)
            if isinstance(value, dict):
                return self.children.setdefault(name, {k: Tracked(v) for k, v in value.items()})
            return value
        return getattr(recipe, name)


def _unread(recipe_class, tracked: Tracked) -> set[str]:
    fields = dataclasses.fields(recipe_class)
    return {f.name for f in fields if "bookkeeping" not in f.metadata} - tracked.read


def _one_step_and_evaluation(task, spec):
    import torch

    task.prepare()
    torch.manual_seed(0)
    model = task.build_model(spec)
    optimizer, schedule = task.make_optimizer(model)
    stage = task.stages()[0]
    batch = next(iter(task.train_batches(0, stage)))
    schedule.step_update(stage.first_iteration + stage.iterations)  # past the warm-up: the decay's keys
    schedule.step_update(stage.first_iteration)
    loss, _, _ = task.train_step(model, batch)
    loss.backward()
    optimizer.step()
    return task.evaluate(model).metrics


def test_every_classification_recipe_field_reaches_a_built_object(tmp_path):
    import torch

    from vbench.data.fixtures import write_fixture, write_imagenet
    from vbench.models import registry
    from vbench.tasks.classification import ClassificationTask

    write_fixture("cifar10", tmp_path, per_batch=4, num_test=8)
    suite = load_suite("cifar10", overrides={"batch_size": 4, "data_root": str(tmp_path)})
    tracked = Tracked(suite.recipe)
    task = ClassificationTask(dataclasses.replace(suite, recipe=tracked), torch.device("cpu"))
    metrics = _one_step_and_evaluation(task, registry.get_backbone("vit-0.5m"))
    assert set(metrics) == {"top1", "top5"}
    # the keys of timm's transforms reach what a streamed ImageNet run builds (a small tree at 32 px)
    write_imagenet(tmp_path / "imagenet", num_classes=2, train_per_class=2, val_per_class=1, sizes=(32, 48))
    streamed = load_suite("imagenet", overrides={"batch_size": 2, "data_root": str(tmp_path / "imagenet")},
                          sets=["img_size=32"])
    streamed = dataclasses.replace(streamed, num_classes=2)
    tracked_timm = Tracked(streamed.recipe)
    task = ClassificationTask(dataclasses.replace(streamed, recipe=tracked_timm), torch.device("cpu"))
    assert set(_one_step_and_evaluation(task, registry.get_backbone("vit-0.5m"))) >= {"top1", "top5"}
    assert _unread(ClassificationRecipe, tracked) & _unread(ClassificationRecipe, tracked_timm) == set()


def test_every_segmentation_recipe_field_reaches_a_built_object(tmp_path):
    import torch

    from vbench.models import registry
    from vbench.segmentation.ade20k import write_ade20k_fixture
    from vbench.tasks.segmentation import SegmentationTask

    write_ade20k_fixture(tmp_path, n_train=2, n_val=1, size=(40, 56))
    suite = load_suite("ade20k", overrides={"data_root": str(tmp_path)},
                       sets=["img_size=32", "scale=[64, 32]", "batch_size=2", "num_workers=0", "iterations=1",
                             "eval_at=[1]", "warmup_iters=1"])
    tracked = Tracked(suite.recipe)
    task = SegmentationTask(dataclasses.replace(suite, recipe=tracked), torch.device("cpu"))
    metrics = _one_step_and_evaluation(task, registry.get_backbone("resnet50"))
    assert {"aAcc", "mIoU", "mAcc"} <= set(metrics)
    assert _unread(SegmentationRecipe, tracked) == set()
    optimizer_fields = {f.name for f in dataclasses.fields(type(suite.recipe.optimizer["cnn"]))
                        if "bookkeeping" not in f.metadata}
    # the SGD table the ResNet trains with: every key but AdamW's betas reaches the optimiser or schedule
    assert optimizer_fields - task.recipe.optimizer_for("cnn").read == {"betas"}
    adamw = Tracked(suite.recipe.optimizer["transformer"])
    from vbench.tasks.segmentation import build_optimizer

    build_optimizer(torch.nn.Linear(2, 2), adamw)
    assert "betas" in adamw.read
