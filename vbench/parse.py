"""Values given on the command line, parsed in one place: comma-separated lists (seeds, corruptions,
severities, runtimes, batch sizes, ...). An empty item (``0,,1``, a trailing comma, an empty option) is an
error, never silently dropped."""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

from vbench.errors import VbenchError

T = TypeVar("T")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


TYPE_WORDS = {int: "integers", float: "numbers", str: "names", non_negative_int: "non-negative integers",
              positive_int: "positive integers"}


def parse_list(text: str | None, option: str, item: Callable[[str], T] = str, *, choices: Iterable[T] | None = None,
               accept: Callable[[T], bool] | None = None, requirement: str = "", example: str = "",
               all_word: str | None = None, unique: bool = True, noun: str = "") -> list[T]:
    """The items of ``option``'s comma-separated ``text`` in the order given, each converted by ``item`` (a
    ``ValueError`` there means a bad item) and kept only if ``accept`` (when given) takes it and it is among
    ``choices`` (when given); ``all_word`` (``"all"``) stands for every choice. Empty items, items that do not
    convert, are not accepted or (with ``unique``) repeat, are one-line errors naming the option;
    ``requirement`` says what the list must hold ("distinct non-negative integers"), ``noun`` what an item is
    ("corruption")."""
    hint = f" (for example {option} {example})" if example else ""
    raw = "" if text is None else str(text)
    parts = [part.strip() for part in raw.split(",")]
    if not raw.strip() or any(not part for part in parts):
        raise VbenchError(f"{option} {raw!r} has an empty item; give a comma-separated list{hint}")
    allowed = list(choices) if choices is not None else None
    if all_word is not None and parts == [all_word] and allowed is not None:
        return allowed
    try:
        values = [item(part) for part in parts]
    except ValueError:
        raise VbenchError(f"{option} {raw!r} is not a comma-separated list of {TYPE_WORDS.get(item, 'values')}"
                          f"{hint}") from None
    if allowed is not None:
        unknown = next((part for part, value in zip(parts, values) if value not in allowed), None)
        if unknown is not None:
            every = f"'{all_word}' or " if all_word else ""
            what = f"{noun} {unknown!r}" if noun else repr(unknown)
            raise VbenchError(f"{option}: unknown {what}; choose {every}from {', '.join(map(str, allowed))}")
    refused = accept is not None and not all(accept(value) for value in values)
    if refused or unique and len(set(values)) != len(values):
        must = requirement or ("distinct values" if unique else "valid values")
        raise VbenchError(f"{option} {raw!r} must list {must}{hint}")
    return values


def parse_seeds(text: str | None, default: int) -> list[int]:
    """``--seeds``: distinct non-negative integers; the recipe's seed when the option is not given."""
    if text is None:
        return [default]
    return parse_list(text, "--seeds", int, accept=lambda seed: seed >= 0,
                      requirement="distinct non-negative integers", example="0,1,2")
