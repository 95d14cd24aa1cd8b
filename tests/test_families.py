"""Exact parameter counts and fvcore FLOPs of the ViT and LKCA families against the authors' models,
and forward/backward of every registered model of the foundation families."""

import pandas as pd
import pytest
import torch

from vbench import create_backbone, list_backbones
from vbench.models.measure import count_flops, count_params
from vbench.reporting.paper import reference_models

FOUNDATION_FAMILIES = ("vit", "lkca", "lkca-hybrid", "lka", "lska")
REFERENCE = reference_models()
VIT_AND_LKCA_ROWS = REFERENCE[REFERENCE["source_name"].str.startswith("vit")]


@pytest.mark.parametrize(
    "row", [r for _, r in VIT_AND_LKCA_ROWS.iterrows()],
    ids=lambda r: f"{r.source_name}-{r.img_size}-{r.num_classes}",
)
def test_params_exact_and_conv_view_flops_within_one_percent(row):
    overrides = {"lkca_view": "conv"} if "lkca" in row.source_name else {}
    model = create_backbone(row.source_name, img_size=int(row.img_size), num_classes=int(row.num_classes), **overrides)
    assert count_params(model) == row.params
    if not pd.isna(row.fvcore_macs_m):
        flops = count_flops(model, int(row.img_size))
        assert flops.complete, flops.uncounted_ops
        assert flops.total / 1e6 == pytest.approx(row.fvcore_macs_m, rel=0.01)


def test_every_reference_source_name_of_the_foundation_resolves():
    from vbench.models.registry import resolve_name

    for source_name in VIT_AND_LKCA_ROWS["source_name"].unique():
        resolve_name(source_name)
    assert resolve_name("vit-1m-lkca") == "lkca-t"


def test_matrix_view_counts_n_macs_per_output_element():
    conv = count_flops(create_backbone("lkca-t", lkca_view="conv"), 32).total
    matrix = count_flops(create_backbone("lkca-t", lkca_view="matrix"), 32).total
    per_layer_outputs = 64 * 136
    assert conv - matrix == 9 * per_layer_outputs * (15 * 15 - 64)


def test_hybrids_are_sized_within_five_percent_of_lkca():
    for hybrid, partner in (("lkca-hybrid-t", "lkca-t"), ("lkca-hybrid-b", "lkca-b")):
        ratio = count_params(create_backbone(hybrid)) / count_params(create_backbone(partner))
        assert abs(ratio - 1) <= 0.05


@pytest.mark.parametrize("kernel", [7, 11, 17, 23, 29, 35])
def test_lska_kernel_sizes_and_receptive_field(kernel):
    from vbench.backbones.large_kernel_attention import LSKA

    lska = LSKA(1, kernel).double()
    for conv in lska.modules():
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.constant_(conv.weight, 1.0)
            torch.nn.init.zeros_(conv.bias)
    impulse = torch.zeros(1, 1, 2 * kernel + 1, 2 * kernel + 1, dtype=torch.float64)
    impulse[0, 0, kernel, kernel] = 1
    # u * attn is zero off the impulse: read the attention map itself
    attention = lska.conv1(lska.conv_spatial_v(lska.conv_spatial_h(lska.conv0v(lska.conv0h(impulse)))))
    rows = attention[0, 0].abs().sum(1).nonzero().flatten()
    assert int(rows.max() - rows.min()) + 1 == kernel


def test_lska_rejects_a_kernel_without_decomposition():
    from vbench.errors import VbenchError

    with pytest.raises(VbenchError, match="LSKA kernel size 9"):
        create_backbone("lska-t", lska_kernel=9)


def _foundation_names():
    return [spec.name for spec in list_backbones(task="classification") if spec.family in FOUNDATION_FAMILIES]


@pytest.mark.parametrize("img_size,num_classes", [(32, 10), (64, 200)])
def test_forward_and_backward_of_every_foundation_model(img_size, num_classes):
    torch.manual_seed(0)
    for name in _foundation_names():
        model = create_backbone(name, img_size=img_size, num_classes=num_classes)
        logits = model(torch.randn(2, 3, img_size, img_size))
        assert logits.shape == (2, num_classes), name
        logits.sum().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name


def test_unknown_override_is_a_clear_error():
    from vbench.errors import VbenchError

    with pytest.raises(VbenchError, match="does not accept lkca_view"):
        create_backbone("vit-small", lkca_view="conv")
