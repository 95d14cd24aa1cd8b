"""Backbone registry: named backbones, each with one model per task it supports.

A backbone is registered with ``@register_backbone(name, family=..., task=..., accepts=..., features=...)``
on a builder ``(img_size, num_classes, **accepted) -> nn.Module``, in the spirit of timm's
``@register_model``. The declaration is the contract between a backbone and the engine:

- ``task``: the task this builder serves; registering the same name for another task adds a
  variant (``lkca-b`` has a classification model and a segmentation encoder);
- ``accepts``: the keyword arguments the builder takes, with timm's names (``drop_path_rate``); the
  engine passes a recipe value only where it is accepted, and anything else is refused up front;
- ``features`` (dense tasks): the feature pyramid the encoder returns (channels, strides, size
  divisor), so a head can be built without probing the model;
- ``recipe_kind``: which optimiser table of a segmentation recipe applies (``transformer`` or ``cnn``);
- ``feature_map`` (classification): how to get the model's last spatial feature map (``"timm"``,
  ``"tokens:MODULE"``, ``"map:MODULE"``, or ``"none:WHY"``; see ``vbench.models.feature_map``).

Built-in families live in the ``vbench.backbones`` package (the repository's ``backbones/`` folder), one module per family. Listing them must not
import torch, so their ``@register_backbone`` declarations are read from the source with ``ast``
(they are literals by convention, and a test checks that the imported registrations match); the
module itself is imported only when a model is built. Third-party backbones come from the
``vbench.backbones`` entry-point group or from ``--plugin PATH_OR_MODULE``.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from vbench.errors import UnknownNameError, VbenchError, first_line
from vbench.models.feature_map import FeatureMap, parse_feature_map
from vbench.registry import DuplicateNameError, Registry, run_plugin

ENTRY_POINT_GROUP = "vbench.backbones"
BUILTIN_PACKAGE = "vbench.backbones"
DEFAULT_TASK = "classification"
RECIPE_KINDS = ("transformer", "cnn")
Builder = Callable[..., Any]


@dataclass(frozen=True)
class Features:
    """The feature pyramid of a dense encoder: one map per stride, ``channels[i]`` wide."""

    channels: tuple[int, ...]
    strides: tuple[int, ...] = (4, 8, 16, 32)
    size_divisor: int = 32

    def __post_init__(self):
        if len(self.channels) != len(self.strides):
            raise VbenchError(f"features: {len(self.channels)} channels for {len(self.strides)} strides")


@dataclass
class Variant:
    """One task's model of a backbone. ``builder`` stays None until its module is imported."""

    task: str
    module: str
    function: str
    accepts: tuple[str, ...] = ()
    features: Features | None = None
    recipe_kind: str = "transformer"
    summary: str = ""
    builder: Builder | None = None
    feature_map: FeatureMap | None = None

    def resolve_builder(self) -> Builder:
        if self.builder is None:
            importlib.import_module(self.module)  # its @register_backbone fills in the builder
        if self.builder is None:
            raise VbenchError(f"module {self.module} did not register {self.function}() as its source says")
        return self.builder


@dataclass
class BackboneSpec:
    name: str
    family: str
    paper_names: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    in_paper: bool = True
    variants: dict[str, Variant] = field(default_factory=dict)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.variants)

    @property
    def summary(self) -> str:
        return next((v.summary for v in self.variants.values() if v.summary), "")

    @property
    def origin(self) -> str:
        variant = next(iter(self.variants.values()))
        module = sys.modules.get(variant.module)
        path = getattr(module, "__file__", None)
        return f"{variant.module} ({path})" if path else variant.module

    def variant(self, task: str = DEFAULT_TASK) -> Variant:
        if task not in self.variants:
            raise VbenchError(f"backbone {self.name!r} has no {task} model; its tasks: {', '.join(self.tasks)}")
        return self.variants[task]

    def build(self, img_size: int = 32, num_classes: int = 10, task: str = DEFAULT_TASK, **overrides):
        """The ``task`` model for ``img_size`` images and ``num_classes`` classes."""
        # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
        import torch.nn as nn

        variant = self.variant(task)
        refused = sorted(set(overrides) - set(variant.accepts))
        if refused:
            takes = ", ".join(variant.accepts) or "no keyword arguments"
            raise VbenchError(f"backbone {self.name!r} ({task}) does not accept {', '.join(refused)}; it accepts {takes}")
        model = variant.resolve_builder()(img_size=img_size, num_classes=num_classes, **overrides)
        if not isinstance(model, nn.Module):
            raise VbenchError(f"backbone {self.name!r}: its builder {variant.function}() returned "
                              f"{type(model).__name__}, not a torch.nn.Module")
        return model


