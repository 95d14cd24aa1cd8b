"""The paper's baselines: names, exact parameter counts and fvcore FLOPs of the authors' models at every
setting of reference-models.csv, a training step at 32x32/10 and 64x64/200, and build-time size errors."""

from __future__ import annotations

import pytest
import torch

from vbench.errors import VbenchError
from vbench.models.measure import count_flops, count_params
from vbench.models.registry import create_backbone, get_backbone
from vbench.reporting.paper import paper_tables, reference_models

# registered name -> (paper name, source name of the spec / reference-models.csv)
PAPER_BASELINES = {
    "swin-t": ("Swin-T", "swin-t"), "swin-s": ("Swin-S", "swin-s"),
    "cait-t": ("CaiT-T", "cait-t"), "cait-s": ("CaiT-S", "cait-s"),
    "mobilevit-t": ("MobileViTv2-T", "mbv2-t"), "mobilevit-s": ("MobileViTv2-S", "mbv2-s"),
    "mobilevit-b": ("MobileViTv2", "mbv2"),
    "t2t-t": ("T2T-T", "t2t-t"), "t2t-s": ("T2T-S", "t2t-s"), "t2t-b": ("T2T-B", "t2t-b"),
    "xcit-t": ("XCiT-T", "xcit-t"), "xcit-s": ("XCiT-S", "xcit-s"),
    "rvt-t": ("RvT-T", "rvt-t"), "rvt-s": ("RvT-S", "rvt-s"),
    "deepvit-t": ("DeepViT-T", "deepvit-t"), "deepvit-s": ("DeepViT-S", "deepvit-s"),
    "regionvit-t": ("RegionViT-T", "regionvit-t"), "regionvit-s": ("RegionViT-S", "regionvit-s"),
    "regionvit-b": ("RegionViT-B", "regionvit-b"),
    "crossvit-t": ("CrossViT-T", "crossvit-t"), "crossvit-s": ("CrossViT-S", "crossvit-s"),
    "twins-svt-s": ("Twins_SVT-S", "twinssvt-s"), "twins-svt-b": ("Twins_SVT-B", "twinssvt-b"),
    "cvt-b": ("CvT-B", "cvt-b"),
}
NOT_IN_PAPER = ["resnet18-cifar", "resnet56-cifar", "mobilevitv2-050", "mobilevitv2-075", "mobilevitv2-100"]
ONLY_64 = {"twins-svt-s", "twins-svt-b"}
SOURCE_NAMES = {source for _, source in PAPER_BASELINES.values()}


def reference_rows() -> list[dict]:
    table = reference_models()
    return table[table["source_name"].isin(SOURCE_NAMES)].to_dict("records")


def row_id(row: dict) -> str:
    return f"{row['source_name']}-{row['img_size']}-{row['num_classes']}"


@pytest.mark.parametrize("name", sorted(PAPER_BASELINES))
def test_registered_under_paper_and_source_names(name):
    paper_name, source_name = PAPER_BASELINES[name]
    spec = get_backbone(source_name)
    assert spec.name == name
    assert spec.paper_names == (paper_name,)
    assert spec.in_paper
    assert paper_name in set(paper_tables()["model"]), "report orders rows by this name in paper-tables.csv"


def test_every_reference_baseline_row_is_covered():
    assert {row["source_name"] for row in reference_rows()} == SOURCE_NAMES
    assert len(reference_rows()) == 3 * len(SOURCE_NAMES) - len(ONLY_64)  # Twins has no 32x32 row


@pytest.mark.parametrize("name", NOT_IN_PAPER)
def test_extra_models_are_marked_not_from_the_paper(name):
    spec = get_backbone(name)
    assert not spec.in_paper and not spec.paper_names
    assert spec.summary.startswith("Not from the paper")


@pytest.mark.parametrize("row", reference_rows(), ids=row_id)
def test_params_and_fvcore_flops_match_the_authors_models(row):
    model = create_backbone(row["source_name"], img_size=row["img_size"], num_classes=row["num_classes"])
    assert count_params(model) == row["params"]
    if row["fvcore_macs_m"] == row["fvcore_macs_m"]:  # not NaN: counted at this setting
        flops = count_flops(model, row["img_size"])
        assert flops.uncounted_ops == {}
        assert flops.total / 1e6 == pytest.approx(row["fvcore_macs_m"], rel=0.01)


TRAIN_CASES = [
    (name, img_size, num_classes)
    for name in [*PAPER_BASELINES, *NOT_IN_PAPER]
    for img_size, num_classes in ((32, 10), (64, 200))
    if not (name in ONLY_64 and img_size == 32)
]


@pytest.mark.parametrize("name,img_size,num_classes", TRAIN_CASES)
def test_forward_and_backward(name, img_size, num_classes):
    torch.manual_seed(0)
    model = create_backbone(name, img_size=img_size, num_classes=num_classes).train()
    images = torch.randn(2, 3, img_size, img_size)
    labels = torch.tensor([0, num_classes - 1])
    logits = model(images)
    assert logits.shape == (2, num_classes)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters the loss does not reach: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", sorted(ONLY_64))
def test_twins_refuses_32x32_at_build_time(name):
    with pytest.raises(VbenchError, match=r"cannot run on 32x32 images.*multiple of 64") as error:
        create_backbone(name, img_size=32, num_classes=10)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "name,img_size,supported",
    [("regionvit-t", 48, "of 32 or 64"), ("swin-t", 40, "multiple of 16"), ("cait-t", 36, "multiple of 8"),
     ("t2t-s", 16, "at least 19")],
)
def test_sizes_a_library_cannot_run_are_refused_at_build_time(name, img_size, supported):
    expected = f"cannot run on {img_size}x{img_size} images; use an image size .*{supported}"
    with pytest.raises(VbenchError, match=expected):
        create_backbone(name, img_size=img_size, num_classes=10)


def test_t2t_accepts_the_smallest_size_it_names():
    assert create_backbone("t2t-s", img_size=19, num_classes=10)(torch.randn(1, 3, 19, 19)).shape == (1, 10)
