"""CIFAR-style ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

The classification ResNets are NOT models of the LKCA paper's tables: the paper names ResNet only as a
segmentation backbone (``resnet50``, Table 7: timm's ResNet-50 as a stride 4-32 pyramid; mmseg's ResNet is
the V1c variant with a 3-conv stem, and ``timm_name="resnet50c"`` gives that). The CIFAR ResNets are
the convolutional references small-image work compares against, offered so users can do the same.
"CIFAR-style" means a 3x3 stride-1 stem and no max-pool, so a 32x32 image keeps its resolution into
the first stage.

- ``resnet18-cifar``: timm's ResNet-18 (``BasicBlock``, stages of 64/128/256/512, 1x1-conv projection
  shortcuts) with its 7x7 stride-2 stem and max-pool replaced by a 3x3 stride-1 convolution.
- ``resnet56-cifar``: the 3-stage network of the ResNet paper's CIFAR-10 section (sec. 4.2): 16/32/64
  channels, 9 basic blocks per stage, parameter-free "option A" shortcuts (stride-2 subsampling and
  zero-padded channels). The wiring is written here because no maintained library ships this network
  (timm, torchvision and vit-pytorch only have the ImageNet 4-stage ResNets with projection shortcuts);
  the residual blocks themselves are timm's ``BasicBlock``.
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.resnet import BasicBlock
from vbench.backbones._timm_pyramid import TimmPyramid

from vbench.models.registry import register_backbone

# The last spatial feature maps (vbench.models.feature_map): the last stage, before the pooling head.
TIMM_FEATURE_MAP = "timm"  # timm's forward_intermediates
CIFAR_FEATURE_MAP = "map:stages"


def conv_relu_init_(conv: nn.Conv2d) -> None:
    """The He initialisation timm gives the convolutions it builds itself."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")


@register_backbone("resnet18-cifar", family="resnet", in_paper=False, accepts=("drop_path_rate",),
                   feature_map=TIMM_FEATURE_MAP)
def resnet18_cifar(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """Not from the paper: CIFAR-style ResNet-18 (timm ResNet-18, 3x3 stride-1 stem, no max-pool)."""
    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes, **overrides)
    model.conv1 = nn.Conv2d(3, model.bn1.num_features, kernel_size=3, stride=1, padding=1, bias=False)
    conv_relu_init_(model.conv1)
    model.maxpool = nn.Identity()
    return model


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by the stride and zero-pad the new channels (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))


class CifarResNet(nn.Module):
    """3x3 conv stem, stages of ``BasicBlock`` (the first block of each later stage strides by 2), global
    average pool, Linear head."""

    def __init__(
        self, num_classes: int = 10, depths: tuple[int, ...] = (9, 9, 9), widths: tuple[int, ...] = (16, 32, 64)
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, in_channels = [], widths[0]
        for index, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for block_index in range(depth):
                stride = 2 if index > 0 and block_index == 0 else 1
                shortcut = ZeroPadShortcut(in_channels, width, stride) if stride != 1 or in_channels != width else None
                blocks.append(BasicBlock(in_channels, width, stride=stride, downsample=shortcut))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                conv_relu_init_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(self.pool(x), 1))


@register_backbone("resnet56-cifar", family="resnet", in_paper=False, feature_map=CIFAR_FEATURE_MAP)
def resnet56_cifar(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """Not from the paper: the classic CIFAR ResNet-56 of He et al. (3 stages x 9 basic blocks, 16/32/64)."""
    return CifarResNet(num_classes=num_classes, **overrides)


@register_backbone("resnet50", family="resnet", task="segmentation", paper_names=["ResNet-50"],
                   aliases=["resnet50-seg"], accepts=("timm_name",), recipe_kind="cnn",
                   features=dict(channels=(256, 512, 1024, 2048), strides=(4, 8, 16, 32), size_divisor=32))
def resnet50_seg(img_size: int = 512, num_classes: int = 150, timm_name: str = "resnet50") -> nn.Module:
    """ResNet-50 (timm, random init, no drop path as in mmseg) as a stride 4-32 pyramid for UPerNet/FPN (Table 7)."""
    return TimmPyramid(timm_name, (1, 2, 3, 4))
