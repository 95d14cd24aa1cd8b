"""XCiT baselines of the LKCA paper (El-Nouby et al., "XCiT: Cross-Covariance Image Transformers",
NeurIPS 2021).

The model is ``vit_pytorch.xcit.XCiT`` (the library the authors used; it reproduces their parameter and
FLOP counts exactly) with the constructor arguments of the paper's training code.
"""

from __future__ import annotations

import torch.nn as nn
from vbench.backbones._sizes import token_patch_size
from vit_pytorch.xcit import XCiT

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the patch tokens (on their grid) after the cross-
# covariance layers, before the class-attention layers.
FEATURE_MAP = "tokens:xcit_transformer"


def build_xcit(name: str, img_size: int, num_classes: int, *, patch_size: int | None = None, **config) -> nn.Module:
    patch_size = token_patch_size(name, img_size, patch_size)
    return XCiT(image_size=img_size, patch_size=patch_size, num_classes=num_classes, **config)


@register_backbone("xcit-t", family="xcit", paper_names=["XCiT-T"], feature_map=FEATURE_MAP)
def xcit_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """XCiT-T of the LKCA paper: vit-pytorch XCiT, dim 120, depth 8 + 2 class-attention layers, 4 heads."""
    config = dict(dim=120, depth=8, cls_depth=2, heads=4, mlp_dim=120, dim_head=30, local_patch_kernel_size=3)
    return build_xcit("xcit-t", img_size, num_classes, **{**config, **overrides})


@register_backbone("xcit-s", family="xcit", paper_names=["XCiT-S"], feature_map=FEATURE_MAP)
def xcit_s(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """XCiT-S of the LKCA paper: vit-pytorch XCiT, dim 192, depth 10 + 2 class-attention layers, 4 heads."""
    config = dict(dim=192, depth=10, cls_depth=2, heads=4, mlp_dim=192, dim_head=48, local_patch_kernel_size=3)
    return build_xcit("xcit-s", img_size, num_classes, **{**config, **overrides})
