"""The ``vbench`` command line."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
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
    with console.status("measuring backbones...") if not as_json else nullcontext():
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
    sys.path[:0] = [str(BENCHMARK_DIR), str(BENCHMARK_DIR.parent)]  # the scripts import _timing and backbones
    runpy.run_path(str(script), run_name="__main__")


# --- run store, training, reports and plots (engine) ----------------------------------------------
DbOption = typer.Option(None, "--db", help="Run store: a SQLAlchemy URL or a SQLite file path (default $VBENCH_DB, else sqlite:///results/vbench.db).", show_default=False)


def _db_url(db: Optional[str]) -> Optional[str]:
    """A bare file path is taken as a SQLite database."""
    if db and "://" not in db:
        return f"sqlite:///{Path(db).expanduser().resolve()}"
    return db


@app.command("run")
def run_command(
    suite: str = typer.Option(..., "--suite", help="Built-in suite name or a suite .toml file."),
    backbones: str = typer.Option(..., "--backbones", help="Comma-separated backbone names or aliases."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds (default: the recipe's seed)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override recipe.epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override recipe.batch_size."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Override recipe.lr."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override recipe.seed (the seed when --seeds is not given)."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Where the datasets live (default $VBENCH_DATA, else ~/.cache/vbench/data)."),
    download: bool = typer.Option(False, "--download", help="Download a missing dataset (torchvision)."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="key=value for any recipe key (repeatable).", show_default=False),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    amp: bool = typer.Option(False, "--amp/--no-amp", help="bf16 (fp16 where bf16 is missing) autocast; CUDA only."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    pipeline: str = typer.Option("batched", "--pipeline", help="batched (tensor ops on the device) or reference (torchvision + DataLoader)."),
    db: Optional[str] = DbOption,
    force: bool = typer.Option(False, "--force", help="Rerun finished runs from scratch."),
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Train backbones on a suite and record every run in the run store."""
    from vbench import train
    from vbench.store import check_url, open_store
    from vbench.suites import load_suite

    # Everything is validated before the database is touched: bad input leaves it unchanged.
    load_plugins(plugin)
    url = check_url(_db_url(db))
    if pipeline not in train.PIPELINES:
        raise VbenchError(f"unknown --pipeline {pipeline!r}; choose batched or reference")
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "data_root": data_root}
    the_suite = load_suite(suite, overrides=overrides, sets=sets or ())
    if the_suite.task == "segmentation":
        _run_segmentation(the_suite, backbones, seeds, data_root, device, url, force)
        return
    specs = train.parse_backbones(backbones)
    seed_list = train.parse_seeds(seeds, the_suite.recipe.seed)
    options = train.EngineOptions(device=train.resolve_device(device), amp=amp, compile=compile_model,
                                  pipeline=pipeline, force=force)
    if amp and options.device.type != "cuda":
        err_console.print("note: --amp only applies on CUDA; training in float32", highlight=False)
    jobs = train.plan_jobs(the_suite, specs, seed_list, console=err_console)
    with err_console.status(f"loading {the_suite.kind} data..."):
        data = train.load_data(the_suite, data_root=data_root, download=download)
    store = open_store(url)
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a log file gets the whole summary table
    engine = train.Engine(store, the_suite, data, options, console=console)
    console.print(
        f"suite {the_suite.name}: {len(data.train_images)} train / {len(data.test_images)} test images, "
        f"{the_suite.recipe.epochs} epochs of {engine.steps_per_epoch} steps, device {options.device}, "
        f"store {store.url}", highlight=False,
    )
    try:
        outcomes = engine.run_all(jobs)
    finally:
        store.close()
    console.print(train.summary_table(the_suite.name, outcomes))
    if any(o.status == "failed" for o in outcomes):
        sys.exit(1)  # the failed runs are in the table and the store; scripts see a non-zero status


