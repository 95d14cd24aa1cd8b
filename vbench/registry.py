"""Backbone registry: named builders ``(img_size, num_classes, **overrides) -> nn.Module``.

Built-in families live in the ``backbones`` package (every module there is imported once, on first
use); third-party backbones come from the ``vbench.backbones`` entry-point group or from
``--plugin PATH_OR_MODULE``. The engine only ever talks to this module, never to a family by name.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Iterable

import torch.nn as nn

from vbench.errors import UnknownNameError, VbenchError

ENTRY_POINT_GROUP = "vbench.backbones"
Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    builder: Builder
    family: str
    paper_names: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    in_paper: bool = True
    tasks: tuple[str, ...] = ("classification",)
    origin: str = ""
    defaults: dict = field(default_factory=dict)

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.builder) or ""
        return doc.splitlines()[0] if doc else ""

    def build(self, img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
        try:
            return self.builder(img_size=img_size, num_classes=num_classes, **{**self.defaults, **overrides})
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise VbenchError(f"backbone {self.name!r} does not take that override ({exc})") from None


class DuplicateBackboneError(VbenchError):
    pass


_SPECS: dict[str, BackboneSpec] = {}
_LOOKUP: dict[str, str] = {}  # lower-cased name or alias -> canonical name
_loaded_builtin = False
_loaded_entry_points = False


def _origin_of(builder: Builder) -> str:
    module = sys.modules.get(builder.__module__)
    path = getattr(module, "__file__", None)
    return f"{builder.__module__} ({path})" if path else builder.__module__


def register_backbone(
    name: str,
    *,
    family: str,
    paper_names: Iterable[str] = (),
    aliases: Iterable[str] = (),
    in_paper: bool = True,
    tasks: Iterable[str] = ("classification",),
    **defaults,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` under ``name``; extra keyword arguments become default overrides."""

    def decorate(builder: Builder) -> Builder:
        spec = BackboneSpec(
            name=name, builder=builder, family=family, paper_names=tuple(paper_names),
            aliases=tuple(aliases), in_paper=in_paper, tasks=tuple(tasks),
            origin=_origin_of(builder), defaults=dict(defaults),
        )
        _add(spec)
        return builder

    return decorate


def _add(spec: BackboneSpec) -> None:
    keys = [spec.name.lower()] + [alias.lower() for alias in spec.aliases]
    for key in keys:
        if key in _LOOKUP:
            holder = _SPECS[_LOOKUP[key]]
            raise DuplicateBackboneError(
                f"backbone name {key!r} from {spec.origin} is already registered by "
                f"{holder.name!r} from {holder.origin}; rename one of them"
            )
    if len(set(keys)) != len(keys):
        raise DuplicateBackboneError(f"backbone {spec.name!r} from {spec.origin} repeats a name among its aliases")
    _SPECS[spec.name] = spec
    for key in keys:
        _LOOKUP[key] = spec.name


def unregister_backbone(name: str) -> None:
    """Remove a backbone (tests and interactive use)."""
    spec = _SPECS.pop(resolve_name(name))
    for key in [spec.name.lower()] + [alias.lower() for alias in spec.aliases]:
        _LOOKUP.pop(key, None)


def load_builtin_backbones() -> None:
    global _loaded_builtin
    if _loaded_builtin:
        return
    _loaded_builtin = True
    import backbones

    for module in sorted(pkgutil.iter_modules(backbones.__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"backbones.{module.name}")


def load_entry_point_backbones() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        if callable(loaded) and not inspect.ismodule(loaded):
            loaded()


def load_plugin(path_or_module: str) -> None:
    """Import a plugin given as a ``.py`` file path or an importable module name."""
    load_builtin_backbones()
    path = Path(path_or_module)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise VbenchError(f"plugin file {str(path)!r} does not exist; give a .py file or an importable module")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        module_name = f"vbench_plugin_{path.stem}_{digest}"
        if module_name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            sys.modules.pop(module_name, None)
            raise
        return
    try:
        importlib.import_module(path_or_module)
    except ModuleNotFoundError as exc:
        raise VbenchError(
            f"plugin {path_or_module!r} is neither a file nor an importable module ({exc}); "
            "give a path to a .py file or an installed module name"
        ) from None


def load_all(plugins: Iterable[str] = ()) -> None:
    load_builtin_backbones()
    load_entry_point_backbones()
    for plugin in plugins:
        load_plugin(plugin)


def close_names(name: str, n: int = 5) -> list[str]:
    """The ``n`` registered backbones whose name or alias is most like ``name`` (never empty)."""
    load_all()
    key = name.lower()

    def likeness(candidate: str) -> float:
        contains = 1.0 if key and (key in candidate or candidate in key) else 0.0
        return contains + difflib.SequenceMatcher(None, key, candidate).ratio()

    ranked: list[str] = []
    for candidate in sorted(_LOOKUP, key=likeness, reverse=True):
        canonical = _LOOKUP[candidate]
        if canonical not in ranked:
            ranked.append(canonical)
    return ranked[:n]


def resolve_name(name: str) -> str:
    load_all()
    canonical = _LOOKUP.get(name.lower())
    if canonical is None:
        close = close_names(name)
        raise UnknownNameError(
            f"unknown backbone {name!r}; closest: {', '.join(close)} (`vbench list backbones` lists all)"
        )
    return canonical


def get_backbone(name: str) -> BackboneSpec:
    return _SPECS[resolve_name(name)]


def create_backbone(name: str, img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """Build the registered backbone ``name`` (a name or alias) for images of ``img_size`` and ``num_classes``."""
    return get_backbone(name).build(img_size=img_size, num_classes=num_classes, **overrides)


def list_backbones(family: str | None = None, task: str | None = None) -> list[BackboneSpec]:
    load_all()
    specs = [s for s in _SPECS.values() if family is None or s.family.lower() == family.lower()]
    return [s for s in specs if task is None or task in s.tasks]


def families() -> list[str]:
    return sorted({s.family for s in list_backbones()})
