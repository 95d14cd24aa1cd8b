"""DeepViT baselines of the LKCA paper (Zhou et al., "DeepViT: Towards Deeper Vision Transformer", 2021).

The model is ``vit_pytorch.deepvit.DeepViT`` (the library the authors used; it reproduces their
parameter and FLOP counts exactly) with the constructor arguments of the paper's training code.
"""

from __future__ import annotations

import torch.nn as nn
from vbench.backbones._sizes import token_patch_size
from vit_pytorch.deepvit import DeepViT

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the patch tokens of the last layer, class token
# dropped.
FEATURE_MAP = "tokens:transformer"


def build_deepvit(name: str, img_size: int, num_classes: int, *, patch_size: int | None = None, **config) -> nn.Module:
    patch_size = token_patch_size(name, img_size, patch_size)
    return DeepViT(image_size=img_size, patch_size=patch_size, num_classes=num_classes, **config)


@register_backbone("deepvit-t", family="deepvit", paper_names=["DeepViT-T"], feature_map=FEATURE_MAP)
def deepvit_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """DeepViT-T of the LKCA paper: vit-pytorch DeepViT (re-attention), dim 80, depth 10, 4 heads of 64."""
    config = dict(dim=80, depth=10, heads=4, mlp_dim=80, dim_head=64, pool="cls")
    return build_deepvit("deepvit-t", img_size, num_classes, **{**config, **overrides})


@register_backbone("deepvit-s", family="deepvit", paper_names=["DeepViT-S"], feature_map=FEATURE_MAP)
def deepvit_s(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """DeepViT-S of the LKCA paper: vit-pytorch DeepViT (re-attention), dim 136, depth 14, 4 heads of 64."""
    config = dict(dim=136, depth=14, heads=4, mlp_dim=136, dim_head=64, pool="cls")
    return build_deepvit("deepvit-s", img_size, num_classes, **{**config, **overrides})
