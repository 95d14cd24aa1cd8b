"""Suites: a dataset, its normalisation and its task's recipe, read from declarative TOML.

A suite file holds the data keys of ``Suite`` at the top level, ``task`` (default classification),
a ``[recipe]`` table with keys of the task's recipe class, and optionally ``include = "other.toml"``
(or a list): included files are read first and this file's keys override theirs, tables merged key by
key, the way mmsegmentation's ``_base_`` and lm-evaluation-harness's ``include`` work. An include is
found beside the including file, else among the built-in suites (``include = "cifar10"``).

One reader, one merge and one type coercer (driven by the dataclass fields) serve every task, the
command line's overrides (``--epochs``, ``--set key=value``) included: every value keeps the source
that set it, so a bad value is one error naming the key and the file or flag it came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import tomllib

from vbench.errors import UnknownNameError, VbenchError
from vbench.paths import bundled_folder
from vbench.recipes import FLOAT_LIMIT, INT_LIMIT, Recipe
from vbench.tasks import TaskInfo, get_task

SETTABLE_TOP_LEVEL = ("img_size",)
MAX_IMG_SIZE = 8192
MAX_CLASSES = 1_000_000
CLI_OVERRIDES = ("epochs", "batch_size", "lr", "seed")  # recipe keys with a flag of their own


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
    stream: bool = False  # read the images by DataLoader workers as training goes (vbench.data.stream), not into memory
    classes: str | None = None  # a file listing the class folders to keep, one a line (ImageNet-100's wnids)

    @property
    def task_info(self) -> TaskInfo:
        return get_task(self.task)

    @property
    def crop_size(self) -> int:
        """Segmentation suites: the square training crop (``img_size``)."""
        return self.img_size

    def with_recipe(self, **changes: Any) -> "Suite":
        """This suite with recipe keys replaced, checked (and warm-up following) as with ``--set``."""
        table = {**self.recipe.to_dict(), **changes}
        origins = {("recipe", key): Origin(1 if key in changes else 0, "override") for key in table}
        return dataclasses.replace(self, recipe=_build_recipe(self.task_info, table, origins))


@dataclass(frozen=True)
class Origin:
    layer: int  # later layers override earlier ones
    source: str  # a file path or a command-line flag


_TOP_LEVEL_TYPES = {name: hint for name, hint in typing.get_type_hints(Suite).items() if name not in ("path", "recipe")}
_REQUIRED = ("kind", "img_size", "num_classes", "mean", "std")
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def builtin_suites() -> list[str]:
    return sorted(p.stem for p in bundled_folder("suites", "suite_files").glob("*.toml") if not p.name.startswith("_"))


def _builtin_path(name: str) -> Path:
    return bundled_folder("suites", "suite_files") / f"{name.removesuffix('.toml')}.toml"


def resolve_suite_path(name_or_path: str) -> Path:
    if name_or_path in builtin_suites():
        return _builtin_path(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise VbenchError(f"suite {str(path)!r} is a folder; give a built-in suite name ({', '.join(builtin_suites())}) "
                          "or a suite file: a .toml naming the data (kind, root, img_size, num_classes, mean, std) and "
                          "its [recipe] (README, \"Suites\")")
    if path.suffix == ".toml" or os.sep in name_or_path:
        raise VbenchError(f"suite file {str(path)!r} does not exist")
    raise UnknownNameError(f"unknown suite {name_or_path!r}; built-in suites: {', '.join(builtin_suites())} "
                           "(or give a path to a .toml file)")


def load_suite(name_or_path: str, overrides: Mapping[str, Any] | None = None, sets: Iterable[str] = ()) -> Suite:
    """A built-in suite by name, or a suite file by path, with the command line's changes applied.

    ``overrides``: ``data_root`` and the recipe keys of ``CLI_OVERRIDES`` (``None`` values are
    skipped, so a CLI passes its unset options straight through); ``sets``: ``key=value`` strings for
    any recipe key, the value read as TOML (a bare word that is not TOML is taken as a string).
    """
    path = resolve_suite_path(name_or_path)
    tree, origins = _merge(_read_with_includes(path, chain=()))
    layer = max((o.layer for o in origins.values()), default=0) + 1
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "data_root":
            tree["root"] = str(Path(value).expanduser().resolve())
            origins[("root",)] = Origin(layer, "--data-root")
        elif key in CLI_OVERRIDES:
            _assign(tree, origins, ("recipe", key), value, Origin(layer, f"--{key.replace('_', '-')}"))
        else:
            raise VbenchError(f"unknown override {key!r}; known: data_root, {', '.join(CLI_OVERRIDES)}")
    task = get_task(_task_name(tree, origins))
    for assignment in sets:
        layer += 1
        for key_path, value in _parse_set(assignment, task, tree):
            _assign(tree, origins, key_path, value, Origin(layer, "--set"))
    return _build_suite(tree, origins, path, task)


# --- reading and merging ---------------------------------------------------------------------------
def read_toml(path: Path) -> dict:
    """The parsed TOML of ``path``; unreadable or invalid TOML is one error naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise VbenchError(f"{path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VbenchError(f"cannot read suite file {path}: {exc}") from None


def _read_with_includes(path: Path, chain: tuple[Path, ...]) -> list[tuple[str, dict]]:
    """(source, table) of every file behind ``path``, includes first."""
    path = path.resolve()
    if path in chain:
        raise VbenchError(f"{path}: include cycle ({' -> '.join(str(p) for p in (*chain, path))})")
    data = read_toml(path)
    includes = data.pop("include", [])
    includes = [includes] if isinstance(includes, str) else includes
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise VbenchError(f"{path}: key 'include' must be a file name or a list of them")
    layers: list[tuple[str, dict]] = []
    for include in includes:
        layers += _read_with_includes(_include_path(path, include), (*chain, path))
    return layers + [(str(path), data)]


def _include_path(including: Path, include: str) -> Path:
    beside = (including.parent / include).expanduser()
    if beside.is_file():
        return beside
    if beside.with_suffix(".toml").is_file():
        return beside.with_suffix(".toml")
    builtin = _builtin_path(include)
    if builtin.is_file():
        return builtin
    raise VbenchError(f"{including}: include {include!r} is neither a file beside it nor a built-in suite")


def _merge(layers: list[tuple[str, dict]]) -> tuple[dict, dict[tuple[str, ...], Origin]]:
    tree: dict = {}
    origins: dict[tuple[str, ...], Origin] = {}
    for index, (source, data) in enumerate(layers):
        for key_path, value in _leaves(data):
            _assign(tree, origins, key_path, value, Origin(index, source))
    return tree, origins


def _leaves(data: dict, prefix: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Any]]:
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _assign(tree: dict, origins: dict, key_path: tuple[str, ...], value: Any, origin: Origin) -> None:
    node = tree
    for key in key_path[:-1]:
        if not isinstance(node.get(key, {}), dict):
            raise VbenchError(f"{origin.source}: key {'.'.join(key_path)!r} goes inside {key!r}, which is not a table")
        node = node.setdefault(key, {})
    node[key_path[-1]] = value
    origins[key_path] = origin


