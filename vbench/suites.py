"""Suites: a dataset, its normalisation and the whole training recipe, read from one TOML file.

A suite file has top-level keys describing the data and a ``[recipe]`` table with every
hyper-parameter of the paper's recipe (see ``Recipe``). Built-in suites live in the ``suites``
package (``suites/<name>.toml``); ``load_suite`` also takes a path to a user's own file. Loading
validates every key and type and reports the first problem as one ``VbenchError`` that names the key
and the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from vbench.errors import UnknownNameError, VbenchError

TASKS = ("classification", "segmentation")
KINDS = ("cifar10", "cifar100", "svhn", "tiny-imagenet", "image-folder", "smoke", "ade20k")
AUTOAUGMENT_POLICIES = ("cifar10", "svhn", "imagenet", "none")
AUGMENT_IMPLS = ("authors", "torchvision")  # whose AutoAugment ops and Random Erasing (vbench.authors_augment)
OPTIMIZERS = ("adamw", "adam", "sgd")


class HashedRecipe:
    """Mixin of the recipe dataclasses: plain-data ``to_dict()`` and a stable ``hash()`` of it."""

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def hash(self) -> str:
        """Stable sha256 (first 16 hex digits) of the canonical JSON of ``to_dict()``."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Recipe(HashedRecipe):
    """Every hyper-parameter of the paper's recipe (``[recipe]`` table of a suite file)."""

    epochs: int = 100
    warmup_epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    drop_path: float = 0.1
    repeats: int = 3  # repeated-augmentation passes per epoch (the sampler's length factor)
    crop_padding: int = 4
    hflip: float = 0.5
    autoaugment: str = "cifar10"  # cifar10 | svhn | imagenet | none
    # authors: AutoAugment and Random Erasing as the paper's released trainer applies them (PIL ops,
    # grey fill, uniform aspect, 100 attempts, raw-mean fill); torchvision: torchvision's definitions
    augment_impl: str = "authors"
    erasing_prob: float = 0.25
    erasing_max_area: float = 0.4
    erasing_min_area: float = 0.02
    erasing_aspect: float = 0.3  # aspect ratio drawn from (aspect, 1/aspect): uniformly (authors), log-uniformly (torchvision)
    mix_prob: float = 0.5
    switch_prob: float = 0.5  # chance that a mixing step is CutMix rather than Mixup
    mixup_alpha: float = 1.0
    cutmix_alpha: float = 1.0
    eval_batch_size: int = 256
    seed: int = 0



RECIPE_TYPES: dict[str, type] = typing.get_type_hints(Recipe)  # key -> int | float | str


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    task: str
    kind: str
    root: str | None
    img_size: int
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    recipe: Recipe
    description: str = ""

    def with_overrides(self, **recipe_overrides) -> "Suite":
        """This suite with some recipe keys replaced (validated like the file's own keys)."""
        values = self.recipe.to_dict()
        for key, value in recipe_overrides.items():
            values[key] = _check_recipe_value(key, value, source="override")
        return dataclasses.replace(self, recipe=_checked_recipe(values, source="override"))


# Top-level keys of a suite file: key -> (type, required)
_SUITE_KEYS: dict[str, tuple[type, bool]] = {
    "name": (str, False),
    "description": (str, False),
    "task": (str, False),
    "kind": (str, True),
    "root": (str, False),
    "img_size": (int, True),
    "num_classes": (int, True),
    "mean": (list, True),
    "std": (list, True),
    "recipe": (dict, False),
}

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}


def default_data_root() -> Path:
    """``$VBENCH_DATA`` if set, else ``~/.cache/vbench/data``."""
    env = os.environ.get("VBENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vbench" / "data"


def builtin_suites() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in resources.files("suites").iterdir() if p.name.endswith(".toml"))


