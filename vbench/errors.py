"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class PlainMessage:
    """An exception whose message reads on its own: ``one_line`` shows it without the exception's type."""


class VbenchError(PlainMessage, Exception):
    """Bad input the user can fix; the message says what was wrong and what to do."""


class UnknownNameError(VbenchError):
    """A name (backbone, suite, ...) that is not registered."""


def first_line(text: object, limit: int | None = None, empty: str = "") -> str:
    """The first non-blank line of ``text`` (cut to ``limit`` characters), ``empty`` when there is none."""
    lines = str(text or "").strip().splitlines()
    line = lines[0] if lines else empty
    return line[:limit] if limit else line


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception as one line: a ``PlainMessage``'s (a VbenchError's) own message, anything else prefixed with
    its type."""
    text = first_line(exc, limit)
    return text if isinstance(exc, PlainMessage) else f"{type(exc).__name__}: {text}"
