"""``vbench list backbones|suites``: from the registry's and the suites' declarations, without torch
unless ``--measure`` asks for the counts."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from vbench.api import suite_rows
from vbench.cli._common import PluginOption, app, console, count_text, load_plugins
from vbench.errors import VbenchError
from vbench.tasks import get_task

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
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench import api

    load_plugins(plugin)
    if measure and (img < 1 or classes < 1):
        raise VbenchError(f"--img and --classes must be positive, got {img} and {classes}")
    if task:
        get_task(task)
    rows = api.backbone_rows(patterns, family=family, task=task)
    if measure:
        with console.status("measuring backbones...") if not as_json else _quiet():
            rows = api.measure_rows(rows, img, classes, task)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_backbones(rows, measure, img, classes)


def print_backbones(rows: list[dict], measured: bool, img: int, classes: int) -> None:
    """A boxed table where it fits the terminal whole; else the same without borders; else one block per
    backbone. No layout ever cuts a name or a number: a table is used only when every cell fits without
    breaking a word (rich would fold them)."""
    title = f"Backbones at {img}x{img}, {classes} classes" if measured else "Backbones"
    caption = FLOPS_NOTE if measured else "--measure counts params and FLOPs"

    headers, cells = _cells(rows, measured)
    errors = [f"{row['name']}: {row['error']}" for row in rows if measured and row.get("error")]
    caption = "\n".join([caption, *errors])
    for boxed in (True, False):
        borders = 3 * len(headers) + 1 if boxed else 2 * (len(headers) - 1)
        widths = _column_widths(headers, cells, console.width - borders)
        if widths:
            console.print(_table(headers, cells, widths, boxed, title, caption))
            return
    console.print(title, style="bold", highlight=False)
    for row in cells:
        console.print(row[0], style="bold", soft_wrap=True, highlight=False)
        details = "; ".join(f"{header} {cell}" for header, cell in zip(headers[1:], row[1:]))
        console.print(Padding(Text(details), (0, 0, 0, 2)))
    console.print(caption, highlight=False)


def _cells(rows: list[dict], measured: bool) -> tuple[list[str], list[list[str]]]:
    headers = ["name", "family", "tasks", "paper names", "paper params"] + (["params", "FLOPs"] if measured else [])
    cells = []
    for row in rows:
        line = [row["name"], row["family"], ", ".join(row["tasks"]), ", ".join(row["paper_names"]) or "-",
                f"{row['paper_params_m']:.2f}M" if row["paper_params_m"] is not None else "-"]
        if measured:
            line += [count_text(row["params"]), _flops_text(row)]
        cells.append(line)
    return headers, cells


NUMERIC = ("paper params", "params", "FLOPs")


def _column_widths(headers: list[str], cells: list[list[str]], room: int) -> list[int] | None:
    """Widths that fit ``room`` without breaking a word (the name column: without breaking a name), or None.

    Each column gets its longest word, then the room left goes to the columns whose cells are longer, most
    wanting first. Fixed widths, because rich's own shrinking can crop the last column."""
    longest_word, natural = [], []
    for index, header in enumerate(headers):
        texts = [header, *(row[index] for row in cells)]
        natural.append(max(len(text) for text in texts))
        longest_word.append(natural[-1] if index == 0 else max(len(w) for t in texts for w in t.split() or [""]))
    widths = list(longest_word)
    if sum(widths) > room:
        return None
    spare = room - sum(widths)
    for index in sorted(range(len(headers)), key=lambda i: natural[i] - widths[i], reverse=True):
        grant = min(spare, natural[index] - widths[index])
        widths[index] += grant
        spare -= grant
    return widths


def _table(headers: list[str], cells: list[list[str]], widths: list[int], boxed: bool, title: str,
           caption: str) -> Table:
    options = {} if boxed else {"box": None, "pad_edge": False, "show_edge": False}
    table = Table(title=title, caption=caption, **options)
    for header, width in zip(headers, widths):
        table.add_column(header, no_wrap=header == "name", width=width, overflow="fold",
                         justify="right" if header in NUMERIC else "left")
    for row in cells:
        table.add_row(*row)
    return table


def _flops_text(row: dict) -> str:
    if row.get("error"):
        return "n/a"  # the reason is under the table
    text = count_text(row["flops"])
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