def load_suite(name_or_path: str, overrides: Mapping[str, Any] | None = None, sets: Iterable[str] = ()) -> Suite:
    """Read a built-in suite by name or a user's suite file by path, then apply overrides.

    ``overrides`` holds recipe keys (``epochs``, ``batch_size``, ``lr``, ``seed``, ...) and
    ``data_root`` (replaces the suite's root); ``None`` values are ignored so a CLI can pass its
    unset options straight through. ``sets`` are ``key=value`` strings for any recipe key, the
    value parsed as a TOML scalar (a bare word that is not TOML is taken as a string).
    """
    path = _resolve_suite_path(name_or_path)
    if _is_segmentation_file(path):   # task = "segmentation": its own recipe (iterations, heads, optimisers)
        from vbench.segmentation.recipe import load_segmentation_suite

        return load_segmentation_suite(str(path), overrides, sets)
    suite = _parse_suite_file(path)
    recipe_overrides: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "data_root":
            suite = dataclasses.replace(suite, root=str(Path(value).expanduser()))
        elif key in RECIPE_TYPES:
            recipe_overrides[key] = value
        else:
            raise VbenchError(f"unknown override {key!r}; known: data_root, {', '.join(RECIPE_TYPES)}")
    for assignment in sets:
        key, value = parse_set(assignment)
        recipe_overrides[key] = value
    return suite.with_overrides(**recipe_overrides) if recipe_overrides else suite


def _is_segmentation_file(path: Path) -> bool:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")).get("task") == "segmentation"
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False   # _parse_suite_file reports the problem


def parse_set(assignment: str) -> tuple[str, Any]:
    """``"lr=5e-4"`` -> ``("lr", 0.0005)``; the key may carry a ``recipe.`` prefix."""
    key, sep, text = assignment.partition("=")
    key = key.strip().removeprefix("recipe.")
    if not sep or not key:
        raise VbenchError(f"--set {assignment!r} is not key=value (for example --set lr=5e-4)")
    if key not in RECIPE_TYPES:
        raise VbenchError(f"--set: unknown recipe key {key!r}; known keys: {', '.join(RECIPE_TYPES)}")
    text = text.strip()
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word such as `autoaugment=svhn`
    return key, _check_recipe_value(key, value, source="--set")


def _resolve_suite_path(name_or_path: str) -> Path:
    if name_or_path in builtin_suites():
        return Path(str(resources.files("suites").joinpath(f"{name_or_path}.toml")))
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.suffix == ".toml" or os.sep in name_or_path:
        raise VbenchError(f"suite file {str(path)!r} does not exist")
    raise UnknownNameError(
        f"unknown suite {name_or_path!r}; built-in suites: {', '.join(builtin_suites())} (or give a path to a .toml file)"
    )


