"""A timm ``features_only`` model as a dense encoder: four NCHW maps at strides 4, 8, 16, 32.

Shared by the segmentation variants of the ResNet, Swin and Twins families (random init, never
downloaded). The widths a family declares in its ``features=`` are checked against timm's
``feature_info`` by the tests.
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn


class TimmPyramid(nn.Module):
    def __init__(self, timm_name: str, out_indices: tuple[int, ...], nhwc_outputs: bool = False,
                 output_norms: bool = False, **timm_kwargs):
        super().__init__()
        self.body = timm.create_model(timm_name, pretrained=False, features_only=True, out_indices=out_indices,
                                      **timm_kwargs)
        self.feature_info = self.body.feature_info
        self.nhwc_outputs = nhwc_outputs
        channels = self.feature_info.channels()
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in channels) if output_norms else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = list(self.body(x))
        if self.norms is not None:   # on channels-last maps, before the permute
            levels = [norm(level) for norm, level in zip(self.norms, levels)]
        if self.nhwc_outputs:
            levels = [level.permute(0, 3, 1, 2).contiguous() for level in levels]
        return levels
