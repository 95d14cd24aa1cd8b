"""The site's pages are made of sections, each a function registered here that reads the site's data and
returns titled blocks of HTML. The index page holds the classification suites; segmentation and every further
task get a page of their own. A later analysis (robustness, significance) plugs in the same way::

    from vbench.leaderboard import Block, register_section

    @register_section("robustness", page="robustness", title="Robustness", order=50)
    def robustness(site):
        yield Block("cifar10-mce", "CIFAR-10-C", html)   # html: markupsafe.Markup (escaped already)

``site`` is a ``vbench.leaderboard.data.SiteData``: the open store (``site.store``, e.g. for its
evaluations), the finished result groups shown (``site.results``), the paper-layout report
(``site.report``), every run of the selection (``site.runs``) and their step rows. A page is written when one
of its sections returns a block; the navigation lists pages by their sections' order.
``vbench.leaderboard.html`` has the helpers the built-in sections use (sortable tables, charts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from markupsafe import Markup

from vbench.errors import VbenchError
from vbench.leaderboard import charts
from vbench.leaderboard.html import (
    Cell,
    Column,
    Row,
    Table,
    chart_html,
    fragment,
    number_cell,
    params_cell,
    run_links,
    slug,
    table_html,
)
from vbench.registry import Registry
from vbench.reporting.numbers import millions
from vbench.reporting.paper import paper_segmentation_rows
from vbench.reporting.plot import paper_points
from vbench.reporting.report import HEAD_NAMES, IMAGENET_KEY, mean_std, seg_flops_text, seg_params_text
from vbench.tasks import get_task

RESERVED_PAGES = ("runs",)  # runs.html and runs/ hold the run pages


@dataclass(frozen=True)
class Page:
    name: str  # the file's stem: "index" is index.html
    title: str  # its link in the navigation

    @property
    def file(self) -> str:
        return f"{self.name}.html"


@dataclass
class Block:
    key: str  # its anchor on the page
    title: str
    html: Markup
    page: Page | None = None  # another page than its section's (a page per further task)


@dataclass(frozen=True)
class Section:
    key: str
    page: Page
    order: int
    build: Callable  # (SiteData) -> Iterable[Block]


SECTIONS: Registry[Section] = Registry("leaderboard section", group="vbench.leaderboard")


def register_section(key: str, page: str = "index", title: str | None = None, order: int = 100):
    """Register ``build(site) -> Iterable[Block]`` as the section ``key`` of ``page`` (a file stem)."""
    if page in RESERVED_PAGES or slug(page) != page:
        raise VbenchError(f"section {key!r}: page {page!r} is not a usable page name (lower-case letters, digits, "
                          f"- and _; not {', '.join(RESERVED_PAGES)})")

    def add(build: Callable[..., Iterable[Block]]):
        SECTIONS.add(key, Section(key, Page(page, title or page.replace("-", " ").capitalize()), order, build),
                     replace=True)
        return build

    return add


def unregister_section(key: str) -> None:
    SECTIONS.remove(key)


def sections() -> list[Section]:
    return sorted(SECTIONS.values(), key=lambda s: (s.order, s.key))


# --- classification: the index page --------------------------------------------------------------------
def _suite_meta(records: list[dict], dataset: str | None) -> str:
    runs = sum(r["n"] for r in records)
    return f"{len(records)} backbone{'s' if len(records) != 1 else ''}, {runs} finished run{'s' if runs != 1 else ''}" \
           + (f" on {dataset}" if dataset else "")


def classification_table(key: str, records: list[dict]) -> Table:
    columns = [
        Column("Model", numeric=False, tip="the paper's name (the backbone's registered name below it)"),
        Column("Family", numeric=False),
        Column("Acc", tip="top-1 (%) on the test split: mean ± standard deviation over the seeds"),
        Column("n", tip="seeds"),
        Column("Gain", tip="LKCA over its ViT partner trained with the same recipe, data and precision"),
        Column("Paper Acc"), Column("Δ Acc", tip="ours minus the paper's"),
        Column("Params (M)"), Column("Paper Params"), Column("FLOPs (M)", tip="fvcore multiply-accumulates"),
        Column("Paper FLOPs", tip="the paper's counter leaves out the attention matmuls"),
        Column("img/s", tip="training images per second, measured (mean over seeds)"),
        Column("Epochs"), Column("Recipe", numeric=False, tip="the recipe's hash"),
        Column("Paper recipe", numeric=False, tip="trained with the paper's recipe"),
        Column("Runs", tip="a page per run, by seed"),
    ]
    rows = []
    for r in records:
        model = Markup('{}<span class="backbone">{}</span>').format(r["model"], r["backbone"])
        gain = number_cell(r["gain"], signed=True) if r["gain"] is not None else _no_gain_cell(r.get("gain_note"))
        rows.append(Row([
            Cell(r["model"], value=r["model"], html=model), Cell(r.get("family") or "-"),
            _mean_std_cell(r["acc_mean"], r["acc_std"]), Cell(str(r["n"]), value=r["n"]), gain,
            number_cell(r.get("paper_acc")), number_cell(r.get("acc_diff"), signed=True),
            params_cell(r["params_m"]), number_cell(r.get("paper_params_m")), number_cell(r["flops_m"]),
            number_cell(r.get("paper_flops_m")), number_cell(r.get("images_per_s"), 0),
            Cell(str(r["epochs"]), value=r["epochs"]), Cell(r["recipe_hash"][:8], tip=r["recipe_hash"]),
            Cell("yes" if r.get("paper_recipe") else "no"), run_links(r["run_ids"], r["seeds"]),
        ], facet=r.get("family") or "other"))
    return Table(key, columns, rows, facet="Family", placeholder="model, backbone, recipe")


def _no_gain_cell(note: str | None) -> Cell:
    """"-" without a partner; the reason ("recipe differs") where the partner's runs are another experiment."""
    if not note:
        return Cell("-")
    return Cell(note.removeprefix("no gain: ").split(" from ")[0], tip=note, css="muted")


