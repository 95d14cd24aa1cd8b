"""``vbench bench NAME``: the speed benchmarks of benchmarks/ (figures belong there, not in tests)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import List, Optional

import typer

from vbench.cli._common import PluginOption, app, load_plugins
from vbench.errors import VbenchError

BENCHMARK_DIR = Path(__file__).resolve().parent.parent.parent / "benchmarks"


def available() -> list[str]:
    return sorted(p.stem.replace("_", "-") for p in BENCHMARK_DIR.glob("*.py") if not p.stem.startswith("_"))


@app.command("bench", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Benchmark name (see the list in the error for an unknown one)."),
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Run one of the speed benchmarks in benchmarks/ (extra arguments are passed to it)."""
    if name not in available():  # a registered name only: never a path to some other script
        raise VbenchError(f"unknown benchmark {name!r}; available: {', '.join(available()) or 'none'}")
    load_plugins(plugin)
    script = BENCHMARK_DIR / f"{name.replace('-', '_')}.py"
    sys.argv = [str(script), *ctx.args]
    sys.path[:0] = [str(BENCHMARK_DIR), str(BENCHMARK_DIR.parent)]  # the scripts import _timing and backbones
    runpy.run_path(str(script), run_name="__main__")
