"""Semantic segmentation (Tables 6-7): mmsegmentation's ADE20K recipe, iteration-based.

The backbone's declared feature pyramid goes under a UPerNet or FPN head (``vbench.segmentation.heads``);
batches come from an infinite shuffled stream (mmengine's InfiniteSampler) whose position is the
iteration, so a stage is a function of (seed, its first iteration); the optimiser table of the
backbone's recipe kind (AdamW for transformers, SGD for ResNets) with mmseg's linear warm-up then
poly decay per iteration; whole-image evaluation at every point of ``eval_at`` and at the end.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vbench.data import source_fingerprint
from vbench.models.measure import count_flops, count_params
from vbench.paths import default_data_root
from vbench.segmentation.ade20k import ADE20K, InfiniteSampler, PipelineConfig, collate_eval
from vbench.segmentation.heads import Segmentor, segmentation_losses
from vbench.segmentation.metrics import SegmentationMetric
from vbench.tasks import SEGMENTATION
from vbench.tasks.base import DataInfo, Scores, Stage, model_kwargs


class SegmentationTask:
    info = SEGMENTATION

    def __init__(self, suite, device: torch.device, pipeline: str = "batched", data_root=None,
                 download: bool = False, limit: int | None = None):
        self.suite, self.recipe, self.device = suite, suite.recipe, device
        self.data_root, self.limit = data_root, limit

    def prepare(self) -> DataInfo:
        root = Path(self.data_root or self.suite.root or default_data_root()).expanduser()
        config = pipeline_config(self.suite)
        self.train_set, self.val_set = ADE20K(root, "training", config), ADE20K(root, "validation", config)
        if self.limit is not None:
            for dataset in (self.train_set, self.val_set):
                dataset.pairs = dataset.pairs[: self.limit]
        files = [path for dataset in (self.train_set, self.val_set) for pair in dataset.pairs for path in pair]
        sizes = {"train": len(self.train_set), "test": len(self.val_set)}
        description = {"root": str(self.train_set.release_root), "sizes": sizes, "limit": self.limit,
                       "fingerprints": {"files": source_fingerprint(files, self.train_set.release_root)}}
        identity = source_fingerprint(files, self.train_set.release_root)[:12] + f"-{self.limit or 0}"
        return DataInfo(identity, description)

    def build_model(self, spec) -> Segmentor:
        variant = spec.variant(self.info.name)
        recipe = self.recipe
        backbone = spec.build(self.suite.crop_size, self.suite.num_classes, task=self.info.name,
                              **model_kwargs(variant, recipe))
        features = variant.features
        return Segmentor(backbone, features.channels, head=recipe.head, num_classes=self.suite.num_classes,
                         aux_weight=recipe.aux_weight, size_divisor=features.size_divisor,
                         recipe_kind=variant.recipe_kind)

    def size(self, segmentor: Segmentor) -> dict:
        """Params of the whole segmentor (auxiliary head included) and fvcore MACs at the crop."""
        flops = count_flops(segmentor, self.suite.crop_size)
        aux = segmentor.auxiliary_head
        return {"params": count_params(segmentor), "flops": flops.total, "flops_complete": flops.complete,
                "params_without_aux": count_params(segmentor) - (count_params(aux) if aux is not None else 0)}

    def stages(self) -> list[Stage]:
        points = self.recipe.evaluation_points
        starts = (0, *points[:-1])
        return [Stage(index, point, start, point - start)
                for index, (start, point) in enumerate(zip(starts, points), start=1)]

    def make_optimizer(self, segmentor: Segmentor):
        config = self.recipe.optimizer_for(segmentor.recipe_kind)
        optimizer = build_optimizer(segmentor, config)
        return optimizer, PolySchedule(optimizer, config, self.recipe.iterations)

    def train_batches(self, seed: int, stage: Stage):
        recipe = self.recipe
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_size=recipe.batch_size,
            sampler=InfiniteSampler(len(self.train_set), seed, start=stage.first_iteration * recipe.batch_size),
            num_workers=recipe.num_workers, drop_last=True, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),  # keeps the global RNG for dropout alone
        )
        for images, labels in itertools.islice(loader, stage.iterations):
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def train_step(self, segmentor: Segmentor, batch):
        images, labels = batch
        losses = segmentation_losses(segmentor(images), labels, self.recipe.aux_weight)
        return losses["loss"], {}, len(images)

    @torch.no_grad()
    def evaluate(self, segmentor: Segmentor) -> Scores:
        recipe = self.recipe
        metric = evaluate_segmentor(segmentor, self.val_set, self.device, self.suite.num_classes, recipe.eval_limit,
                                    recipe.eval_batch_size, recipe.num_workers, keep_per_image=True)
        return Scores(metric.compute().as_dict(), metric.per_image())


def pipeline_config(suite) -> PipelineConfig:
    recipe = suite.recipe
    return PipelineConfig(
        crop_size=(suite.crop_size, suite.crop_size), scale=recipe.scale, ratio_range=recipe.ratio_range,
        cat_max_ratio=recipe.cat_max_ratio, hflip=recipe.hflip, photometric=recipe.photometric,
        mean=tuple(255 * m for m in suite.mean), std=tuple(255 * s for s in suite.std),
    )


class PolySchedule:
    """mmseg's schedule at 0-based iteration t: LinearLR (start factor ``warmup_ratio``) over
    ``warmup_iters``, then PolyLR from the end of the warm-up to ``total``."""

    def __init__(self, optimizer: torch.optim.Optimizer, config, total: int):
        self.optimizer, self.config, self.total = optimizer, config, total

    def learning_rate(self, iteration: int) -> float:
        config = self.config
        warmup = min(config.warmup_iters, self.total)
        if iteration < warmup:
            return config.lr * (config.warmup_ratio + (1 - config.warmup_ratio) * iteration / warmup)
        span = max(self.total - warmup, 1)
        progress = min(iteration - warmup, span) / span
        return (config.lr - config.min_lr) * (1 - progress) ** config.power + config.min_lr

    def step_update(self, num_updates: int) -> None:
        rate = self.learning_rate(num_updates)
        for group in self.optimizer.param_groups:
            group["lr"] = rate


def build_optimizer(model: nn.Module, config) -> torch.optim.Optimizer:
    """AdamW or SGD; parameters whose name contains a ``no_decay_keys`` entry get weight decay 0
    (mmengine's ``paramwise_cfg.custom_keys`` with ``decay_mult=0``)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if any(key in name for key in config.no_decay_keys) else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


@torch.no_grad()
def evaluate_segmentor(segmentor: nn.Module, val_set, device, num_classes: int, limit: int = 0,
                       batch_size: int = 1, num_workers: int = 0, keep_per_image: bool = False) -> SegmentationMetric:
    """Whole-image inference one image at a time; logits are resized (bilinear) to the original
    label size before the argmax, so the metrics count original pixels. Returns the filled metric."""
    segmentor.eval()
    metric = SegmentationMetric(num_classes, keep_per_image=keep_per_image)
    indices = range(len(val_set) if limit <= 0 else min(limit, len(val_set)))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(val_set, list(indices)), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=collate_eval)
    for images, labels in loader:
        for image, label in zip(images, labels):
            logits = segmentor(image.unsqueeze(0).to(device, non_blocking=True))
            logits = F.interpolate(logits.float(), size=label.shape, mode="bilinear", align_corners=False)
            metric.update(logits.argmax(dim=1), label.to(device, non_blocking=True)[None])
    return metric
