"""Large-kernel attentions related to LKCA, as token mixers in the same ViT chassis as LKCA so that
one table compares them:

- LKA, Large Kernel Attention of VAN (Guo et al., "Visual Attention Network", 2022): 5x5 depthwise
  conv, 7x7 depthwise conv with dilation 3, 1x1 conv, product with the input; wrapped as VAN's
  spatial-attention mixer (1x1 projection, GELU, LKA, 1x1 projection).
- LSKA, Large Separable Kernel Attention (Lau et al., 2023): LKA with each depthwise kernel decomposed
  into cascaded 1-D horizontal and vertical kernels; the kernel size is an override.

Neither timm nor any maintained package ships these modules (VAN's code is a research repository),
so the few convolutions are written here, with the original module names.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from vbench.backbones.lkca import token_grid
from vbench.backbones.vit import small_vit

from vbench.errors import VbenchError
from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the token grid of the last block, through timm's
# forward_intermediates.
FEATURE_MAP = "timm"

LSKA_DEFAULT_KERNEL = 23  # LKA's receptive field (5 + (7-1)*3), so lka-* and lska-* see the same window


class LKA(nn.Module):
    """VAN's LKA: attn = conv1(conv_spatial(conv0(u))); out = u * attn. The default kernel size 23 is
    VAN's 5x5 + 7x7 dilation 3; other sizes use LSKA's (local, dilated, dilation) with full 2-D
    depthwise kernels, as the LSKA paper's LKA baselines do."""

    def __init__(self, dim: int, kernel_size: int = LSKA_DEFAULT_KERNEL):
        super().__init__()
        local, dilated, dilation = lska_decomposition(kernel_size)
        self.conv0 = nn.Conv2d(dim, dim, local, padding=local // 2, groups=dim)
        self.conv_spatial = nn.Conv2d(
            dim, dim, dilated, padding=(dilated // 2) * dilation, groups=dim, dilation=dilation
        )
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.conv1(self.conv_spatial(self.conv0(u)))


def lska_decomposition(kernel_size: int) -> tuple[int, int, int]:
    """(local kernel, dilated kernel, dilation) whose receptive field local + (dilated-1)*dilation is
    ``kernel_size``, following LSKA's table (7: 3+3 d2, 11: 3+5 d2, 23: 5+7 d3, 35: 5+11 d3, ...)."""
    if kernel_size in (7, 11):
        return 3, (kernel_size - 3) // 2 + 1, 2
    dilated, remainder = divmod(kernel_size - 5, 3)
    if kernel_size < 7 or remainder or dilated % 2:
        supported = [7, 11] + list(range(17, 60, 6))
        raise VbenchError(
            f"LSKA kernel size {kernel_size} has no LSKA decomposition; use one of "
            f"{', '.join(map(str, supported))}, ..."
        )
    return 5, dilated + 1, 3


class LSKA(nn.Module):
    """LSKA: LKA's depthwise convs as cascaded (1 x k) and (k x 1) depthwise convs."""

    def __init__(self, dim: int, kernel_size: int = LSKA_DEFAULT_KERNEL):
        super().__init__()
        local, dilated, dilation = lska_decomposition(kernel_size)
        pad_local, pad_dilated = local // 2, (dilated // 2) * dilation
        self.conv0h = nn.Conv2d(dim, dim, (1, local), padding=(0, pad_local), groups=dim)
        self.conv0v = nn.Conv2d(dim, dim, (local, 1), padding=(pad_local, 0), groups=dim)
        self.conv_spatial_h = nn.Conv2d(
            dim, dim, (1, dilated), padding=(0, pad_dilated), groups=dim, dilation=dilation
        )
        self.conv_spatial_v = nn.Conv2d(
            dim, dim, (dilated, 1), padding=(pad_dilated, 0), groups=dim, dilation=dilation
        )
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        attn = self.conv_spatial_v(self.conv_spatial_h(self.conv0v(self.conv0h(u))))
        return u * self.conv1(attn)


class SpatialAttentionMixer(nn.Module):
    """VAN's spatial attention over the token grid: tokens (B, N, C) -> picture -> proj_1, GELU,
    large-kernel attention, proj_2 -> tokens."""

    def __init__(self, dim: int, grid: int, attention: nn.Module):
        super().__init__()
        self.grid = grid
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = attention
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None, **_ignored) -> torch.Tensor:
        batch, tokens, channels = x.shape
        height, width = hw or (self.grid, self.grid)
        picture = x.transpose(1, 2).reshape(batch, channels, height, width)
        mixed = self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(picture))))
        return mixed.reshape(batch, channels, tokens).transpose(1, 2)


def attention_vit(img_size, num_classes, *, dim, depth, heads, make_attention, mlp_ratio=2.0, **overrides):
    grid = token_grid(img_size, overrides.get("patch_size"))
    return small_vit(
        img_size, num_classes, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, pool="avg",
        mixer=lambda _: SpatialAttentionMixer(dim, grid, make_attention(dim)), **overrides,
    )


@register_backbone("lka-t", family="lka", in_paper=False, accepts=("drop_path_rate",), feature_map=FEATURE_MAP)
def lka_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """VAN's LKA as the token mixer in the LKCA-T chassis (dim 136, depth 9); not in the LKCA paper."""
    return attention_vit(img_size, num_classes, dim=136, depth=9, heads=8, make_attention=LKA, **overrides)


@register_backbone("lka-b", family="lka", in_paper=False, accepts=("drop_path_rate",), feature_map=FEATURE_MAP)
def lka_b(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """VAN's LKA as the token mixer in the LKCA-B chassis (dim 210, depth 10); not in the LKCA paper."""
    return attention_vit(img_size, num_classes, dim=210, depth=10, heads=10, make_attention=LKA, **overrides)


@register_backbone("lska-t", family="lska", in_paper=False, accepts=("drop_path_rate", "lska_kernel"),
                   feature_map=FEATURE_MAP)
def lska_t(img_size: int = 32, num_classes: int = 10, lska_kernel: int = LSKA_DEFAULT_KERNEL, **overrides):
    """LSKA (override lska_kernel, default 23) in the LKCA-T chassis; not in the LKCA paper."""
    return attention_vit(
        img_size, num_classes, dim=136, depth=9, heads=8,
        make_attention=lambda dim: LSKA(dim, lska_kernel), **overrides,
    )


@register_backbone("lska-b", family="lska", in_paper=False, accepts=("drop_path_rate", "lska_kernel"),
                   feature_map=FEATURE_MAP)
def lska_b(img_size: int = 32, num_classes: int = 10, lska_kernel: int = LSKA_DEFAULT_KERNEL, **overrides):
    """LSKA (override lska_kernel, default 23) in the LKCA-B chassis; not in the LKCA paper."""
    return attention_vit(
        img_size, num_classes, dim=210, depth=10, heads=10,
        make_attention=lambda dim: LSKA(dim, lska_kernel), **overrides,
    )
