"""CvT baseline of the LKCA paper (Wu et al., "CvT: Introducing Convolutions to Vision Transformers",
ICCV 2021).

The model is ``vit_pytorch.cvt.CvT`` (the library the authors used; it reproduces their parameter and
FLOP counts exactly) with the three stages of the paper's training code. Its convolutional token
embeddings have no position embedding, so it runs at any image size and its parameter count does not
depend on it.
"""

from __future__ import annotations

import torch.nn as nn
from vit_pytorch.cvt import CvT

from vbench.models.registry import register_backbone

# The last spatial feature map (vbench.models.feature_map): the last convolutional-transformer stage, before the
# pooling head.
FEATURE_MAP = "map:layers"

STAGE_KEYS = ("emb_dim", "emb_kernel", "emb_stride", "heads", "depth")


def build_cvt(num_classes: int, *, stages: tuple[tuple[int, ...], ...], **overrides) -> nn.Module:
    """CvT has no position embedding: it runs at any image size, so the size is not needed to build it."""
    config = {}
    for index, stage in enumerate(stages, start=1):
        stage_config = dict(zip(STAGE_KEYS, stage)) | dict(proj_kernel=3, kv_proj_stride=2, mlp_mult=4)
        config |= {f"s{index}_{key}": value for key, value in stage_config.items()}
    return CvT(num_classes=num_classes, **{**config, **overrides})


@register_backbone("cvt-b", family="cvt", paper_names=["CvT-B"], feature_map=FEATURE_MAP)
def cvt_b(img_size: int = 32, num_classes: int = 10, **overrides) -> nn.Module:
    """CvT-B of the LKCA paper: vit-pytorch CvT, stages of width 32/96/192, depths 1/2/10."""
    # (dim, embedding kernel, embedding stride, heads, depth) per stage
    config = dict(stages=((32, 7, 4, 1, 1), (96, 3, 2, 3, 2), (192, 3, 2, 6, 10)))
    return build_cvt(num_classes, **{**config, **overrides})
