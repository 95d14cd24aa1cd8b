"""Decode heads, necks and the encoder-decoder segmentor, laid out as mmsegmentation's.

Why written here: mmsegmentation 1.2.2 (the last release, January 2024) needs mmcv>=2.0.0rc4,<2.2.0
and mmengine; PyPI has no mmcv wheel in that range (only sdists whose CUDA/C++ ops must be
compiled against a pinned torch, which does not build against torch 2.15), and the one binary,
mmcv-lite 2.2.0, fails mmseg's version assertion. segmentation-models-pytorch offers a UPerNet
decoder, but without the auxiliary FCN head and with its own layout (LayerNorm on every feature,
256 channels, different module names), so it does not reproduce the toolbox's segmentors.

What is reproduced, with mmseg's module names so that configs and state dicts read the same:
``ConvModule`` (conv -> ``bn`` -> ReLU, conv bias only without a norm), ``PPM`` /
``UPerHead`` (``psp_modules``, ``bottleneck``, ``lateral_convs``, ``fpn_convs``,
``fpn_bottleneck``), ``FCNHead`` (``convs``), the ``FPN`` neck (``lateral_convs``, ``fpn_convs``),
``FPNHead`` (``scale_heads``), ``MultiLevelNeck`` (``lateral_convs``, ``convs``) and every head's
``dropout`` + ``conv_seg``. SyncBN becomes BatchNorm2d (one process). The loss is mmseg's default
cross-entropy: ignore label 255, summed and divided by all pixels (``avg_non_ignore=False``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vbench.errors import VbenchError

IGNORE_INDEX = 255
HEADS = ("upernet", "fpn")


def resize(x: torch.Tensor, size=None, scale_factor=None) -> torch.Tensor:
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode="bilinear", align_corners=False)


class ConvModule(nn.Module):
    """mmcv's ConvModule: conv (bias only without norm) -> BatchNorm ``bn`` -> ReLU ``activate``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 norm: bool = True, act: bool = True, init: str = "kaiming"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.activate = nn.ReLU(inplace=True) if act else None
        if init == "kaiming":   # mmcv kaiming_init: fan_out, normal, relu gain, zero bias
            nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        else:                   # mmseg's FPN and MultiLevelNeck: xavier uniform
            nn.init.xavier_uniform_(self.conv.weight)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.activate(x) if self.activate is not None else x


class DecodeHead(nn.Module):
    """mmseg BaseDecodeHead's classifier: Dropout2d(0.1) then a 1x1 ``conv_seg`` (normal std 0.01)."""

    def __init__(self, channels: int, num_classes: int, dropout_ratio: float = 0.1):
        super().__init__()
        self.channels = channels
        self.num_classes = num_classes
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)


class PPM(nn.ModuleList):
    """Pyramid pooling: adaptive average pools at ``pool_scales``, 1x1 ConvModule each, upsampled back."""

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int):
        super().__init__(nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(in_channels, channels, 1))
                         for scale in pool_scales)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [resize(stage(x), size=x.shape[2:]) for stage in self]


class UPerHead(DecodeHead):
    """UPerNet (Xiao et al. 2018) as mmseg's ``UPerHead``: PPM on the last level + FPN fusion."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6)):
        super().__init__(channels, num_classes)
        in_channels = list(in_channels)
        self.psp_modules = PPM(pool_scales, in_channels[-1], channels)
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, padding=1)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], size=laterals[i - 1].shape[2:])
        outs = [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)] + [laterals[-1]]
        outs = [outs[0]] + [resize(out, size=outs[0].shape[2:]) for out in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(DecodeHead):
    """mmseg ``FCNHead`` as the auxiliary head: ``num_convs`` 3x3 ConvModules on one level, no concat."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, num_convs: int = 1,
                 in_index: int = 2):
        super().__init__(channels, num_classes)
        self.in_index = in_index
        self.convs = nn.Sequential(*(ConvModule(in_channels if i == 0 else channels, channels, 3, padding=1)
                                     for i in range(num_convs)))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self.convs(inputs[self.in_index]))


