"""``vbench db check|upgrade``: the store's integrity, and its schema upgrade on request."""

from __future__ import annotations

from typing import Optional

import typer

from vbench.cli._common import DbOption, app, console
from vbench.errors import VbenchError

db_app = typer.Typer(no_args_is_help=True, help="Check or upgrade the run store.")
app.add_typer(db_app, name="db")


@db_app.command("check")
def db_check_command(db: Optional[str] = DbOption) -> None:
    """Run the database's integrity check (SQLite: PRAGMA integrity_check)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.store import opened

    with opened(db) as store:
        problems = store.integrity_problems()
        label = store.label
    if problems:
        raise VbenchError(f"the run store {label} is damaged: {problems[0]} ({len(problems)} problems); recover what "
                          f"is left with: sqlite3 {label} \".recover\" | sqlite3 recovered.db")
    console.print(f"{label}: ok", highlight=False)


@db_app.command("upgrade")
def db_upgrade_command(db: Optional[str] = DbOption) -> None:
    """Upgrade the store's schema to this vbench's (older vbench versions cannot open it afterwards)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.store import SCHEMA_VERSION, opened

    with opened(db, write=True, create=False) as store:
        label = store.label
    console.print(f"{label}: schema version {SCHEMA_VERSION}", highlight=False)
