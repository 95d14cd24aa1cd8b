"""RvT baselines of the LKCA paper (Mao et al., "Towards Robust Vision Transformer", CVPR 2022; the
rotary-position variant of vit-pytorch).

The model is ``vit_pytorch.rvt.RvT`` with the library's defaults (axial rotary embedding, depth-wise
convolutional queries, GEGLU feed-forward), as in the paper's training code; it reproduces the
authors' parameter and FLOP counts exactly.
"""

from __future__ import annotations

import torch.nn as nn
from vbench.backbones._sizes import token_patch_size
from vit_pytorch.rvt import RvT

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the patch tokens of the last layer, class token
# dropped.
FEATURE_MAP = "tokens:transformer"


def build_rvt(name: str, img_size: int, num_classes: int, *, patch_size: int | None = None, **config) -> nn.Module:
    patch_size = token_patch_size(name, img_size, patch_size)
    return RvT(image_size=img_size, patch_size=patch_size, num_classes=num_classes, **config)


@register_backbone("rvt-t", family="rvt", paper_names=["RvT-T"], feature_map=FEATURE_MAP)
def rvt_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """RvT-T of the LKCA paper: vit-pytorch RvT (rotary, conv queries, GLU), dim 64, depth 6, 8 heads."""
    config = dict(dim=64, depth=6, heads=8, mlp_dim=64)
    return build_rvt("rvt-t", img_size, num_classes, **{**config, **overrides})


@register_backbone("rvt-s", family="rvt", paper_names=["RvT-S"], feature_map=FEATURE_MAP)
def rvt_s(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """RvT-S of the LKCA paper: vit-pytorch RvT (rotary, conv queries, GLU), dim 128, depth 7, 8 heads."""
    config = dict(dim=128, depth=7, heads=8, mlp_dim=128)
    return build_rvt("rvt-s", img_size, num_classes, **{**config, **overrides})
