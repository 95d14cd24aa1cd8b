"""CaiT baselines of the LKCA paper (Touvron et al., "Going deeper with Image Transformers", ICCV 2021).

The model is ``vit_pytorch.cait.CaiT`` (the library the authors used; it reproduces their parameter and
FLOP counts exactly) with the constructor arguments of the paper's training code.
"""

from __future__ import annotations

import torch.nn as nn
from vbench.backbones._sizes import token_patch_size
from vit_pytorch.cait import CaiT

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the patch tokens after the self-attention layers;
# the class-attention layers after them only update the class token.
FEATURE_MAP = "tokens:patch_transformer"


def build_cait(name: str, img_size: int, num_classes: int, *, patch_size: int | None = None, **config) -> nn.Module:
    patch_size = token_patch_size(name, img_size, patch_size)
    return CaiT(image_size=img_size, patch_size=patch_size, num_classes=num_classes, **config)


@register_backbone("cait-t", family="cait", paper_names=["CaiT-T"], feature_map=FEATURE_MAP)
def cait_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """CaiT-T of the LKCA paper: vit-pytorch CaiT, dim 72, depth 16 + 1 class-attention layer, 4 heads."""
    config = dict(dim=72, depth=16, cls_depth=1, heads=4, dim_head=32, mlp_dim=144)
    return build_cait("cait-t", img_size, num_classes, **{**config, **overrides})


@register_backbone("cait-s", family="cait", paper_names=["CaiT-S"], feature_map=FEATURE_MAP)
def cait_s(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """CaiT-S of the LKCA paper: vit-pytorch CaiT, dim 96, depth 18 + 2 class-attention layers, 4 heads."""
    config = dict(dim=96, depth=18, cls_depth=2, heads=4, dim_head=64, mlp_dim=192)
    return build_cait("cait-s", img_size, num_classes, **{**config, **overrides})
