"""Tables 6-7 layout and the mIoU-versus-iterations chart for segmentation results.

Input records are plain dicts, one per evaluated iteration of a run (see :func:`evaluation_record`):
``backbone``, ``paper_names``, ``head``, ``iteration``, ``aAcc``, ``mIoU`` (percent), ``params``
(the whole segmentor, auxiliary head included) and ``flops`` (fvcore MACs at the suite's crop).
Sizes print as the paper prints them: "57.66M", "0.144G" (params), "67.25G", "0.238T" (FLOPs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from vbench.paper import paper_tables

COLUMNS = ["Backbone", "Iteration", "Algorithm", "aAcc(%)", "mIoU(%)", "# Params", "Flops"]
HEAD_NAMES = {"upernet": "UPerNet", "fpn": "FPN"}
NOTE = ("aAcc/mIoU: percent on the validation split (mmseg's definitions); # Params: the whole segmentor, "
        "auxiliary head included; Flops: fvcore multiply-accumulates of one image at the training crop.")


def paper_style(count: float | None, unit: float, names: tuple[str, str]) -> str:
    """``count`` in ``unit`` with 2 decimals, or in the next unit (x1000) with 3 decimals from 100 up."""
    if count is None or pd.isna(count):
        return ""
    value = count / unit
    return f"{value / 1000:.3f}{names[1]}" if value >= 100 else f"{value:.2f}{names[0]}"


def params_text(count) -> str:
    return paper_style(count, 1e6, ("M", "G"))


def flops_text(count) -> str:
    return paper_style(count, 1e9, ("G", "T"))


def evaluation_record(spec, head: str, evaluation, size: dict | None = None) -> dict:
    """One store/report row from a registry spec, the head name, an ``Evaluation`` and ``segmentor_size``."""
    size = size or {}
    return {"backbone": spec.name, "paper_names": list(spec.paper_names), "head": head,
            "iteration": evaluation.iteration, **evaluation.scores.as_dict(),
            "train_loss": evaluation.train_loss, "lr": evaluation.lr,
            "params": size.get("params"), "flops": size.get("flops")}


def paper_segmentation_rows() -> pd.DataFrame:
    """Tables 6-7 as one row per (model, iterations, head): aAcc, mIoU and the published size strings."""
    table = paper_tables()
    rows = table[table["dataset"] == "ade20k"]
    wide = rows.pivot_table(index=["table", "model", "iterations", "head", "params", "flops"], columns="metric",
                            values="value", aggfunc="first").reset_index()
    wide["iterations"] = wide["iterations"].astype(int)
    return wide


def _paper_match(paper: pd.DataFrame, names: Iterable[str], iteration: int, head: str) -> pd.Series | None:
    keys = {name.lower() for name in names}
    found = paper[paper["model"].str.lower().isin(keys) & (paper["iterations"] == iteration)
                  & (paper["head"].str.lower() == HEAD_NAMES.get(head, head).lower())]
    return None if found.empty else found.iloc[0]


def display_name(record: dict) -> str:
    names = record.get("paper_names") or []
    return names[0] if names else record["backbone"]


def segmentation_table(records: Iterable[dict], compare_paper: bool = False) -> pd.DataFrame:
    """``Backbone | Iteration | Algorithm | aAcc(%) | mIoU(%) | # Params | Flops`` (+ the paper's numbers)."""
    paper = paper_segmentation_rows() if compare_paper else None
    rows = []
    for record in sorted(records, key=lambda r: (r["iteration"], r["head"], display_name(r))):
        row = {"Backbone": display_name(record), "Iteration": record["iteration"],
               "Algorithm": HEAD_NAMES.get(record["head"], record["head"]),
               "aAcc(%)": round(record["aAcc"], 2), "mIoU(%)": round(record["mIoU"], 2),
               "# Params": params_text(record.get("params")), "Flops": flops_text(record.get("flops"))}
        if paper is not None:
            match = _paper_match(paper, [*(record.get("paper_names") or []), record["backbone"]],
                                 record["iteration"], record["head"])
            row.update({"paper aAcc(%)": match["aAcc"] if match is not None else None,
                        "paper mIoU(%)": match["mIoU"] if match is not None else None,
                        "paper # Params": match["params"] if match is not None else "",
                        "paper Flops": match["flops"] if match is not None else ""})
        rows.append(row)
    columns = COLUMNS + (["paper aAcc(%)", "paper mIoU(%)", "paper # Params", "paper Flops"] if compare_paper else [])
    return pd.DataFrame(rows, columns=columns)


def render(frame: pd.DataFrame, fmt: str = "markdown") -> str:
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "latex":
        return frame.to_latex(index=False)
    return frame.to_markdown(index=False) + "\n\n" + NOTE


