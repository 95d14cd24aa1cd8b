"""Image classification (Tables 1-5): the paper's recipe on a suite's uint8 tensor splits.

Batches come from the batched recipe (``vbench.data.augment``) or the per-image reference pipeline, both
a function of (seed, epoch); AdamW (or Adam/SGD) with timm's warm-up + cosine schedule stepped every
iteration; label-smoothed mixed cross-entropy; top-1/top-5 on the test split after every epoch.

A streamed suite (``vbench.data.readers``: shards, or ``stream = true``) reads its images through
``vbench.data.stream`` instead: each rank reads its own share (``local_batches``), and the evaluation's per-rank
results are gathered and put back in the test split's order; the corrupt images skipped are counted in every
evaluation's row (``skipped_train``, ``skipped_test``).
"""

from __future__ import annotations

import logging

import torch
import torch.nn as nn
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler

from vbench.data.augment import BatchedPipeline, mixed_cross_entropy
from vbench.data.readers import open_data
from vbench.data.reference_pipeline import ReferencePipeline
from vbench.data.stream import Streamer, process_group
from vbench.errors import VbenchError
from vbench.models.measure import count_flops, count_flops_paper, count_params
from vbench.store.predictions import ClassificationPredictions
from vbench.tasks import CLASSIFICATION
from vbench.tasks.base import DataInfo, Scores, Stage, model_kwargs

PIPELINES = ("batched", "reference")


class ClassificationTask:
    info = CLASSIFICATION
    stream: Streamer | None = None  # a streamed suite's reader (None: the splits are in memory)

    def __init__(self, suite, device: torch.device, pipeline: str = "batched", data_root=None,
                 download: bool = False, limit: int | None = None):
        if pipeline not in PIPELINES:
            raise VbenchError(f"unknown pipeline {pipeline!r}; choose batched or reference")
        self.suite, self.recipe, self.device = suite, suite.recipe, device
        self.pipeline, self.data_root, self.download, self.limit = pipeline, data_root, download, limit
        self.data = None

    @property
    def local_batches(self) -> bool:
        """Streamed: each rank reads its own share of every global batch (the Runner must not cut it again)."""
        return self.stream is not None

    def prepare(self) -> DataInfo:
        info = self.load_data()
        if self.stream is not None:
            num_train, self.steps_per_epoch = self.data.train.count, self.stream.steps_per_epoch()
        else:
            num_train = len(self.data.train_images)
            self.steps_per_epoch = self.batches.steps_per_epoch(num_train)
        if self.steps_per_epoch < 1:
            raise VbenchError(
                f"suite {self.suite.name!r} has {num_train} training images, fewer than one batch "
                f"of {self.recipe.batch_size} x {self.recipe.repeats} repeats; lower batch_size with --batch-size")
        return info

    def load_data(self) -> DataInfo:
        """The splits and the batch pipeline, without the training checks (evaluation needs no more)."""
        reader, data = open_data(self.suite, self.data_root, self.download, self.limit)
        if reader.streamed:
            self.data, self.stream = data, Streamer(data.train, data.test, self.suite, self.device, self.pipeline)
            if data.test.count == 0:
                raise VbenchError(f"suite {self.suite.name!r} has an empty test split")
            return DataInfo(data.identity, data.description)
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
        lr, parameters = recipe.scaled_lr, parameter_groups(model, recipe)
        if recipe.optimizer == "adamw":
            optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=recipe.weight_decay)
        elif recipe.optimizer == "adam":
            optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=recipe.weight_decay)
        else:
            optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=recipe.weight_decay)
        return optimizer, cosine_schedule(optimizer, recipe, self.steps_per_epoch)

    def train_batches(self, seed: int, stage: Stage):
        if self.stream is not None:
            return self.stream.train_batches(seed, stage.index)
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
        if self.stream is not None:
            return self.evaluate_stream(model)
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
        return top_k_scores(torch.cat(tops), torch.cat(seen), concat_half(probabilities))

    @torch.no_grad()
    def evaluate_stream(self, model: nn.Module) -> Scores:
        """``evaluate`` of a streamed suite: each rank its share, gathered, in the test split's order."""
        model.eval()
        tops, seen, indices, probabilities = [], [], [], []
        for x, y, index in self.stream.eval_batches():
            logits = model(x).float()
            tops.append(logits.topk(min(5, logits.shape[-1]), dim=-1).indices.cpu())
            probabilities.append(logits.softmax(dim=-1).half().cpu())  # kept per image, for calibration
            seen.append(y.cpu())
            indices.append(index)
        classes = self.suite.num_classes
        top = torch.cat(tops) if tops else torch.zeros((0, min(5, classes)), dtype=torch.int64)
        probability = concat_half(probabilities) if probabilities else torch.zeros((0, classes), dtype=torch.float16)
        label, index = (torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64) for parts in (seen, indices))
        top, label, index, probability = gather_ranks(top, label, index, probability)
        skipped = {split: len(gather_union(names)) for split, names in self.stream.skipped.items()}
        if len(index) + skipped["test"] != self.data.test.count:
            raise VbenchError(f"the streamed evaluation read {len(index)} of the {self.data.test.count} test images "
                              f"({skipped['test']} skipped as corrupt)")
        order = index.argsort()
        scores = top_k_scores(top[order], label[order], probability[order])
        scores.metrics.update({f"skipped_{split}": n for split, n in skipped.items()})
        return scores


