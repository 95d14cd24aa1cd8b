"""``vbench report --deploy``: the deployment results of ``vbench deploy``, per suite two tables:

- the measurements, one row per run, runtime, precision, batch size, thread count and machine: top-1 of the
  deployed model beside PyTorch's, the largest logit difference, latency percentiles, images/s and the ratio to
  torch eager fp32 under the same batch size, threads and machine;
- the support matrix: per backbone (and machine) and runtime, each precision ``ok``, or the number of its
  one-line reason (unsupported here, or failed), the reasons listed under the table (a view of the first table's
  records, which hold every result, the unsupported and failed ones with their reason).
"""

from __future__ import annotations

import pandas as pd

from vbench.deploy.evaluate import KIND, Setting
from vbench.deploy.runtimes import PRECISIONS
from vbench.errors import VbenchError
from vbench.reporting.report import ReportTable, display_name, fmt

MEASURES = ("top1", "top1_torch", "max_abs_diff", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "images_per_s")
NOTE = ("Top-1 (%) of the deployed model on the whole test split; PyTorch: eager fp32 of the same weights; Δ: the "
        "difference; max |Δ logit|: the largest absolute difference of the logits from PyTorch's on the first test "
        "batch. Batch 1: latency of single queries, one at a time after 20 warm-up queries (p50/p90/p99, nearest "
        "rank, of at least 200); larger batches: back-to-back batches for at least 1 s, images/s over all of them "
        "and the percentiles of their latency. vs torch fp32: images/s over torch eager fp32's at the same batch "
        "size, threads and machine. Each setting was timed on its own, one after another: on a shared machine "
        "`vbench bench deploy` (interleaved rounds) is the better comparison.")


def deploy_records(store, suite: str | None = None, backbones=None) -> list[dict]:
    """One record per stored deployment result of a finished run, with the run's suite, backbone and seed."""
    runs = {run.id: run for run in store.list_runs(suite=suite, backbones=backbones, status="done",
                                                   task="classification")}
    records = []
    for evaluation in store.evaluations(KIND, list(runs)):
        run, metrics = runs[evaluation.run_id], evaluation.metrics or {}
        setting = Setting.parse(evaluation.condition)
        calibration = metrics.get("calibration") or {}
        records.append({
            "task": "classification", "suite": run.suite, "model": display_name(run.paper_names, run.dataset, run.backbone),
            "backbone": run.backbone, "seed": run.seed, "run_id": run.id, "runtime": setting.runtime,
            "precision": setting.precision, "batch_size": setting.batch_size, "threads": setting.threads,
            "hardware": setting.hardware, **{name: metrics.get(name) for name in MEASURES},
            "status": metrics.get("status"), "reason": metrics.get("reason"), "exporter": setting.exporter,
            "device": metrics.get("device"), "runtime_version": metrics.get("runtime_version"),
            "hardware_text": metrics.get("hardware_text"), "calibration_images": calibration.get("images"),
            "calibration_seed": calibration.get("seed"), "calibration_indices_sha256": calibration.get("indices_sha256"),
        })
    _add_speedups(records)
    return sorted(records, key=lambda r: (r["suite"], r["backbone"], r["seed"], r["run_id"], r["hardware"], r["threads"],
                                          _runtime_order(r["runtime"]), _precision_order(r["precision"]),
                                          r["batch_size"]))


def _add_speedups(records: list[dict]) -> None:
    baseline = {(r["run_id"], r["batch_size"], r["threads"], r["hardware"]): r["images_per_s"] for r in records
                if (r["runtime"], r["precision"], r["status"]) == ("torch", "fp32", "ok")}
    for record in records:
        base = baseline.get((record["run_id"], record["batch_size"], record["threads"], record["hardware"]))
        record["vs_torch_fp32"] = record["images_per_s"] / base if base and record["images_per_s"] else None


def _runtime_order(name: str) -> tuple:
    order = ("torch", "torch-compile", "onnxruntime", "openvino")
    return (order.index(name), name) if name in order else (len(order), name)


def _precision_order(name: str) -> int:
    return PRECISIONS.index(name) if name in PRECISIONS else len(PRECISIONS)


def deploy_sections(store, suite: str | None = None, backbones=None) -> list[ReportTable]:
    records = deploy_records(store, suite, backbones)
    if not records:
        where = f" of suite {suite!r}" if suite else ""
        raise VbenchError(f"no deployment results{where} in {store.label}; run `vbench deploy --suite ...` first")
    sections = []
    for suite_name in dict.fromkeys(r["suite"] for r in records):
        own = [r for r in records if r["suite"] == suite_name]
        sections += [measurement_section(suite_name, own), support_section(suite_name, own)]
    return sections


