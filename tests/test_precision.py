"""bf16 autocast and torch.compile on the CPU: what a run records, the refusal on a CPU without native bf16, the
fallback to eager when compiling fails, and reports that never average precisions together."""

from __future__ import annotations

import json

import pytest
import readme
import torch
from cli import run_cli
from plugins import FAST, write_plugin

from vbench.data.fixtures import write_fixture
from vbench.engine import precision as precision_module
from vbench.engine.precision import Compiled, Precision
from vbench.store import open_store

NATIVE_BF16 = precision_module.cpu_has_native_bf16()


@pytest.fixture
def setup(tmp_path):
    """A fresh plugin file per test: the registry forgets a test's plugin backbones after it."""
    folder = tmp_path
    fixture = write_fixture("cifar10", folder / "data", per_batch=8, num_test=16)
    command = ["run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", write_plugin(folder),
               "--data-root", fixture.root, "--batch-size", "10", "--epochs", "1", *FAST]
    return {"folder": folder, "command": command, "db": folder / "runs.db"}


def test_without_native_bf16_amp_is_one_line_and_writes_nothing(setup, monkeypatch, tmp_path):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)  # as /proc/cpuinfo would say
    result = run_cli(*setup["command"], "--amp", "--device", "cpu", "--db", tmp_path / "runs.db")
    assert result.code == 2 and "this CPU has no native bf16" in result.error_line
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bf16 (avx512_bf16/amx_bf16)")
def test_bf16_and_compiled_runs_record_what_ran_and_are_reported_apart(setup):
    db = setup["db"]
    for flags in ([], ["--amp", "--compile"]):
        result = run_cli(*setup["command"], *flags, "--device", "cpu", "--db", db)
        assert result.code == 0, result.out + result.err
    fp32, fast = open_store(str(db), write=False).list_runs()
    assert (fp32.settings["precision"], fp32.settings["compiled"], fp32.settings["compile_s"]) == ("fp32", False, 0.0)
    assert (fast.settings["precision"], fast.settings["compile"], fast.settings["compiled"]) == ("bf16", True, True)
    assert fast.settings["compile_s"] > 0 and fast.train_images_per_s > 0  # the compiling step timed apart
    assert fast.recipe_hash == fp32.recipe_hash and fast.status == "done"

    plugin = setup["command"][setup["command"].index("--plugin") + 1]
    report = run_cli("report", "--db", db, "--plugin", plugin)
    assert report.code == 0, report.err
    assert "1 finished run of other recipes, data or precisions are not shown" in report.out
    assert "Runs at bf16/fp16 are reported apart from fp32 runs; the paper's runs were fp32." in report.out
    assert "Precision bf16: tiny-test trained with bf16 autocast (the paper's runs were fp32)." in report.out
    rows = json.loads(run_cli("report", "--db", db, "--plugin", plugin, "--format", "json").out)["sections"][0]["rows"]
    assert [(row["backbone"], row["n"], row["precision"]) for row in rows] == [("tiny-test", 1, "bf16")]


def failing_forward_backend(graph, inputs):
    raise RuntimeError("no kernel for this graph")


def failing_backward_backend():
    """Compiles the forward as it is and fails on the backward, which AOT autograd compiles at its first call."""
    from torch._dynamo.backends.common import aot_autograd

    def no_backward(graph, inputs):
        raise RuntimeError("no kernel for this backward")

    return aot_autograd(fw_compiler=lambda graph, inputs: graph, bw_compiler=no_backward)


@pytest.mark.parametrize("backend", [failing_forward_backend, failing_backward_backend()], ids=["forward", "backward"])
def test_a_model_that_cannot_compile_trains_eagerly_with_one_warning(backend):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model, x = torch.nn.Linear(4, 2), torch.randn(3, 4)
    eager = torch.autograd.grad(model(x).square().sum(), list(model.parameters()))
    warnings = []
    compiled = Compiled(model, True, warnings.append, backend=backend)

    def step(module):
        model.zero_grad(set_to_none=True)
        module(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    for _ in range(2):
        grads = compiled.run_step(step)
        assert all(torch.equal(a, b) for a, b in zip(grads, eager)) and compiled.compiled is False
    [warning] = warnings  # once
    assert warning.startswith("warning: torch.compile failed") and warning.endswith("training eagerly")


def test_cpu_bf16_trains_attention_on_the_math_path():
    """The fused attention's bf16 backward is slow on the CPU (see Precision.attention); under autocast the math
    path gives the fp32 result up to bf16 rounding."""
    q, k, v = (torch.randn(2, 3, 16, 8, requires_grad=True) for _ in range(3))
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    precision = Precision("bf16", "cpu")
    with precision.autocast(), precision.attention():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert out.dtype == torch.bfloat16 and torch.allclose(out.float(), reference, atol=0.05)
    out.float().sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_the_readme_speed_and_parity_benchmarks_run(setup):
    """The README's two benchmarks ("## Speed on the CPU"), cut to the plugin's tiny backbone and one step."""
    speed, parity = readme.commands("## Speed on the CPU")
    assert speed == ["bench", "speed"] and parity == ["bench", "parity"]
    plugin = setup["command"][setup["command"].index("--plugin") + 1]
    timed = run_cli(*speed, "--backbones", "tiny-test", "--settings", "fp32", "--steps", "1", "--rounds", "1",
                    "--batch-size", "8", "--plugin", plugin)
    assert timed.code == 0, timed.out + timed.err
    assert "tiny-test" in timed.out and "1.00x" in timed.out
    trained = run_cli(*parity, "--backbones", "tiny-test", "--seeds", "0", "--epochs", "1", "--plugin", plugin)
    assert trained.code == 0, trained.out + trained.err
    assert "Accuracy parity on digits" in trained.out and "largest difference of the means" in trained.out