def _mean_std_cell(mean: float | None, std: float | None) -> Cell:
    cell = number_cell(mean)
    if std is not None:
        cell.text += f" ± {std:.2f}"
    return cell


@register_section("classification", page="index", title="Classification", order=10)
def classification_suites(site) -> Iterable[Block]:
    for section in (site.report.sections if site.report else []):
        if section.task != "classification" or section.pivot or section.key.startswith(IMAGENET_KEY):
            continue  # ImageNet's tables have a page of their own (vbench.leaderboard.imagenet)
        key = f"suite-{slug(section.key)}"
        dataset = section.records[0]["dataset"] if section.records else None
        paper = paper_points(dataset)
        chart_specs = [
            (name, charts.metric_chart(f"top-1 against {axis.name}", section.records, axis, "acc_mean", "top-1",
                                       paper=paper, std_key="acc_std"))
            for name, axis in charts.ACCURACY_AXES.items()]
        html = fragment("blocks/board.html.j2", meta=_suite_meta(section.records, dataset),
                        table=table_html(classification_table(f"{key}-table", section.records)),
                        charts=[chart_html(f"{key}-{name}", spec) for name, spec in chart_specs], notes=section.notes)
        yield Block(key, section.title, html)


def display_table(key: str, section) -> Table:
    """A report section's text cells as a table (the Table 4 pivot), numbers sorted by their leading value."""
    frame = section.display
    text_columns = {"Model", "Backbone", "Algorithm", "Recipe", "Paper recipe"}
    columns = [Column(str(c), numeric=str(c) not in text_columns) for c in frame.columns]
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for column, text in zip(columns, values):
            cells.append(Cell(str(text), value=_leading_number(str(text)) if column.numeric else None))
        rows.append(Row(cells))
    return Table(key, columns, rows, placeholder="model")


def _leading_number(text: str) -> float | None:
    head = text.split(" ")[0].rstrip("%MGT")
    try:
        return float(head)
    except ValueError:
        return None


@register_section("table4", page="index", title="Classification", order=20)
def table4(site) -> Iterable[Block]:
    for section in (site.report.sections if site.report else []):
        if section.pivot:
            yield Block("table4", section.title, fragment(
                "blocks/board.html.j2", meta=None, table=table_html(display_table("table4-table", section)),
                charts=[], notes=section.notes))


