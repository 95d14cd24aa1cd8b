"""The LKCA paper's "MobileViTv2" baselines, which are MobileViT **v1** networks.

The paper's tables call these rows MobileViTv2-T, MobileViTv2-S and MobileViTv2, but the authors' code
builds MobileViT v1 blocks (Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and
Mobile-friendly Vision Transformer", ICLR 2022; chinhsuanwu's layout): unfold into patches, a standard
transformer, fold, concatenate with the input and fuse with a convolution. They are *not* MobileViT v2
(separable linear attention); the real v2 is registered separately as ``mobilevitv2-*`` from timm.

The model is ``vit_pytorch.mobile_vit.MobileViT`` (the same layout; it reproduces the authors' parameter
and FLOP counts exactly) with 1x1 patches, expansion 4 and the channel lists of the paper's code. With
no position embedding, the parameter count does not depend on the image size.
"""

from __future__ import annotations

import torch.nn as nn
from vit_pytorch.mobile_vit import MobileViT

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the last 1x1 convolution's map, which the head
# pools.
FEATURE_MAP = "map:to_logits.0"


def build_mobilevit_v1(img_size: int, num_classes: int, **config) -> nn.Module:
    config = dict(expansion=4, patch_size=(1, 1)) | config
    return MobileViT(image_size=(img_size, img_size), num_classes=num_classes, **config)


@register_backbone("mobilevit-t", family="mobilevit", paper_names=["MobileViTv2-T"], aliases=["mbv2-t"],
                   feature_map=FEATURE_MAP)
def mobilevit_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """The paper's "MobileViTv2-T", built from MobileViT v1 blocks (vit-pytorch MobileViT), dims 54/60/72."""
    config = dict(dims=[54, 60, 72], channels=[10, 20, 36, 36, 54, 54, 72, 72, 94, 94, 384])
    return build_mobilevit_v1(img_size, num_classes, **{**config, **overrides})


@register_backbone("mobilevit-s", family="mobilevit", paper_names=["MobileViTv2-S"], aliases=["mbv2-s"],
                   feature_map=FEATURE_MAP)
def mobilevit_s(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """The paper's "MobileViTv2-S", built from MobileViT v1 blocks (vit-pytorch MobileViT), dims 144/180/224."""
    config = dict(dims=[144, 180, 224], channels=[24, 48, 54, 54, 72, 72, 108, 108, 120, 120, 384])
    return build_mobilevit_v1(img_size, num_classes, **{**config, **overrides})


@register_backbone("mobilevit-b", family="mobilevit", paper_names=["MobileViTv2"], aliases=["mbv2"],
                   feature_map=FEATURE_MAP)
def mobilevit_b(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """The paper's "MobileViTv2", built from MobileViT v1 blocks (vit-pytorch MobileViT), dims 224/302/324."""
    config = dict(dims=[224, 302, 324], channels=[48, 53, 72, 72, 80, 80, 120, 120, 156, 156, 384])
    return build_mobilevit_v1(img_size, num_classes, **{**config, **overrides})
