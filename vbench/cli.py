"""The ``vbench`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from vbench import registry
from vbench.errors import VbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark compact vision backbones.")
list_app = typer.Typer(no_args_is_help=True, help="List what vbench knows about.")
app.add_typer(list_app, name="list")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

PluginOption = typer.Option(
    None, "--plugin", help="A .py file or module that registers backbones (repeatable).", show_default=False
)


def load_plugins(plugins: Optional[List[str]]) -> None:
    registry.load_all(plugins or ())


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


@list_app.command("backbones")
def list_backbones_command(
    family: Optional[str] = typer.Option(None, "--family", help="Only this family."),
    img: int = typer.Option(32, "--img", help="Image size the counts are taken at."),
    classes: int = typer.Option(10, "--classes", help="Number of classes the counts are taken at."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Every registered backbone with its params and FLOPs."""
    from vbench.measure import FLOPS_UNIT_NOTE, measure_backbone

    load_plugins(plugin)
    specs = registry.list_backbones(family=family)
    if not specs and family:
        raise VbenchError(f"no backbone in family {family!r}; families: {', '.join(registry.families())}")
    rows = []
    with console.status("measuring backbones...") if not as_json else _nullcontext():
        for spec in specs:
            rows.append({**_spec_fields(spec), **_safe_measure(measure_backbone, spec.name, img, classes)})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Backbones at {img}x{img}, {classes} classes", caption=FLOPS_UNIT_NOTE)
    for column in ("name", "aliases", "family", "paper names", "params", "FLOPs"):
        table.add_column(column, justify="right" if column in ("params", "FLOPs") else "left")
    for row in rows:
        table.add_row(
            row["name"], ", ".join(row["aliases"]), row["family"], ", ".join(row["paper_names"]),
            _millions(row["params"]) if row["params"] is not None else "-",
            _flops_text(row),
        )
    console.print(table)
    for row in rows:
        if row.get("error"):
            console.print(f"[dim]n/a: {row['error']}[/dim]")


def _flops_text(row: dict) -> str:
    if row.get("error"):
        return "n/a"
    text = _millions(row["flops"])
    return text if row["flops_complete"] else f"{text} (incomplete)"


def _safe_measure(measure, name: str, img: int, classes: int) -> dict:
    """A backbone that cannot be built at this size is listed with the reason instead of its counts."""
    try:
        return measure(name, img_size=img, num_classes=classes)
    except VbenchError as exc:
        return {"params": None, "flops": None, "flops_complete": False, "uncounted_ops": [], "error": str(exc)}


def _spec_fields(spec: registry.BackboneSpec) -> dict:
    return {
        "name": spec.name,
        "aliases": list(spec.aliases),
        "family": spec.family,
        "paper_names": list(spec.paper_names),
        "in_paper": spec.in_paper,
        "tasks": list(spec.tasks),
    }


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@list_app.command("suites")
def list_suites_command(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """The built-in suites: dataset kind, image size, classes and epochs."""
    from vbench.suites import builtin_suites, load_suite

    load_plugins(plugin)
    suites = [load_suite(name) for name in builtin_suites()]
    rows = [
        {"name": s.name, "kind": s.kind, "task": s.task, "img_size": s.img_size, "num_classes": s.num_classes,
         "epochs": getattr(s.recipe, "epochs", None), "iterations": getattr(s.recipe, "iterations", None),
         "description": s.description}
        for s in suites
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Suites", caption="--suite also takes a path to your own suite file")
    for column in ("name", "kind", "image size", "classes", "schedule"):
        table.add_column(column, justify="right" if column in ("image size", "classes", "schedule") else "left")
    for row in rows:
        schedule = f"{row['epochs']} epochs" if row["epochs"] is not None else f"{row['iterations']} iterations"
        table.add_row(row["name"], row["kind"], f"{row['img_size']}x{row['img_size']}", str(row["num_classes"]), schedule)
    console.print(table)


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="Backbone name or alias."),
    img: int = typer.Option(32, "--img"),
    classes: int = typer.Option(10, "--classes"),
    as_json: bool = typer.Option(False, "--json"),
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Params, FLOPs, the paper's published numbers and a layer summary of one backbone."""
    from vbench.measure import FLOPS_UNIT_NOTE, count_flops, count_params
    from vbench.paper import published_setting

    load_plugins(plugin)
    spec = registry.get_backbone(name)
    model = spec.build(img_size=img, num_classes=classes)
    flops = count_flops(model, img)
    layers = _layer_summary(model)
    info = {
        **_spec_fields(spec),
        "origin": spec.origin,
        "img_size": img,
        "num_classes": classes,
        "params": count_params(model),
        "flops": flops.total,
        "flops_complete": flops.complete,
        "uncounted_ops": sorted(flops.uncounted_ops),
        "paper": published_setting(spec),
        "layers": layers,
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return
    console.print(f"[bold]{spec.name}[/bold] ({spec.family}) {spec.summary}")
    console.print(f"aliases: {', '.join(spec.aliases) or '-'}; paper names: {', '.join(spec.paper_names) or '-'}")
    console.print(f"at {img}x{img}, {classes} classes: params {info['params']:,}, FLOPs {flops.describe()}")
    console.print(FLOPS_UNIT_NOTE)
    if info["paper"]:
        paper = info["paper"]
        console.print(
            f"paper ({paper['img_size']}x{paper['img_size']}, {paper['num_classes']} classes): "
            f"params {paper['params_m']}M (authors' model: {paper['exact_params']:,}), FLOPs {paper['flops_m']}M "
            "(the paper's counter leaves out matmuls written with @/einsum and F.conv2d)"
        )
    table = Table(title="Layers")
    for column in ("module", "type", "params"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for layer in layers:
        table.add_row(layer["module"], layer["type"], f"{layer['params']:,}")
    console.print(table)


def _layer_summary(model) -> list[dict]:
    """Top-level children, and the children of any top-level container, with their parameter counts."""
    from vbench.measure import count_params

    rows = []
    for name, child in model.named_children():
        rows.append({"module": name, "type": type(child).__name__, "params": count_params(child)})
        if len(list(child.children())) > 1 and type(child).__name__ in ("Sequential", "ModuleList"):
            for sub_name, sub in child.named_children():
                rows.append({"module": f"  {name}.{sub_name}", "type": type(sub).__name__, "params": count_params(sub)})
    own = sum(p.numel() for p in model.parameters(recurse=False) if p.requires_grad)
    if own:
        rows.insert(0, {"module": "(own parameters)", "type": "Parameter", "params": own})
    return rows


BENCHMARK_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


@app.command("bench", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Benchmark name, e.g. lkca-op, pipeline, train-step."),
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Run one of the speed benchmarks in benchmarks/ (extra arguments are passed to it)."""
    import runpy

    load_plugins(plugin)
    available = sorted(p.stem.replace("_", "-") for p in BENCHMARK_DIR.glob("*.py") if not p.stem.startswith("_"))
    script = BENCHMARK_DIR / f"{name.replace('-', '_')}.py"
    if not script.is_file():
        raise VbenchError(f"unknown benchmark {name!r}; available: {', '.join(available) or 'none'}")
    sys.argv = [str(script), *ctx.args]
    sys.path.insert(0, str(BENCHMARK_DIR.parent))
    runpy.run_path(str(script), run_name="__main__")


def main() -> None:
    try:
        app(standalone_mode=False)
    except VbenchError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
