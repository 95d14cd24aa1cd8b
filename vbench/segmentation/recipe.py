"""Segmentation suites (``task = "segmentation"`` TOML files such as ``suites/ade20k.toml``).

The file shares the classification suites' top-level keys (name, description, task, kind, root,
img_size, num_classes, mean, std); ``img_size`` is the square training crop, at which FLOPs are
counted too. ``[recipe]`` holds the pipeline and schedule keys of :class:`SegRecipe`, and
``[optimizer.<kind>]`` one optimiser per backbone kind (``transformer``: AdamW; ``cnn``: SGD), the
kind being the backbone's ``recipe_kind``.

Overrides (``sets``, ``key=value`` parsed as TOML): any ``[recipe]`` key, ``img_size``, and
``<kind>.<key>`` for an optimiser key (``transformer.lr=1e-4``); a bare optimiser key
(``warmup_iters=0``) sets it for every kind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from vbench.errors import UnknownNameError, VbenchError
from vbench.suites import HashedRecipe, Suite, read_suite_toml

TASK = "segmentation"
KINDS = ("ade20k",)
HEADS = ("upernet", "fpn")
VARIABLE_LENGTH = ("eval_at", "no_decay_keys")   # list keys of any length; other lists have a fixed one
TOP_LEVEL_KEYS = ("name", "description", "task", "kind", "root", "img_size", "num_classes", "mean", "std",
                  "recipe", "optimizer")


@dataclass(frozen=True)
class OptimizerConfig:
    """One optimiser and its schedule: linear warm-up from ``warmup_ratio * lr`` over
    ``warmup_iters``, then poly decay ``(lr - min_lr) * (1 - t / T) ** power + min_lr``."""

    name: str = "adamw"                  # adamw | sgd
    lr: float = 6e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    power: float = 1.0
    min_lr: float = 0.0
    no_decay_keys: tuple[str, ...] = ()  # parameters whose name contains one of these get no weight decay
    source: str = ""


@dataclass(frozen=True)
class SegRecipe(HashedRecipe):
    head: str = "upernet"
    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    hflip: float = 0.5
    photometric: bool = True
    iterations: int = 20000
    eval_at: tuple[int, ...] = (2000, 4000, 8000, 10000, 16000, 20000)
    batch_size: int = 16
    eval_batch_size: int = 1
    eval_limit: int = 0                  # evaluate on the first N validation images only (0: all)
    num_workers: int = 4
    seed: int = 0
    aux_weight: float = 0.4
    optimizer: dict[str, OptimizerConfig] = field(default_factory=lambda: {
        "transformer": OptimizerConfig(), "cnn": OptimizerConfig(name="sgd", lr=0.01, weight_decay=5e-4,
                                                                 warmup_iters=0, power=0.9, min_lr=1e-4)})

    def optimizer_for(self, kind: str) -> OptimizerConfig:
        if kind not in self.optimizer:
            raise VbenchError(f"the suite has no [optimizer.{kind}] table; it has {', '.join(self.optimizer)}")
        return self.optimizer[kind]



@dataclass(frozen=True)
class SegmentationSuite(Suite):
    """A classification suite's fields, with a segmentation recipe; ``img_size`` is the crop."""

    recipe: SegRecipe

    @property
    def crop_size(self) -> int:
        return self.img_size

    def with_overrides(self, **overrides) -> "SegmentationSuite":
        return apply_sets(self, [f"{key}={_toml_value(value)}" for key, value in overrides.items()])


