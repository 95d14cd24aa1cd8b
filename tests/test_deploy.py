"""`vbench deploy`, `vbench report --deploy`, the deployment page and MFU, end to end: tiny backbones trained on the
CIFAR-10 fixture, deployed on every runtime and precision (what this machine cannot run is stored with its
reason), reported in every format; a backbone that cannot be exported; bad input; the README's "## Deployment"."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
import readme
import torch
from cli import run_cli
from plugins import FAST, write_plugin

from vbench.data.fixtures import write_fixture
from vbench.deploy import KIND, RUNTIMES, Runtime, Setting
from vbench.deploy.runtimes import PRECISIONS
from vbench.engine.hardware import fingerprint
from vbench.engine.mfu import training_flops_per_s
from vbench.store import open_store

# ONNX has no eigenvalue operator, so neither exporter can export this backbone; torch trains and runs it.
EIG_PLUGIN = '''
import torch
import torch.nn as nn
from vbench.models import registry


class Eig(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        y = self.stem(x).mean(dim=(2, 3))
        square = y[:, :2, None] * y[:, None, :2]
        return self.head(y) + torch.linalg.eigvals(square.detach()).real.sum(dim=-1, keepdim=True) * 0


if "tiny-eig" in registry.BACKBONES.names():
    registry.unregister_backbone("tiny-eig")


@registry.register_backbone("tiny-eig", family="test", in_paper=False, accepts=("drop_path_rate",))
def tiny_eig(img_size=32, num_classes=10, drop_path_rate=0.0):
    """A conv net with an eigenvalue in its forward pass."""
    return Eig(num_classes)
'''
QUICK = ["--calibration-images", "8", "--throughput-seconds", "0.05"]  # the recipe of a test: seconds, not minutes
CSV_COLUMNS = ["suite", "backbone", "seed", "run_id", "runtime", "precision", "batch_size", "threads", "hardware",
               "top1", "top1_torch", "max_abs_diff", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "images_per_s"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    eig = root / "eig_backbone.py"
    eig.write_text(EIG_PLUGIN)
    plugins = ["--plugin", write_plugin(root), "--plugin", str(eig)]
    fixture = write_fixture("cifar10", root / "data", per_batch=8, num_test=12)
    db = root / "runs.db"
    result = run_cli("run", "--suite", "cifar10", "--backbones", "tiny-test,tiny-eig", *plugins, "--epochs",
                     "1", "--data-root", fixture.root, "--db", db, "--batch-size", "10", *FAST)
    assert result.code == 0, result.out + result.err
    return {"db": db, "plugins": plugins, "root": root,
            "common": ["--suite", "cifar10", "--data-root", fixture.root, "--db", db, *plugins]}


@pytest.fixture(scope="module")
def deployed(trained):
    """Every precision on torch, ONNX Runtime and OpenVINO (torch.compile: `test_torch_compile_...`)."""
    command = [*trained["common"], "--backbones", "tiny-test", "--runtimes", "torch,onnxruntime,openvino",
               "--batch-sizes", "1,4", *QUICK]
    result = run_cli("deploy", *command)
    assert result.code == 0, result.out + result.err
    return {**trained, "command": command, "output": result.out}


def stored(db) -> list:
    return open_store(str(db), write=False).evaluations(KIND)


def test_every_runtime_and_precision_is_measured_or_says_why(deployed):
    store = open_store(str(deployed["db"]), write=False)
    runs = {run.backbone: run for run in store.list_runs()}
    evaluations = [e for e in store.evaluations(KIND) if e.run_id == runs["tiny-test"].id]
    hardware = fingerprint("cpu")
    assert len(evaluations) == 3 * len(PRECISIONS) * 2
    for evaluation in evaluations:
        setting, metrics = Setting.parse(evaluation.condition), evaluation.metrics
        assert (setting.threads, setting.hardware) == (torch.get_num_threads(), hardware.id)
        assert setting.exporter == ("eager" if setting.runtime == "torch" else "dynamo")
        assert (metrics["runtime"], metrics["precision"], metrics["batch_size"]) == \
            (setting.runtime, setting.precision, setting.batch_size)
        reason = RUNTIMES.get(setting.runtime).unsupported(setting.precision, torch.device("cpu"), hardware)
        if reason:
            assert (metrics["status"], metrics["reason"]) == ("unsupported", reason)
            continue
        assert metrics["status"] == "ok", metrics
        assert 0 <= metrics["top1"] <= 100 and metrics["images_per_s"] > 0
        assert metrics["latency_p50_ms"] <= metrics["latency_p90_ms"] <= metrics["latency_p99_ms"]
        assert metrics["timed_calls"] >= (200 if setting.batch_size == 1 else 10)
    statuses = {(Setting.parse(e.condition).runtime, Setting.parse(e.condition).precision): e.metrics["status"]
                for e in evaluations}
    assert statuses[("torch", "int8")] == statuses[("onnxruntime", "bf16")] == "unsupported"
    assert all(statuses[(runtime, "fp32")] == statuses[(runtime, "int8")] == "ok"
               for runtime in ("onnxruntime", "openvino"))
    assert (statuses[("torch", "bf16")] == "ok") == hardware.has("avx512_bf16", "amx_bf16")
    measured = sum(e.metrics["status"] == "ok" for e in evaluations)
    assert f"{measured} measured now, {len(evaluations) - measured} unsupported here, 0 kept" in deployed["output"]


def test_exports_match_pytorch_and_int8_records_its_calibration(deployed):
    store = open_store(str(deployed["db"]), write=False)
    runs = {run.id: run for run in store.list_runs()}
    for evaluation in store.evaluations(KIND):
        setting, metrics = Setting.parse(evaluation.condition), evaluation.metrics
        if metrics["status"] != "ok":
            continue
        one_image = 100 / metrics["test_images"]  # the barely trained models have near ties among their logits
        assert abs(metrics["top1_torch"] - runs[evaluation.run_id].metrics["top1"]) <= one_image
        if setting.precision == "fp32":
            assert abs(metrics["top1"] - metrics["top1_torch"]) <= one_image and metrics["max_abs_diff"] < 1e-4, metrics
        if setting.precision == "int8":
            assert metrics["calibration"]["images"] == 8 and metrics["calibration"]["seed"] == 0
            assert math.isfinite(metrics["max_abs_diff"])


def test_a_repeated_or_extended_command_keeps_what_is_done(deployed):
    again = run_cli("deploy", *deployed["command"])
    assert again.code == 0 and "0 measured now, 0 unsupported here, 18 kept from before" in again.out, again.out
    compiled = run_cli("deploy", *deployed["common"], "--backbones", "tiny-test", "--runtimes", "torch,torch-compile",
                       "--precisions", "fp32", "--batch-sizes", "4", *QUICK)
    assert compiled.code == 0, compiled.out + compiled.err
    assert "1 measured now, 0 unsupported here, 1 kept from before" in compiled.out
    rows = {Setting.parse(e.condition).runtime: e.metrics for e in stored(deployed["db"])
            if e.condition.startswith(("torch/fp32/b4/", "torch-compile/fp32/b4/"))}
    one_image = 100 / rows["torch"]["test_images"]  # the barely trained models have near ties among their logits
    assert rows["torch-compile"]["max_abs_diff"] < 1e-4
    assert abs(rows["torch-compile"]["top1"] - rows["torch"]["top1"]) <= one_image


def test_report_in_every_format(deployed):
    common = ["report", "--deploy", "--db", deployed["db"], *deployed["plugins"]]
    table = run_cli(*common, "--format", "csv")
    assert table.code == 0, table.err
    rows = list(csv.DictReader(io.StringIO(table.out)))
    assert set(CSV_COLUMNS) <= set(rows[0])
    by_key = {(int(r["run_id"]), r["runtime"], r["precision"], int(r["batch_size"])): r for r in rows}
    for evaluation in stored(deployed["db"]):
        setting = Setting.parse(evaluation.condition)
        row = by_key[(evaluation.run_id, setting.runtime, setting.precision, setting.batch_size)]
        assert row["status"] == evaluation.metrics["status"] and row["hardware"] == setting.hardware
        if row["status"] == "ok":
            assert float(row["top1"]) == pytest.approx(evaluation.metrics["top1"], abs=1e-4)
            assert float(row["latency_p90_ms"]) == pytest.approx(evaluation.metrics["latency_p90_ms"], abs=1e-4)
            assert float(row["max_abs_diff"]) == pytest.approx(evaluation.metrics["max_abs_diff"], rel=1e-3, abs=5e-5)
        else:
            assert row["reason"] == evaluation.metrics["reason"]
    document = json.loads(run_cli(*common, "--format", "json").out)
    keys = [section["key"] for section in document["sections"]]
    assert keys == ["cifar10/deploy", "cifar10/deploy-support"]
    assert len(document["sections"][0]["rows"]) == len(rows)
    markdown = run_cli(*common).out
    assert "## cifar10: deployment support matrix" in markdown and "unsupported (1)" in markdown
    assert "torch eager has no post-training static INT8" in markdown and "calibrated on 8 training images" in markdown
    html = run_cli(*common, "--format", "html").out
    assert "max |Δ logit|" in html and "<script" not in html
    latex = run_cli(*common, "--format", "latex").out
    assert latex.count("\\begin{tabular}") == 2


def test_leaderboard_has_a_deployment_page(deployed, tmp_path):
    result = run_cli("leaderboard", "--db", deployed["db"], "--output", tmp_path / "site", *deployed["plugins"])
    assert result.code == 0, result.err
    page = (tmp_path / "site" / "deploy.html").read_text()
    for runtime in ("torch", "onnxruntime", "openvino"):
        assert f'id="deploy-cifar10-{runtime}-latency"' in page and f'id="deploy-cifar10-{runtime}-throughput"' in page
    assert "accuracy drop" in page.lower() and "support matrix" in page
    assert "QuantStub-wrapped modules" in page  # the reason of an unsupported cell


def test_mfu_is_recorded_for_every_training_run_and_shown(deployed, tmp_path):
    store = open_store(str(deployed["db"]), write=False)
    for run in store.list_runs():
        settings = run.settings
        assert settings["model_flops_per_s"] == pytest.approx(training_flops_per_s(run.flops, run.train_images_per_s))
        assert settings["mfu"] == pytest.approx(settings["model_flops_per_s"] / settings["matmul_peak_flops_per_s"])
    shown = run_cli("runs", "show", str(run.id), "--db", deployed["db"])
    assert shown.code == 0 and "MFU" in shown.out and "fp32 matmul peak" in shown.out
    report = run_cli("report", "--db", deployed["db"], *deployed["plugins"])
    assert "Training FLOP/s and MFU" in report.out
    site = run_cli("leaderboard", "--db", deployed["db"], "--output", tmp_path / "site", *deployed["plugins"])
    assert site.code == 0 and "MFU" in (tmp_path / "site" / "runs" / f"{run.id}.html").read_text()


@pytest.mark.parametrize("exporter, backbones", [("torchscript", "tiny-eig,tiny-test"), ("dynamo", "tiny-eig")])
def test_a_backbone_that_cannot_be_exported_is_named_and_the_others_go_on(trained, exporter, backbones):
    result = run_cli("deploy", *trained["common"], "--backbones", backbones, "--runtimes", "onnxruntime",
                     "--precisions", "fp32", "--batch-sizes", "2", "--exporter", exporter, *QUICK)
    assert result.code == 2
    assert "tiny-eig" in result.error_line and f"export failed ({exporter} exporter)" in result.error_line
    assert "eig" in result.error_line.split("exporter):")[1]  # the operator ONNX lacks, not the exporter's advice
    store = open_store(str(trained["db"]), write=False)
    rows = {store.get_run(e.run_id).backbone: e.metrics for e in stored(trained["db"])
            if e.condition.startswith(f"onnxruntime/fp32/b2/t{torch.get_num_threads()}/{exporter}/")}
    assert rows["tiny-eig"]["status"] == "failed"
    assert rows.get("tiny-test", {"status": "ok"})["status"] == "ok" and len(rows) == len(backbones.split(","))


@pytest.fixture
def uninstalled_runtime():
    runtime = Runtime("onnx-dream", "a runtime whose package is missing", packages=("vbench_no_such_package",))
    RUNTIMES.add(runtime.name, runtime)
    yield runtime
    RUNTIMES.remove(runtime.name)


@pytest.mark.parametrize("args, message", [
    (["--runtimes", "tensorrt"], "unknown runtime 'tensorrt'"),
    (["--precisions", "fp16"], "--precisions: unknown 'fp16'"),
    (["--batch-sizes", "1,,64"], "--batch-sizes '1,,64' has an empty item"),
    (["--batch-sizes", "0"], "--batch-sizes '0' is not a comma-separated list of positive integers"),
    (["--exporter", "jit"], "unknown --exporter 'jit'"),
    (["--queries", "50"], "--queries must be at least 200"),
    (["--runtimes", "onnx-dream"], "needs vbench_no_such_package, which is not installed; pip install 'vbench[deploy]'"),
    (["--suite", "svhn", "--runtimes", "torch"], "no finished runs of suite 'svhn'"),
])
def test_bad_input_is_one_line_and_writes_nothing(trained, uninstalled_runtime, args, message):
    before = len(stored(trained["db"]))
    options = dict(zip(trained["common"][:6:2], trained["common"][1:6:2]))
    options.update(dict(zip(args[::2], args[1::2])))
    result = run_cli("deploy", *[item for pair in options.items() for item in pair], *trained["plugins"])
    assert result.code == 2 and message in result.error_line, result.err
    assert len(stored(trained["db"])) == before


# --- the README's "## Deployment" ---------------------------------------------------------------------------------
def test_readme_deployment_commands(tmp_path):
    deploy, report, bench = readme.commands("## Deployment")
    assert deploy[:3] == ["deploy", "--suite", "digits"] and report[:2] == ["report", "--deploy"]
    assert bench == ["bench", "deploy"]
    suite, backbones = deploy[2], deploy[deploy.index("--backbones") + 1]
    trained = run_cli("run", "--suite", suite, "--backbones", backbones, "--epochs", "1", "--limit", "64", cwd=tmp_path)
    assert trained.code == 0, trained.out + trained.err
    measured = run_cli(*deploy, "--limit", "64", "--runtimes", "onnxruntime", "--precisions", "int8",
                       "--batch-sizes", "1,2", "--exporter", "torchscript", *QUICK, cwd=tmp_path)
    assert measured.code == 0, measured.out + measured.err
    table = run_cli(*report, cwd=tmp_path)
    assert table.code == 0, table.err
    rows = list(csv.DictReader(io.StringIO(table.out)))
    assert {(r["backbone"], r["runtime"], r["precision"], r["batch_size"]) for r in rows} == {
        (name, "onnxruntime", "int8", size) for name in backbones.split(",") for size in ("1", "2")}
    plugin = write_plugin(tmp_path)
    timed = run_cli(*bench, "--backbones", "tiny-test", "--plugin", plugin, "--runtimes", "torch,onnxruntime",
                    "--precisions", "fp32", "--batch-sizes", "1,2", "--rounds", "1", "--queries", "20", "--seconds",
                    "0.05", "--exporter", "torchscript", cwd=tmp_path)
    assert timed.code == 0, timed.out + timed.err
    assert "1.00x" in timed.out and "onnxruntime" in timed.out
