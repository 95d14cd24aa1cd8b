"""LKCA: Large Kernel Convolutional Attention (the LKCA paper, "Large Kernel Convolutional
Attention"), in the ViT chassis of its released code, plus the section 3.2.3 hybrid layer.

The operator exists in no library, so it is written here in both of the paper's views:
- conv view: every channel of every image is a one-channel s x s picture convolved with ONE shared
  (2s-1) x (2s-1) kernel, zero padding s-1;
- matrix view: the same kernel unfolded into an N x N matrix A (N = s*s), output = A @ v.
Both views own the same parameters (same state-dict keys and shapes), so weights move between them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from timm.models.vision_transformer import Attention
from vbench.backbones._sizes import token_patch_size
from vbench.backbones.vit import CHASSIS_NAME, plain_encoder, small_vit

from vbench.errors import VbenchError
from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the token grid of the last block, through timm's
# forward_intermediates.
FEATURE_MAP = "timm"

VIEWS = ("conv", "matrix", "auto")
# Faster view per device type, from benchmarks/lkca_op.py (see its docstring for the measured table).
FASTER_VIEW = {"cpu": "matrix", "cuda": "matrix"}
ACCEPTS = ("drop_path_rate", "lkca_view")
SEG_FEATURES_S = dict(channels=(384, 384, 384, 384), strides=(4, 8, 16, 32), size_divisor=16)
SEG_FEATURES_B = dict(channels=(768, 768, 768, 768), strides=(4, 8, 16, 32), size_divisor=16)


def lkca_conv(values: torch.Tensor, kernel: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Conv view: (B, N, C) tokens, (2s-1, 2s-1) kernel -> (B, N, C)."""
    batch, _, channels = values.shape
    height, width = grid
    pictures = values.transpose(1, 2).reshape(batch * channels, 1, height, width)
    pad_h, pad_w = (kernel.shape[0] - 1) // 2, (kernel.shape[1] - 1) // 2
    mixed = F.conv2d(pictures, kernel[None, None], padding=(pad_h, pad_w))
    return mixed.reshape(batch, channels, height * width).transpose(1, 2)


