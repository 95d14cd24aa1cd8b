"""One registry for every kind of plug-in: backbones, tasks, leaderboard sections, and later runtimes,
metrics and readers.

A ``Registry`` holds named objects of one kind, looked up case-insensitively by name or alias; an unknown
name is one error with the closest names. Third-party objects come from an entry-point group, loaded
lazily on the first lookup (as lm-evaluation-harness's ``api/registry.py`` does): an entry point may be a
module (importing it registers), a function (called to register) or an object that ``adopt`` registers.
A plug-in that fails to load is one line naming it, its exception and its line.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from vbench.errors import UnknownNameError, VbenchError, first_line

T = TypeVar("T")
FEW = 8  # an unknown name lists every registered one up to this many, else the closest


class DuplicateNameError(VbenchError):
    """A name or alias that another registered object holds already."""


@dataclass(frozen=True)
class Reference:
    """``"module:attribute"``, imported on first use: a lower package can name an object of a higher one (a
    feature's chart, a task's implementation) without importing it."""

    target: str

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


def run_plugin(label: str, load: Callable[[], Any]) -> Any:
    """Import or call a plug-in; an exception it raises becomes one line naming the plug-in and its line."""
    try:
        return load()
    except VbenchError:
        raise
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        raise VbenchError(f"plugin {label} raised {type(exc).__name__}: {first_line(exc)}{where}; fix the plugin or "
                          "leave it out") from exc


class Registry(Generic[T]):
    """Named objects of one ``kind`` (used in messages: "unknown backbone 'x'")."""

    def __init__(self, kind: str, group: str | None = None, adopt: Callable[[Any], Any] | None = None,
                 listing: str = ""):
        self.kind = kind
        self.group = group  # the entry-point group of third-party objects
        self.adopt = adopt  # registers an object an entry point returns (None: entry points register themselves)
        self.listing = listing  # the command that lists them, named in errors
        self._items: dict[str, T] = {}  # canonical name -> object, in registration order
        self._lookup: dict[str, str] = {}  # lower-cased name or alias -> canonical name
        self._entry_points_loaded = group is None

    # --- registering ------------------------------------------------------------------------------
    def add(self, name: str, item: T | Reference, aliases: Iterable[str] = (), replace: bool = False) -> T:
        """Register ``item`` (or a ``Reference`` to it, imported on first use) under ``name`` and ``aliases``."""
        keys = [name.lower(), *(alias.lower() for alias in aliases)]
        if len(set(keys)) != len(keys):
            raise DuplicateNameError(f"{self.kind} {name!r} repeats a name among its aliases")
        if replace and name in self._items:
            self.remove(name)
        for key in keys:
            holder = self._lookup.get(key)
            if holder is not None and holder != name or holder == name and not replace and key == name.lower():
                raise DuplicateNameError(f"{self.kind} name {key!r} is already registered by {holder!r}; "
                                         "rename one of them")
        self._items[name] = item
        for key in keys:
            self._lookup[key] = name
        return item

    def add_aliases(self, name: str, aliases: Iterable[str]) -> None:
        """More aliases for the registered ``name``."""
        for alias in aliases:
            holder = self._lookup.get(alias.lower())
            if holder not in (None, name):
                raise DuplicateNameError(f"{self.kind} name {alias!r} is already registered by {holder!r}; "
                                         "rename one of them")
            self._lookup[alias.lower()] = name

    def register(self, name: str, aliases: Iterable[str] = (), replace: bool = False):
        """Decorator form of ``add``."""

        def decorate(item: T) -> T:
            self.add(name, item, aliases, replace)
            return item

        return decorate

    def remove(self, name: str) -> T | None:
        canonical = self._lookup.get(name.lower(), name)
        item = self._items.pop(canonical, None)
        for key in [key for key, held in self._lookup.items() if held == canonical]:
            del self._lookup[key]
        return item

    def holder(self, key: str) -> str | None:
        """The canonical name registered under ``key`` (a name or alias), without loading entry points."""
        return self._lookup.get(key.lower())

    # --- looking up -------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry in entry_points(group=self.group):
            loaded = run_plugin(entry.value, entry.load)
            if inspect.ismodule(loaded):
                continue
            if self.adopt is not None and not inspect.isfunction(loaded):
                self.adopt(loaded)
            elif callable(loaded):
                run_plugin(entry.value, loaded)

    def reset_entry_points(self) -> None:
        """The next lookup reads the entry points again (a package was installed since)."""
        self._entry_points_loaded = self.group is None

    def canonical(self, name: str) -> str | None:
        """The canonical name of ``name`` (a name or an alias), None when nothing is registered under it."""
        self.load_entry_points()
        return self._lookup.get(name.lower())

    def resolve(self, name: str) -> str:
        canonical = self.canonical(name)
        if canonical is None:
            listing = f" (`{self.listing}` lists all)" if self.listing else ""
            few = len(self._items) <= FEW
            names = ", ".join(self._items if few else self.close_names(name))
            raise UnknownNameError(f"unknown {self.kind} {name!r}; {'known' if few else 'closest'}: {names}{listing}")
        return canonical

    def get(self, name: str) -> T:
        return self._loaded(self.resolve(name))

    def find(self, name: str) -> T | None:
        canonical = self.canonical(name)
        return None if canonical is None else self._loaded(canonical)

    def _loaded(self, canonical: str) -> T:
        item = self._items[canonical]
        if isinstance(item, Reference):
            item = self._items[canonical] = item.load()
        return item

    def close_names(self, name: str, n: int = 5) -> list[str]:
        """The ``n`` registered names whose name or alias is most like ``name``."""
        self.load_entry_points()
        key = name.lower()

        def likeness(candidate: str) -> float:
            contains = 1.0 if key and (key in candidate or candidate in key) else 0.0
            return contains + difflib.SequenceMatcher(None, key, candidate).ratio()

        ranked: list[str] = []
        for candidate in sorted(self._lookup, key=likeness, reverse=True):
            if self._lookup[candidate] not in ranked:
                ranked.append(self._lookup[candidate])
        return ranked[:n]

    def names(self) -> list[str]:
        self.load_entry_points()
        return list(self._items)

    def values(self) -> list[T]:
        return [item for _, item in self.items()]

    def items(self) -> list[tuple[str, T]]:
        self.load_entry_points()
        return [(name, self._loaded(name)) for name in list(self._items)]

    def __contains__(self, name: str) -> bool:
        return self.canonical(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