def _run_segmentation(the_suite, backbones: str, seeds: Optional[str], data_root: Optional[str], device: str,
                      url: str, force: bool) -> None:
    """`vbench run` for a segmentation suite; like classification, everything is checked before the store opens."""
    from vbench import train
    from vbench.segmentation import engine as seg
    from vbench.store import open_store

    specs = seg.parse_segmentation_backbones(backbones)
    seed_list = train.parse_seeds(seeds, the_suite.recipe.seed)
    resolved = train.resolve_device(device)
    with err_console.status(f"checking {the_suite.kind} data..."):
        from vbench.segmentation.run import segmentation_datasets

        segmentation_datasets(the_suite, data_root)   # missing or malformed data -> VbenchError
    jobs = seg.plan_segmentation_jobs(the_suite, specs, seed_list, console=err_console)
    store = open_store(url)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    try:
        engine = seg.SegmentationEngine(store, the_suite, resolved, data_root=data_root, force=force, console=console)
        train_ds, val_ds = engine.datasets
        recipe = the_suite.recipe
        console.print(
            f"suite {the_suite.name}: {len(train_ds)} train / {len(val_ds)} val images, {recipe.head} head, "
            f"{recipe.iterations} iterations (evaluated at {', '.join(map(str, recipe.eval_at))}), "
            f"device {resolved}, store {store.url}", highlight=False,
        )
        outcomes = engine.run_all(jobs)
    finally:
        store.close()
    console.print(seg.summary_table(the_suite, outcomes))
    if any(o.status == "failed" for o in outcomes):
        sys.exit(1)


runs_app = typer.Typer(help="List or delete recorded runs.", no_args_is_help=False)
app.add_typer(runs_app, name="runs")


