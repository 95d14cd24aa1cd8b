"""A page per run (recipe, environment, data, final and per-step metrics as a learning curve, size, files) and
the page that lists every run of the selection. A site holds a page per run, so this is the part whose speed
matters (10,000 runs in a few seconds): one template render and one file per run, from data read once."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import multiprocessing
import os
import signal
import sys
from html import escape as esc
from pathlib import Path
from typing import Iterator

from markupsafe import Markup

from vbench.errors import VbenchError
from vbench.leaderboard import charts
from vbench.leaderboard.behaviour import confusion_block
from vbench.leaderboard.html import (
    Cell,
    Column,
    Row,
    Table,
    environment,
    flatten,
    frame,
    json_script,
    number_cell,
    pairs_html,
    params_cell,
    slug,
    value_text,
)
from vbench.leaderboard.sections import task_page
from vbench.reporting.run_details import mfu_text
from vbench.store.artifacts import predictions_path, weights_path
from vbench.store.checkpoint import Checkpoints
from vbench.store.predictions import ClassificationPredictions, load_predictions
from vbench.tasks import get_task

SETTINGS_TITLES = {"device": "device", "precision": "precision", "threads": "CPU threads", "compile": "compile",
                   "compiled": "compiled", "compile_s": "compile time (s)", "pipeline": "augmentation pipeline",
                   "world_size": "processes", "model_flops_per_s": "model FLOP/s (training)",
                   "matmul_peak_flops_per_s": "matmul peak FLOP/s (probed)", "mfu": "MFU (fraction of the peak)"}


def task_metric_names(task: str, metrics: dict | None) -> list[str]:
    try:
        return [m.name for m in get_task(task).metrics]
    except VbenchError:  # a task whose plug-in is not installed now
        return sorted(k for k, v in (metrics or {}).items() if isinstance(v, (int, float)))


def _primary(task: str) -> str | None:
    try:
        return get_task(task).primary
    except VbenchError:
        return None


def _size_text(count: int | None, unit: float, name: str) -> str:
    return "-" if count is None else f"{count / unit:,.4g} {name} ({count:,})"


def _memory_text(run) -> str:
    if not run.peak_memory_bytes:
        return "-"
    return f"{run.peak_memory_bytes / 2**20:,.0f} MiB" + (f" ({run.peak_memory_kind})" if run.peak_memory_kind else "")


def _time_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def summary_pairs(run, group_href: str | None) -> list[tuple[str, str | Markup]]:
    names = ", ".join(run.paper_names or []) if isinstance(run.paper_names, list) else ""
    steps = f"{run.steps_done} of {run.steps} {run.step_unit or 'step'}s" if run.steps else str(run.steps_done)
    shown = (Markup(f'<a href="{esc(group_href)}">in its suite&#x27;s table</a>') if group_href else
             "not in the tables (unfinished, or an older recipe, data or precision than the one shown)")
    pairs = [("status", run.status), ("task", run.task), ("suite", f"{run.suite} ({run.dataset or '-'})"),
             ("backbone", run.backbone + (f" (paper: {names})" if names else "")), ("family", run.family or "-"),
             ("seed", str(run.seed)), ("steps", steps), ("shown", shown),
             ("# params", _size_text(run.params, 1e6, "M")), ("FLOPs", _size_text(run.flops, 1e6, "M MACs"))]
    pairs += [(key, text) for key, text in flatten(run.counts or {})]
    pairs += [("training images/s", value_text(run.train_images_per_s)),
              ("training FLOP/s, MFU", mfu_text(run.settings) or "-"), ("peak memory", _memory_text(run)),
              ("wall time", _time_text(run.wall_time_s)), ("started", str(run.started_at or "-")),
              ("ended", str(run.ended_at or "-"))]
    if run.error:
        pairs.append(("error", run.error))
    return pairs


def environment_pairs(run) -> list[tuple[str, str]]:
    pairs = [("device name", run.device_name or "-"), ("host", run.host or "-"),
             ("torch", run.torch_version or "-"), ("vbench", run.vbench_version or "-")]
    settings = run.settings or {}
    pairs += [(SETTINGS_TITLES.get(key, key), value_text(value)) for key, value in settings.items()]
    pairs += [(f"launch.{key}", text) for key, text in flatten(run.launch or {})]
    return pairs


def curve_payload(run, steps_json: list[tuple[int, str]], layouts: dict) -> Markup:
    """The learning curve's data for the page's script, which draws it and the table of every step: the step
    rows' JSON as the store holds it (not decoded and encoded again for each of 10,000 pages), the metrics for
    the left axis (the task's, and the training accuracy; losses go on the right) and the chart's layout."""
    rows = ",".join(f"[{step},{text or '{}'}]" for step, text in steps_json)
    if "NaN" in rows or "Infinity" in rows:  # Python's json writes these; JSON.parse does not read them
        rows = ",".join(f"[{step},{_finite_json(text)}]" for step, text in steps_json)
    unit = run.step_unit or "step"
    if unit not in layouts:
        layouts[unit] = json.dumps(charts.learning_curve_layout(unit), separators=(",", ":"))
    left = json.dumps([*task_metric_names(run.task, run.metrics), "train_acc"])
    payload = f'{{"unit":{json.dumps(unit)},"left":{left},"layout":{layouts[unit]},"rows":[{rows}]}}'
    return json_script("curve-data", payload)


def _finite_json(text: str | None) -> str:
    values = json.loads(text or "{}")
    return json.dumps({k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in values.items()})


def recipe_html(run, cache: dict) -> Markup:
    """The recipe's settings; runs of one recipe hash differ only in the seed, so the rest is written once."""
    rest = cache.get(run.recipe_hash)
    if rest is None:
        rest = cache[run.recipe_hash] = pairs_html([pair for pair in flatten(run.recipe or {}) if pair[0] != "seed"])
    return pairs_html([("seed", str(run.seed))]) + rest


class ArtifactFolders:
    """The files runs left beside the store (``vbench.store.artifacts.run_files``), each folder listed once: asking
    the file system about three files per run costs seconds over 10,000 runs."""

    def __init__(self, store):
        self.store_id = store.store_id
        self._folders = {kind: store.artifact_dir(kind) for kind in ("checkpoints", "weights", "predictions")}
        self._names = {kind: set(os.listdir(folder)) if folder.is_dir() else set()
                       for kind, folder in self._folders.items()}
        checkpoints = Checkpoints(self._folders["checkpoints"], self.store_id)
        self._paths = {"checkpoint": ("checkpoints", checkpoints.path),
                       "weights": ("weights", lambda run_id: weights_path(self, run_id)),
                       "predictions": ("predictions", lambda run_id: predictions_path(self, run_id))}

    def artifact_dir(self, kind: str) -> Path:
        return self._folders[kind]

    def run_files(self, run_id: int) -> dict[str, Path]:
        """What ``run_files(store, run_id)`` answers, from the listings."""
        found = {}
        for kind, (folder, path_of) in self._paths.items():
            path = path_of(run_id)
            listed = path.parent == self._folders[folder]
            if (path.name in self._names[folder]) if listed else path.exists():
                found[kind] = path
        return found


def file_pairs(folders: ArtifactFolders, run_id: int) -> list[tuple[str, str | Markup]]:
    found = folders.run_files(run_id)
    return [(kind, Markup(f"<code>{esc(str(found[kind]))}</code>") if kind in found else "none (not kept, or deleted)")
            for kind in ("checkpoint", "weights", "predictions")]


def confusion_html(run, folders: ArtifactFolders) -> Markup | None:
    """The confusion-matrix heatmap of a classification run that kept its predictions (None otherwise, or when the
    file cannot be read: the page says so under Files)."""
    path = folders.run_files(run.id).get("predictions") if run.task == "classification" else None
    if path is None:
        return None
    try:
        predictions = load_predictions(path, probabilities=False)
    except VbenchError:
        return None
    return confusion_block(predictions, run.num_classes) if isinstance(predictions, ClassificationPredictions) else None


def run_page_context(run, steps_json: list, group_href: str | None, folders: ArtifactFolders, cache: dict) -> dict:
    data = flatten(run.data or {})
    return dict(
        title=f"Run {run.id}", run=run,
        final=[(name, value_text(value)) for name, value in (run.metrics or {}).items()],
        summary=pairs_html(summary_pairs(run, group_href)), environment=pairs_html(environment_pairs(run)),
        data=pairs_html(data) if data else None, files=pairs_html(file_pairs(folders, run.id)),
        curve=curve_payload(run, steps_json, cache.setdefault("layouts", {})), evaluated=len(steps_json),
        recipe=recipe_html(run, cache.setdefault("recipes", {})), confusion=confusion_html(run, folders))


def _write_runs(folder: Path, site, nav_site: dict, runs: list, advance=None) -> None:
    template = environment().get_template("run.html.j2")
    page_frame = frame(nav_site, "../", "runs")
    group_of = site.group_of_run()
    folders = ArtifactFolders(site.store)
    cache: dict = {}
    for run in runs:
        group_href = f"../{task_page(run.task).file}#suite-{slug(run.suite)}" if run.id in group_of else None
        context = run_page_context(run, site.steps_json.get(run.id, []), group_href, folders, cache)
        text = template.render(frame=page_frame, charts=True, **context)
        with open(folder / "runs" / f"{run.id}.html", "w", encoding="utf-8") as handle:
            handle.write(text)
        if advance:
            advance(1)


PARALLEL_FROM = 2000  # runs: under this many, starting worker processes costs more than it saves
_JOB: tuple | None = None  # (folder, site, nav_site) for the forked workers, which inherit it


def _workers(count: int) -> int:
    if count < PARALLEL_FROM or not sys.platform.startswith("linux"):  # fork is safe on Linux, not on macOS
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cpus))


