"""Image classification (Tables 1-5): the paper's recipe on a suite's uint8 tensor splits.

Batches come from the batched recipe (``vbench.data.augment``) or the per-image reference pipeline, both
a function of (seed, epoch); AdamW (or Adam/SGD) with timm's warm-up + cosine schedule stepped every
iteration; label-smoothed mixed cross-entropy; top-1/top-5 on the test split after every epoch.
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
from timm.scheduler import CosineLRScheduler

from vbench.data import load_dataset
from vbench.data.augment import BatchedPipeline, mixed_cross_entropy
from vbench.data.reference_pipeline import ReferencePipeline
from vbench.errors import VbenchError
from vbench.models.measure import count_flops, count_flops_paper, count_params
from vbench.store.predictions import ClassificationPredictions
from vbench.tasks import CLASSIFICATION
from vbench.tasks.base import DataInfo, Scores, Stage, model_kwargs

PIPELINES = ("batched", "reference")


class ClassificationTask:
    info = CLASSIFICATION

    def __init__(self, suite, device: torch.device, pipeline: str = "batched", data_root=None,
                 download: bool = False, limit: int | None = None):
        if pipeline not in PIPELINES:
            raise VbenchError(f"unknown pipeline {pipeline!r}; choose batched or reference")
        self.suite, self.recipe, self.device = suite, suite.recipe, device
        self.pipeline, self.data_root, self.download, self.limit = pipeline, data_root, download, limit
        self.data = None

    def prepare(self) -> DataInfo:
        info = self.load_data()
        self.steps_per_epoch = self.batches.steps_per_epoch(len(self.data.train_images))
        if self.steps_per_epoch < 1:
            raise VbenchError(
                f"suite {self.suite.name!r} has {len(self.data.train_images)} training images, fewer than one batch "
                f"of {self.recipe.batch_size} x {self.recipe.repeats} repeats; lower batch_size with --batch-size")
        return info

    def load_data(self) -> DataInfo:
        """The splits and the batch pipeline, without the training checks (evaluation needs no more)."""
        data = load_dataset(self.suite, self.data_root, self.download, self.limit)
        if self.pipeline == "reference":
            self.batches = ReferencePipeline(self.suite, self.device)
        else:
            self.batches = BatchedPipeline(self.suite, self.device)
        if self.device.type == "cuda" and self.pipeline == "batched":  # the whole uint8 split moves once
            for name in ("train_images", "train_labels", "test_images", "test_labels"):
                setattr(data, name, getattr(data, name).to(self.device))
        self.data = data
        if len(data.test_images) == 0:
            raise VbenchError(f"suite {self.suite.name!r} has an empty test split")
        return DataInfo(data.identity, data.describe())

    def build_model(self, spec) -> nn.Module:
        variant = spec.variant(self.info.name)
        return spec.build(self.suite.img_size, self.suite.num_classes, task=self.info.name,
                          **model_kwargs(variant, self.recipe))

    def size(self, model: nn.Module) -> dict:
        flops = count_flops(model, self.suite.img_size)
        return {"params": count_params(model), "flops": flops.total, "flops_complete": flops.complete,
                "flops_paper_counter": count_flops_paper(model, self.suite.img_size)}

    def stages(self) -> list[Stage]:
        steps = self.steps_per_epoch
        return [Stage(epoch, epoch, (epoch - 1) * steps, steps) for epoch in range(1, self.recipe.epochs + 1)]

    def make_optimizer(self, model: nn.Module):
        recipe = self.recipe
        if recipe.optimizer == "adamw":
            optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        elif recipe.optimizer == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
        return optimizer, cosine_schedule(optimizer, recipe, self.steps_per_epoch)

    def train_batches(self, seed: int, stage: Stage):
        return self.batches.train_batches(self.data.train_images, self.data.train_labels, seed, stage.index)

    def train_step(self, model: nn.Module, batch):
        logits = model(batch.x)
        loss = mixed_cross_entropy(logits.float(), batch, self.recipe.label_smoothing)
        predicted = logits.detach().argmax(dim=-1)
        accuracy = 100.0 * (batch.lam * (predicted == batch.y_a).double().mean()
                            + (1.0 - batch.lam) * (predicted == batch.y_b).double().mean())
        return loss, {"acc": accuracy}, len(batch.y_a)

    def evaluate(self, model: nn.Module) -> Scores:
        """Top-1 and top-5 accuracy (%) on centre images of the test split, and each image's top 5 and class
        probabilities."""
        return self.evaluate_images(model, self.data.test_images, self.data.test_labels)

    @torch.no_grad()
    def evaluate_images(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Scores:
        """``evaluate`` on other uint8 images of the suite's size (a corrupted test split)."""
        model.eval()
        tops, seen, probabilities = [], [], []
        for x, y in self.batches.eval_batches(images, labels):
            logits = model(x).float()
            tops.append(logits.topk(min(5, logits.shape[-1]), dim=-1).indices)
            probabilities.append(logits.softmax(dim=-1).half().cpu())  # kept per image, for calibration
            seen.append(y)
        top, label = torch.cat(tops), torch.cat(seen)
        hits = top.eq(label[:, None])
        metrics = {"top1": 100.0 * float(hits[:, 0].sum()) / len(label),
                   "top5": 100.0 * float(hits.any(dim=-1).sum()) / len(label)}
        return Scores(metrics, ClassificationPredictions.from_probabilities(torch.cat(probabilities), label, top))


def cosine_schedule(optimizer, recipe, steps_per_epoch: int):
    """timm's cosine schedule, stepped per iteration: a linear warm-up from min_lr to lr over
    ``warmup_epochs``, then cosine decay to min_lr over the remaining epochs."""
    # timm warns when the cosine part is a single step (a run that is all warm-up); that is intended here
    logging.getLogger("timm.scheduler.cosine_lr").setLevel(logging.ERROR)
    total = recipe.epochs * steps_per_epoch
    warmup = min(recipe.warmup_epochs * steps_per_epoch, max(total - 1, 0))
    return CosineLRScheduler(
        optimizer, t_initial=max(total - warmup, 1), lr_min=recipe.min_lr, warmup_t=warmup,
        warmup_lr_init=recipe.min_lr, warmup_prefix=True, t_in_epochs=False, cycle_limit=1,
    )