def concat_half(chunks: list[torch.Tensor]) -> torch.Tensor:
    """float16 chunks as one tensor, outside autocast (a bf16 autocast region refuses float16 in torch.cat)."""
    with torch.autocast("cpu", enabled=False):
        return torch.cat(chunks)


def gather_ranks(top: torch.Tensor, label: torch.Tensor, index: torch.Tensor, probability: torch.Tensor):
    """Every rank's evaluated images on every rank (torch.distributed's process group, if any); an image read
    twice is named rather than counted twice."""
    rank, world_size = process_group()
    if world_size > 1:
        parts = [None] * world_size
        torch.distributed.all_gather_object(parts, (top, label, index, probability))
        top, label, index, probability = (torch.cat([part[i] for part in parts]) for i in range(4))
    if len(index.unique()) != len(index):
        raise VbenchError(f"the streamed evaluation read {len(index) - len(index.unique())} test images twice")
    return top, label, index, probability


def gather_union(names: set[str]) -> set[str]:
    """The union over the ranks of torch.distributed's process group (if any) of sets of names."""
    rank, world_size = process_group()
    if world_size == 1:
        return names
    parts = [None] * world_size
    torch.distributed.all_gather_object(parts, sorted(names))
    return {name for part in parts for name in part}


def top_k_scores(top: torch.Tensor, label: torch.Tensor, probabilities: torch.Tensor) -> Scores:
    """Top-1 and top-5 accuracy (%) from each image's top 5 and its label; the predictions keep the class
    probabilities."""
    hits = top.eq(label[:, None])
    metrics = {"top1": 100.0 * float(hits[:, 0].sum()) / max(len(label), 1),
               "top5": 100.0 * float(hits.any(dim=-1).sum()) / max(len(label), 1)}
    return Scores(metrics, ClassificationPredictions.from_probabilities(probabilities, label, top))


def parameter_groups(model: nn.Module, recipe):
    """The parameters to optimise: all with the recipe's weight decay, or, with ``filter_bias_and_bn``, timm's two
    groups (no decay on 1-d parameters, biases and the model's ``no_weight_decay()`` names)."""
    if not recipe.filter_bias_and_bn or not recipe.weight_decay:
        return model.parameters()
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    return param_groups_weight_decay(model, recipe.weight_decay, no_weight_decay_list=skip)


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
