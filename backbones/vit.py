"""ViT for small images: the LKCA paper's baseline (Dosovitskiy et al., "An Image is Worth 16x16
Words", ICLR 2021), at the sizes of the paper's Tables 1-5.

The chassis is timm's ``VisionTransformer``; three things are set to the authors' recipe after
construction: the same DropPath rate on every residual branch (timm grows it linearly), xavier-normal
init with zero biases, and position/class embeddings drawn from N(0, 1). The LKCA, LKA and LSKA
families reuse this chassis and swap the token mixer of every block.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from timm.layers import DropPath, Mlp, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Attention, VisionTransformer
from vbench.backbones._sizes import require_img_size, token_patch_size

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the token grid of the last block (timm's
# forward_intermediates drops the class token).
FEATURE_MAP = "timm"
from vbench.segmentation.heads import MultiLevelNeck

CHASSIS_NAME = "this ViT-chassis model"
MixerLayer = Callable[[int, int, int], nn.Module]  # (dim, heads, grid side) -> a token mixer taking (x, hw=...)
ACCEPTS = ("drop_path_rate",)  # the same rate on every residual branch, as the authors' code


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
    drop_path_rate: float = 0.1,
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
        blk.drop_path1 = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        blk.drop_path2 = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
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


@register_backbone("vit-small", family="vit", accepts=ACCEPTS, paper_names=["ViT", "ViT-Small"], aliases=["vit"],
                   feature_map=FEATURE_MAP)
def vit_small(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT-Small of the LKCA paper (dim 192, depth 9, 12 heads)."""
    return _vit(img_size, num_classes, 192, 9, 12, **overrides)


@register_backbone("vit-0.5m", family="vit", accepts=ACCEPTS, paper_names=["ViT/0.5M"], aliases=["vit-05m"],
                   feature_map=FEATURE_MAP)
def vit_05m(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/0.5M of the LKCA paper (dim 120, depth 4, 4 heads)."""
    return _vit(img_size, num_classes, 120, 4, 4, **overrides)


@register_backbone("vit-lite", family="vit", accepts=ACCEPTS, paper_names=["ViT/1M", "ViT-Lite"], aliases=["vit-1m"],
                   feature_map=FEATURE_MAP)
def vit_lite(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT-Lite, ViT/1M of the LKCA paper (dim 136, depth 7, 8 heads)."""
    return _vit(img_size, num_classes, 136, 7, 8, **overrides)


@register_backbone("vit-2m", family="vit", accepts=ACCEPTS, paper_names=["ViT/2M"], feature_map=FEATURE_MAP)
def vit_2m(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/2M of the LKCA paper (dim 200, depth 6, 8 heads)."""
    return _vit(img_size, num_classes, 200, 6, 8, **overrides)


@register_backbone("vit-4m", family="vit", accepts=ACCEPTS, paper_names=["ViT/4M"], feature_map=FEATURE_MAP)
def vit_4m(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/4M of the LKCA paper (dim 264, depth 7, 8 heads)."""
    return _vit(img_size, num_classes, 264, 7, 8, **overrides)


@register_backbone("vit-8m", family="vit", accepts=ACCEPTS, paper_names=["ViT/8M"], feature_map=FEATURE_MAP)
def vit_8m(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """ViT/8M of the LKCA paper (dim 312, depth 10, 8 heads)."""
    return _vit(img_size, num_classes, 312, 10, 8, **overrides)




# --- segmentation encoders (Tables 6-7) --------------------------------------------------------------
# mmseg's ``VisionTransformer`` of its ``upernet_vit-b16_ln_mln`` config (class token, learned position
# embedding interpolated bicubically to other input sizes, pre-norm blocks with LayerNorm eps 1e-6, qkv
# bias, MLP ratio 4, no final norm, the outputs of the four evenly spaced layers) followed by
# ``MultiLevelNeck`` (1x1 conv, rescale by 4, 2, 1, 0.5, 3x3 conv): four stride-16 maps become strides
# 4, 8, 16 and 32. LKCA's encoder (backbones/lkca.py) passes its mixer as ``attn_layer``. The encoder loop is
# written here because LKCA needs the token grid (h, w) of each input, which timm's ViT blocks do not
# pass to their attention layer.
PATCH_SIZE = 16
SEG_ACCEPTS = ("drop_path_rate",)
SEG_SIZES = {"s": dict(dim=384, depth=12, heads=6), "b": dict(dim=768, depth=12, heads=12)}


class EncoderBlock(nn.Module):
    """x + DropPath(mixer(LN(x))), then x + DropPath(MLP(LN(x))); the mixer sees the token grid."""

    def __init__(self, dim: int, mixer: nn.Module, mlp_ratio: float, drop_path: float, grid_aware: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = mixer
        self.grid_aware = grid_aware
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        mixed = self.attn(self.norm1(x), hw=hw) if self.grid_aware else self.attn(self.norm1(x))
        x = x + self.drop_path(mixed)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PlainPyramidEncoder(nn.Module):
    """Patch-16 encoder returning four ``dim``-wide maps at strides 4, 8, 16, 32."""

    def __init__(self, img_size: int = 512, dim: int = 384, depth: int = 12, heads: int = 6,
                 mlp_ratio: float = 4.0, attn_layer: MixerLayer | None = None, drop_path_rate: float = 0.1,
                 out_indices: tuple[int, ...] | None = None):
        super().__init__()
        grid = img_size // PATCH_SIZE
        self.grid = (grid, grid)
        self.msa = attn_layer is None
        self.patch_embed = PatchEmbed(img_size, PATCH_SIZE, 3, dim, strict_img_size=False, output_fmt="NHWC",
                                      flatten=False)
        self.num_prefix_tokens = 1 if self.msa else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if self.msa else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + grid * grid, dim))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]   # mmseg's linearly growing rule
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, self._make_mixer(attn_layer, dim, heads, grid), mlp_ratio, rate,
                         grid_aware=not self.msa)
            for rate in rates
        )
        step = depth // 4
        self.out_indices = tuple(out_indices) if out_indices else tuple(step * (i + 1) - 1 for i in range(4))
        self.neck = MultiLevelNeck([dim] * 4, dim, scales=(4, 2, 1, 0.5))
        self._init_weights()

    @staticmethod
    def _make_mixer(attn_layer: MixerLayer | None, dim: int, heads: int, grid: int) -> nn.Module:
        if attn_layer is None:
            return Attention(dim, num_heads=heads, qkv_bias=True)
        return attn_layer(dim, heads, grid)

    def _init_weights(self) -> None:
        """mmseg VisionTransformer.init_weights without a checkpoint: trunc-normal 0.02 tokens and
        Linear weights, zero biases; the patch conv keeps kaiming fan-in; LKCA keeps its own init."""
        trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
        for block in self.blocks:
            for module in (block if self.msa else block.mlp).modules():
                if isinstance(module, nn.Linear):
                    trunc_normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        nn.init.kaiming_normal_(self.patch_embed.proj.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.patch_embed.proj.bias)

    def _position_embedding(self, hw: tuple[int, int]) -> torch.Tensor:
        if hw == self.grid:
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, list(hw), list(self.grid),
                                      num_prefix_tokens=self.num_prefix_tokens, interpolation="bicubic",
                                      antialias=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        batch, height, width, dim = x.shape
        x = x.reshape(batch, height * width, dim)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1)
        x = x + self._position_embedding((height, width))
        levels = []
        for index, block in enumerate(self.blocks):
            x = block(x, (height, width))
            if index in self.out_indices:
                tokens = x[:, self.num_prefix_tokens:]
                levels.append(tokens.transpose(1, 2).reshape(batch, dim, height, width))
        return self.neck(levels)


