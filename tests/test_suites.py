"""Suite files: built-ins hold the paper's recipe, user files load and validate, overrides apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vbench.errors import VbenchError
from vbench.suites import Recipe, builtin_suites, default_data_root, load_suite, parse_set

def test_builtin_suites_are_the_papers_and_smoke():
    assert builtin_suites() == ["ade20k", "cifar10", "cifar100", "smoke", "svhn", "tiny-imagenet"]


@pytest.mark.parametrize(
    "name, kind, img_size, classes, policy",
    [
        ("cifar10", "cifar10", 32, 10, "cifar10"),
        ("cifar100", "cifar100", 32, 100, "cifar10"),
        ("svhn", "svhn", 32, 10, "svhn"),
        ("tiny-imagenet", "tiny-imagenet", 64, 200, "imagenet"),
    ],
)
def test_paper_suites_carry_the_whole_recipe(name, kind, img_size, classes, policy):
    suite = load_suite(name)
    assert (suite.kind, suite.img_size, suite.num_classes, suite.task) == (kind, img_size, classes, "classification")
    assert suite.root is None
    assert suite.recipe == Recipe(autoaugment=policy)  # every other key is the paper's value, as the defaults
    assert suite.recipe.epochs == 100 and suite.recipe.repeats == 3 and suite.recipe.erasing_max_area == 0.4
    assert len(suite.mean) == 3 and all(0.15 < s < 0.3 for s in suite.std)
    # the file states every recipe key explicitly rather than leaning on the defaults
    text = Path(suite.path).read_text()
    for key in Recipe().to_dict():
        assert f"\n{key} = " in text, key


def test_recipe_hash_is_stable_and_sensitive():
    recipe = Recipe()
    assert recipe.hash() == Recipe().hash() and len(recipe.hash()) == 16
    assert Recipe(lr=1e-3).hash() == Recipe(lr=0.001).hash()
    assert Recipe(lr=5e-4).hash() != recipe.hash()
    assert Recipe(seed=1).hash() != recipe.hash()


def test_overrides_and_sets():
    suite = load_suite(
        "cifar10",
        overrides={"epochs": 2, "batch_size": 64, "lr": None, "seed": 3, "data_root": "/data/here"},
        sets=["lr=5e-4", "recipe.autoaugment=svhn", "mix_prob = 0", "autoaugment=\"none\""],
    )
    assert suite.recipe.epochs == 2 and suite.recipe.batch_size == 64 and suite.recipe.seed == 3
    assert suite.recipe.lr == 5e-4 and suite.recipe.mix_prob == 0.0 and isinstance(suite.recipe.mix_prob, float)
    assert suite.recipe.autoaugment == "none"  # the later --set wins
    assert suite.root == "/data/here"
    assert suite.recipe.hash() != load_suite("cifar10").recipe.hash()


def test_with_overrides_validates():
    suite = load_suite("smoke")
    assert suite.with_overrides(epochs=7).recipe.epochs == 7
    with pytest.raises(VbenchError, match="epochs"):
        suite.with_overrides(epochs="seven")
    with pytest.raises(VbenchError, match="unknown recipe key 'epoch'"):
        suite.with_overrides(epoch=7)


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("epochs=ten", r"'epochs' must be an integer, got string 'ten'"),
        ("epochs=2.5", r"'epochs' must be an integer"),
        ("lr=true", r"'lr' must be a number, got boolean"),
        ("learning_rate=1", r"unknown recipe key 'learning_rate'"),
        ("hflip=1.5", r"'hflip' must lie in \[0, 1\]"),
        ("autoaugment=cifar11", r"'autoaugment' must be one of cifar10, svhn, imagenet, none"),
        ("epochs", r"is not key=value"),
    ],
)
def test_bad_set_is_one_error_naming_the_key(assignment, message):
    with pytest.raises(VbenchError, match=message) as info:
        parse_set(assignment)
    assert "\n" not in str(info.value)


def test_unknown_suite_lists_the_builtins():
    with pytest.raises(VbenchError, match="unknown suite 'cifar-10'.*cifar10, cifar100, smoke, svhn, tiny-imagenet"):
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
    assert suite.recipe.batch_size == 128  # unspecified keys keep the paper's values


@pytest.mark.parametrize(
    "edit, message",
    [
        (("epochs = 3", "epocs = 3"), r"unknown key 'epocs' in \[recipe\]"),
        (("epochs = 3", 'epochs = "3"'), r"key recipe.'epochs' must be an integer, got string '3'"),
        (("img_size = 48", "img_size = 48.0"), r"key 'img_size' must be an integer, got number 48.0"),
        (('name = "mine"', 'name = "mine"\ncolour = "red"'), r"unknown key 'colour'"),
        (("mean = [0.5, 0.5, 0.5]", "mean = [0.5, 0.5]"), r"'mean' must be a list of three numbers"),
        (('kind = "image-folder"', 'kind = "imagenet"'), r"'kind' must be one of"),
        (('root = "pictures"\n', ""), r"kind 'image-folder' needs key 'root'"),
        (("num_classes = 5\n", ""), r"missing required key 'num_classes'"),
        (("[recipe]", "[recipe"), r"not valid TOML"),
    ],
)
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
    from typer.testing import CliRunner

    from vbench.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["list", "suites", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(builtin_suites())
    tiny = rows["tiny-imagenet"]
    assert (tiny["kind"], tiny["img_size"], tiny["num_classes"], tiny["epochs"]) == ("tiny-imagenet", 64, 200, 100)
    table = runner.invoke(app, ["list", "suites"])
    assert table.exit_code == 0
    line = next(line for line in table.stdout.splitlines() if "tiny-imagenet" in line)
    assert "64x64" in line and "200" in line and "100" in line
