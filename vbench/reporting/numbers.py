"""Numbers as every table, page and command shows them (imports nothing heavy: the command line uses it)."""

from __future__ import annotations


def missing(value) -> bool:
    """None or NaN."""
    return value is None or value != value


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if missing(value) else f"{value:.{digits}f}"


def signed(value: float | None) -> str:
    return "-" if missing(value) else f"{value:+.2f}"


def millions(count: int | None) -> float | None:
    return None if count is None else count / 1e6


def million_digits(value_m: float) -> int:
    """Two decimals of millions, four where a tiny model would show 0.00."""
    return 2 if value_m >= 0.1 or value_m == 0 else 4


def params_text(value_m: float | None) -> str:
    """Millions (of parameters, of FLOPs) as text: ``1.03``, ``0.0123``, ``-``."""
    return "-" if missing(value_m) else f"{value_m:.{million_digits(value_m)}f}"


def count_text(count: int | None) -> str:
    """A count in millions with its unit: ``1.03M``."""
    return "-" if count is None else f"{params_text(count / 1e6)}M"
