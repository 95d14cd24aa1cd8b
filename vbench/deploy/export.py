"""A trained model to an ONNX file with ``torch.onnx.export``, batch size left free.

Two exporters, the ``--exporter`` of ``vbench deploy``:
- ``dynamo`` (the default, and torch's own default since 2.9): ``torch.export`` captures the graph, onnxscript
  translates and optimises it;
- ``torchscript``: the older tracing exporter (deprecated by torch, to be removed), some ten times faster to
  export.
An export can go wrong without an error (a ResNet-18 exported with ``dynamo=True`` scored 0%: pytorch/pytorch
#169178), so ``vbench deploy`` never trusts one: it compares its logits with PyTorch's and evaluates it on the
whole test split.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from vbench.errors import VbenchError, one_line
from vbench.models import registry

EXPORTERS = ("dynamo", "torchscript")
OPSET = 18  # the TorchScript exporter's; the dynamo exporter picks its own (18 in torch 2.9-2.14)
MAX_BATCH = 4096  # the dynamo exporter needs a bound for the free batch dimension
SMALLEST_SIZES = (8, 16, 32, 64)  # image sizes tried, in order, for a backbone's smallest model
INPUT, OUTPUT = "images", "logits"


@dataclass(frozen=True)
class Export:
    path: Path
    exporter: str
    seconds: float


def check_exporter(name: str) -> str:
    if name not in EXPORTERS:
        raise VbenchError(f"unknown --exporter {name!r}; choose one of {', '.join(EXPORTERS)}")
    return name


def export_onnx(model: torch.nn.Module, img_size: int, path: Path, exporter: str = "dynamo") -> Export:
    """``model`` (evaluation mode) as ONNX at ``path``: input ``images`` float32 [batch, 3, img_size, img_size],
    output ``logits``; one file, weights inside. The exporters' own progress lines, graph dumps and warnings are
    kept out of vbench's output; a failure is one ``VbenchError`` that says what the exporter could not do."""
    check_exporter(exporter)
    model = model.eval()
    parameter = next(model.parameters(), None)
    example = torch.zeros(2, 3, img_size, img_size, device=parameter.device if parameter is not None else "cpu")
    started = time.perf_counter()
    try:
        _export(model, example, path, exporter)
    except Exception as exc:  # noqa: BLE001 - any exporter failure is one line naming its cause
        raise VbenchError(f"export failed ({exporter} exporter): {failure_text(exc)}") from exc
    return Export(Path(path), exporter, time.perf_counter() - started)


def failure_text(exc: BaseException, limit: int = 240) -> str:
    """The innermost cause of an export failure, in one line (the dynamo exporter wraps the operator that has no
    ONNX translation in two layers of advice), without terminal colour codes."""
    while exc.__cause__ is not None and exc.__cause__ is not exc:
        exc = exc.__cause__
    return re.sub(r"\x1b\[[0-9;]*m", "", one_line(exc))[:limit]


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path, exporter: str) -> None:
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False, input_names=[INPUT],
                              output_names=[OUTPUT], dynamic_shapes=({0: batch},), verbose=False)
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET, input_names=[INPUT],
                              output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})


def smallest_model(name: str, num_classes: int = 10) -> tuple[int | None, torch.nn.Module | None, str]:
    """The first image size of ``SMALLEST_SIZES`` at which backbone ``name`` builds and runs, its model (evaluation
    mode, seeded weights), and why it ran at none ("" when it did)."""
    reason = ""
    for size in SMALLEST_SIZES:
        try:
            torch.manual_seed(0)
            model = registry.create_backbone(name, img_size=size, num_classes=num_classes).eval()
            with torch.no_grad():
                model(torch.zeros(2, 3, size, size))
            return size, model, ""
        except Exception as exc:  # noqa: BLE001 - too small for it: try the next size
            reason = one_line(exc, 160)
    return None, None, reason
