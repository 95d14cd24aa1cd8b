"""The pieces pages are made of: jinja2 templates (autoescaped), sortable and filterable tables, and charts
embedded as JSON for plotly.js."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape as esc

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from vbench.reporting.numbers import million_digits


@lru_cache(maxsize=None)
def environment():
    return Environment(loader=PackageLoader("vbench.leaderboard", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)


def fragment(template: str, **context) -> Markup:
    """A template rendered as a piece of a page (already escaped)."""
    return Markup(render(template, **context))


# --- tables --------------------------------------------------------------------------------------------
@dataclass
class Column:
    title: str
    numeric: bool = True
    tip: str | None = None


@dataclass
class Cell:
    text: str = "-"
    value: float | str | None = None  # what the column sorts by (numbers for numeric columns)
    href: str | None = None
    tip: str | None = None
    html: Markup | None = None  # instead of text (links to runs)
    css: str | None = None


@dataclass
class Row:
    cells: list[Cell]
    facet: str | None = None  # what the table's select filters on (a family, a status)


@dataclass
class Table:
    key: str  # the element id
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    facet: str | None = None  # the select's label ("Family"), None for no select
    placeholder: str = "Search"
    shown: int | None = None  # rows shown at first (the rest behind "show all"); None: every row

    @property
    def facet_values(self) -> list[str]:
        return sorted({row.facet for row in self.rows if row.facet is not None})


def number_cell(value: float | None, digits: int = 2, signed: bool = False, tip: str | None = None) -> Cell:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Cell("-", tip=tip)
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    css = None if not signed else ("up" if value > 0 else "down" if value < 0 else None)
    return Cell(text, value=round(float(value), 6), tip=tip, css=css)


def params_cell(value_m: float | None) -> Cell:
    """Millions with two decimals, four where a tiny model would show 0.00."""
    if value_m is None:
        return Cell("-")
    return number_cell(value_m, million_digits(value_m))


def run_links(run_ids: list[int], seeds: list[int], prefix: str = "runs/") -> Cell:
    """A link per run of a group, named by its seed: the way from a table row to the run pages."""
    links = Markup(" ").join(Markup('<a href="{}{}.html" title="run {}">s{}</a>').format(prefix, run_id, run_id, seed)
                             for run_id, seed in zip(run_ids, seeds))
    return Cell(" ".join(f"s{seed}" for seed in seeds), value=len(run_ids), html=links)


def table_html(table: Table) -> Markup:
    """The table with its filter controls. Written here rather than in a template: the all-runs page of a big
    store has 100,000s of cells, and a template escapes each through several calls."""
    key = esc(table.key)
    tools = [f'<div class="table-tools" data-tools-for="{key}">']
    if table.facet:
        options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in table.facet_values)
        tools.append(f'<label>{esc(table.facet)} <select data-facet-for="{key}"><option value="">all</option>'
                     f'{options}</select></label>')
    total = len(table.rows)
    limited = table.shown is not None and total > table.shown
    count = f"the first {table.shown} of {total} rows" if limited else f"{total} rows"
    tools.append(f'<label>Search <input type="search" data-search-for="{key}" placeholder="{esc(table.placeholder)}">'
                 f'</label><span class="count" data-count-for="{key}">{count}</span>')
    if limited:  # a browser lays out a table of 10,000 rows for seconds, at every sort
        tools.append(f'<button type="button" data-show-all-for="{key}">show all</button>')
    tools.append("</div>")
    head = "".join(map(_header_html, table.columns))
    body = []
    for index, row in enumerate(table.rows):
        facet = f' data-facet="{esc(row.facet)}"' if row.facet is not None else ""
        hidden = " hidden" if limited and index >= table.shown else ""
        body.append(f"<tr{facet}{hidden}>{''.join(map(_cell_html, row.cells))}</tr>")
    shown = f' data-shown="{table.shown}"' if limited else ""
    return Markup("".join(tools) + f'<div class="table-wrap"><table class="board" id="{key}"{shown}><thead><tr>{head}'
                  f"</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table></div>")


def _header_html(column: Column) -> str:
    tip = f' title="{esc(column.tip)}"' if column.tip else ""
    return f'<th scope="col" data-type="{"number" if column.numeric else "text"}"{tip}>{esc(column.title)}</th>'


def _cell_html(cell: Cell) -> str:
    attributes = ""
    if cell.value is not None:
        attributes += f' data-value="{esc(str(cell.value))}"'
    if cell.tip:
        attributes += f' title="{esc(cell.tip)}"'
    if cell.css:
        attributes += f' class="{cell.css}"'
    if cell.html is not None:
        content = str(cell.html)
    elif cell.href:
        content = f'<a href="{esc(cell.href)}">{esc(cell.text)}</a>'
    else:
        content = esc(cell.text)
    return f"<td{attributes}>{content}</td>"


# Run pages repeat most of their texts (statuses, devices, versions, setting names): each is escaped once.
_escaped = lru_cache(maxsize=1 << 16)(esc)


def pairs_html(pairs: list[tuple[str, object]]) -> Markup:
    """``key: value`` rows (a value that is Markup is kept as it is)."""
    rows = "".join(f'<tr><th scope="row">{_escaped(key)}</th><td>'
                   f'{value if isinstance(value, Markup) else _escaped(str(value))}</td></tr>' for key, value in pairs)
    return Markup(f'<table class="pairs"><tbody>{rows}</tbody></table>')


def frame(site: dict, root: str, current: str) -> dict:
    """The navigation and footer every page has, for pages ``root`` deep, ``current`` marked: written once
    per kind of page (a site of 10,000 run pages has one kind of run page)."""
    frames = site.setdefault("frames", {})
    if (root, current) not in frames:
        links = "".join(_nav_link(root + page.file, page.title, page.name == current) for page in site["nav"])
        selection = f" Selection: {esc(site['selection'])}." if site["selection"] else ""
        frames[root, current] = {
            "nav": Markup(f'<a class="brand" href="{esc(root)}index.html">vbench leaderboard</a>{links}'),
            "footer": Markup(f"Written {esc(site['generated_at'])} from {esc(site['label'])} by vbench "
                             f"{esc(site['version'])}.{selection}"),
            "root": root, "current": current, "version": site["version"]}
    return frames[root, current]


def _nav_link(href: str, title: str, current: bool) -> str:
    marker = ' aria-current="page"' if current else ""
    return f'<a href="{esc(href)}"{marker}>{esc(title)}</a>'


# --- charts --------------------------------------------------------------------------------------------
# JSON inside a <script> block: `<`, `>` and `&` as JSON escapes, so that no string in it (a backbone named
# "<!--<script>" or "</script>") can open a comment or end the script in an HTML5 parse; U+2028/2029 as well,
# which older JavaScript parsers take for line ends.
SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def script_json(text: str) -> Markup:
    """JSON text made safe to stand inside ``<script type="application/json">`` (the one escaper of every page)."""
    return Markup(text.translate(SCRIPT_ESCAPES))


def json_script(element_id: str, text: str) -> Markup:
    """``<script type="application/json" id=...>`` holding the JSON ``text``."""
    return Markup('<script type="application/json" id="{}">').format(element_id) + script_json(text) \
        + Markup("</script>")


def chart_html(key: str, spec: dict, css: str = "chart") -> Markup:
    """A chart's element and its spec as JSON."""
    payload = json.dumps(spec, separators=(",", ":"), allow_nan=False, default=_plain)
    return Markup('<div class="{css}" id="{key}" data-spec="{key}-spec"></div>').format(css=css, key=key) \
        + json_script(f"{key}-spec", payload)


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# --- small helpers -------------------------------------------------------------------------------------
def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(text)).strip("-").lower() or "x"


def flatten(values: dict | None, prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as ``(dotted key, text)`` pairs, in their order."""
    pairs: list[tuple[str, str]] = []
    for key, value in (values or {}).items():
        if isinstance(value, dict):
            pairs += flatten(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", value_text(value)))
    return pairs


def value_text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)