def lkca_matrix_of(kernel: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The N x N matrix whose row (i*w + j) is the h x w window of the kernel at rows h-1-i .. 2h-2-i and
    columns w-1-j .. 2w-2-j. A kernel smaller than (2h-1, 2w-1) (a grid larger than the training grid)
    is zero-padded first, which is what the conv view's zero padding amounts to."""
    height, width = grid
    pad_h = height - 1 - (kernel.shape[0] - 1) // 2
    pad_w = width - 1 - (kernel.shape[1] - 1) // 2
    if pad_h or pad_w:
        kernel = F.pad(kernel, (pad_w, pad_w, pad_h, pad_h))
    windows = kernel.unfold(0, height, 1).unfold(1, width, 1)  # [a, b] = kernel[a:a+h, b:b+w]
    return windows.flip(0).flip(1).reshape(height * width, height * width)


def lkca_matrix(values: torch.Tensor, kernel: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Matrix view: A @ v for every image and channel."""
    return torch.matmul(lkca_matrix_of(kernel, grid), values)


class LKCA(nn.Module):
    """v = Linear(x) (no bias); one shared (2s-1)^2 kernel, initialised to zeros, mixes the tokens of
    every channel; then Linear(C, C). ``forward`` takes the token grid ``hw`` when it is not the
    training grid (segmentation at other input sizes)."""

    paper_counter_view = "conv"  # the view the authors ran, whose F.conv2d their FLOP counter never saw

    def __init__(self, dim: int, grid_size: int, heads: int, dim_head: int | None = None, view: str = "auto"):
        super().__init__()
        if view not in VIEWS:
            raise VbenchError(f"lkca_view must be one of {', '.join(VIEWS)}, not {view!r}")
        inner = heads * (dim_head or dim // heads)
        self.grid_size = grid_size
        self.view = view
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.kernel = nn.Parameter(torch.zeros(2 * grid_size - 1, 2 * grid_size - 1))
        self.proj = nn.Linear(inner, dim)

    def resolved_view(self, device: torch.device) -> str:
        return FASTER_VIEW.get(device.type, "conv") if self.view == "auto" else self.view

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None, **_ignored) -> torch.Tensor:
        grid = hw or (self.grid_size, self.grid_size)
        values = self.to_v(x)
        operator = lkca_matrix if self.resolved_view(x.device) == "matrix" else lkca_conv
        return self.proj(operator(values, self.kernel, grid))


def token_grid(img_size: int, patch_size: int | None) -> int:
    return img_size // token_patch_size(CHASSIS_NAME, img_size, patch_size)


def lkca_vit(
    img_size: int, num_classes: int, *, dim: int, depth: int, heads: int, mlp_ratio: float = 2.0,
    lkca_view: str = "auto", **overrides,
) -> nn.Module:
    """ViT chassis with LKCA in every layer, mean-pooled head, and the released code's unused class
    token (a (1, 1, dim) parameter that is counted in # Params but never enters the forward pass)."""
    grid = token_grid(img_size, overrides.get("patch_size"))
    model = small_vit(
        img_size, num_classes, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, pool="avg",
        mixer=lambda _: LKCA(dim, grid, heads, view=lkca_view), **overrides,
    )
    model.unused_cls_token = nn.Parameter(torch.randn(1, 1, dim))
    return model


class HybridBlock(nn.Module):
    """Section 3.2.3 of the LKCA paper: x + MSA(LN(x)), then x + LKCA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, grid: int, mlp_ratio: float, drop_path: float, lkca_view: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads=heads, qkv_bias=False)
        self.norm_lkca = nn.LayerNorm(dim)
        self.lkca = LKCA(dim, grid, heads, view=lkca_view)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.lkca(self.norm_lkca(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def hybrid_vit(
    img_size: int, num_classes: int, *, dim: int, depth: int, heads: int, mlp_ratio: float = 2.0,
    lkca_view: str = "auto", drop_path_rate: float = 0.1, **overrides,
) -> nn.Module:
    grid = token_grid(img_size, overrides.get("patch_size"))
    return small_vit(
        img_size, num_classes, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, pool="avg",
        drop_path_rate=drop_path_rate,
        block=lambda _: HybridBlock(dim, heads, grid, mlp_ratio, drop_path_rate, lkca_view), **overrides,
    )


def _lkca(img_size, num_classes, dim, depth, heads, mlp_ratio=2.0, **overrides) -> nn.Module:
    return lkca_vit(img_size, num_classes, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, **overrides)


@register_backbone("lkca-b", family="lkca", accepts=ACCEPTS, paper_names=["ViT-LKCA", "LKCA-B"], aliases=["vit-lkca"],
                   feature_map=FEATURE_MAP)
def lkca_b(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """LKCA-B, ViT-LKCA of the LKCA paper (dim 210, depth 10, 10 heads)."""
    return _lkca(img_size, num_classes, 210, 10, 10, **overrides)


@register_backbone("vit-0.5m-lkca", family="lkca", accepts=ACCEPTS, paper_names=["ViT/0.5M-LKCA"], aliases=["vit-05m-lkca"],
                   feature_map=FEATURE_MAP)
def vit_05m_lkca(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/0.5M-LKCA of the LKCA paper (dim 100, depth 8, 4 heads)."""
    return _lkca(img_size, num_classes, 100, 8, 4, **overrides)


@register_backbone("lkca-t", family="lkca", accepts=ACCEPTS, paper_names=["ViT/1M-LKCA", "LKCA-T"], aliases=["vit-1m-lkca"],
                   feature_map=FEATURE_MAP)
def lkca_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """LKCA-T, ViT/1M-LKCA of the LKCA paper (dim 136, depth 9, 8 heads)."""
    return _lkca(img_size, num_classes, 136, 9, 8, **overrides)


@register_backbone("vit-2m-lkca", family="lkca", accepts=ACCEPTS, paper_names=["ViT/2M-LKCA"], feature_map=FEATURE_MAP)
def vit_2m_lkca(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/2M-LKCA of the LKCA paper (dim 192, depth 9, 12 heads)."""
    return _lkca(img_size, num_classes, 192, 9, 12, **overrides)


@register_backbone("vit-4m-lkca", family="lkca", accepts=ACCEPTS, paper_names=["ViT/4M-LKCA"], feature_map=FEATURE_MAP)
def vit_4m_lkca(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/4M-LKCA of the LKCA paper (dim 246, depth 11, 6 heads)."""
    return _lkca(img_size, num_classes, 246, 11, 6, **overrides)


@register_backbone("vit-8m-lkca", family="lkca", accepts=ACCEPTS, paper_names=["ViT/8M-LKCA"], feature_map=FEATURE_MAP)
def vit_8m_lkca(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/8M-LKCA of the LKCA paper (dim 306, depth 14, 6 heads)."""
    return _lkca(img_size, num_classes, 306, 14, 6, **overrides)


@register_backbone("lkca-l", family="lkca", accepts=ACCEPTS, paper_names=["LKCA-L"], aliases=["vit-12m-lkca"],
                   feature_map=FEATURE_MAP)
def lkca_l(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """LKCA-L of the LKCA paper (dim 360, depth 12, 8 heads, MLP ratio 3)."""
    return _lkca(img_size, num_classes, 360, 12, 8, mlp_ratio=3.0, **overrides)


@register_backbone("lkca-hybrid-t", family="lkca-hybrid", accepts=ACCEPTS, in_paper=False, feature_map=FEATURE_MAP)
def lkca_hybrid_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """MSA + LKCA + MLP layers (LKCA paper, section 3.2.3; not in its tables), sized like LKCA-T (dim 128, depth 6)."""
    return hybrid_vit(img_size, num_classes, dim=128, depth=6, heads=8, **overrides)


@register_backbone("lkca-hybrid-b", family="lkca-hybrid", accepts=ACCEPTS, in_paper=False, feature_map=FEATURE_MAP)
def lkca_hybrid_b(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """MSA + LKCA + MLP layers (LKCA paper, section 3.2.3; not in its tables), sized like LKCA-B (dim 210, depth 6)."""
    return hybrid_vit(img_size, num_classes, dim=210, depth=6, heads=10, **overrides)


# --- segmentation encoders (Tables 6-7): the ViT-S/B encoders of backbones.vit with LKCA for MSA -----
# No class token, position embedding over the patch grid, one shared learnable (2s-1)x(2s-1) kernel
# with s = the training grid = crop / 16 (63x63 at 512x512 crops); the operator runs at any grid.
def lkca_encoder(name: str, img_size: int, size: str, overrides: dict) -> nn.Module:
    view = overrides.pop("lkca_view", "auto")
    return plain_encoder(name, img_size, size, overrides,
                         attn_layer=lambda dim, heads, grid: LKCA(dim, grid, heads, view=view))


@register_backbone("lkca-s", family="lkca", task="segmentation", paper_names=["LKCA-S"], aliases=["lkca-s-seg"],
                   accepts=ACCEPTS, features=SEG_FEATURES_S)
def lkca_s_seg(img_size: int = 512, num_classes: int = 150, **overrides) -> nn.Module:
    """LKCA-S/16: ViT-S widths with LKCA replacing MSA (kernel 2s-1, s = img/16) + MultiLevelNeck (Table 7)."""
    return lkca_encoder("lkca-s", img_size, "s", overrides)


@register_backbone("lkca-b", family="lkca", task="segmentation", paper_names=["LKCA-B"], aliases=["lkca-b-seg"],
                   accepts=ACCEPTS, features=SEG_FEATURES_B)
def lkca_b_seg(img_size: int = 512, num_classes: int = 150, **overrides) -> nn.Module:
    """LKCA-B/16: ViT-B widths with LKCA replacing MSA (kernel 2s-1, s = img/16) + MultiLevelNeck (Table 6)."""
    return lkca_encoder("lkca-b", img_size, "b", overrides)
