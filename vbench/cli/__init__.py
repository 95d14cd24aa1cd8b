"""The ``vbench`` command line: a thin layer over ``vbench.api``, one small module per command.

Nothing here imports torch at module level: ``vbench --help`` and ``vbench list ...`` answer at once.
Bad input is one line on stderr and exit code 2; ``--debug`` (anywhere on the line) shows tracebacks.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from vbench.api import version_text

# the modules that register the commands
from vbench.cli import (  # noqa: F401
    bench,
    calibration,
    compare,
    data,
    db,
    deploy,
    erf,
    evaluate,
    info,
    leaderboard,
    listing,
    plot,
    report,
    robustness,
    run,
    runs,
    shape_bias,
    tune,
)
from vbench.cli._common import app, err_console
from vbench.errors import VbenchError, one_line


@app.callback(invoke_without_command=True)
def main_options(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of any error."),
) -> None:
    """Benchmark compact vision backbones: train, store, report, compare."""
    if version:
        typer.echo(version_text())
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def _click_exception_modules() -> list:
    """click's exceptions, and those of the copy of click that typer >= 0.20 vendors (typer._click)."""
    # lazy: click's exceptions, only when an error is shown
    import click

    modules = [click.exceptions]
    try:
        # lazy: click's exceptions, only when an error is shown
        from typer._click import exceptions as vendored
    except ImportError:
        return modules
    return modules + [vendored]


def main(argv: Optional[list[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:  # a global flag wherever it is given
        args = ["--debug", *[a for a in args if a != "--debug"]]
    try:
        code = app(args=args, prog_name="vbench", standalone_mode=False)
    except VbenchError as exc:
        if debug:
            raise
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - click usage errors carry their own exit code
        modules = _click_exception_modules()
        if isinstance(exc, tuple(module.ClickException for module in modules)):
            if debug:
                raise
            command = getattr(getattr(exc, "ctx", None), "command_path", "vbench")
            message = " ".join(exc.format_message().split())  # one line, whatever click wrapped
            err_console.print(f"error: {message} (see `{command} --help`)", markup=False, highlight=False,
                              soft_wrap=True)
            sys.exit(exc.exit_code)
        exits = tuple(getattr(module, "Exit", typer.Exit) for module in modules)
        if isinstance(exc, exits):
            sys.exit(exc.exit_code)
        if debug:
            raise
        err_console.print(f"error: {one_line(exc)} (run with --debug for the traceback)",
                          markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    if isinstance(code, int) and code != 0:  # without standalone mode typer returns Ctrl-C's 130
        if code == 130:
            err_console.print("aborted")
        sys.exit(code)
