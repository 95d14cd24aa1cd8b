"""T2T-ViT baselines of the LKCA paper (Yuan et al., "Tokens-to-Token ViT: Training Vision Transformers
from Scratch on ImageNet", ICCV 2021).

The model is ``vit_pytorch.t2t.T2TViT`` with the paper's arguments; the library's head is a bare Linear
while the authors' model ends in LayerNorm + Linear, so the head is replaced by that (2 * dim more
parameters, which makes the counts match the authors' exactly).
"""

from __future__ import annotations

import torch.nn as nn
from vbench.backbones._sizes import require_img_size
from vit_pytorch.t2t import T2TViT, conv_output_size

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the tokens of the last layer, class token dropped
# (the grid the soft splits leave).
FEATURE_MAP = "tokens:transformer"


class T2TViTWithNormHead(T2TViT):
    """vit-pytorch's T2TViT with the LayerNorm + Linear head of the paper's model."""

    def __init__(self, *, dim: int, num_classes: int, **kwargs):
        super().__init__(dim=dim, num_classes=num_classes, **kwargs)
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))


def unfolds_fit(img_size: int, t2t_layers: tuple[tuple[int, int], ...]) -> bool:
    """Whether every soft split (unfold of kernel k, stride s, padding s // 2) has a k x k window to take."""
    side = img_size
    for kernel, stride in t2t_layers:
        if side + 2 * (stride // 2) < kernel:
            return False
        side = conv_output_size(side, kernel, stride, stride // 2)
    return True


def build_t2t(name: str, img_size: int, num_classes: int, **config) -> nn.Module:
    t2t_layers = config["t2t_layers"]
    smallest = next(size for size in range(1, 1024) if unfolds_fit(size, t2t_layers))
    require_img_size(name, img_size, unfolds_fit(img_size, t2t_layers), f"of at least {smallest}")
    return T2TViTWithNormHead(image_size=img_size, num_classes=num_classes, pool="cls", **config)


@register_backbone("t2t-t", family="t2t", paper_names=["T2T-T"], feature_map=FEATURE_MAP)
def t2t_t(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """T2T-T of the LKCA paper: vit-pytorch T2TViT, one (11, 8) T2T layer, dim 128, depth 10, 4 heads."""
    config = dict(dim=128, depth=10, heads=4, mlp_dim=128, dim_head=32, t2t_layers=((11, 8),))
    return build_t2t("t2t-t", img_size, num_classes, **{**config, **overrides})


@register_backbone("t2t-s", family="t2t", paper_names=["T2T-S"], feature_map=FEATURE_MAP)
def t2t_s(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """T2T-S of the LKCA paper: vit-pytorch T2TViT, T2T layers (11, 8), (7, 4), dim 96, depth 3, 4 heads."""
    config = dict(dim=96, depth=3, heads=4, mlp_dim=96, dim_head=24, t2t_layers=((11, 8), (7, 4)))
    return build_t2t("t2t-s", img_size, num_classes, **{**config, **overrides})


@register_backbone("t2t-b", family="t2t", paper_names=["T2T-B"], feature_map=FEATURE_MAP)
def t2t_b(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """T2T-B of the LKCA paper: vit-pytorch T2TViT, T2T layers (7, 4), (3, 2), (2, 1), dim 256, depth 8."""
    config = dict(dim=256, depth=8, heads=4, mlp_dim=256, dim_head=64, t2t_layers=((7, 4), (3, 2), (2, 1)))
    return build_t2t("t2t-b", img_size, num_classes, **{**config, **overrides})
