"""Swin Transformer baselines of the LKCA paper (Liu et al., "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", ICCV 2021), in the small-image configuration of the SPT/LSA code
the authors took them from.

The model is timm's ``SwinTransformer`` (window 4, MLP ratio 2, qkv bias, stochastic depth 0.1 growing
linearly over the blocks) with one addition timm no longer has: the learned absolute position
embedding of that code, shape (1, grid * grid, embed_dim), added to the patch-embedding output. It
lives in the patch-embedding layer (passed to timm as ``embed_layer``), so every timm forward path
(``forward_features``, ``forward_intermediates``) applies it. The patch is image size / 16 (2 at
32x32, 4 at 64x64): a 16x16 token grid, i.e. stages of 16x16, 8x8 and 4x4 tokens.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.swin_transformer import SwinTransformer
from vbench.backbones._sizes import require_multiple
from vbench.backbones._timm_pyramid import TimmPyramid

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the last stage (timm's forward_intermediates, NCHW).
FEATURE_MAP = "timm"

TOKEN_GRID = 16


class PatchEmbedWithAbsolutePosition(PatchEmbed):
    """timm's PatchEmbed (NHWC output inside Swin) plus a learned absolute position embedding."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        grid_h, grid_w = self.grid_size
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, grid_h * grid_w, self.proj.out_channels))
        trunc_normal_(self.absolute_pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return x + self.absolute_pos_embed.view(1, *x.shape[1:3], -1)


def build_swin(name: str, img_size: int, num_classes: int, **config) -> nn.Module:
    require_multiple(name, img_size, TOKEN_GRID)
    config = dict(
        patch_size=img_size // TOKEN_GRID, window_size=4, mlp_ratio=2.0, qkv_bias=True, drop_path_rate=0.1,
        embed_layer=PatchEmbedWithAbsolutePosition,
    ) | config
    return SwinTransformer(img_size=img_size, num_classes=num_classes, **config)


@register_backbone("swin-t", family="swin", paper_names=["Swin-T"], accepts=("drop_path_rate",),
                   feature_map=FEATURE_MAP)
def swin_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """Swin-T of the LKCA paper: timm SwinTransformer + absolute position embedding, embed 64, depths 1/2/1."""
    config = dict(embed_dim=64, depths=(1, 2, 1), num_heads=(2, 4, 8))
    return build_swin("swin-t", img_size, num_classes, **{**config, **overrides})


@register_backbone("swin-s", family="swin", paper_names=["Swin-S"], accepts=("drop_path_rate",),
                   feature_map=FEATURE_MAP)
def swin_s(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """Swin-S of the LKCA paper: timm SwinTransformer + absolute position embedding, embed 84, depths 1/3/2."""
    config = dict(embed_dim=84, depths=(1, 3, 2), num_heads=(3, 6, 12))
    return build_swin("swin-s", img_size, num_classes, **{**config, **overrides})


@register_backbone("swin-s", family="swin", task="segmentation", paper_names=["Swin-S"], aliases=["swin-s-seg"],
                   accepts=("drop_path_rate",),
                   features=dict(channels=(96, 192, 384, 768), strides=(4, 8, 16, 32), size_divisor=32))
def swin_s_seg(img_size: int = 512, num_classes: int = 150, drop_path_rate: float = 0.3) -> nn.Module:
    """Swin-S of mmseg's ADE20K config (timm swin_small_patch4_window7, embed 96, depths 2-2-18-2, window 7,
    drop path 0.3, a LayerNorm on every output as mmseg adds) as a stride 4-32 pyramid (Table 7)."""
    return TimmPyramid("swin_small_patch4_window7_224", (0, 1, 2, 3), nhwc_outputs=True, output_norms=True,
                       img_size=img_size, dynamic_img_size=True, drop_path_rate=drop_path_rate)