class DuplicateBackboneError(DuplicateNameError):
    pass


BACKBONES: Registry[BackboneSpec] = Registry("backbone", group=ENTRY_POINT_GROUP, listing="vbench list backbones")
_loaded_builtin = False


def register_backbone(
    name: str,
    *,
    family: str,
    paper_names: Iterable[str] = (),
    aliases: Iterable[str] = (),
    in_paper: bool = True,
    task: str = DEFAULT_TASK,
    accepts: Iterable[str] = (),
    features: Features | dict | None = None,
    recipe_kind: str = "transformer",
    feature_map: str | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` as the ``task`` model of backbone ``name``."""

    def decorate(builder: Builder) -> Builder:
        _declare(name, dict(family=family, paper_names=paper_names, aliases=aliases, in_paper=in_paper,
                            task=task, accepts=accepts, features=features, recipe_kind=recipe_kind,
                            feature_map=feature_map),
                 module=builder.__module__, function=builder.__name__,
                 summary=first_line(inspect.getdoc(builder)), builder=builder)
        return builder

    return decorate


def _declare(name: str, options: dict, module: str, function: str, summary: str, builder: Builder | None) -> None:
    features = options.get("features")
    if isinstance(features, dict):
        features = Features(**{key: tuple(v) if isinstance(v, list) else v for key, v in features.items()})
    if options.get("recipe_kind", "transformer") not in RECIPE_KINDS:
        raise VbenchError(f"backbone {name!r}: recipe_kind must be one of {', '.join(RECIPE_KINDS)}")
    variant = Variant(task=options.get("task", DEFAULT_TASK), module=module, function=function,
                      accepts=tuple(options.get("accepts", ())), features=features,
                      recipe_kind=options.get("recipe_kind", "transformer"), summary=summary, builder=builder,
                      feature_map=parse_feature_map(options.get("feature_map"), name))
    spec = BackboneSpec(name=name, family=options["family"], paper_names=tuple(options.get("paper_names", ())),
                        aliases=tuple(options.get("aliases", ())), in_paper=options.get("in_paper", True),
                        variants={variant.task: variant})
    _add(spec)


def _add(new: BackboneSpec) -> None:
    """Register ``new``, or merge it into the backbone of the same name as another task's variant."""
    (task, variant), = new.variants.items()
    held = BACKBONES.holder(new.name)
    existing = BACKBONES.find(held) if held else None
    if existing is not None and existing.name == new.name:
        _merge(existing, new, task, variant)
        return
    keys = [new.name.lower()] + [alias.lower() for alias in new.aliases]
    if len(set(keys)) != len(keys):
        raise DuplicateBackboneError(f"backbone {new.name!r} from {variant.module} repeats a name among its aliases")
    _check_free(keys, new.name, variant.module)
    BACKBONES.add(new.name, new, new.aliases)


def _merge(existing: BackboneSpec, new: BackboneSpec, task: str, variant: Variant) -> None:
    held = existing.variants.get(task)
    if held is not None:
        if (held.module, held.function) != (variant.module, variant.function):
            raise DuplicateBackboneError(
                f"backbone name {new.name!r} ({task}) from {variant.module} is already registered by "
                f"{held.module}.{held.function}; rename one of them")
        _check_same_declaration(existing, new, held, variant)
        held.builder = variant.builder or held.builder  # the lazily read declaration meets its function
        return
    if existing.family != new.family:
        raise DuplicateBackboneError(f"backbone {new.name!r} ({task}) from {variant.module} says family "
                                     f"{new.family!r}, its other tasks say {existing.family!r}")
    added = [alias for alias in new.aliases if alias not in existing.aliases]
    _check_free([alias.lower() for alias in added], new.name, variant.module)
    existing.variants[task] = variant
    existing.aliases += tuple(added)
    existing.paper_names += tuple(n for n in new.paper_names if n not in existing.paper_names)
    BACKBONES.add_aliases(existing.name, added)


def _check_same_declaration(existing: BackboneSpec, new: BackboneSpec, held: Variant, variant: Variant) -> None:
    """The declaration read from a module's source and the one its import makes must agree."""
    read = (held.accepts, held.features, held.recipe_kind, held.feature_map)
    made = (variant.accepts, variant.features, variant.recipe_kind, variant.feature_map)
    if read != made or existing.family != new.family or not set(new.aliases) <= set(existing.aliases) \
            or not set(new.paper_names) <= set(existing.paper_names):
        raise VbenchError(f"backbone {new.name!r}: the declaration read from {variant.module}'s source differs from "
                          "the one its import makes; write @register_backbone's arguments as literals")


def _check_free(keys: list[str], name: str, module: str) -> None:
    for key in keys:
        held = BACKBONES.holder(key)
        if held is not None and held != name:
            holder = BACKBONES.find(held)
            raise DuplicateBackboneError(
                f"backbone name {key!r} from {module} is already registered by {holder.name!r} from "
                f"{holder.origin}; rename one of them")


def unregister_backbone(name: str) -> None:
    """Remove a backbone with all its variants (tests and interactive use)."""
    BACKBONES.remove(resolve_name(name))


# --- built-in families, read from their source -----------------------------------------------------
class _NotLiteral(Exception):
    pass


def _literal(node: ast.AST, constants: dict[str, Any]) -> Any:
    """A literal expression, where a bare name may be a module-level literal constant."""
    if isinstance(node, ast.Name):
        if node.id in constants:
            return constants[node.id]
        raise _NotLiteral(node.id)
    if isinstance(node, ast.List):
        return [_literal(e, constants) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, constants) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {_literal(k, constants): _literal(v, constants) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {k.arg: _literal(k.value, constants) for k in node.keywords}
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _NotLiteral(ast.dump(node)) from None


def _declarations(source: str) -> list[tuple[str, dict, str, str]]:
    """``(name, options, function, summary)`` of every ``@register_backbone(...)`` in ``source``."""
    tree = ast.parse(source)
    constants: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = _literal(node.value, constants)
            except _NotLiteral:
                pass
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "register_backbone":
                name = _literal(decorator.args[0], constants)
                options = {k.arg: _literal(k.value, constants) for k in decorator.keywords}
                found.append((name, options, node.name, first_line(ast.get_docstring(node))))
    return found


def builtin_modules() -> list[tuple[str, Path]]:
    """(module name, file) of every family module of the ``vbench.backbones`` package."""
    folder = Path(next(iter(sys.modules[BUILTIN_PACKAGE].__path__)))
    return [(f"{BUILTIN_PACKAGE}.{path.stem}", path) for path in sorted(folder.glob("*.py"))
            if not path.stem.startswith("_")]


def load_builtin_backbones() -> None:
    global _loaded_builtin
    if _loaded_builtin:
        return
    _loaded_builtin = True
    for module, path in builtin_modules():
        try:
            declarations = _declarations(path.read_text(encoding="utf-8"))
        except _NotLiteral:  # not readable without running it: import it instead
            importlib.import_module(module)
            continue
        for name, options, function, summary in declarations:
            _declare(name, options, module=module, function=function, summary=summary, builder=None)


def load_entry_point_backbones() -> None:
    BACKBONES.load_entry_points()


def load_plugin(path_or_module: str) -> None:
    """Import a plugin given as a ``.py`` file path or an importable module name."""
    load_builtin_backbones()
    path = Path(path_or_module)
    if path.suffix == ".py" or path.exists() or os.sep in path_or_module or not path_or_module.strip():
        if not path.is_file() or path.suffix != ".py":
            what = "is not a .py file" if path.exists() else "does not exist"
            raise VbenchError(f"--plugin: plugin file {path_or_module!r} {what}; give a .py file or an importable module")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        module_name = f"vbench_plugin_{path.stem}_{digest}"
        if module_name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            run_plugin(str(path), lambda: spec.loader.exec_module(module))
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return
    try:
        found = importlib.util.find_spec(path_or_module)
    except (ImportError, ValueError):  # a dotted name whose parent is no package, or a relative name
        found = None
    if found is None:
        raise VbenchError(f"plugin {path_or_module!r} is neither a file nor an importable module; "
                          "give a path to a .py file or an installed module name")
    run_plugin(path_or_module, lambda: importlib.import_module(path_or_module))


def load_all(plugins: Iterable[str] = ()) -> None:
    load_builtin_backbones()
    load_entry_point_backbones()
    for plugin in plugins:
        load_plugin(plugin)


# --- lookup ----------------------------------------------------------------------------------------
def close_names(name: str, n: int = 5) -> list[str]:
    """The ``n`` registered backbones whose name or alias is most like ``name``."""
    load_all()
    return BACKBONES.close_names(name, n)


def resolve_name(name: str) -> str:
    load_all()
    return BACKBONES.resolve(name)


def get_backbone(name: str) -> BackboneSpec:
    return BACKBONES.get(resolve_name(name))


def canonical_or_none(name: str) -> str | None:
    """The canonical name of ``name`` (a name or an alias), None when nothing is registered under it."""
    load_all()
    return BACKBONES.canonical(name)


def select_backbones(patterns: str | Iterable[str], family: str | None = None, task: str | None = None) -> list[BackboneSpec]:
    """Backbones named by comma-separated names, aliases or shell patterns over names (``vit-*``), in order.

    A plain name must exist (closest names otherwise); a pattern must match at least one backbone.
    """
    items = [p.strip() for p in (patterns.split(",") if isinstance(patterns, str) else patterns) if p.strip()]
    chosen: list[BackboneSpec] = []
    for item in items:
        if any(ch in item for ch in "*?["):
            matches = sorted((s for s in list_backbones(family=family, task=task)  # names, as timm's list_models
                              if fnmatch.fnmatchcase(s.name.lower(), item.lower())), key=lambda s: s.name)
            if not matches:
                raise UnknownNameError(f"no backbone matches {item!r}" + _filters_text(family, task))
        else:
            matches = [get_backbone(item)]
        chosen += [spec for spec in matches if spec not in chosen]
    return chosen


def _filters_text(family: str | None, task: str | None) -> str:
    parts = [f"family {family!r}" if family else "", f"task {task!r}" if task else ""]
    return (" in " + " and ".join(p for p in parts if p)) if any(parts) else ""


def create_backbone(name: str, img_size: int = 32, num_classes: int = 10, task: str = DEFAULT_TASK, **overrides):
    """Build the registered backbone ``name`` (a name or alias) for ``task``."""
    return get_backbone(name).build(img_size=img_size, num_classes=num_classes, task=task, **overrides)


def list_backbones(family: str | None = None, task: str | None = None) -> list[BackboneSpec]:
    load_all()
    specs = [s for s in BACKBONES.values() if family is None or s.family.lower() == family.lower()]
    return [s for s in specs if task is None or task in s.variants]


def families() -> list[str]:
    return sorted({s.family for s in list_backbones()})
