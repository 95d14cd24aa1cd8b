"""Glue for the engine: datasets and segmentor of a suite, one training run, its size."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from vbench.measure import count_flops, count_params
from vbench.segmentation.ade20k import ADE20K, PipelineConfig
from vbench.segmentation.build import build_segmentor
from vbench.segmentation.heads import Segmentor
from vbench.segmentation.recipe import SegmentationSuite, data_root_of
from vbench.segmentation.train import Evaluation, train_segmentor


def pipeline_config(suite: SegmentationSuite) -> PipelineConfig:
    recipe = suite.recipe
    return PipelineConfig(
        crop_size=(suite.crop_size, suite.crop_size), scale=recipe.scale, ratio_range=recipe.ratio_range,
        cat_max_ratio=recipe.cat_max_ratio, hflip=recipe.hflip, photometric=recipe.photometric,
        mean=tuple(255 * m for m in suite.mean), std=tuple(255 * s for s in suite.std),
    )


def segmentation_datasets(suite: SegmentationSuite, data_root: str | Path | None = None) -> tuple[ADE20K, ADE20K]:
    """(training, validation) datasets of the suite; missing data is a VbenchError."""
    root = Path(data_root) if data_root else data_root_of(suite)
    config = pipeline_config(suite)
    return ADE20K(root, "training", config), ADE20K(root, "validation", config)


def suite_segmentor(suite: SegmentationSuite, backbone: str, **backbone_overrides) -> Segmentor:
    return build_segmentor(backbone, suite.recipe.head, suite.num_classes, suite.crop_size, **backbone_overrides)


def segmentor_size(segmentor: Segmentor, img_size: int) -> dict:
    """Params of the whole segmentor (auxiliary head included) and fvcore MACs at img_size x img_size."""
    flops = count_flops(segmentor, img_size)
    aux = segmentor.auxiliary_head
    return {"params": count_params(segmentor),
            "params_without_aux": count_params(segmentor) - (count_params(aux) if aux is not None else 0),
            "flops": flops.total, "flops_complete": flops.complete, "uncounted_ops": sorted(flops.uncounted_ops)}


def run_segmentation(suite: SegmentationSuite, backbone: str, device: torch.device | str = "cpu",
                     on_eval: Callable[[Evaluation], None] | None = None, data_root: str | Path | None = None,
                     checkpoint: str | Path | None = None, **backbone_overrides) -> list[Evaluation]:
    """Train one backbone under the suite's head and schedule; ``on_eval`` sees each evaluation;
    ``checkpoint`` makes the run resumable (see ``train_segmentor``)."""
    train_ds, val_ds = segmentation_datasets(suite, data_root)
    torch.manual_seed(suite.recipe.seed)
    segmentor = suite_segmentor(suite, backbone, **backbone_overrides)
    return train_segmentor(segmentor, train_ds, val_ds, suite.recipe, device, on_eval=on_eval,
                           description=f"{backbone} {suite.recipe.head}", checkpoint=checkpoint)
