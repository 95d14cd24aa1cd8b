"""``vbench list backbones|suites``: from the registry's and the suites' declarations, without torch
unless ``--measure`` asks for the counts."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.table import Table

from vbench.cli._common import PluginOption, app, console, load_plugins, millions

list_app = typer.Typer(no_args_is_help=True, help="List what vbench knows about.")
app.add_typer(list_app, name="list")

FLOPS_NOTE = "FLOPs are fvcore multiply-accumulates (one multiply-add = one flop), the unit of the paper's Flops."


@list_app.command("backbones")
def list_backbones_command(
    patterns: Optional[str] = typer.Argument(None, help="Names or patterns, comma-separated (e.g. 'vit-*,lkca-t')."),
    family: Optional[str] = typer.Option(None, "--family", help="Only this family."),
    task: Optional[str] = typer.Option(None, "--task", help="Only backbones with a model for this task."),
    measure: bool = typer.Option(False, "--measure", help="Build each model and count its params and FLOPs (cached)."),
    img: int = typer.Option(32, "--img", help="With --measure: the image size."),
    classes: int = typer.Option(10, "--classes", help="With --measure: the number of classes."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Every registered backbone: family, tasks and the paper's params (--measure: counted here)."""
    from vbench import api
    from vbench.errors import VbenchError

    load_plugins(plugin)
    if measure and (img < 1 or classes < 1):
        raise VbenchError(f"--img and --classes must be positive, got {img} and {classes}")
    if task:
        from vbench.tasks import get_task

        get_task(task)
    rows = api.backbone_rows(patterns, family=family, task=task)
    if measure:
        with console.status("measuring backbones...") if not as_json else _quiet():
            rows = api.measure_rows(rows, img, classes, task)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console.print(_table(rows, measure, img, classes))


def _table(rows: list[dict], measured: bool, img: int, classes: int) -> Table:
    title = f"Backbones at {img}x{img}, {classes} classes" if measured else "Backbones"
    table = Table(title=title, caption=FLOPS_NOTE if measured else "--measure counts params and FLOPs")
    table.add_column("name", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("tasks", overflow="fold")
    table.add_column("paper names", overflow="fold")
    table.add_column("paper params", justify="right")
    if measured:
        table.add_column("params", justify="right")
        table.add_column("FLOPs", justify="right", overflow="fold")
    for row in rows:
        cells = [row["name"], row["family"], ", ".join(row["tasks"]), ", ".join(row["paper_names"]) or "-",
                 f"{row['paper_params_m']:.2f}M" if row["paper_params_m"] is not None else "-"]
        if measured:
            cells += [millions(row["params"]), _flops_text(row)]
        table.add_row(*cells)
    return table


def _flops_text(row: dict) -> str:
    if row.get("error"):
        return f"n/a: {row['error']}"
    text = millions(row["flops"])
    return text if row["flops_complete"] else f"{text} (incomplete)"


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@list_app.command("suites")
def list_suites_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The built-in suites: task, dataset kind, image size, classes and schedule."""
    from vbench.api import suite_rows

    rows = suite_rows()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Suites", caption="--suite also takes a path to your own suite file")
    for column in ("name", "task", "kind", "image size", "classes", "schedule"):
        table.add_column(column, justify="right" if column in ("image size", "classes", "schedule") else "left",
                         no_wrap=column in ("name", "task"), overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["task"], row["kind"], f"{row['img_size']}x{row['img_size']}",
                      str(row["num_classes"]), f"{row['steps']} {row['step_unit']}s")
    console.print(table)
