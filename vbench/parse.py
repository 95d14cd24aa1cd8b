"""Values given on the command line, parsed in one place: comma-separated lists (seeds, corruptions,
severities, runtimes, batch sizes, ...). An empty item (``0,,1``, a trailing comma, an empty option) is an
error, never silently dropped."""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

from vbench.errors import VbenchError

T = TypeVar("T")


def parse_list(text: str | None, option: str, item: Callable[[str], T] = str, *, choices: Iterable[T] | None = None,
               example: str = "", all_word: str | None = None, unique: bool = True) -> list[T]:
    """The items of ``option``'s comma-separated ``text`` in the order given, each converted by ``item`` (a
    ``ValueError`` there means a bad item), checked against ``choices`` when given; ``all_word`` (``"all"``)
    stands for every choice. Empty items and (with ``unique``) repeats are errors naming the option."""
    hint = f" (for example {option} {example})" if example else ""
    raw = "" if text is None else str(text)
    parts = [part.strip() for part in raw.split(",")]
    if not raw.strip() or any(not part for part in parts):
        raise VbenchError(f"{option} {raw!r} has an empty item; give a comma-separated list{hint}")
    allowed = list(choices) if choices is not None else None
    if all_word is not None and parts == [all_word] and allowed is not None:
        return allowed
    values = []
    for part in parts:
        try:
            value = item(part)
        except ValueError:
            raise VbenchError(f"{option}: {part!r} is not {_kind(item)}{hint}") from None
        if allowed is not None and value not in allowed:
            every = f"'{all_word}' or " if all_word else ""
            raise VbenchError(f"{option}: unknown {part!r}; choose {every}from {', '.join(map(str, allowed))}")
        values.append(value)
    if unique and len(set(values)) != len(values):
        repeated = next(value for value in values if values.count(value) > 1)
        raise VbenchError(f"{option} names {repeated!r} twice; give each once{hint}")
    return values


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


def _kind(item: Callable) -> str:
    kinds = {int: "an integer", float: "a number", non_negative_int: "a non-negative integer",
             positive_int: "a positive integer"}
    return kinds.get(item, "a valid item")


def parse_seeds(text: str | None, default: int) -> list[int]:
    """``--seeds``: distinct non-negative integers; the recipe's seed when the option is not given."""
    if text is None:
        return [default]
    return parse_list(text, "--seeds", non_negative_int, example="0,1,2")