_RECIPE_FIELDS = {f.name: f for f in dataclasses.fields(SegRecipe) if f.name != "optimizer"}
_OPTIMIZER_FIELDS = {f.name: f for f in dataclasses.fields(OptimizerConfig)}


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _coerce(where: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of the field's ``default`` (tuples become tuples)."""
    def bad() -> VbenchError:
        return VbenchError(f"{where} must be like {_toml_value(default)}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad()
        return value
    if isinstance(default, tuple):
        variable_length = where.rsplit(".", 1)[-1].split()[-1] in VARIABLE_LENGTH
        if not isinstance(value, list) or (not variable_length and len(value) != len(default)):
            raise bad()
        element = default[0] if default else ""
        return tuple(_coerce(where, item, element) for item in value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise bad()
    return value


def _field_default(spec: dataclasses.Field) -> Any:
    return spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()


def _optimizer(where: str, table: dict, base: OptimizerConfig | None = None) -> OptimizerConfig:
    values = {}
    for key, value in table.items():
        if key not in _OPTIMIZER_FIELDS:
            raise VbenchError(f"{where}: unknown key {key!r}; known keys: {', '.join(_OPTIMIZER_FIELDS)}")
        values[key] = _coerce(f"{where}.{key}", value, _field_default(_OPTIMIZER_FIELDS[key]))
    config = dataclasses.replace(base or OptimizerConfig(), **values)
    if config.name not in ("adamw", "sgd"):
        raise VbenchError(f"{where}.name must be 'adamw' or 'sgd', got {config.name!r}")
    return config


def _check(suite: SegmentationSuite) -> SegmentationSuite:
    recipe, where = suite.recipe, suite.path
    problems = []
    if recipe.head not in HEADS:
        problems.append(f"recipe.head must be one of {', '.join(HEADS)}, got {recipe.head!r}")
    if suite.img_size < 32 or suite.img_size % 32:
        problems.append(f"img_size (the training crop) must be a multiple of 32, got {suite.img_size}")
    if recipe.iterations < 1 or recipe.batch_size < 1 or recipe.eval_batch_size < 1:
        problems.append("recipe.iterations, batch_size and eval_batch_size must be at least 1")
    if not recipe.eval_at or any(not 1 <= it <= recipe.iterations for it in recipe.eval_at):
        problems.append(f"recipe.eval_at must list iterations in 1..{recipe.iterations}, got {list(recipe.eval_at)}")
    if not 0 < recipe.ratio_range[0] <= recipe.ratio_range[1]:
        problems.append(f"recipe.ratio_range must be [low, high] with 0 < low <= high, got {list(recipe.ratio_range)}")
    if not 0 < recipe.cat_max_ratio <= 1 or not 0 <= recipe.hflip <= 1:
        problems.append("recipe.cat_max_ratio must lie in (0, 1] and recipe.hflip in [0, 1]")
    if problems:
        raise VbenchError(f"{where}: {problems[0]}")
    return dataclasses.replace(suite, recipe=dataclasses.replace(recipe, eval_at=tuple(sorted(set(recipe.eval_at)))))


def _three(where: str, value: Any) -> tuple[float, float, float]:
    if not isinstance(value, list) or len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
        raise VbenchError(f"{where} must be a list of three numbers, got {value!r}")
    return tuple(float(v) for v in value)


def parse_segmentation_suite(path: Path, data: dict) -> SegmentationSuite:
    """Build a suite from the parsed TOML ``data`` of ``path``."""
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise VbenchError(f"{path}: unknown key {key!r}; known keys: {', '.join(TOP_LEVEL_KEYS)}")
    for key in ("kind", "img_size", "num_classes", "mean", "std"):
        if key not in data:
            raise VbenchError(f"{path}: missing required key {key!r}")
    if data.get("task") != TASK:
        raise VbenchError(f"{path}: a segmentation suite needs task = \"{TASK}\"")
    if data["kind"] not in KINDS:
        raise VbenchError(f"{path}: kind {data['kind']!r} is not a segmentation kind; use one of {', '.join(KINDS)}")
    recipe_values = {}
    for key, value in data.get("recipe", {}).items():
        if key not in _RECIPE_FIELDS:
            raise VbenchError(f"{path}: unknown key {key!r} in [recipe]; known keys: {', '.join(_RECIPE_FIELDS)}")
        recipe_values[key] = _coerce(f"{path}: recipe.{key}", value, _field_default(_RECIPE_FIELDS[key]))
    optimizers = {kind: _optimizer(f"{path}: optimizer.{kind}", table)
                  for kind, table in data.get("optimizer", {}).items()}
    recipe = SegRecipe(**recipe_values, **({"optimizer": optimizers} if optimizers else {}))
    for key in ("img_size", "num_classes"):
        if isinstance(data[key], bool) or not isinstance(data[key], int):
            raise VbenchError(f"{path}: key {key!r} must be an integer, got {data[key]!r}")
    root = data.get("root")
    if root is not None:
        root_path = Path(root).expanduser()
        root = str(root_path if root_path.is_absolute() else (path.parent / root_path).resolve())
    return _check(SegmentationSuite(
        name=data.get("name", path.stem), path=str(path), task=TASK, kind=data["kind"], root=root,
        img_size=data["img_size"], num_classes=data["num_classes"], mean=_three(f"{path}: mean", data["mean"]),
        std=_three(f"{path}: std", data["std"]), recipe=recipe, description=data.get("description", ""),
    ))


def apply_sets(suite: SegmentationSuite, sets: Iterable[str]) -> SegmentationSuite:
    recipe = suite.recipe
    img_size = suite.img_size
    for assignment in sets:
        key, sep, text = assignment.partition("=")
        key = key.strip().removeprefix("recipe.")
        if not sep or not key:
            raise VbenchError(f"--set {assignment!r} is not key=value (for example --set iterations=8000)")
        try:
            value = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        kind, dot, name = key.partition(".")
        if key == "img_size" or key == "crop_size":
            img_size = _coerce("--set img_size", value, 0)
        elif key in _RECIPE_FIELDS:
            recipe = dataclasses.replace(recipe, **{key: _coerce(f"--set {key}", value, _field_default(_RECIPE_FIELDS[key]))})
        elif dot and kind in recipe.optimizer and name in _OPTIMIZER_FIELDS:
            updated = _optimizer(f"--set {kind}", {name: value}, recipe.optimizer[kind])
            recipe = dataclasses.replace(recipe, optimizer={**recipe.optimizer, kind: updated})
        elif key in _OPTIMIZER_FIELDS:
            recipe = dataclasses.replace(recipe, optimizer={
                kind: _optimizer(f"--set {kind}", {key: value}, config) for kind, config in recipe.optimizer.items()})
        else:
            known = ", ".join([*_RECIPE_FIELDS, "img_size"] + [f"<{'|'.join(recipe.optimizer)}>.<optimizer key>"])
            raise VbenchError(f"--set: unknown segmentation key {key!r}; known keys: {known}")
    return _check(dataclasses.replace(suite, img_size=img_size, recipe=recipe))


def builtin_segmentation_suites() -> list[str]:
    names = []
    for entry in resources.files("suites").iterdir():
        if entry.name.endswith(".toml") and _is_segmentation_file(Path(str(entry))):
            names.append(entry.name[: -len(".toml")])
    return sorted(names)


def _is_segmentation_file(path: Path) -> bool:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")).get("task") == TASK
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def _suite_path(name_or_path: str) -> Path:
    builtin = Path(str(resources.files("suites").joinpath(f"{name_or_path}.toml")))
    if "/" not in name_or_path and not name_or_path.endswith(".toml") and builtin.is_file():
        return builtin
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.suffix == ".toml" or os.sep in name_or_path:
        raise VbenchError(f"suite file {str(path)!r} does not exist")
    raise UnknownNameError(f"unknown segmentation suite {name_or_path!r}; built-in: "
                           f"{', '.join(builtin_segmentation_suites())} (or give a path to a .toml file)")


def load_segmentation_suite(name_or_path: str, overrides: Mapping[str, Any] | None = None,
                            sets: Iterable[str] = ()) -> SegmentationSuite:
    """Like ``vbench.suites.load_suite`` for segmentation suites; ``overrides`` may hold ``data_root``
    and any key ``sets`` accepts (``None`` values are skipped)."""
    path = _suite_path(name_or_path)
    suite = parse_segmentation_suite(path, read_suite_toml(path))
    extra_sets = []
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "data_root":
            suite = dataclasses.replace(suite, root=str(Path(value).expanduser()))
        else:
            extra_sets.append(f"{key}={_toml_value(value)}")
    return apply_sets(suite, [*extra_sets, *sets])


def data_root_of(suite: SegmentationSuite) -> Path:
    """The suite's root, else ``$VBENCH_DATA``, else ``~/.cache/vbench/data``."""
    if suite.root:
        return Path(suite.root)
    env = os.environ.get("VBENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vbench" / "data"
