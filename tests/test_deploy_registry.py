"""The registry on ONNX: a backbone of every classification family (the family's smallest), at its smallest image
size, exported to ONNX and run in ONNX Runtime against PyTorch. A backbone that exported before and stops is a
failing test; the README ("## Deployment") lists those that cannot export, with the reason (none today).

What is left to the benchmark, to keep the suite fast: the other members of each family (the same code at other
widths and depths), the dynamo exporter (`vbench deploy`'s default, ten times slower to export than the TorchScript
exporter used here) and OpenVINO (1-3 s to compile each of these graphs; test_deploy.py runs it on a tiny model).
`vbench bench deploy --registry` walks every classification backbone with both exporters in ONNX Runtime and
OpenVINO (minutes)."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from vbench.deploy.export import export_onnx, smallest_model
from vbench.models import registry

registry.load_all()
FAMILY_SMALLEST = {
    "cait": "cait-t", "crossvit": "crossvit-t", "cvt": "cvt-b", "deepvit": "deepvit-t", "lka": "lka-t",
    "lska": "lska-t", "lkca": "vit-0.5m-lkca", "lkca-hybrid": "lkca-hybrid-t", "mobilevit": "mobilevit-t",
    "mobilevitv2": "mobilevitv2-050", "regionvit": "regionvit-t", "resnet": "resnet18-cifar", "rvt": "rvt-t",
    "swin": "swin-t", "t2t": "t2t-t", "twins": "twins-svt-s", "vit": "vit-0.5m", "xcit": "xcit-t",
}
CANNOT_EXPORT: dict[str, str] = {}  # name -> reason, as the README lists them


def test_every_classification_family_is_covered():
    families = {spec.family for spec in registry.list_backbones(task="classification") if spec.family != "test"}
    assert families == set(FAMILY_SMALLEST)
    assert all(registry.get_backbone(name).family == family for family, name in FAMILY_SMALLEST.items())


@pytest.mark.parametrize("name", sorted(FAMILY_SMALLEST.values()))
def test_the_backbone_exports_and_matches_pytorch(name, tmp_path):
    size, model, reason = smallest_model(name)
    assert model is not None, reason
    if name in CANNOT_EXPORT:
        pytest.xfail(CANNOT_EXPORT[name])
    export = export_onnx(model, size, tmp_path / f"{name}.onnx", "torchscript")
    batch = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(batch).numpy()
    tolerance = 1e-4 * max(1.0, float(np.abs(expected).max()))
    session = onnxruntime.InferenceSession(str(export.path), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"images": batch.numpy()})[0] - expected).max() < tolerance