class FPN(nn.Module):
    """mmseg's ``FPN`` neck (no extra levels): 1x1 laterals, nearest top-down sum, 3x3 outputs, no norm."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256):
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, norm=False, act=False, init="xavier")
                                           for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvModule(out_channels, out_channels, 3, padding=1, norm=False,
                                                  act=False, init="xavier") for _ in in_channels)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                              mode="nearest")
        return [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)]


class FPNHead(DecodeHead):
    """Semantic FPN (Kirillov et al. 2019) as mmseg's ``FPNHead``: per-level 3x3 conv + 2x upsampling
    stacks down to the finest stride, summed."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 128,
                 feature_strides: Sequence[int] = (4, 8, 16, 32)):
        super().__init__(channels, num_classes)
        self.feature_strides = tuple(feature_strides)
        self.scale_heads = nn.ModuleList()
        for level, stride in enumerate(feature_strides):
            length = max(1, (stride // feature_strides[0]).bit_length() - 1)
            layers: list[nn.Module] = []
            for k in range(length):
                layers.append(ConvModule(in_channels[level] if k == 0 else channels, channels, 3, padding=1))
                if stride != feature_strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        output = self.scale_heads[0](inputs[0])
        for level in range(1, len(self.feature_strides)):
            output = output + resize(self.scale_heads[level](inputs[level]), size=output.shape[2:])
        return self.cls_seg(output)


class MultiLevelNeck(nn.Module):
    """mmseg's ``MultiLevelNeck`` (ViT-UPerNet configs): 1x1 lateral conv, bilinear rescale by
    ``scales``, 3x3 conv, no norm or activation; turns four stride-16 maps into strides 4-32."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, scales: Sequence[float] = (4, 2, 1, 0.5)):
        super().__init__()
        self.scales = tuple(scales)
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, norm=False, act=False, init="xavier")
                                           for c in in_channels)
        self.convs = nn.ModuleList(ConvModule(out_channels, out_channels, 3, padding=1, norm=False, act=False,
                                              init="xavier") for _ in self.scales)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        inputs = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        return [conv(resize(inputs[i], scale_factor=scale)) for i, (conv, scale) in enumerate(zip(self.convs, self.scales))]


class Segmentor(nn.Module):
    """mmseg's EncoderDecoder: ``backbone`` (a dense encoder whose ``forward(x)`` gives one map per level,
    ``channels[i]`` wide) + ``neck`` + ``decode_head`` (+ ``auxiliary_head``).

    ``head="upernet"``: UPerHead (512 channels, pool scales 1, 2, 3, 6) and an FCN auxiliary head
    (256 channels, one conv) on the third level with loss weight ``aux_weight``. ``head="fpn"``: FPN neck
    (256 channels) + FPNHead (128 channels), no auxiliary head.

    ``forward(x)`` pads ``x`` on the right/bottom to a multiple of ``size_divisor`` and returns logits at
    the input resolution; in training mode with an auxiliary head it returns ``(logits, aux_logits)``.
    ``recipe_kind`` names the optimiser table of the recipe that trains it.
    """

    def __init__(self, backbone: nn.Module, channels: Sequence[int], head: str = "upernet", num_classes: int = 150,
                 aux_weight: float = 0.4, size_divisor: int = 32, recipe_kind: str = "transformer"):
        super().__init__()
        if head not in HEADS:
            raise VbenchError(f"unknown segmentation head {head!r}; use one of {', '.join(HEADS)}")
        if len(channels) != 4:
            raise VbenchError(f"a segmentation head needs a four-level feature pyramid, the backbone declares "
                              f"{len(channels)} levels")
        channels = list(channels)
        self.head_name = head
        self.num_classes = num_classes
        self.size_divisor = size_divisor
        self.aux_weight = aux_weight
        self.recipe_kind = recipe_kind
        self.backbone = backbone
        if head == "upernet":
            self.neck = None
            self.decode_head = UPerHead(channels, num_classes)
            self.auxiliary_head = FCNHead(channels[2], num_classes, in_index=2)
        else:
            self.neck = FPN(channels, 256)
            self.decode_head = FPNHead([256] * 4, num_classes)
            self.auxiliary_head = None

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = (-x.shape[2]) % self.size_divisor, (-x.shape[3]) % self.size_divisor
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def forward(self, x: torch.Tensor):
        height, width = x.shape[2:]
        padded = self._pad(x)
        features = list(self.backbone(padded))
        if self.neck is not None:
            features = self.neck(features)

        def to_input(logits: torch.Tensor) -> torch.Tensor:
            return resize(logits, size=padded.shape[2:])[:, :, :height, :width]

        logits = to_input(self.decode_head(features))
        if self.training and self.auxiliary_head is not None:
            return logits, to_input(self.auxiliary_head(features))
        return logits

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return segmentation_losses(self(x), labels, self.aux_weight)


def segmentation_losses(outputs, labels: torch.Tensor, aux_weight: float) -> dict[str, torch.Tensor]:
    """mmseg's losses of a forward pass in training mode: decode CE (weight 1) + auxiliary CE (``aux_weight``)."""
    logits, aux_logits = outputs if isinstance(outputs, tuple) else (outputs, None)
    losses = {"loss_decode": seg_cross_entropy(logits, labels)}
    if aux_logits is not None:
        losses["loss_aux"] = aux_weight * seg_cross_entropy(aux_logits, labels)
    losses["loss"] = sum(losses.values())
    return losses


def seg_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-pixel CE, ignore label 255, averaged over all pixels (mmseg's ``avg_non_ignore=False``)."""
    if logits.shape[2:] != labels.shape[1:]:
        logits = resize(logits, size=labels.shape[1:])
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none").mean()
