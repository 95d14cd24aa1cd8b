"""ViT for small images: the LKCA paper's baseline (Dosovitskiy et al., "An Image is Worth 16x16
Words", ICLR 2021), at the sizes of the paper's Tables 1-5.

The chassis is timm's ``VisionTransformer``; three things are set to the authors' recipe after
construction: the same DropPath rate on every residual branch (timm grows it linearly), xavier-normal
init with zero biases, and position/class embeddings drawn from N(0, 1). The LKCA, LKA and LSKA
families reuse this chassis and swap the token mixer of every block.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn
from timm.layers import DropPath
from timm.models.vision_transformer import VisionTransformer

from backbones._sizes import token_patch_size
from vbench.registry import register_backbone

CHASSIS_NAME = "this ViT-chassis model"


def init_authors_weights(model: nn.Module) -> None:
    """xavier-normal on every Linear and Conv weight, zero biases, LayerNorm 1/0."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def small_vit(
    img_size: int,
    num_classes: int,
    *,
    dim: int,
    depth: int,
    heads: int,
    mlp_ratio: float = 2.0,
    patch_size: int | None = None,
    drop_path: float = 0.1,
    pool: str = "token",
    mixer: Callable[[int], nn.Module] | None = None,
    block: Callable[[int], nn.Module] | None = None,
) -> VisionTransformer:
    """The shared chassis. ``mixer(layer_index)`` replaces each block's attention; ``block(layer_index)``
    replaces whole blocks. ``pool="token"``: class token, (1, N+1, dim) position embedding;
    ``pool="avg"``: no class token in the forward pass, (1, N, dim) position embedding, LayerNorm on the
    mean of the tokens."""
    patch_size = token_patch_size(CHASSIS_NAME, img_size, patch_size)
    use_token = pool == "token"
    model = VisionTransformer(
        img_size=img_size, patch_size=patch_size, num_classes=num_classes, embed_dim=dim, depth=depth,
        num_heads=heads, mlp_ratio=mlp_ratio, qkv_bias=False, class_token=use_token,
        global_pool="token" if use_token else "avg", weight_init="skip",
    )
    for index, blk in enumerate(model.blocks):
        blk.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        blk.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if mixer is not None:
            blk.attn = mixer(index)
    if block is not None:
        model.blocks = nn.Sequential(*(block(index) for index in range(depth)))
    init_authors_weights(model)
    nn.init.normal_(model.pos_embed)
    if use_token:
        nn.init.normal_(model.cls_token)
    return model


def _vit(img_size: int, num_classes: int, dim: int, depth: int, heads: int, **overrides) -> VisionTransformer:
    return small_vit(img_size, num_classes, dim=dim, depth=depth, heads=heads, **overrides)


@register_backbone("vit-small", family="vit", paper_names=["ViT", "ViT-Small"], aliases=["vit"])
def vit_small(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT-Small of the LKCA paper (dim 192, depth 9, 12 heads)."""
    return _vit(img_size, num_classes, 192, 9, 12, **overrides)


@register_backbone("vit-0.5m", family="vit", paper_names=["ViT/0.5M"], aliases=["vit-05m"])
def vit_05m(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/0.5M of the LKCA paper (dim 120, depth 4, 4 heads)."""
    return _vit(img_size, num_classes, 120, 4, 4, **overrides)


@register_backbone("vit-lite", family="vit", paper_names=["ViT/1M", "ViT-Lite"], aliases=["vit-1m"])
def vit_lite(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT-Lite, ViT/1M of the LKCA paper (dim 136, depth 7, 8 heads)."""
    return _vit(img_size, num_classes, 136, 7, 8, **overrides)


@register_backbone("vit-2m", family="vit", paper_names=["ViT/2M"])
def vit_2m(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/2M of the LKCA paper (dim 200, depth 6, 8 heads)."""
    return _vit(img_size, num_classes, 200, 6, 8, **overrides)


@register_backbone("vit-4m", family="vit", paper_names=["ViT/4M"])
def vit_4m(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/4M of the LKCA paper (dim 264, depth 7, 8 heads)."""
    return _vit(img_size, num_classes, 264, 7, 8, **overrides)


@register_backbone("vit-8m", family="vit", paper_names=["ViT/8M"])
def vit_8m(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/8M of the LKCA paper (dim 312, depth 10, 8 heads)."""
    return _vit(img_size, num_classes, 312, 10, 8, **overrides)


__all__ = ["small_vit", "init_authors_weights", "CHASSIS_NAME"]
