"""CrossViT baselines of the LKCA paper (Chen et al., "CrossViT: Cross-Attention Multi-Scale Vision
Transformer", ICCV 2021).

The model is ``vit_pytorch.cross_vit.CrossViT`` (the library the authors used; it reproduces their
parameter and FLOP counts exactly). As in the paper's training code both branches have the same width
and the same patch size (the paper's patch size), and dropout and embedding dropout are 0.1.
"""

from __future__ import annotations

import torch.nn as nn
from vbench.backbones._sizes import token_patch_size
from vit_pytorch.cross_vit import CrossViT

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): both branches' tokens after the multi-scale encoder,
# class tokens dropped; the branches share the patch size here, so their grids are one map (channels side by
# side).
FEATURE_MAP = "tokens:multi_scale_encoder"


def build_crossvit(
    name: str, img_size: int, num_classes: int, *, dim: int, patch_size: int | None = None, **config
) -> nn.Module:
    patch_size = token_patch_size(name, img_size, patch_size)
    branch = dict(enc_heads=8, enc_dim_head=16, enc_mlp_dim=dim)
    config = dict(
        sm_dim=dim, lg_dim=dim, sm_patch_size=patch_size, lg_patch_size=patch_size, sm_enc_depth=1, lg_enc_depth=4,
        **{f"{side}_{key}": value for side in ("sm", "lg") for key, value in branch.items()},
        cross_attn_heads=8, cross_attn_dim_head=16, dropout=0.1, emb_dropout=0.1,
    ) | config
    return CrossViT(image_size=img_size, num_classes=num_classes, **config)


@register_backbone("crossvit-t", family="crossvit", paper_names=["CrossViT-T"], feature_map=FEATURE_MAP)
def crossvit_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """CrossViT-T of the LKCA paper: vit-pytorch CrossViT, both branches dim 102, 2 multi-scale blocks."""
    config = dict(dim=102, cross_attn_depth=1, depth=2)
    return build_crossvit("crossvit-t", img_size, num_classes, **{**config, **overrides})


@register_backbone("crossvit-s", family="crossvit", paper_names=["CrossViT-S"], feature_map=FEATURE_MAP)
def crossvit_s(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """CrossViT-S of the LKCA paper: vit-pytorch CrossViT, both branches dim 128, 3 multi-scale blocks."""
    config = dict(dim=128, cross_attn_depth=2, depth=3)
    return build_crossvit("crossvit-s", img_size, num_classes, **{**config, **overrides})
