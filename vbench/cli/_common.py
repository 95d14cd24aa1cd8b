"""What the command modules share: the app, consoles, common options and number formats."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Benchmark compact vision backbones: train, store, report, compare.")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

DbOption = typer.Option(None, "--db", show_default=False,
                        help="Run store: a SQLite file path or a SQLAlchemy URL (default $VBENCH_DB, else results/vbench.db).")
PluginOption = typer.Option(None, "--plugin", show_default=False,
                            help="A .py file or module that registers backbones (repeatable).")
SuiteFilter = typer.Option(None, "--suite", help="Only this suite.")
BackboneFilter = typer.Option(None, "--backbones", help="Comma-separated names, aliases or patterns (vit-*).")
FamilyFilter = typer.Option(None, "--family", help="Only backbones of this family (swin, vit, lkca, ...).")


def load_plugins(plugins: Optional[List[str]]) -> None:
    from vbench.api import load_plugins as load

    load(plugins or ())


def wide_for_files() -> None:
    """A log file gets whole tables, not tables cut to 80 columns (an explicit $COLUMNS wins)."""
    import os

    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = max(console.width, 160)


def millions(count) -> str:
    """Counts in millions with enough digits that a small model does not show as 0.00M."""
    if count is None:
        return "-"
    value = count / 1e6
    return f"{value:.2f}M" if value >= 0.1 or value == 0 else f"{value:.4f}M"


def number(value, digits: int = 2, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
