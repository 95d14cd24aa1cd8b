"""Hierarchical segmentation backbones from timm (random init, never downloaded): ResNet-50,
Swin-S and Twins-PCPVT-S, as in Table 7 of the LKCA paper.

Each is timm's ``features_only`` model giving four maps at strides 4, 8, 16, 32, with the
settings of mmseg's ADE20K UPerNet configs: Swin-S (embed 96, depths 2-2-18-2, window 7, drop
path 0.3, a LayerNorm on every output as mmseg's ``SwinTransformer`` adds), Twins-PCPVT-S (drop
path 0.2), ResNet-50 (no drop path). mmseg's ResNet is the V1c variant (3-conv stem); the paper
says ResNet-50, so timm's ``resnet50`` is the default (``timm_name="resnet50c"`` gives V1c).
The ``-seg`` suffixes keep these names apart from the classification baselines called Swin-S.
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn

from vbench.registry import register_backbone

SEG_TASKS = ("segmentation",)


class TimmPyramid(nn.Module):
    """A timm ``features_only`` model as a pyramid backbone (``out_channels``, NCHW outputs)."""

    def __init__(self, timm_name: str, out_indices: tuple[int, ...], recipe_kind: str, nhwc_outputs: bool = False,
                 output_norms: bool = False, **timm_kwargs):
        super().__init__()
        self.recipe_kind = recipe_kind
        self.body = timm.create_model(timm_name, pretrained=False, features_only=True, out_indices=out_indices,
                                      **timm_kwargs)
        self.out_channels = tuple(self.body.feature_info.channels())
        self.nhwc_outputs = nhwc_outputs
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.out_channels) if output_norms else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = list(self.body(x))
        if self.norms is not None:   # on channels-last maps, before the permute
            levels = [norm(level) for norm, level in zip(self.norms, levels)]
        if self.nhwc_outputs:
            levels = [level.permute(0, 3, 1, 2).contiguous() for level in levels]
        return levels


@register_backbone("resnet50-seg", family="seg-timm", paper_names=["ResNet-50"], tasks=SEG_TASKS)
def resnet50_seg(img_size: int = 512, num_classes: int = 150, timm_name: str = "resnet50", **overrides) -> nn.Module:
    """ResNet-50 (timm, random init) as a stride 4-32 pyramid for UPerNet/FPN (Table 7)."""
    return TimmPyramid(timm_name, (1, 2, 3, 4), recipe_kind="cnn", **overrides)


@register_backbone("swin-s-seg", family="seg-timm", paper_names=["Swin-S"], tasks=SEG_TASKS)
def swin_s_seg(img_size: int = 512, num_classes: int = 150, drop_path_rate: float = 0.3, **overrides) -> nn.Module:
    """Swin-S (timm swin_small_patch4_window7, random init, any input size) as a pyramid (Table 7)."""
    return TimmPyramid("swin_small_patch4_window7_224", (0, 1, 2, 3), recipe_kind="transformer",
                       nhwc_outputs=True, output_norms=True, img_size=img_size, dynamic_img_size=True,
                       drop_path_rate=drop_path_rate, **overrides)


@register_backbone("twins-pcpvt-s", family="seg-timm", paper_names=["Twins_PCPVT-S", "Twins-PCPVT-S"],
                   tasks=SEG_TASKS)
def twins_pcpvt_s(img_size: int = 512, num_classes: int = 150, drop_path_rate: float = 0.2, **overrides) -> nn.Module:
    """Twins-PCPVT-S (timm twins_pcpvt_small, random init) as a stride 4-32 pyramid (Table 7)."""
    return TimmPyramid("twins_pcpvt_small", (0, 1, 2, 3), recipe_kind="transformer", img_size=img_size,
                       drop_path_rate=drop_path_rate, **overrides)
