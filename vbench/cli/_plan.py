"""What ``vbench run --dry-run`` prints: the resolved recipe and the jobs (``vbench.engine.dryrun``)."""

from __future__ import annotations

from rich.table import Table

from vbench.cli._common import console, count_text
from vbench.recipes import value_text


def _text(value) -> str:
    return "" if value is None else value_text(value)


def print_plan(planned, first_line: str) -> None:
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    from vbench.engine.dryrun import job_lines, recipe_lines

    suite = planned.suite
    console.print(first_line, highlight=False)
    recipe = Table(title=f"Recipe of suite {suite.name} ({suite.path})",
                   caption="* set on the command line    ! not the paper's value")
    for column in ("key", "value", "suite file", "paper"):
        recipe.add_column(column, overflow="fold")
    for line in recipe_lines(planned):
        marks = ("*" if line.changed else "") + ("!" if line.off_paper else "")
        recipe.add_row(line.key, f"{_text(line.value)} {marks}".rstrip(),
                       _text(line.suite_value) if line.changed else "",
                       _text(line.paper_value) if line.off_paper else "")
    console.print(recipe)
    # lazy: keeps `vbench --help` and `vbench list` fast
    from vbench.store import display_url

    jobs = Table(title=f"Jobs (store {display_url(planned.url)})")
    for column in ("backbone", "seed", "params", "FLOPs", "state"):
        jobs.add_column(column, justify="right" if column in ("seed", "params", "FLOPs") else "left",
                        overflow="fold", no_wrap=column == "backbone")
    for job in job_lines(planned):
        jobs.add_row(job.backbone, str(job.seed), count_text(job.params), count_text(job.flops), job.state)
    console.print(jobs)
    console.print("dry run: nothing was trained or written", highlight=False)
