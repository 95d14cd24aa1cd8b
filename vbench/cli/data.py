"""``vbench data shards|check``: write a dataset as webdataset shards with a manifest, and verify them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from vbench.cli._common import app, console, err_console

data_app = typer.Typer(no_args_is_help=True, help="Write a dataset as webdataset shards, or check shards.")
app.add_typer(data_app, name="data")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


@data_app.command("shards")
def shards_command(
    source: str = typer.Argument(..., help="A suite (built-in name or .toml file) or an image folder."),
    output: str = typer.Option(..., "--output", help="The new folder for the shards and manifest.json."),
    shard_size: int = typer.Option(5000, "--shard-size", help="Images per shard."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where the suite's data live."),
) -> None:
    """Write both splits of a suite or an image folder as webdataset shards (.jpg/.png/.webp + .cls), with a
    manifest: class names, counts per class and split, sha256 per shard."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.data.shards import check_output, folder_sources, suite_sources, write_shards
    from vbench.errors import VbenchError
    from vbench.suites import load_suite

    if shard_size < 1:
        raise VbenchError(f"--shard-size must be at least 1, got {shard_size}")
    target = check_output(Path(output))
    folder = Path(source).expanduser()
    if folder.is_dir():
        sources = folder_sources(folder)
    else:
        sources = suite_sources(load_suite(source, overrides={"data_root": data_root}), data_root)
    total = sum(len(images) for images in sources.splits.values())
    with _progress() as progress:
        bar = progress.add_task(f"writing shards of {source}", total=total)
        manifest = write_shards(sources, target, shard_size, progress=lambda n: progress.advance(bar, n))
    table = Table(title=f"vbench data shards: {target}")
    for column in ("split", "images", "shards", "classes", "MB"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, info in manifest.splits.items():
        table.add_row(split, f"{info.count:,}", str(len(info.shards)), str(len(manifest.classes)),
                      f"{sum(s.bytes for s in info.shards) / 1e6:,.1f}")
    console.print(table)
    console.print(f"identity {manifest.identity}; check with: vbench data check {target}\n"
                  f"use: a suite with root = \"{target}\" (or --data-root {target}) streams them", highlight=False)


@data_app.command("check")
def check_command(folder: str = typer.Argument(..., help="A folder written by `vbench data shards`.")) -> None:
    """Verify every shard against the manifest (present, size, sha256): one line naming a bad shard, exit 2."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.data.shards import check_shards, read_manifest

    manifest = read_manifest(folder)
    shards = sum(len(info.shards) for info in manifest.splits.values())
    with _progress() as progress:
        bar = progress.add_task(f"checking {manifest.folder}", total=shards)
        check_shards(manifest, hashes=True, progress=lambda shard: progress.advance(bar))
    counts = ", ".join(f"{info.count:,} {split}" for split, info in manifest.splits.items())
    console.print(f"{manifest.folder}: ok ({shards} shards, {counts} images, {len(manifest.classes)} classes, "
                  f"identity {manifest.identity})", highlight=False)