@runs_app.callback(invoke_without_command=True)
def runs_command(
    ctx: typer.Context,
    suite: Optional[str] = typer.Option(None, "--suite", help="Only this suite."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Only this backbone."),
    status: Optional[str] = typer.Option(None, "--status", help="Only runs with this status (running, done, failed, interrupted)."),
    db: Optional[str] = DbOption,
) -> None:
    """List runs: status, suite, backbone, seed, accuracy and when (`vbench runs rm ID` deletes one)."""
    from vbench.store import RUN_STATUSES, open_store

    ctx.obj = {"db": db}
    if ctx.invoked_subcommand:
        return
    if status and status not in RUN_STATUSES:
        raise VbenchError(f"unknown --status {status!r}; choose one of {', '.join(RUN_STATUSES)}")
    store = open_store(_db_url(db), create=False)
    runs = store.list_runs(suite=suite, backbone=backbone, status=status)
    store.close()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    table = Table(title=f"Runs in {store.url}")
    for column in ("id", "status", "suite", "backbone", "seed", "top-1", "top-5", "epochs", "started (UTC)", "wall", "error"):
        table.add_column(column, justify="right" if column in ("id", "seed", "top-1", "top-5", "epochs", "wall") else "left")
    colours = {"done": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
    for run in runs:
        table.add_row(
            str(run.id), f"[{colours.get(run.status, 'white')}]{run.status}[/]", run.suite, run.backbone, str(run.seed),
            _top1_text(run), f"{run.top5:.2f}" if run.top5 is not None else "-",
            f"{run.epochs_done}/{run.epochs if run.epochs is not None else '?'}",
            run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "-",
            f"{run.wall_time_s:.1f} s" if run.wall_time_s is not None else "-", (run.error or "")[:60],
        )
    console.print(table)


def _top1_text(run) -> str:
    """Top-1 of a classification run; a segmentation run shows its last mIoU instead."""
    if run.top1 is not None:
        return f"{run.top1:.2f}"
    miou = (run.metrics or {}).get("mIoU") if run.task == "segmentation" else None
    return f"mIoU {miou:.2f}" if miou is not None else "-"


@runs_app.command("rm")
def runs_rm_command(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Id of the run (see `vbench runs`)."),
    db: Optional[str] = DbOption,
) -> None:
    """Delete one run, its epochs and (when no other run shares it) its checkpoint."""
    from vbench.store import RunKey, open_store
    from vbench.train import checkpoint_path

    store = open_store(_db_url(db or (ctx.obj or {}).get("db")), create=False)
    run = store.get_run(run_id)
    if run is None:
        raise VbenchError(f"no run with id {run_id} in {store.url}; `vbench runs` lists them")
    store.delete_run(run_id)
    key = RunKey(run.suite, run.backbone, run.seed, run.recipe_hash)
    if run.task == "segmentation":
        from vbench.segmentation.engine import checkpoint_path
    checkpoint = checkpoint_path(store, key)
    if not store.find_runs(key) and checkpoint.exists():
        checkpoint.unlink()
    store.close()
    console.print(f"deleted run {run_id} ({run.suite}, {run.backbone}, seed {run.seed}, {run.status})", highlight=False)


@app.command("report")
def report_command(
    suite: Optional[str] = typer.Option(None, "--suite", help="Only this suite."),
    backbones: Optional[str] = typer.Option(None, "--backbones", help="Comma-separated backbones to show."),
    fmt: str = typer.Option("markdown", "--format", help="markdown, latex, csv, html or json."),
    compare: Optional[str] = typer.Option(None, "--compare", help="`paper`: the published numbers beside the measured ones."),
    output: Optional[str] = typer.Option(None, "--output", help="Write to this file instead of stdout."),
    db: Optional[str] = DbOption,
    plugin: Optional[List[str]] = PluginOption,
) -> None:
    """Paper-style tables (Tables 1-4 layout; Tables 6-7 for segmentation) of the finished runs."""
    from vbench.report import FORMATS, build_report, render
    from vbench.store import open_store

    if fmt not in FORMATS:
        raise VbenchError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if compare not in (None, "paper"):
        raise VbenchError(f"unknown --compare {compare!r}; the only comparison is `--compare paper`")
    load_plugins(plugin)
    names = _backbone_filter(backbones)
    store = open_store(_db_url(db), create=False)
    try:
        segmentation = _segmentation_report(store, suite, names, compare == "paper", fmt)
        try:
            text = render(build_report(store, suite=suite, backbones=names, compare_paper=compare == "paper"), fmt)
        except VbenchError:
            if segmentation is None:
                raise
            text = ""   # only segmentation runs match
    finally:
        store.close()
    if segmentation is not None:
        text = f"{text}\n{segmentation}" if text else segmentation
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise VbenchError(f"cannot write the report to {output!r}: {exc.strerror}; give a writable --output") from None
        err_console.print(f"wrote {output}", highlight=False)
    else:
        sys.stdout.write(text)


def _segmentation_report(store, suite: Optional[str], names: Optional[list[str]], compare_paper: bool,
                         fmt: str) -> Optional[str]:
    """The Tables 6-7 section when finished segmentation runs match, else None."""
    from vbench.segmentation.report import render_any, segmentation_table, stored_records

    if names:   # a segmentation backbone is stored under its registry name (e.g. vit-s-seg)
        names = names + [f"{name}-seg" for name in names]
    records = stored_records(store, suite=suite, backbones=names)
    if not records:
        return None
    return render_any(segmentation_table(records, compare_paper=compare_paper), fmt)


def _backbone_filter(backbones: Optional[str]) -> Optional[list[str]]:
    """Names as stored (canonical); an alias resolves through the registry, an unknown name stays as given."""
    if not backbones:
        return None
    names = []
    for name in (part.strip() for part in backbones.split(",") if part.strip()):
        names.append(name)
        try:
            names.append(registry.resolve_name(name))
        except VbenchError:
            pass
    return names


@app.command("plot")
def plot_command(
    suite: Optional[str] = typer.Option(None, "--suite", help="Only this suite."),
    output_dir: str = typer.Option("results/plots", "--output-dir", help="Where the PNG and SVG files go."),
    db: Optional[str] = DbOption,
) -> None:
    """Accuracy versus params and versus FLOPs per suite (measured filled, the paper's hollow); mIoU against
    iterations per backbone and head for segmentation suites."""
    from vbench.plot import plot_all
    from vbench.store import open_store

    from vbench.segmentation.report import plot_stored

    store = open_store(_db_url(db), create=False)
    try:
        written = plot_stored(store, output_dir, suite=suite)   # mIoU against iterations
        try:
            written = plot_all(store, output_dir, suite=suite) + written
        except VbenchError:
            if not written:
                raise
    finally:
        store.close()
    for path in written:
        console.print(str(path), highlight=False)


# --- end of engine commands -----------------------------------------------------------------------


def _click_exception_modules() -> list:
    """click's exceptions, and those of the copy of click that typer >= 0.20 vendors (typer._click)."""
    import click

    modules = [click.exceptions]
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        return modules
    return modules + [vendored]


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except VbenchError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        modules = _click_exception_modules()
        if isinstance(exc, tuple(module.ClickException for module in modules)):
            exc.show()
            sys.exit(exc.exit_code)
        exits = tuple(getattr(module, "Exit", typer.Exit) for module in modules)  # the vendored copy has none
        if isinstance(exc, exits):
            sys.exit(exc.exit_code)
        raise
    # Without standalone mode, typer turns Ctrl-C into exit code 130 and returns it instead of exiting.
    if isinstance(code, int) and code != 0:
        if code == 130:
            err_console.print("aborted")
        sys.exit(code)


if __name__ == "__main__":
    main()