def measurement_section(suite: str, records: list[dict]) -> ReportTable:
    """Every stored result in the records (the unsupported and failed ones with their reason, for csv and json),
    the measured ones in the table."""
    measured = [r for r in records if r["status"] == "ok"]
    display = pd.DataFrame([{
        "Model": r["model"], "Seed": str(r["seed"]), "Runtime": r["runtime"], "Precision": r["precision"],
        "Batch": str(r["batch_size"]), "Threads": str(r["threads"]), "Top-1": fmt(r["top1"]),
        "PyTorch": fmt(r["top1_torch"]), "Δ": _signed(r["top1"], r["top1_torch"]),
        "max |Δ logit|": _small(r["max_abs_diff"]), "p50 ms": fmt(r["latency_p50_ms"], 3),
        "p90 ms": fmt(r["latency_p90_ms"], 3), "p99 ms": fmt(r["latency_p99_ms"], 3),
        "img/s": fmt(r["images_per_s"], 0), "vs torch fp32": _ratio(r["vs_torch_fp32"]),
    } for r in measured], columns=["Model", "Seed", "Runtime", "Precision", "Batch", "Threads", "Top-1", "PyTorch", "Δ",
                                   "max |Δ logit|", "p50 ms", "p90 ms", "p99 ms", "img/s", "vs torch fp32"])
    return ReportTable(f"{suite}/deploy", "classification", f"{suite}: deployment", records, display,
                       [NOTE, *_machine_notes(records)], suite=suite)


def _machine_notes(records: list[dict]) -> list[str]:
    notes = [f"Machine {hardware}: {text}." for hardware, text in
             dict.fromkeys((r["hardware"], r["hardware_text"]) for r in records)]
    versions = sorted({r["runtime_version"] for r in records if r["runtime_version"]})
    exporters = sorted({r["exporter"] for r in records if r["exporter"] != "eager"})
    if exporters:
        notes.append(f"ONNX export: torch.onnx.export with the {' and '.join(exporters)} exporter; onnxruntime and "
                     "openvino run that file (openvino.convert_model of it).")
    if versions:
        notes.append(f"Versions: {', '.join(versions)}.")
    calibrations = sorted({(r["calibration_images"], r["calibration_seed"], r["calibration_indices_sha256"])
                           for r in records if r["calibration_images"]})
    for images, seed, digest in calibrations:
        notes.append(f"INT8: post-training static quantisation (onnxruntime quantize_static QDQ, U8S8 per channel, "
                     f"MinMax; openvino NNCF) calibrated on {images} training images drawn with seed {seed} "
                     f"(indices sha256 {digest}).")
    return notes


def support_section(suite: str, records: list[dict]) -> ReportTable:
    """Per (backbone, machine, runtime) a row, per precision ``ok`` or the number of its reason."""
    cells: dict[tuple, dict[str, list[dict]]] = {}
    for record in records:
        key = (record["model"], record["backbone"], record["hardware"], record["runtime"])
        cells.setdefault(key, {}).setdefault(record["precision"], []).append(record)
    reasons: list[str] = []
    rows, summary = [], []
    for (model, backbone, hardware, runtime), by_precision in cells.items():
        row = {"Model": model, "Machine": hardware, "Runtime": runtime}
        for precision in PRECISIONS:
            status, reason = _status(by_precision.get(precision, []))
            if reason:
                if f"{status}: {reason}" not in reasons:
                    reasons.append(f"{status}: {reason}")
                row[precision] = f"{status} ({reasons.index(f'{status}: {reason}') + 1})"
            else:
                row[precision] = status
            if status != "-":
                summary.append({"task": "classification", "suite": suite, "model": model, "backbone": backbone,
                                "hardware": hardware, "runtime": runtime, "precision": precision, "status": status,
                                "reason": reason,
                                "run_ids": sorted({r["run_id"] for r in by_precision.get(precision, [])})})
        rows.append(row)
    notes = [f"({index}) {reason}" for index, reason in enumerate(reasons, 1)] or ["Every combination ran."]
    display = pd.DataFrame(rows, columns=["Model", "Machine", "Runtime", *PRECISIONS])
    return ReportTable(f"{suite}/deploy-support", "classification", f"{suite}: deployment support matrix", summary,
                       display, ["ok: measured; unsupported: the runtime cannot run that precision on that machine; "
                                 "failed: it could but broke (tried again by the next vbench deploy).", *notes],
                       suite=suite, pivot=True)  # a view of the measurement section's records, as csv holds them


def _status(records: list[dict]) -> tuple[str, str | None]:
    """A cell's status over its runs and batch sizes: failed over unsupported over ok."""
    for status in ("failed", "unsupported"):
        hit = next((r for r in records if r["status"] == status), None)
        if hit:
            return status, hit["reason"]
    return ("ok", None) if records else ("-", None)


def _signed(value, reference) -> str:
    return "-" if value is None or reference is None else f"{value - reference:+.2f}"


def _small(value) -> str:
    return "-" if value is None else f"{value:.2e}"


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"