def _ignore_ctrl_c() -> None:
    """Workers leave Ctrl-C to the parent, which stops them and removes the half-written folder."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_chunk(bounds: tuple[int, int]) -> int:
    folder, site, nav_site = _JOB
    start, stop = bounds
    _write_runs(folder, site, nav_site, site.runs[start:stop])
    return stop - start


@contextlib.contextmanager
def writing_run_pages(folder: Path, site, nav_site: dict, advance=None) -> Iterator[None]:
    """Write ``runs/<id>.html`` for every run of the selection: one template render and one file each, from
    the data read once (no query per run). A large store is split over forked worker processes (they inherit
    the data), which write while the caller writes the other pages inside the ``with`` block."""
    global _JOB
    (folder / "runs").mkdir()
    workers = _workers(len(site.runs))
    if workers == 1:
        yield
        _write_runs(folder, site, nav_site, site.runs, advance)
        return
    size = max(100, len(site.runs) // (workers * 8))
    chunks = [(start, min(start + size, len(site.runs))) for start in range(0, len(site.runs), size)]
    _JOB = (folder, site, nav_site)
    gc.freeze()  # should a worker's garbage collector run, it would touch, and so copy, every inherited object
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_ignore_ctrl_c) as pool:
            written = pool.imap_unordered(_write_chunk, chunks)
            yield
            for count in written:
                if advance:
                    advance(count)
    finally:
        gc.unfreeze()
        _JOB = None


RUNS_SHOWN = 500  # rows of the all-runs page shown at first; sorting and filtering see every row


def runs_table(site) -> Table:
    columns = [Column("Run"), Column("Task", numeric=False), Column("Suite", numeric=False),
               Column("Backbone", numeric=False), Column("Family", numeric=False), Column("Seed"),
               Column("Status", numeric=False), Column("Result", tip="the task's primary metric, final"),
               Column("Steps"), Column("# Params (M)"), Column("img/s"), Column("Device", numeric=False),
               Column("Recipe", numeric=False), Column("Started", numeric=False)]
    rows = []
    primaries = {}
    for run in site.runs:
        if run.task not in primaries:
            primaries[run.task] = _primary(run.task)
        primary = primaries[run.task]
        result = run.metric(primary) if primary else None
        rows.append(Row([
            Cell(str(run.id), value=run.id, href=f"runs/{run.id}.html"), Cell(run.task), Cell(run.suite),
            Cell(run.backbone), Cell(run.family or "-"), Cell(str(run.seed), value=run.seed), Cell(run.status),
            number_cell(result) if result is not None else Cell("-"),
            Cell(f"{run.steps_done}/{run.steps or '?'}", value=run.steps_done),
            params_cell(run.params / 1e6 if run.params is not None else None),
            number_cell(run.train_images_per_s, 0), Cell((run.settings or {}).get("device") or "-"),
            Cell((run.recipe_hash or "")[:8], tip=run.recipe_hash), Cell(str(run.started_at or "-")[:16]),
        ], facet=run.status))
    return Table("runs-table", columns, rows, facet="Status", placeholder="suite, backbone, recipe", shown=RUNS_SHOWN)
