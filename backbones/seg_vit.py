"""Plain (single-scale) ViT and LKCA encoders for segmentation, with mmseg's MultiLevelNeck.

Tables 6-7 of the LKCA paper (ADE20K): ViT-S/ViT-B and LKCA-S/LKCA-B at patch 16. The ViT is
mmseg's ``VisionTransformer`` of its ``upernet_vit-b16_ln_mln`` config (class token, learned
position embedding interpolated bicubically to other input sizes, pre-norm blocks with LayerNorm
eps 1e-6, qkv bias, MLP ratio 4, no final norm, outputs of the four evenly spaced layers
(2, 5, 8, 11) for depth 12) followed by ``MultiLevelNeck`` (1x1 conv, rescale by 4, 2, 1, 0.5,
3x3 conv), which turns the four stride-16 maps into strides 4, 8, 16 and 32.

The LKCA encoders are the same chassis with LKCA in place of multi-head self-attention, as in the
paper's classification models: no class token, position embedding over the patch grid, and the
LKCA operator of ``backbones.lkca`` (one shared learnable (2s-1)x(2s-1) kernel, s = the training
grid = crop / 16, i.e. 63x63 at 512x512 crops), which runs at any token grid.

Registered as ``vit-s-seg``, ``vit-b-seg``, ``lkca-s-seg``, ``lkca-b-seg`` (``lkca-b`` is the
classification LKCA-B); in segmentation suites the paper names (``vit-s``, ``LKCA-B``, ...) find
them, see ``vbench.segmentation.build.resolve_segmentation_backbone``.

Blocks use timm's ``Attention``/``Mlp``/``DropPath``/``PatchEmbed`` and
``resample_abs_pos_embed``; the encoder loop is written here because LKCA needs the token grid
(h, w) of each input, which timm's ViT blocks do not pass to their attention layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath, Mlp, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Attention

from vbench.registry import register_backbone
from vbench.segmentation.heads import MultiLevelNeck

PATCH_SIZE = 16


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
    """Patch-16 encoder returning four maps at strides 4, 8, 16, 32 (``out_channels`` = (dim,) * 4)."""

    recipe_kind = "transformer"
    size_divisor = PATCH_SIZE   # inputs are padded to whole patches (mmseg's PatchEmbed pads the same way)

    def __init__(self, img_size: int = 512, dim: int = 384, depth: int = 12, heads: int = 6,
                 mlp_ratio: float = 4.0, mixer: str = "msa", drop_path: float = 0.1,
                 out_indices: tuple[int, ...] | None = None, lkca_view: str = "auto"):
        super().__init__()
        grid = img_size // PATCH_SIZE
        self.grid = (grid, grid)
        self.mixer = mixer
        self.patch_embed = PatchEmbed(img_size, PATCH_SIZE, 3, dim, strict_img_size=False, output_fmt="NHWC",
                                      flatten=False)
        self.num_prefix_tokens = 1 if mixer == "msa" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if mixer == "msa" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + grid * grid, dim))
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]   # mmseg's linearly growing rule
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, self._make_mixer(mixer, dim, heads, grid, lkca_view), mlp_ratio, rate,
                         grid_aware=mixer == "lkca")
            for rate in rates
        )
        step = depth // 4
        self.out_indices = tuple(out_indices) if out_indices else tuple(step * (i + 1) - 1 for i in range(4))
        self.neck = MultiLevelNeck([dim] * 4, dim, scales=(4, 2, 1, 0.5))
        self.out_channels = (dim,) * 4
        self._init_weights()

    @staticmethod
    def _make_mixer(mixer: str, dim: int, heads: int, grid: int, lkca_view: str) -> nn.Module:
        if mixer == "msa":
            return Attention(dim, num_heads=heads, qkv_bias=True)
        from backbones.lkca import LKCA

        return LKCA(dim, grid, heads, view=lkca_view)

    def _init_weights(self) -> None:
        """mmseg VisionTransformer.init_weights without a checkpoint: trunc-normal 0.02 tokens and
        Linear weights, zero biases; the patch conv keeps kaiming fan-in; LKCA keeps its own init."""
        trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
        for block in self.blocks:
            for module in (block if self.mixer == "msa" else block.mlp).modules():
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


SEG_TASKS = ("segmentation",)
SIZES = {"s": dict(dim=384, depth=12, heads=6), "b": dict(dim=768, depth=12, heads=12)}


@register_backbone("vit-s-seg", family="seg-vit", paper_names=["ViT-S", "Vit-S"], tasks=SEG_TASKS)
def vit_s(img_size: int = 512, num_classes: int = 150, **overrides) -> nn.Module:
    """ViT-S/16 (384 dim, 12 layers, 6 heads) + MultiLevelNeck, for Table 7's segmentors."""
    return PlainPyramidEncoder(img_size, **{**SIZES["s"], "mixer": "msa", **overrides})


@register_backbone("vit-b-seg", family="seg-vit", paper_names=["ViT-B"], tasks=SEG_TASKS)
def vit_b(img_size: int = 512, num_classes: int = 150, **overrides) -> nn.Module:
    """ViT-B/16 (768 dim, 12 layers, 12 heads) + MultiLevelNeck, for Table 6's segmentors."""
    return PlainPyramidEncoder(img_size, **{**SIZES["b"], "mixer": "msa", **overrides})


@register_backbone("lkca-s-seg", family="seg-lkca", paper_names=["LKCA-S"], tasks=SEG_TASKS)
def lkca_s(img_size: int = 512, num_classes: int = 150, **overrides) -> nn.Module:
    """LKCA-S/16: ViT-S widths with LKCA replacing MSA (kernel 2s-1, s = img/16) + MultiLevelNeck (Table 7)."""
    return PlainPyramidEncoder(img_size, **{**SIZES["s"], "mixer": "lkca", **overrides})


@register_backbone("lkca-b-seg", family="seg-lkca", paper_names=["LKCA-B"], tasks=SEG_TASKS)
def lkca_b(img_size: int = 512, num_classes: int = 150, **overrides) -> nn.Module:
    """LKCA-B/16: ViT-B widths with LKCA replacing MSA (kernel 2s-1, s = img/16) + MultiLevelNeck (Table 6)."""
    return PlainPyramidEncoder(img_size, **{**SIZES["b"], "mixer": "lkca", **overrides})