@register_section("notes", page="index", title="Classification", order=90)
def report_notes(site) -> Iterable[Block]:
    if site.report and site.report.notes:
        yield Block("notes", "Notes", fragment("blocks/notes.html.j2", notes=site.report.notes))


# --- segmentation ----------------------------------------------------------------------------------------
def segmentation_table(key: str, records: list[dict]) -> Table:
    columns = [
        Column("Backbone", numeric=False), Column("Family", numeric=False), Column("Algorithm", numeric=False),
        Column("Iteration"), Column("aAcc (%)"), Column("mIoU (%)"), Column("mAcc (%)"), Column("n"),
        Column("Paper aAcc"), Column("Paper mIoU"), Column("Δ mIoU", tip="ours minus the paper's"),
        Column("# Params", tip="the whole segmentor"), Column("Paper # Params", numeric=False),
        Column("FLOPs", tip="fvcore multiply-accumulates at the training crop"),
        Column("Paper FLOPs", numeric=False), Column("Recipe", numeric=False),
        Column("Paper recipe", numeric=False), Column("Runs"),
    ]
    rows = []
    for r in records:
        model = Markup('{}<span class="backbone">{}</span>').format(r["model"], r["backbone"])
        diff = r["mIoU"] - r["paper_mIoU"] if r.get("paper_mIoU") is not None and r["mIoU"] is not None else None
        params = r["params_m"] * 1e6 if r["params_m"] else None
        flops = r["flops_g"] * 1e9 if r["flops_g"] else None
        rows.append(Row([
            Cell(r["model"], value=r["model"], html=model), Cell(r.get("family") or "-"), Cell(r["head_name"]),
            Cell(str(r["iteration"]), value=r["iteration"]), number_cell(r["aAcc"]), number_cell(r["mIoU"]),
            number_cell(r["mAcc"]), Cell(str(r["n"]), value=r["n"]), number_cell(r.get("paper_aAcc")),
            number_cell(r.get("paper_mIoU")), number_cell(diff, signed=True),
            Cell(seg_params_text(params), value=params), Cell(str(r.get("paper_params") or "-")),
            Cell(seg_flops_text(flops), value=flops), Cell(str(r.get("paper_flops") or "-")),
            Cell(r["recipe_hash"][:8], tip=r["recipe_hash"]), Cell("yes" if r.get("paper_recipe") else "no"),
            run_links(r["run_ids"], r["seeds"]),
        ], facet=r.get("family") or "other"))
    return Table(key, columns, rows, facet="Family", placeholder="backbone, head, recipe")


@register_section("segmentation", page="segmentation", title="Segmentation", order=10)
def segmentation_suites(site) -> Iterable[Block]:
    paper = None
    for section in (site.report.sections if site.report else []):
        if section.task != "segmentation":
            continue
        if paper is None:
            paper = paper_segmentation_rows().to_dict("records")
        records = [{**r, "head_name": HEAD_NAMES.get(r["head"], r["head"])} for r in section.records]
        key = f"suite-{slug(section.key)}"
        backbones = len({(r["backbone"], r["head"]) for r in records})
        meta = f"{backbones} backbone and head pair{'s' if backbones != 1 else ''}, evaluated at " \
               f"{len({r['iteration'] for r in records})} iteration count(s)"
        spec = charts.miou_chart("mIoU against training iterations", records, paper)
        table = table_html(segmentation_table(f"{key}-table", records))
        html = fragment("blocks/board.html.j2", meta=meta, table=table,
                        charts=[chart_html(f"{key}-miou", spec, css="chart wide")], notes=section.notes)
        yield Block(key, section.title, html)


# --- any further task ------------------------------------------------------------------------------------
BUILT_IN_TASKS = ("classification", "segmentation")


def task_page(task: str) -> Page:
    """The page a task's tables are on: classification on the index, every other task on its own."""
    if task == "classification":
        return Page("index", "Classification")
    name = slug(task)
    return Page(name if name not in (*RESERVED_PAGES, "index") else f"task-{name}", task.capitalize())


