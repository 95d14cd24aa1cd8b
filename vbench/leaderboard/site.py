"""Writing the site: every page into a temporary sibling folder, then swapped in for the old site, so that a
reader never sees half a site and a failed or interrupted run leaves the previous one as it was."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shlex
import shutil
import time
import uuid
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Callable, Iterator

from markupsafe import Markup

from vbench import __version__, paths
from vbench.errors import VbenchError
from vbench.leaderboard.data import gather
from vbench.leaderboard.html import fragment, frame, render, table_html
from vbench.leaderboard.runs import runs_table, writing_run_pages
from vbench.leaderboard.sections import Block, Page, sections
from vbench.store.leases import process_alive

MARKER = ".vbench-leaderboard"  # the file that says a folder is a site vbench wrote (and may replace)
STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class SiteSummary:
    path: Path
    pages: int  # every HTML page, the run pages included
    run_pages: int
    groups: int  # finished (suite, backbone) rows shown
    seconds: float

    @property
    def index(self) -> Path:
        return self.path / "index.html"


# --- the output folder ---------------------------------------------------------------------------------
def check_output(output: str | Path) -> Path:
    """The site's folder, after checking that it can be written and replaced (nothing is written here)."""
    target = Path(output).expanduser().absolute()
    if target.is_symlink():  # the swap would replace the link, not the folder it points at
        raise VbenchError(f"--output {str(output)!r} is a symbolic link; give the folder it points at")
    if target.exists():
        if not target.is_dir():
            raise VbenchError(f"--output {str(output)!r} is not a folder; give a folder for the site")
        if any(target.iterdir()) and not (target / MARKER).is_file():
            raise VbenchError(f"--output {str(output)!r} holds files that are not a vbench leaderboard (no {MARKER}); "
                              "give a new or empty folder, it is replaced whole")
    return paths.check_output(target, "--output", folder=True)