def plain_encoder(name: str, img_size: int, size: str, overrides: dict,
                  attn_layer: MixerLayer | None = None) -> PlainPyramidEncoder:
    """The ``size`` ("s" or "b") encoder with MSA, or with ``attn_layer(dim, heads, grid)`` as every block's
    grid-aware token mixer (timm's ``Block(attn_layer=...)``: the chassis never imports a mixer family)."""
    # whole patches, and a grid of at least 2x2 for the neck's 0.5x level
    require_img_size(name, img_size, img_size >= 2 * PATCH_SIZE and img_size % PATCH_SIZE == 0,
                     f"that is a multiple of {PATCH_SIZE} and at least {2 * PATCH_SIZE} "
                     f"({2 * PATCH_SIZE}, {3 * PATCH_SIZE}, {4 * PATCH_SIZE}, ...)")
    return PlainPyramidEncoder(img_size, **SEG_SIZES[size], attn_layer=attn_layer, **overrides)


@register_backbone("vit-s", family="vit", task="segmentation", paper_names=["ViT-S", "Vit-S"],
                   aliases=["vit-s-seg"], accepts=SEG_ACCEPTS,
                   features=dict(channels=(384, 384, 384, 384), strides=(4, 8, 16, 32), size_divisor=16))
def vit_s_seg(img_size: int = 512, num_classes: int = 150, **overrides) -> nn.Module:
    """ViT-S/16 (384 dim, 12 layers, 6 heads) + MultiLevelNeck, for Table 7's segmentors."""
    return plain_encoder("vit-s", img_size, "s", overrides)


@register_backbone("vit-b", family="vit", task="segmentation", paper_names=["ViT-B"], aliases=["vit-b-seg"],
                   accepts=SEG_ACCEPTS,
                   features=dict(channels=(768, 768, 768, 768), strides=(4, 8, 16, 32), size_divisor=16))
def vit_b_seg(img_size: int = 512, num_classes: int = 150, **overrides) -> nn.Module:
    """ViT-B/16 (768 dim, 12 layers, 12 heads) + MultiLevelNeck, for Table 6's segmentors."""
    return plain_encoder("vit-b", img_size, "b", overrides)