def task_metrics(task: str, groups) -> tuple[list[tuple[str, str]], str, bool]:
    """``[(metric, label)]``, the primary metric of a task and whether higher is better: its registration,
    else the stored names (the first one primary)."""
    try:
        info = get_task(task)
        return [(m.name, m.label) for m in info.metrics], info.primary, info.primary_metric.higher_is_better
    except VbenchError:  # a task whose plug-in is not installed now
        names = sorted({name for g in groups for run in g.runs for name in (run.metrics or {})
                        if isinstance(run.metrics[name], (int, float))})
        return [(n, n) for n in names], names[0] if names else "", True


def task_records(groups) -> list[dict]:
    metrics, _, _ = task_metrics(groups[0].task, groups)
    records = []
    for group in groups:
        record = {"model": group.paper_names[0] if group.paper_names else group.backbone, "backbone": group.backbone,
                  "family": group.family, "n": group.n, "seeds": group.seeds, "run_ids": [r.id for r in group.runs],
                  "params_m": millions(group.params), "flops_m": millions(group.flops), "steps": group.steps,
                  "step_unit": group.step_unit, "recipe_hash": group.recipe_hash, "images_per_s": group.images_per_s}
        for name, _ in metrics:
            values = list(group.values(name).values())
            record[name], record[f"{name}_std"] = mean_std(values) if values else (None, None)
        records.append(record)
    return sorted(records, key=lambda r: r["backbone"])


def task_table(key: str, records: list[dict], metrics: list[tuple[str, str]]) -> Table:
    columns = [Column("Model", numeric=False), Column("Family", numeric=False)]
    for _, label in metrics:
        columns += [Column(label, tip="mean over seeds"), Column(f"{label} ± std")]
    columns += [Column("n"), Column("# Params (M)"), Column("FLOPs (M)"), Column("img/s"), Column("Steps"),
                Column("Recipe", numeric=False), Column("Runs")]
    rows = []
    for r in records:
        cells = [Cell(r["model"], value=r["model"], html=Markup('{}<span class="backbone">{}</span>').format(
            r["model"], r["backbone"])), Cell(r.get("family") or "-")]
        for name, _ in metrics:
            cells += [number_cell(r[name]), number_cell(r[f"{name}_std"])]
        cells += [Cell(str(r["n"]), value=r["n"]), params_cell(r["params_m"]), number_cell(r["flops_m"]),
                  number_cell(r["images_per_s"], 0), Cell(f"{r['steps']} {r['step_unit']}s", value=r["steps"]),
                  Cell(r["recipe_hash"][:8], tip=r["recipe_hash"]), run_links(r["run_ids"], r["seeds"])]
        rows.append(Row(cells, facet=r.get("family") or "other"))
    return Table(key, columns, rows, facet="Family", placeholder="model, backbone, recipe")


@register_section("tasks", page="tasks", title="Other tasks", order=30)
def further_tasks(site) -> Iterable[Block]:
    """A page per task that has no section of its own: its suites' tables and a chart of the primary metric
    against params."""
    groups = [g for g in site.results.groups if g.task not in BUILT_IN_TASKS]
    for task in sorted({g.task for g in groups}):
        page = task_page(task)
        for suite in sorted({g.suite for g in groups if g.task == task}):
            suite_groups = [g for g in groups if g.task == task and g.suite == suite]
            metrics, primary, higher_is_better = task_metrics(task, suite_groups)
            records = task_records(suite_groups)
            key = f"suite-{slug(suite)}"
            label = dict(metrics).get(primary, primary)
            spec = charts.metric_chart(f"{label} against params", records, charts.ACCURACY_AXES["params"], primary,
                                       label, std_key=f"{primary}_std", unit="", higher_is_better=higher_is_better)
            html = fragment("blocks/board.html.j2", meta=_suite_meta(records, suite_groups[0].dataset),
                            table=table_html(task_table(f"{key}-table", records, metrics)),
                            charts=[chart_html(f"{key}-params", spec)], notes=[])
            yield Block(key, f"{suite} ({task})", html, page=page)
