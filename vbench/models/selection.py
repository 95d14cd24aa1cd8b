"""Choosing backbones by names, aliases, shell patterns and family, as timm's ``list_models(filter, module)``:
from the registry (``vbench run``, ``vbench list``) or from the names runs were stored under (``vbench
runs``, ``vbench report``, where a run of a plugin that is not loaded now must still be found)."""

from __future__ import annotations

import fnmatch
from typing import Iterable

from vbench.errors import VbenchError
from vbench.models import registry
from vbench.parse import parse_list


def _items(patterns: str | None) -> list[str]:
    """The names or patterns of ``--backbones`` (given: an empty item is an error); none when not given."""
    return [] if patterns is None else parse_list(patterns, "--backbones", example="'vit-*,lkca-t'", unique=False)


def _is_pattern(item: str) -> bool:
    return any(ch in item for ch in "*?[")


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())


def _same_family(spec_family: str | None, family: str | None) -> bool:
    return family is None or (spec_family or "").lower() == family.lower()


def check_family(family: str | None, task: str | None = None) -> None:
    """A family no registered backbone (of ``task``) belongs to is one error listing the families."""
    if family is None or registry.list_backbones(family=family, task=task):
        return
    known = sorted({spec.family for spec in registry.list_backbones(task=task)})
    of_task = f" with a {task} model" if task else ""
    raise VbenchError(f"no backbone{of_task} in family {family!r}; families: {', '.join(known)}")


def select_registered(patterns: str | None, family: str | None = None, task: str | None = None) -> list:
    """Registered backbones (specs) named by ``patterns`` within ``family``; all of ``family`` when no pattern
    is given. A plain name outside the family is an error, not a silent drop."""
    check_family(family, task)
    if not _items(patterns):
        if family is None:
            raise VbenchError("give --backbones (names, aliases or patterns such as 'vit-*') or --family")
        return registry.list_backbones(family=family, task=task)
    specs = registry.select_backbones(patterns, family=family, task=task)
    for spec in specs:
        if not _same_family(spec.family, family):
            raise VbenchError(f"backbone {spec.name!r} is in family {spec.family!r}, not {family!r}; "
                              "leave out --family or name a backbone of that family")
    return specs


def stored_names(patterns: str | None, stored: Iterable[tuple[str, str | None]], family: str | None = None) -> list[str] | None:
    """Backbone names as runs store them, for filtering the store. ``stored`` holds (backbone, family) of the
    store's runs. Registered names and aliases resolve to their canonical name; patterns expand over
    registered and stored names; anything else is kept as given (a run of a plugin that is not loaded now).
    None (no filter) when neither patterns nor family is given."""
    stored = list(dict.fromkeys(stored))
    if not _items(patterns) and family is None:
        return None
    candidates = {spec.name: spec.family for spec in registry.list_backbones()}
    for name, stored_family in stored:
        candidates.setdefault(name, stored_family)
    in_family = [name for name, name_family in candidates.items() if _same_family(name_family, family)]
    if not _items(patterns):
        if not in_family:
            families = sorted({f for _, f in stored if f})
            raise VbenchError(f"no backbone in family {family!r}; families with runs: {', '.join(families) or 'none'}")
        return in_family
    names: list[str] = []
    for item in _items(patterns):
        if _is_pattern(item):
            matched = sorted(name for name in in_family if _matches(name, item))
            if not matched:
                within = f" in family {family!r}" if family else ""
                raise VbenchError(f"no backbone matches {item!r}{within}")
            names += matched
        else:
            names.append(registry.canonical_or_none(item) or item)
    if family is not None:
        names = [name for name in names if name in in_family]
        if not names:
            raise VbenchError(f"none of {patterns!r} is in family {family!r}; leave out --family or name a backbone "
                              "of that family")
    return list(dict.fromkeys(names))
