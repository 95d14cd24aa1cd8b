"""The paper's FLOP counter: ``flops_paper_counter`` equals ``paper_convention_macs`` of
reference-models.csv at every row, and counting leaves the model as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from vbench.errors import VbenchError
from vbench.models import registry
from vbench.models.measure import count_flops_paper, measure_model
from vbench.models.registry import create_backbone
from vbench.reporting.paper import reference_models

REFERENCE_ROWS = reference_models().to_dict("records")


def row_id(row: dict) -> str:
    return f"{row['source_name']}-{row['img_size']}-{row['num_classes']}"


@pytest.mark.parametrize("row", REFERENCE_ROWS, ids=row_id)
def test_paper_counter_reproduces_every_reference_row(row):
    model = create_backbone(row["source_name"], img_size=row["img_size"], num_classes=row["num_classes"])
    assert count_flops_paper(model, row["img_size"]) == row["paper_convention_macs"]


def test_counting_leaves_the_model_untouched():
    model = create_backbone("lkca-t", img_size=32, num_classes=10).train()
    views = {name: m.view for name, m in model.named_modules() if hasattr(m, "view")}
    attributes = {name: set(vars(m)) for name, m in model.named_modules()}
    count_flops_paper(model, 32)
    assert model.training
    assert {name: m.view for name, m in model.named_modules() if hasattr(m, "view")} == views
    assert {name: set(vars(m)) for name, m in model.named_modules()} == attributes
    assert torch.matmul.__module__ == "torch" and not hasattr(torch.matmul, "op"), "ptflops patch left behind"


def test_plain_modules_follow_ptflops_rules():
    # Linear: in * out MACs plus the bias once; ReLU: one op per element, counted twice (by the module
    # hook and by the patched F.relu that the module calls), as ptflops 0.7.1 did.
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.ReLU())
    assert count_flops_paper(model, 4) == 48 * 5 + 5 + 2 * 5


def test_a_model_ptflops_cannot_run_is_an_error_not_a_zero():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)

        def forward(self, images):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="ptflops could not count Broken"):
        count_flops_paper(Broken(), 4)


def test_measure_model_reports_both_counts():
    row = next(r for r in REFERENCE_ROWS if r["source_name"] == "vit-05m" and r["img_size"] == 32)
    measured = measure_model(registry.get_backbone("vit-05m"), "classification", 32, 10)
    assert measured["flops_paper_counter"] == row["paper_convention_macs"]
    assert measured["flops"] > measured["flops_paper_counter"]  # fvcore counts the attention products


def test_another_ptflops_release_is_refused(monkeypatch):
    import importlib.metadata

    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0.7.5" if name == "ptflops" else real_version(name))
    with pytest.raises(VbenchError, match=r"ptflops 0.7.5 is installed.*pip install 'ptflops>=0.7.1.2,<0.7.2'"):
        count_flops_paper(nn.Linear(2, 2), 1)
