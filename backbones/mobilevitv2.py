"""The real MobileViT v2 (Mehta & Rastegari, "Separable Self-attention for Mobile Vision Transformers",
TMLR 2023), from timm.

NOT models of the LKCA paper's tables: the paper's "MobileViTv2" rows are MobileViT v1 networks
(registered as ``mobilevit-t/-s/-b``). These are offered so users can compare with the actual v2, whose
separable linear attention replaces the v1 transformer. Built with timm's constructors, randomly
initialised (``pretrained=False``: no weights are ever downloaded).
"""

from __future__ import annotations

import timm
import torch.nn as nn

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the last stage (timm's forward_intermediates).
FEATURE_MAP = "timm"


def build_mobilevitv2(timm_name: str, num_classes: int, **overrides) -> nn.Module:
    """timm's MobileViT v2 has no position embedding: it runs at any image size (img_size is not needed)."""
    return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, **overrides)


@register_backbone("mobilevitv2-050", family="mobilevitv2", in_paper=False, accepts=("drop_path_rate",),
                   feature_map=FEATURE_MAP)
def mobilevitv2_050(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """Not from the paper: the real MobileViT v2, width 0.5 (timm mobilevitv2_050, random init)."""
    return build_mobilevitv2("mobilevitv2_050", num_classes, **overrides)


@register_backbone("mobilevitv2-075", family="mobilevitv2", in_paper=False, accepts=("drop_path_rate",),
                   feature_map=FEATURE_MAP)
def mobilevitv2_075(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """Not from the paper: the real MobileViT v2, width 0.75 (timm mobilevitv2_075, random init)."""
    return build_mobilevitv2("mobilevitv2_075", num_classes, **overrides)


@register_backbone("mobilevitv2-100", family="mobilevitv2", in_paper=False, accepts=("drop_path_rate",),
                   feature_map=FEATURE_MAP)
def mobilevitv2_100(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """Not from the paper: the real MobileViT v2, width 1.0 (timm mobilevitv2_100, random init)."""
    return build_mobilevitv2("mobilevitv2_100", num_classes, **overrides)