def size_comparison(sizes: Iterable[dict]) -> pd.DataFrame:
    """Our segmentor sizes beside the published ones: dicts of paper_names, head, params, params_without_aux, flops."""
    paper = paper_segmentation_rows().drop_duplicates(["model", "head"])
    rows = []
    for size in sizes:
        names = {n.lower() for n in size["paper_names"]}
        match = paper[paper["model"].str.lower().isin(names)
                      & (paper["head"].str.lower() == HEAD_NAMES[size["head"]].lower())]
        rows.append({"Backbone": size["paper_names"][0], "Algorithm": HEAD_NAMES[size["head"]],
                     "# Params": params_text(size["params"]),
                     "# Params w/o aux": params_text(size.get("params_without_aux")),
                     "Flops": flops_text(size.get("flops")),
                     "paper # Params": match.iloc[0]["params"] if not match.empty else "",
                     "paper Flops": match.iloc[0]["flops"] if not match.empty else ""})
    return pd.DataFrame(rows)


def plot_miou(records: Iterable[dict], output: str | Path, title: str = "ADE20K", with_paper: bool = True) -> Path:
    """mIoU against iterations, one line per (backbone, head); the paper's points hollow beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(list(records))
    figure, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for (name, head), group in frame.groupby([frame.apply(display_name, axis=1), "head"]):
        group = group.sort_values("iteration")
        line, = ax.plot(group["iteration"], group["mIoU"], marker="o", label=f"{name} {HEAD_NAMES.get(head, head)}")
        if with_paper:
            paper = paper_segmentation_rows()
            names = {n.lower() for n in group.iloc[0].get("paper_names") or [name]}
            points = paper[paper["model"].str.lower().isin(names)
                           & (paper["head"].str.lower() == HEAD_NAMES.get(head, head).lower())]
            if not points.empty:
                ax.scatter(points["iterations"], points["mIoU"], facecolors="none", edgecolors=line.get_color(),
                           s=50, label=f"{name} {HEAD_NAMES.get(head, head)} (paper)")
    ax.set_xlabel("iterations")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"{title}: mIoU against training iterations")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, bbox_inches="tight")
    plt.close(figure)
    return output


# --- from the run store ----------------------------------------------------------------------------
def stored_records(store, suite: str | None = None, backbones: Iterable[str] | None = None) -> list[dict]:
    """One record per evaluated iteration of the newest finished run of each (suite, backbone, head, seed).

    Seeds of one (backbone, head, iteration) are averaged (the Tables 6-7 rows have one number each).
    """
    runs = [run for run in store.list_runs(suite=suite, status="done", task="segmentation")
            if not backbones or run.backbone in set(backbones)]
    newest: dict[tuple, object] = {}
    for run in runs:   # list_runs is ordered by id: a later run of the same key replaces an earlier one
        head = (run.metrics or {}).get("head") or (run.recipe or {}).get("head")
        newest[(run.suite, run.backbone, head, run.seed)] = run
    per_iteration: dict[tuple, list[dict]] = {}
    for (suite_name, backbone, head, _seed), run in newest.items():
        for epoch in store.epochs(run.id):
            scores = epoch.metrics or {}
            if "mIoU" not in scores:
                continue
            record = {"suite": suite_name, "backbone": backbone, "paper_names": list(run.paper_names or []),
                      "head": head, "iteration": epoch.epoch, "aAcc": scores["aAcc"], "mIoU": scores["mIoU"],
                      "mAcc": scores.get("mAcc"), "params": run.params, "flops": run.flops, "run_id": run.id}
            per_iteration.setdefault((suite_name, backbone, head, epoch.epoch), []).append(record)
    records = []
    for group in per_iteration.values():
        record = dict(group[0])
        for metric in ("aAcc", "mIoU", "mAcc"):
            values = [r[metric] for r in group if r[metric] is not None]
            record[metric] = sum(values) / len(values) if values else None
        record["seeds"] = len(group)
        records.append(record)
    return records


def render_any(frame: pd.DataFrame, fmt: str, title: str = "ADE20K (Tables 6-7)") -> str:
    """``render`` plus the html and json formats of ``vbench report``."""
    if fmt == "html":
        return f"<h2>{title}</h2>\n{frame.to_html(index=False, border=0)}\n<p>{NOTE}</p>\n"
    if fmt == "json":
        import json

        rows = json.loads(frame.to_json(orient="records"))
        return json.dumps({"title": title, "rows": rows, "note": NOTE}, indent=2) + "\n"
    if fmt == "markdown":
        return f"## {title}\n\n{render(frame, fmt)}\n"
    return render(frame, fmt)


def plot_stored(store, output_dir: str | Path, suite: str | None = None) -> list[Path]:
    """``<suite>-miou.png`` per segmentation suite with finished runs."""
    records = stored_records(store, suite=suite)
    written = []
    for suite_name in sorted({r["suite"] for r in records}):
        chosen = [r for r in records if r["suite"] == suite_name]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in suite_name)
        written.append(plot_miou(chosen, Path(output_dir) / f"{safe}-miou.png", title=suite_name))
    return written
