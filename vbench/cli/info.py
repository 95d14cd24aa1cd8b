"""``vbench info NAME``: one backbone's contract, counts, published numbers and layers."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.table import Table

from vbench.api import backbone_info
from vbench.cli._common import PluginOption, app, console, load_plugins
from vbench.cli.listing import FLOPS_NOTE


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="Backbone name or alias."),
    task: Optional[str] = typer.Option(None, "--task", help="Which of its models (default: its first task)."),
    img: int = typer.Option(32, "--img", help="Image size."),
    classes: int = typer.Option(10, "--classes", help="Number of classes."),
    as_json: bool = typer.Option(False, "--json"),
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Params, FLOPs, the paper's published numbers and a layer summary of one backbone."""
    load_plugins(plugin)
    info = backbone_info(name, img, classes, task)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    console.print(f"[bold]{info['name']}[/bold] ({info['family']}) {info['summary']}")
    console.print(f"tasks: {', '.join(info['tasks'])}; aliases: {', '.join(info['aliases']) or '-'}; "
                  f"paper names: {', '.join(info['paper_names']) or '-'}", highlight=False)
    console.print(f"{info['task']} model at {img}x{img}, {classes} classes: params {info['params']:,}, FLOPs "
                  f"{info['flops'] / 1e6:.2f}M{'' if info['flops_complete'] else ' (incomplete)'}; accepts "
                  f"{', '.join(info['accepts']) or 'no keyword arguments'}; last feature map: "
                  f"{info['feature_map'] or 'not declared'}", highlight=False)
    console.print(FLOPS_NOTE)
    paper = info["paper"]
    if paper:
        console.print(f"paper ({paper['img_size']}x{paper['img_size']}, {paper['num_classes']} classes): params "
                      f"{paper['params_m']}M (authors' model: {paper['exact_params']:,}), FLOPs {paper['flops_m']}M "
                      "(the paper's counter leaves out matmuls written with @/einsum and F.conv2d)", highlight=False)
    table = Table(title="Layers")
    for column in ("module", "type", "params"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for layer in info["layers"]:
        table.add_row(layer["module"], layer["type"], f"{layer['params']:,}")
    console.print(table)
