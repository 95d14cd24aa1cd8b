"""What the command modules share: the app, consoles, common options and number formats."""

from __future__ import annotations

import os
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from vbench.api import check_suite_name, parse_seeds
from vbench.api import load_plugins as load
from vbench.reporting.numbers import count_text

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
# the options of the commands that evaluate a suite's finished runs (robustness, deploy, erf, shape-bias, calibration)
SeedsFilter = typer.Option(None, "--seeds", help="Only runs of these seeds (comma-separated).")
DataRootOption = typer.Option(None, "--data-root", help="Where the suite's data live.")
LimitOption = typer.Option(None, "--limit", help="Runs trained with --limit N: the same first N images.")
DeviceOption = typer.Option("auto", "--device", help="auto, cpu or cuda.")
# the options of the commands that train or evaluate a suite (run, tune, eval)
DatasetRootOption = typer.Option(None, "--data-root", help="Where the datasets live (default $VBENCH_DATA, else ~/.cache/vbench/data).")
DownloadOption = typer.Option(False, "--download", help="Download a missing dataset (torchvision's CIFAR and SVHN).")
AmpOption = typer.Option(False, "--amp/--no-amp", help="bf16 autocast (fp16 on GPUs without bf16); on the CPU where it has native bf16.")
CompileOption = typer.Option(False, "--compile", help="torch.compile the model (falls back to eager if it cannot).")
PipelineOption = typer.Option("batched", "--pipeline", help="batched (tensor ops on the device) or reference (per-image PIL + DataLoader).")


def load_plugins(plugins: Optional[List[str]]) -> None:
    load(plugins or ())


def wide_for_files() -> None:
    """A log file gets whole tables, not tables cut to 80 columns (an explicit $COLUMNS wins)."""
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = max(console.width, 160)


def number(value, digits: int = 2, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def results_table(title: str, columns, left=("backbone",)) -> Table:
    """A table of one row per result: the ``left`` columns (names) left-aligned, the numbers right-aligned."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def print_notes(lines) -> None:
    """One ``note:`` line on stderr per run a command left out."""
    for line in lines:
        err_console.print(f"note: {line}", highlight=False)


def summary_table(result) -> Table:
    info = result.suite.task_info
    columns = ["run", "backbone", "seed", "status", *(m.label for m in info.metrics), "params", "FLOPs", "img/s",
               "peak mem", "wall"]
    table = results_table(f"vbench run: {result.suite.name}", columns, left=("backbone", "status"))
    colours = {"done": "green", "skipped": "cyan", "busy": "cyan", "failed": "red", "interrupted": "yellow"}
    for o in result.outcomes:
        table.add_row(
            str(o.run_id or "-"), o.backbone, str(o.seed), f"[{colours.get(o.status, 'white')}]{o.status}[/]",
            *(number(o.metrics.get(m.name)) for m in info.metrics), count_text(o.params), count_text(o.flops),
            number(o.images_per_s, 0), number(o.peak_memory_bytes / 2**20 if o.peak_memory_bytes else None, 0, " MiB"),
            number(o.wall_time_s, 1, " s"),
        )
    failed = [o for o in result.outcomes if o.status == "failed" and o.run_id is None]
    if failed:
        table.caption = "; ".join(dict.fromkeys(f"{o.backbone}: {o.error}" for o in failed))
    return table


def finished_runs_of(suite: str, seeds: Optional[str], data_root: Optional[str], db: Optional[str]):
    """What a command that evaluates a suite's finished runs checks before it writes anything, one line each: the
    seeds, the suite, and that the store holds runs of it. (suite, seeds or None)."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.store import check_url, opened
    from vbench.suites import load_suite

    seed_list = parse_seeds(seeds, 0) if seeds is not None else None
    the_suite = load_suite(suite, overrides={"data_root": data_root})
    with opened(check_url(db), write=False) as store:
        check_suite_name(store, the_suite.name)
    return the_suite, seed_list