def read_suite_toml(path: Path) -> dict:
    """The parsed TOML of a suite file; unreadable or invalid TOML is one error naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise VbenchError(f"{path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VbenchError(f"cannot read suite file {path}: {exc}") from None


def _parse_suite_file(path: Path) -> Suite:
    data = read_suite_toml(path)
    for key, value in data.items():
        if key not in _SUITE_KEYS:
            raise VbenchError(f"{path}: unknown key {key!r}; known keys: {', '.join(_SUITE_KEYS)}")
        expected = _SUITE_KEYS[key][0]
        if not _is_type(value, expected):
            raise VbenchError(f"{path}: key {key!r} must be {_TYPE_WORDS[expected]}, got {_describe(value)}")
    for key, (_, required) in _SUITE_KEYS.items():
        if required and key not in data:
            raise VbenchError(f"{path}: missing required key {key!r}")

    recipe_values = {}
    for key, value in data.get("recipe", {}).items():
        if key not in RECIPE_TYPES:
            raise VbenchError(f"{path}: unknown key {key!r} in [recipe]; known keys: {', '.join(RECIPE_TYPES)}")
        recipe_values[key] = _check_recipe_value(key, value, source=str(path), table="recipe.")

    task = data.get("task", "classification")
    _check_choice(path, "task", task, TASKS)
    kind = data["kind"]
    _check_choice(path, "kind", kind, KINDS)
    for key in ("img_size", "num_classes"):
        if data[key] < (8 if key == "img_size" else 2):
            raise VbenchError(f"{path}: key {key!r} is too small ({data[key]})")
    mean = _three_floats(path, "mean", data["mean"])
    std = _three_floats(path, "std", data["std"])
    if min(std) <= 0:
        raise VbenchError(f"{path}: key 'std' must hold three positive numbers")
    root = data.get("root")
    if root is not None:
        root_path = Path(root).expanduser()
        root = str(root_path if root_path.is_absolute() else (path.parent / root_path).resolve())
    elif kind == "image-folder":
        raise VbenchError(f"{path}: kind 'image-folder' needs key 'root' (a directory with train/<class>/ and val/<class>/)")
    return Suite(
        name=data.get("name", path.stem),
        path=str(path),
        task=task,
        kind=kind,
        root=root,
        img_size=data["img_size"],
        num_classes=data["num_classes"],
        mean=mean,
        std=std,
        recipe=_checked_recipe(recipe_values, source=str(path)),
        description=data.get("description", ""),
    )


def _check_recipe_value(key: str, value: Any, source: str, table: str = "") -> Any:
    """Type- and range-check one recipe value; ``source`` (file name or flag) goes into the error."""
    if key not in RECIPE_TYPES:
        raise VbenchError(f"{source}: unknown recipe key {key!r}; known keys: {', '.join(RECIPE_TYPES)}")
    expected = RECIPE_TYPES[key]
    if not _is_type(value, expected):
        raise VbenchError(f"{source}: key {table}{key!r} must be {_TYPE_WORDS[expected]}, got {_describe(value)}")
    value = float(value) if expected is float else value
    problem = _range_problem(key, value)
    if problem:
        raise VbenchError(f"{source}: key {table}{key!r} {problem}, got {value!r}")
    return value


def _checked_recipe(values: dict, source: str) -> Recipe:
    recipe = Recipe(**values)
    if recipe.erasing_min_area > recipe.erasing_max_area:
        raise VbenchError(f"{source}: recipe.erasing_min_area must not exceed recipe.erasing_max_area")
    return recipe


def _range_problem(key: str, value: Any) -> str | None:
    if key in ("epochs", "batch_size", "eval_batch_size", "repeats") and value < 1:
        return "must be at least 1"
    if key in ("warmup_epochs", "crop_padding") and value < 0:
        return "must not be negative"
    if key in ("hflip", "erasing_prob", "mix_prob", "switch_prob", "label_smoothing", "drop_path") and not 0 <= value <= 1:
        return "must lie in [0, 1]"
    if key in ("erasing_min_area", "erasing_max_area") and not 0 < value <= 1:
        return "must lie in (0, 1]"
    if key == "erasing_aspect" and not 0 < value <= 1:
        return "must lie in (0, 1] (aspect ratios are drawn from (aspect, 1/aspect))"
    if key in ("lr", "min_lr", "weight_decay", "mixup_alpha", "cutmix_alpha") and value < 0:
        return "must not be negative"
    if key == "autoaugment" and value not in AUTOAUGMENT_POLICIES:
        return f"must be one of {', '.join(AUTOAUGMENT_POLICIES)}"
    if key == "augment_impl" and value not in AUGMENT_IMPLS:
        return f"must be one of {', '.join(AUGMENT_IMPLS)}"
    if key == "optimizer" and value not in OPTIMIZERS:
        return f"must be one of {', '.join(OPTIMIZERS)}"
    return None


def _is_type(value: Any, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}.get(
        type(value), type(value).__name__
    )
    return f"{kind} {value!r}"


def _check_choice(path: Path, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise VbenchError(f"{path}: key {key!r} must be one of {', '.join(choices)}, got {value!r}")


def _three_floats(path: Path, key: str, value: list) -> tuple[float, float, float]:
    if len(value) != 3 or not all(_is_type(v, float) for v in value):
        raise VbenchError(f"{path}: key {key!r} must be a list of three numbers (R, G, B), got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]