def _task_name(tree: dict, origins: dict) -> str:
    name = tree.get("task", "classification")
    if not isinstance(name, str):
        raise VbenchError(f"{origins[('task',)].source}: key 'task' must be a string")
    try:
        return get_task(name).name
    except UnknownNameError as exc:
        raise VbenchError(f"{origins[('task',)].source}: {exc}") from None


def _parse_set(assignment: str, task: TaskInfo, tree: dict) -> list[tuple[tuple[str, ...], Any]]:
    """``"lr=5e-4"`` -> ``[(("recipe", "lr"), 0.0005)]``; the key may carry a ``recipe.`` prefix."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise VbenchError(f"--set {assignment!r} is not key=value (for example --set lr=5e-4)")
    text = text.strip()
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word such as `autoaugment=svhn`
    if key in SETTABLE_TOP_LEVEL:
        return [((key,), value)]
    paths = task.recipe.expand_key(key.removeprefix("recipe."), tree.get("recipe", {}))
    fields = {f.name for f in dataclasses.fields(task.recipe)}
    if not all(path[0] in fields for path in paths):
        known = ", ".join([*(f.name for f in dataclasses.fields(task.recipe)), *SETTABLE_TOP_LEVEL])
        raise VbenchError(f"--set: unknown {task.name} recipe key {key!r}; known keys: {known}")
    return [(("recipe", *path), value) for path in paths]


# --- building the suite ----------------------------------------------------------------------------
def _build_suite(tree: dict, origins: dict, path: Path, task: TaskInfo) -> Suite:
    def source(*key_path: str) -> str:
        return origins.get(key_path, Origin(0, str(path))).source

    for key, value in tree.items():
        if key != "recipe" and key not in _TOP_LEVEL_TYPES:
            raise VbenchError(f"{source(key)}: unknown key {key!r}; known keys: include, {', '.join(_TOP_LEVEL_TYPES)}, recipe")
    for key in _REQUIRED:
        if key not in tree:
            raise VbenchError(f"{path}: missing required key {key!r}")
    values = {key: coerce(tree[key], _TOP_LEVEL_TYPES[key], f"{source(key)}: key {key!r}")
              for key in _TOP_LEVEL_TYPES if key in tree}
    if values["kind"] not in task.kinds:
        raise VbenchError(f"{source('kind')}: key 'kind' must be one of {', '.join(task.kinds)} for a {task.name} "
                          f"suite, got {values['kind']!r}")
    _check_sizes(values, task, source)
    if not isinstance(tree.get("recipe", {}), dict):
        raise VbenchError(f"{source('recipe')}: key 'recipe' must be a table")
    recipe = _build_recipe(task, tree.get("recipe", {}), origins)
    root = values.get("root")
    if root is not None and source("root") != "--data-root":
        root_path = Path(root).expanduser()
        root = str(root_path if root_path.is_absolute() else (Path(source("root")).parent / root_path).resolve())
    elif root is None and values["kind"] == "image-folder":
        raise VbenchError(f"{path}: kind 'image-folder' needs key 'root' (a directory with train/<class>/ and val/<class>/)")
    return Suite(name=values.get("name", path.stem), path=str(path), task=task.name, kind=values["kind"], root=root,
                 img_size=values["img_size"], num_classes=values["num_classes"], mean=values["mean"],
                 std=values["std"], recipe=recipe, description=values.get("description", ""),
                 stream=values.get("stream", False), classes=_beside(values.get("classes"), source("classes")))


def _beside(name: str | None, source: str) -> str | None:
    """A file a suite names, read from the folder of the suite file that set it (a relative name)."""
    if name is None:
        return None
    path = Path(name).expanduser()
    return str(path if path.is_absolute() else (Path(source).parent / path).resolve())


def _check_sizes(values: dict, task: TaskInfo, source) -> None:
    if values["img_size"] < 8 or values["img_size"] % (32 if task.name == "segmentation" else 1):
        rule = "a multiple of 32" if task.name == "segmentation" else "at least 8"
        raise VbenchError(f"{source('img_size')}: key 'img_size' must be {rule}, got {values['img_size']}")
    if values["img_size"] > MAX_IMG_SIZE:
        raise VbenchError(f"{source('img_size')}: key 'img_size' must be at most {MAX_IMG_SIZE}, got {values['img_size']}")
    if not 2 <= values["num_classes"] <= MAX_CLASSES:
        raise VbenchError(f"{source('num_classes')}: key 'num_classes' must lie in [2, {MAX_CLASSES:,}], got "
                          f"{values['num_classes']}")
    if min(values["std"]) <= 0:
        raise VbenchError(f"{source('std')}: key 'std' must hold three positive numbers")


def _build_recipe(task: TaskInfo, table: dict, origins: dict) -> Recipe:
    explicit = {path[1]: origin.layer for path, origin in origins.items() if path[0] == "recipe" and len(path) > 1}
    recipe = coerce_dataclass(table, task.recipe, lambda key: _origin_text(origins, ("recipe", *key)), "recipe.")
    recipe = recipe.resolve_defaults(explicit)
    problems = recipe.problems()
    if problems:
        raise VbenchError(f"{_recipe_source(origins)}: {problems[0]}")
    return recipe


def _origin_text(origins: dict, key_path: tuple[str, ...]) -> str:
    while key_path and key_path not in origins:
        key_path = key_path[:-1]
    return origins[key_path].source if key_path else "recipe"


def _recipe_source(origins: dict) -> str:
    """Where the newest recipe value came from (a cross-field problem is named there)."""
    recipe_origins = [o for p, o in origins.items() if p[0] == "recipe"]
    return max(recipe_origins, key=lambda o: o.layer).source if recipe_origins else "recipe"


# --- the one coercer -------------------------------------------------------------------------------
def coerce_dataclass(table: dict, cls: type, source_of, prefix: str = "") -> Any:
    """``cls(**table)`` with every value checked against its field's type and checks."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise VbenchError(f"{source_of((key,))}: unknown key {prefix + key!r}; known keys: {', '.join(fields)}")
        where = f"{source_of((key,))}: key {prefix + key!r}"
        values[key] = coerce(value, hints[key], where, lambda sub, k=key: source_of((k, *sub)), f"{prefix}{key}.",
                             checks=fields[key].metadata)
    return cls(**values)