def _remove_leftovers(target: Path) -> None:
    """Folders ``.<site>.tmp-<pid>-<token>`` of an earlier run killed before it could clean up (its process
    is gone)."""
    for path in target.parent.iterdir():
        for prefix in (f".{target.name}.tmp-", f".{target.name}.old-"):
            if path.name.startswith(prefix) and path.is_dir() \
                    and not process_alive(path.name[len(prefix):].split("-")[0]):
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` to write the site into; swapped in for ``target`` when the block ends
    without an error, removed when it fails or is interrupted."""
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(target)
        folder = target.parent / f".{target.name}.tmp-{token}"
        folder.mkdir()
    except OSError as exc:
        raise VbenchError(f"cannot write the leaderboard to {str(target)!r}: {exc.strerror}; give a writable "
                          "--output") from None
    try:
        yield folder
        old = target.parent / f".{target.name}.old-{token}"
        replacing = target.exists()
        if replacing:
            os.rename(target, old)  # two renames: the old site is whole until the new one takes its name
        try:
            os.rename(folder, target)
        except OSError:
            if replacing:
                os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise VbenchError(f"cannot write the leaderboard to {str(target)!r}: {exc.strerror or exc}; give a "
                          "writable --output with free space") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


# --- the pages -----------------------------------------------------------------------------------------
def copy_assets(folder: Path) -> None:
    """Our stylesheet and script, and the plotly.js that plotly's Python package ships (nothing from a CDN)."""
    assets = folder / "assets"
    assets.mkdir()
    for name in ("leaderboard.css", "leaderboard.js"):
        shutil.copyfile(STATIC / name, assets / name)
    shutil.copyfile(plotly_js(), assets / "plotly.min.js")


def plotly_js() -> Path:
    try:
        path = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        raise VbenchError("plotly is not installed; install vbench with its dependencies "
                          "(python3 -m pip install -e .)") from None
    if not path.is_file():
        raise VbenchError(f"plotly's package has no plotly.min.js at {path}; reinstall plotly")
    return path


def _selection(site) -> str:
    parts = []
    if site.suite:
        parts.append(f"suite {site.suite}")
    if site.backbones:
        parts.append("backbones " + ", ".join(site.backbones))
    return "; ".join(parts)


def collect_pages(site) -> dict[str, tuple]:
    """``{page name: (Page, [Block])}`` from every registered section, in navigation order."""
    pages: dict[str, tuple] = {"index": (Page("index", "Classification"), [])}
    for section in sections():
        for block in section.build(site) or ():
            page = block.page or section.page
            pages.setdefault(page.name, (page, []))[1].append(block)
    return {name: entry for name, entry in pages.items() if entry[1] or name == "index"}


def plan_pages(site, output: Path) -> tuple[dict, dict]:
    """The pages to write with their blocks, and what every page's frame shows (navigation, footer)."""
    pages = collect_pages(site)
    if not site.results.groups:
        unfinished = sum(1 for run in site.runs if run.status != "done")
        pages["index"][1].insert(0, Block("no-runs", "No finished runs yet", fragment(
            "blocks/empty.html.j2", label=site.label, selection=_selection(site), unfinished=unfinished,
            db=shlex.quote(site.label), output=shlex.quote(str(output)))))
    elif not pages["index"][1]:  # no classification suite: the index points at the pages that have results
        links = Markup(", ").join(Markup('<a href="{}">{}</a>').format(page.file, page.title)
                                  for name, (page, _) in pages.items() if name != "index")
        pages["index"][1].append(Block("elsewhere", "Results", Markup("<p>No classification suite here; see ")
                                       + links + Markup(".</p>")))
    nav = [page for page, _ in pages.values()] + [Page("runs", "All runs")]
    nav_site = {"nav": nav, "version": __version__, "generated_at": site.generated_at, "label": site.label,
                "selection": _selection(site)}
    return pages, nav_site


def write_pages(folder: Path, site, pages: dict, nav_site: dict) -> int:
    """The index, a page per further task and the page of all runs."""
    for name, (page, blocks) in pages.items():
        heading = "vbench leaderboard" if name == "index" else page.title
        intro = ("Measured results in the layout of the LKCA paper's tables: mean ± std over seeds, the gain of "
                 "each LKCA model over its ViT partner, the paper's numbers beside ours. Click a column to sort; "
                 "a seed opens its run.") if name == "index" and site.results.groups else None
        text = render("page.html.j2", frame=frame(nav_site, "", name), title=page.title, heading=heading,
                      intro=intro, blocks=blocks, charts=True)
        (folder / page.file).write_text(text, encoding="utf-8")
    count = len(site.runs)
    text = render("page.html.j2", frame=frame(nav_site, "", "runs"), title="All runs", heading="All runs",
                  intro=f"{count} run{'s' if count != 1 else ''} of any status; each opens its page.",
                  blocks=[Block("runs", "Runs", table_html(runs_table(site)))], charts=False)
    (folder / "runs.html").write_text(text, encoding="utf-8")
    return len(pages) + 1


def build_site(store, output: str | Path, suite: str | None = None, backbones: list[str] | None = None,
               progress: Callable[[int], Callable[[int], None]] | None = None) -> SiteSummary:
    """Write the leaderboard of ``store`` (optionally one suite, some backbones) to the folder ``output``,
    replacing the site there. ``progress(total)`` returns a function called with the number of run pages
    written as they are."""
    started = time.perf_counter()
    target = check_output(output)
    plotly_js()
    with _no_automatic_gc():
        site = gather(store, suite, backbones)
        summary = _write_site(target, site, output, progress)
    summary.seconds = time.perf_counter() - started
    return summary


@contextlib.contextmanager
def _no_automatic_gc() -> Iterator[None]:
    """Reading 10,000 runs allocates millions of objects, and the cyclic collector's passes over them are a
    large share of the time (`vbench bench leaderboard`); nothing here makes reference cycles that must be freed
    before the end."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _write_site(target: Path, site, output: str | Path, progress) -> SiteSummary:
    with staged(target) as folder:
        copy_assets(folder)
        pages, nav_site = plan_pages(site, Path(output))
        advance = progress(len(site.runs)) if progress else None
        with writing_run_pages(folder, site, nav_site, advance):
            page_count = write_pages(folder, site, pages, nav_site)
        (folder / MARKER).write_text(json.dumps({"generator": "vbench leaderboard", "store": site.label,
                                                 "written": site.generated_at}) + "\n", encoding="utf-8")
    return SiteSummary(target, page_count + len(site.runs), len(site.runs), len(site.results.groups), 0.0)
