import pytest
import torch
import torch.nn as nn

from vbench.errors import VbenchError
from vbench.measure import count_flops, count_params
from vbench.registry import list_backbones
from vbench.segmentation.build import build_segmentor, resolve_segmentation_backbone
from vbench.segmentation.heads import HEADS, Segmentor

PAPER_BACKBONES = ["ViT-S", "ViT-B", "LKCA-S", "LKCA-B", "ResNet-50", "Swin-S", "Twins_PCPVT-S"]
CROP = 32


@pytest.mark.parametrize("paper_name", PAPER_BACKBONES)
def test_every_segmentor_trains_and_predicts_at_the_input_size(paper_name):
    torch.manual_seed(0)
    backbone = resolve_segmentation_backbone(paper_name).build(img_size=CROP)
    images, labels = torch.randn(2, 3, CROP, CROP), torch.randint(0, 5, (2, CROP, CROP))
    labels[:, :4] = 255
    for head in HEADS:
        segmentor = Segmentor(backbone, head, num_classes=5).train()
        losses = segmentor.loss(images, labels)
        assert set(losses) == ({"loss", "loss_decode", "loss_aux"} if head == "upernet" else {"loss", "loss_decode"})
        assert torch.isfinite(losses["loss"])
        losses["loss"].backward()
        no_grad = [name for name, p in segmentor.named_parameters() if p.grad is None]
        assert not no_grad, f"{paper_name}/{head}: parameters without gradient: {no_grad[:5]}"
        segmentor.zero_grad(set_to_none=True)
        with torch.no_grad():
            logits = segmentor.eval()(torch.randn(1, 3, 40, 56))   # not a multiple of 32, other grid
        assert logits.shape == (1, 5, 40, 56)


def test_vit_b_upernet_has_the_published_size():
    with torch.device("meta"):   # no weights are filled: counting only
        segmentor = build_segmentor("vit-b", "upernet", num_classes=150, crop_size=512)
    assert count_params(segmentor) == pytest.approx(0.144e9, rel=0.02)
    assert count_params(segmentor.auxiliary_head) == 768 * 256 * 9 + 2 * 256 + 256 * 150 + 150


def test_lkca_replaces_msa_and_keeps_the_grid_kernel():
    with torch.device("meta"):
        vit = build_segmentor("vit-s", "fpn", num_classes=150, crop_size=512)
        lkca = build_segmentor("lkca-s", "fpn", num_classes=150, crop_size=512)
    kernels = [m.kernel for m in lkca.backbone.modules() if hasattr(m, "kernel")]
    assert len(kernels) == 12 and kernels[0].shape == (63, 63)
    dim = 384
    msa_layer = 4 * dim * dim + 4 * dim                      # qkv with bias + proj
    lkca_layer = 2 * dim * dim + dim + 63 * 63               # v without bias + proj + kernel
    class_token = 2 * dim                                    # the token and its position embedding
    assert count_params(vit) - count_params(lkca) == 12 * (msa_layer - lkca_layer) + class_token


def test_heads_keep_mmseg_module_names():
    with torch.device("meta"):
        upernet = build_segmentor("resnet50", "upernet", num_classes=150, crop_size=64)
        fpn = build_segmentor("resnet50", "fpn", num_classes=150, crop_size=64)
    upernet_keys, fpn_keys = set(upernet.state_dict()), set(fpn.state_dict())
    for key in ("decode_head.psp_modules.3.1.conv.weight", "decode_head.bottleneck.bn.weight",
                "decode_head.lateral_convs.2.conv.weight", "decode_head.fpn_convs.0.conv.weight",
                "decode_head.fpn_bottleneck.conv.weight", "decode_head.conv_seg.weight",
                "auxiliary_head.convs.0.conv.weight", "auxiliary_head.conv_seg.bias"):
        assert key in upernet_keys, key
    for key in ("neck.lateral_convs.3.conv.bias", "neck.fpn_convs.0.conv.weight",
                "decode_head.scale_heads.3.4.conv.weight", "decode_head.conv_seg.weight"):
        assert key in fpn_keys, key
    assert upernet.decode_head.psp_modules[3][0].output_size == 6
    assert upernet.auxiliary_head.in_index == 2 and upernet.aux_weight == 0.4
    assert upernet.decode_head.conv_seg.in_channels == 512 and fpn.decode_head.conv_seg.in_channels == 128


def test_segmentor_flops_have_no_uncounted_ops():
    segmentor = build_segmentor("vit-s", "upernet", num_classes=150, crop_size=64)
    flops = count_flops(segmentor, 64)
    assert flops.complete, flops.uncounted_ops
    assert flops.by_operator["upsample_bilinear2d"] > 0 and flops.by_operator["adaptive_avg_pool2d"] > 0


def test_segmentation_backbones_declare_the_task():
    names = {spec.name for spec in list_backbones(task="segmentation")}
    assert {"vit-s-seg", "vit-b-seg", "lkca-s-seg", "lkca-b-seg", "resnet50-seg", "swin-s-seg",
            "twins-pcpvt-s"} <= names
    assert not names & {spec.name for spec in list_backbones(task="classification")}


def test_classification_backbone_is_a_clear_error_for_segmentation():
    with pytest.raises(VbenchError, match="classification-only") as error:
        resolve_segmentation_backbone("vit-small")
    assert "lkca-s-seg" in str(error.value)
    with pytest.raises(VbenchError, match="unknown segmentation backbone"):
        resolve_segmentation_backbone("no-such-net")
    with pytest.raises(VbenchError, match="feature pyramid"):
        Segmentor(nn.Conv2d(3, 8, 3), "upernet", 150)
    with pytest.raises(VbenchError, match="unknown segmentation head"):
        Segmentor(resolve_segmentation_backbone("resnet50").build(img_size=32), "deeplab", 150)