def coerce(value: Any, hint: Any, where: str, source_of=None, prefix: str = "", checks: Mapping[str, Any] = {}) -> Any:
    """``value`` as the type ``hint`` (int, float, str, bool, tuple[...], dict[str, Dataclass], Optional), checked
    against the field's ``checks``; every number finite and within the recipe's limits."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        return None if value is None else coerce(value, kinds[0], where, source_of, prefix)
    if origin is tuple:
        variable = len(args) == 2 and args[1] is Ellipsis
        if not isinstance(value, list) or (not variable and len(value) != len(args)):
            size = "a list" if variable else f"a list of {len(args)}"
            raise VbenchError(f"{where} must be {size}, got {_describe(value)}")
        kinds = [args[0]] * len(value) if variable else list(args)
        return tuple(coerce(item, kind, where) for item, kind in zip(value, kinds))
    if origin is dict:
        if not isinstance(value, dict):
            raise VbenchError(f"{where} must be a table, got {_describe(value)}")
        element = args[1]
        return {key: coerce_dataclass(item, element, lambda sub, k=key: source_of((k, *sub)), f"{prefix}{key}.")
                if dataclasses.is_dataclass(element) else coerce(item, element, where) for key, item in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, hint) or (isinstance(value, bool) and hint is not bool):
        raise VbenchError(f"{where} must be {_TYPE_WORDS.get(hint, hint.__name__)}, got {_describe(value)}")
    if hint is float and not math.isfinite(value):
        raise VbenchError(f"{where} must be a finite number, got {value!r}")
    problem = _check_problem(value, checks)
    if problem:
        raise VbenchError(f"{where} {problem}, got {value!r}")
    if hint in (int, float) and abs(value) > (INT_LIMIT if hint is int else FLOAT_LIMIT):
        limit = f"{INT_LIMIT:,}" if hint is int else f"{FLOAT_LIMIT:g}"
        raise VbenchError(f"{where} must lie within ±{limit}, got {value!r}")
    return value


def _check_problem(value: Any, checks: Mapping[str, Any]) -> str | None:
    if "choices" in checks and value not in checks["choices"]:
        return f"must be one of {', '.join(map(str, checks['choices']))}"
    if "min" in checks and value < checks["min"]:
        return "must not be negative" if checks["min"] == 0 else f"must be at least {checks['min']}"
    if "max" in checks and value > checks["max"]:
        return f"must be at most {checks['max']:,}"
    if "within" in checks and not checks["within"][0] <= value <= checks["within"][1]:
        low, high = checks["within"]
        return f"must lie in [{low}, {high}]"
    return None


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}.get(
        type(value), type(value).__name__)
    return f"{kind} {value!r}"


@lru_cache(maxsize=None)  # loads a suite file: once per (task, kind), not once per row
def paper_recipe(task: str, kind: str | None) -> dict | None:
    """The recipe the paper trained ``kind`` with: its built-in suite's, else the paper's CIFAR recipe (ImageNet, which
    the paper does not train: DeiT's, the imagenet suite's)."""
    paper_kinds = {"classification": ("cifar10", "cifar100", "svhn", "tiny-imagenet"), "segmentation": ("ade20k",)}
    kinds = paper_kinds.get(task)
    if not kinds:
        return None
    if task == "classification" and kind == "imagenet":
        return load_suite("imagenet").recipe.to_dict()
    name = kind if kind in kinds and kind in builtin_suites() else kinds[0]
    return load_suite(name).recipe.to_dict()
