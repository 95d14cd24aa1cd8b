"""RegionViT baselines of the LKCA paper (Chen et al., "RegionViT: Regional-to-Local Attention for
Vision Transformers", ICLR 2022).

The model is ``vit_pytorch.regionvit.RegionViT`` (the library the authors used; it reproduces their
parameter and FLOP counts exactly) with the paper's size rule: window = image size / 8, local patch
size = patch size / 2 (so the region patch is image size^2 / 128 pixels), no PEG and the single-conv
local tokenizer. That rule only tiles the image into regions whose windows fit the relative-position
table at 32x32 and 64x64; every other size fails inside the library, so only those two are accepted.
"""

from __future__ import annotations

import torch.nn as nn
from vbench.backbones._sizes import require_img_size, token_patch_size
from vit_pytorch.regionvit import RegionViT

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the last stage's regional tokens (a map), which the
# head pools; every size here has four stages.
FEATURE_MAP = "map:layers.3.2[1]"

SUPPORTED_SIZES = (32, 64)


def build_regionvit(name: str, img_size: int, num_classes: int, **config) -> nn.Module:
    require_img_size(name, img_size, img_size in SUPPORTED_SIZES, "of " + " or ".join(map(str, SUPPORTED_SIZES)))
    patch_size = token_patch_size(name, img_size)
    config = dict(window_size=img_size // 8, local_patch_size=patch_size // 2, use_peg=False,
                  tokenize_local_3_conv=False) | config
    return RegionViT(num_classes=num_classes, **config)


@register_backbone("regionvit-t", family="regionvit", paper_names=["RegionViT-T"], feature_map=FEATURE_MAP)
def regionvit_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """RegionViT-T of the LKCA paper: vit-pytorch RegionViT, dims (48, 72, 108, 112), depths (1, 1, 2, 1)."""
    config = dict(dim=(48, 72, 108, 112), depth=(1, 1, 2, 1))
    return build_regionvit("regionvit-t", img_size, num_classes, **{**config, **overrides})


@register_backbone("regionvit-s", family="regionvit", paper_names=["RegionViT-S"], feature_map=FEATURE_MAP)
def regionvit_s(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """RegionViT-S of the LKCA paper: vit-pytorch RegionViT, dims (48, 96, 128, 256), depths (1, 2, 3, 2)."""
    config = dict(dim=(48, 96, 128, 256), depth=(1, 2, 3, 2))
    return build_regionvit("regionvit-s", img_size, num_classes, **{**config, **overrides})


@register_backbone("regionvit-b", family="regionvit", paper_names=["RegionViT-B"], feature_map=FEATURE_MAP)
def regionvit_b(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """RegionViT-B of the LKCA paper: vit-pytorch RegionViT, dims (64, 128, 256, 512), depths (2, 2, 8, 2)."""
    config = dict(dim=(64, 128, 256, 512), depth=(2, 2, 8, 2))
    return build_regionvit("regionvit-b", img_size, num_classes, **{**config, **overrides})
