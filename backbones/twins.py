"""Twins-SVT baselines of the LKCA paper (Chu et al., "Twins: Revisiting the Design of Spatial
Attention in Vision Transformers", NeurIPS 2021).

The model is ``vit_pytorch.twins_svt.TwinsSVT`` (the library the authors used; it reproduces their
parameter and FLOP counts exactly) with patch 2, local window 8, global sub-sampling 3 and PEG kernel 3
in every stage. Every stage's ``global_k`` is passed explicitly: the library's own defaults differ.

Four stride-2 patch embeddings and 8x8 local windows in the first three stages mean the image side must
be a multiple of 64: the paper trains these models on 64x64 Tiny-ImageNet only, and a 32x32 build is
refused with that explanation instead of failing inside the first forward pass.
"""

from __future__ import annotations

import torch.nn as nn
from vbench.backbones._sizes import require_multiple
from vbench.backbones._timm_pyramid import TimmPyramid
from vit_pytorch.twins_svt import TwinsSVT

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the last stage's map, before the pooling head.
FEATURE_MAP = "map:layers.3"

STAGES = ("s1", "s2", "s3", "s4")
SIZE_STEP = 64  # 3 stride-2 patchings before the last local-attention stage, times its 8x8 window


def build_twins_svt(
    name: str, img_size: int, num_classes: int, *, emb_dims: tuple[int, ...], depths: tuple[int, ...], **overrides
) -> nn.Module:
    require_multiple(name, img_size, SIZE_STEP)
    config = {}
    for stage, emb_dim, depth in zip(STAGES, emb_dims, depths):
        stage_config = dict(emb_dim=emb_dim, depth=depth, patch_size=2, local_patch_size=8, global_k=3)
        config |= {f"{stage}_{key}": value for key, value in stage_config.items()}
    return TwinsSVT(num_classes=num_classes, peg_kernel_size=3, **{**config, **overrides})


@register_backbone("twins-svt-s", family="twins", paper_names=["Twins_SVT-S"], aliases=["twinssvt-s"],
                   feature_map=FEATURE_MAP)
def twins_svt_s(img_size: int = 64, num_classes: int = 10, **overrides) -> nn.Module:
    """Twins_SVT-S of the LKCA paper: vit-pytorch TwinsSVT, dims (16, 16, 24, 48), depths (1, 1, 2, 1), 64x64+."""
    config = dict(emb_dims=(16, 16, 24, 48), depths=(1, 1, 2, 1))
    return build_twins_svt("twins-svt-s", img_size, num_classes, **{**config, **overrides})


@register_backbone("twins-svt-b", family="twins", paper_names=["Twins_SVT-B"], aliases=["twinssvt-b"],
                   feature_map=FEATURE_MAP)
def twins_svt_b(img_size: int = 64, num_classes: int = 10, **overrides) -> nn.Module:
    """Twins_SVT-B of the LKCA paper: vit-pytorch TwinsSVT, dims (16, 32, 64, 128), depths (1, 1, 3, 2), 64x64+."""
    config = dict(emb_dims=(16, 32, 64, 128), depths=(1, 1, 3, 2))
    return build_twins_svt("twins-svt-b", img_size, num_classes, **{**config, **overrides})


@register_backbone("twins-pcpvt-s", family="twins", task="segmentation", paper_names=["Twins_PCPVT-S", "Twins-PCPVT-S"],
                   accepts=("drop_path_rate",),
                   features=dict(channels=(64, 128, 320, 512), strides=(4, 8, 16, 32), size_divisor=32))
def twins_pcpvt_s(img_size: int = 512, num_classes: int = 150, drop_path_rate: float = 0.2) -> nn.Module:
    """Twins-PCPVT-S (timm twins_pcpvt_small, random init, drop path 0.2 as mmseg) as a stride 4-32 pyramid (Table 7)."""
    require_multiple("twins-pcpvt-s", img_size, 32)  # timm checks every stage's patching (strides 4, 2, 2, 2)
    return TimmPyramid("twins_pcpvt_small", (0, 1, 2, 3), img_size=img_size, drop_path_rate=drop_path_rate)
