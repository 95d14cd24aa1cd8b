"""One document per format from a report: markdown, LaTeX (a standalone document that compiles), CSV (one
table, a ``task`` and a ``section`` column), HTML (one page) and JSON (one object, a section per table)."""

from __future__ import annotations

import html
import io
import json
import unicodedata

import pandas as pd

from vbench.errors import VbenchError

FORMATS = ("markdown", "latex", "csv", "html", "json")


def check_format(fmt_name: str) -> None:
    if fmt_name not in FORMATS:
        raise VbenchError(f"unknown --format {fmt_name!r}; choose one of {', '.join(FORMATS)}")


def render(report, fmt: str) -> str:
    check_format(fmt)
    return {"markdown": markdown, "latex": latex, "csv": csv, "html": html_page, "json": json_document}[fmt](report)


def _alignment(frame: pd.DataFrame) -> list[str]:
    text_columns = {"Model", "Backbone", "Algorithm", "Recipe", "Paper recipe", "Paper # Params", "Paper Flops"}
    return ["left" if column in text_columns else "right" for column in frame.columns]


def markdown(report) -> str:
    parts = []
    for section in report.sections:
        table = section.display.to_markdown(index=False, colalign=_alignment(section.display), disable_numparse=True)
        notes = "".join(f"\n{note}\n" for note in section.notes)
        parts.append(f"## {section.title}\n\n{table}\n{notes}")
    parts += [f"{note}\n" for note in report.notes]
    return "\n".join(parts)


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "±": r"$\pm$", "Δ": r"$\Delta$", "×": r"$\times$"}


def latex_escape(text: str) -> str:
    """Plain text as LaTeX that compiles with the base packages (any other non-ASCII letter transliterated)."""
    def one(ch: str) -> str:
        if ch in LATEX_SPECIALS:
            return LATEX_SPECIALS[ch]
        if ch.isascii():
            return ch
        return unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or "?"

    return "".join(one(ch) for ch in str(text))


def latex(report) -> str:
    """A standalone article (only LaTeX's base classes): one table per section, its notes under it."""
    parts = ["\\documentclass{article}", "\\usepackage[margin=1cm,landscape]{geometry}", "\\begin{document}",
             "\\scriptsize"]
    for section in report.sections:
        frame = section.display
        columns = "".join("l" if a == "left" else "r" for a in _alignment(frame))
        parts += ["\\begin{table}[ht]", "\\centering", f"\\caption{{{latex_escape(section.title)}}}",
                  f"\\begin{{tabular}}{{{columns}}}", "\\hline",
                  " & ".join(latex_escape(c) for c in frame.columns) + " \\\\", "\\hline"]
        parts += [" & ".join(latex_escape(cell) for cell in row) + " \\\\" for row in frame.itertuples(index=False)]
        parts += ["\\hline", "\\end{tabular}", "\\end{table}"]
        parts += [f"\\par {latex_escape(note)}" for note in section.notes]
    parts += [f"\\par {latex_escape(note)}" for note in report.notes]
    parts.append("\\end{document}")
    return "\n".join(parts) + "\n"


def _flat_records(report) -> list[dict]:
    rows = []
    for section in report.sections:
        if section.pivot:  # a view of the per-suite rows, which the table holds already
            continue
        for record in section.records:
            row = {"section": section.key, **record}
            for key, value in row.items():
                if isinstance(value, list):
                    row[key] = " ".join(str(v) for v in value)
            rows.append(row)
    return rows


def csv(report) -> str:
    frame = pd.DataFrame(_flat_records(report))
    leading = [c for c in ("task", "section", "suite", "dataset", "model", "backbone") if c in frame.columns]
    frame = frame[leading + [c for c in frame.columns if c not in leading]]
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format=_csv_float)
    return buffer.getvalue()


def _csv_float(value: float) -> str:
    """Four decimals; a value too small to show in them (a logit difference of 1e-6) in scientific notation."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 5e-5 or value != value else f"{value:.3e}"


def html_page(report) -> str:
    body = []
    for section in report.sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body.append(section.display.to_html(index=False, border=0, escape=True))
        body += [f"<p class=\"note\">{html.escape(note)}</p>" for note in section.notes]
    body += [f"<p class=\"note\">{html.escape(note)}</p>" for note in report.notes]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vbench report</title></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def json_document(report) -> str:
    payload = {
        "compare_paper": report.compare_paper,
        "sections": [{"key": s.key, "task": s.task, "suite": s.suite, "title": s.title, "pivot": s.pivot,
                      "columns": list(s.display.columns), "rows": s.records, "notes": s.notes}
                     for s in report.sections],
        "notes": report.notes,
    }
    return json.dumps(_plain(payload), indent=2) + "\n"


def _plain(value, digits: int = 6):
    """Plain JSON types, floats rounded so that 94.25 - 94.11 prints as 0.14."""
    if isinstance(value, dict):
        return {key: _plain(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, digits) for item in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        if value != value:
            return None
        return round(value, digits) if abs(value) >= 10 ** -digits or value == 0 else float(f"{value:.{digits}g}")
    return value
