"""Iteration-based training and whole-image evaluation of a segmentor (mmseg's IterBasedTrainLoop).

``train_segmentor`` draws batches from an infinite shuffled stream, steps the optimiser of the
backbone's kind with a per-iteration learning rate (linear warm-up, then poly decay), and at every
iteration listed in ``eval_at`` evaluates on the validation split and calls ``on_eval``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vbench.segmentation.ade20k import InfiniteSampler, collate_eval
from vbench.segmentation.build import recipe_kind
from vbench.segmentation.metrics import SegmentationMetric, SegScores
from vbench.segmentation.recipe import OptimizerConfig, SegRecipe


@dataclass(frozen=True)
class Evaluation:
    iteration: int
    scores: SegScores
    train_loss: float          # mean total loss over the iterations since the previous evaluation
    lr: float
    train_seconds: float       # training time so far, evaluations excluded
    eval_seconds: float


def learning_rate(config: OptimizerConfig, iteration: int, total: int) -> float:
    """mmseg's schedule at 0-based ``iteration``: LinearLR (start factor ``warmup_ratio``) over
    ``warmup_iters``, then PolyLR from the end of the warm-up to ``total``."""
    warmup = min(config.warmup_iters, total)
    if iteration < warmup:
        return config.lr * (config.warmup_ratio + (1 - config.warmup_ratio) * iteration / warmup)
    span = max(total - warmup, 1)
    progress = min(iteration - warmup, span) / span
    return (config.lr - config.min_lr) * (1 - progress) ** config.power + config.min_lr


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
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
def evaluate_segmentor(segmentor: nn.Module, val_ds, device: torch.device | str, num_classes: int,
                       limit: int = 0, batch_size: int = 1, num_workers: int = 0) -> SegScores:
    """Whole-image inference one image at a time; logits are resized (bilinear) to the original
    label size before the argmax, so the metrics count original pixels."""
    segmentor.eval()
    metric = SegmentationMetric(num_classes)
    indices = range(len(val_ds) if limit <= 0 else min(limit, len(val_ds)))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(val_ds, list(indices)), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=collate_eval)
    for images, labels in loader:
        for image, label in zip(images, labels):
            logits = segmentor(image.unsqueeze(0).to(device, non_blocking=True))
            logits = F.interpolate(logits, size=label.shape, mode="bilinear", align_corners=False)
            metric.update(logits.argmax(dim=1)[0], label.to(device, non_blocking=True))
    return metric.compute()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), transient=True)


def _save_checkpoint(path: Path, segmentor: nn.Module, optimizer: torch.optim.Optimizer, done: int,
                     evaluations: list[Evaluation], train_seconds: float) -> None:
    state = {"iteration": done, "model": segmentor.state_dict(), "optimizer": optimizer.state_dict(),
             "evaluations": evaluations, "train_seconds": train_seconds, "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, partial)
    partial.replace(path)   # a crash while saving leaves the previous checkpoint intact


def _load_checkpoint(path: Path, segmentor: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)
    segmentor.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state


def train_segmentor(segmentor: nn.Module, train_ds, val_ds, recipe: SegRecipe, device: torch.device | str,
                    eval_at: Sequence[int] | None = None,
                    on_eval: Callable[[Evaluation], None] | None = None,
                    num_classes: int | None = None, description: str = "train",
                    checkpoint: str | Path | None = None) -> list[Evaluation]:
    """Train ``segmentor`` for ``recipe.iterations`` iterations; evaluate at ``eval_at`` (default
    ``recipe.eval_at``), calling ``on_eval(evaluation)`` after each. Returns every evaluation.

    The optimiser is ``recipe.optimizer_for(segmentor.backbone.recipe_kind)``; the batch stream is
    seeded by ``recipe.seed`` (see :class:`InfiniteSampler`), as are dropout and drop-path.
    With ``checkpoint`` (a file path), the state is saved after every evaluation and a run that
    finds the file resumes from it: it sees the batches and random draws an uninterrupted run
    would, and returns the restored evaluations too (``on_eval`` is called only for new ones).
    """
    device = torch.device(device)
    num_classes = num_classes or segmentor.num_classes
    eval_points = sorted(set(eval_at or recipe.eval_at))
    config = recipe.optimizer_for(recipe_kind(segmentor))
    torch.manual_seed(recipe.seed)
    segmentor.to(device)
    optimizer = build_optimizer(segmentor, config)
    evaluations: list[Evaluation] = []
    first, train_seconds = 0, 0.0
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint is not None and checkpoint.is_file():
        state = _load_checkpoint(checkpoint, segmentor, optimizer)
        first, evaluations, train_seconds = state["iteration"], list(state["evaluations"]), state["train_seconds"]
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=recipe.batch_size,
        sampler=InfiniteSampler(len(train_ds), recipe.seed, start=first * recipe.batch_size),
        num_workers=recipe.num_workers, drop_last=True, pin_memory=device.type == "cuda",
        persistent_workers=recipe.num_workers > 0,
        generator=torch.Generator().manual_seed(recipe.seed),   # keeps the global RNG for dropout alone
    )
    batches = iter(loader)
    loss_sum, loss_count = 0.0, 0
    with _progress() as progress:
        task = progress.add_task(description, total=recipe.iterations, completed=first, loss=float("nan"))
        segmentor.train()
        started = time.perf_counter()
        for iteration in range(first, recipe.iterations):
            lr = learning_rate(config, iteration, recipe.iterations)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = next(batches)
            losses = segmentor.loss(images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            loss_value = float(losses["loss"].detach())
            if loss_value != loss_value:
                raise FloatingPointError(f"the loss became NaN at iteration {iteration + 1}")
            loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
            progress.update(task, advance=1, loss=loss_value)
            done = iteration + 1
            if done in eval_points:
                train_seconds += time.perf_counter() - started
                eval_started = time.perf_counter()
                scores = evaluate_segmentor(segmentor, val_ds, device, num_classes, recipe.eval_limit,
                                            recipe.eval_batch_size, recipe.num_workers)
                evaluation = Evaluation(done, scores, loss_sum / loss_count, lr, train_seconds,
                                        time.perf_counter() - eval_started)
                evaluations.append(evaluation)
                if checkpoint is not None:
                    _save_checkpoint(checkpoint, segmentor, optimizer, done, evaluations, train_seconds)
                if on_eval is not None:
                    on_eval(evaluation)
                loss_sum, loss_count = 0.0, 0
                segmentor.train()
                started = time.perf_counter()
    return evaluations
