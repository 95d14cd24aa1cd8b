"""The paper's training recipe as batched tensor operations on whichever device holds the data.

Per image, in the paper's order: random crop with zero padding, horizontal flip, AutoAugment (one of
25 sub-policies drawn per image, each op with its own probability and magnitude), to float, normalise,
Random Erasing. Per batch: Mixup or CutMix (one lambda per batch, partner a random permutation).
One epoch is ``repeats`` back-to-back shuffled passes over the training set, drop_last.

Why hand-written: torchvision's transforms draw one set of random parameters per call, so on a batch
they would give every image the same crop, flip and sub-policy; timm's Mixup pairs each image with the
reversed batch instead of a random permutation. The AutoAugment policy tables are torchvision's
(``transforms.v2.AutoAugment``); the images of a chunk are grouped by the (op, magnitude) they drew and
each group goes through the op as one batched call. The recipe's ``augment_impl`` picks the ops, their
magnitude bins and the Random Erasing: "authors" (``vbench.data.authors_augment``: the paper's released
trainer, PIL ops with grey fill, checked against PIL in tests/test_authors_augment.py) or "torchvision"
(torchvision's own ops; that reuses three private members of its v2 AutoAugment: ``_policies``,
``_AUGMENTATION_SPACE`` and ``_apply_image_or_video_transform``; tests/test_augment.py checks every
op against the per-image result of torchvision's v1 ``_apply_op``, so an upstream change shows up there).

Randomness: every random number of an epoch is drawn up front from a NumPy generator seeded from
(seed, epoch), in a fixed order that does not depend on the device or the chunk size, so a resumed
run sees exactly the batches an uninterrupted one would, on CPU and GPU alike.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy

from vbench.data.authors_augment import AuthorsOps, authors_erasing_shapes
from vbench.recipes import ClassificationRecipe as Recipe

if TYPE_CHECKING:  # a suite is passed in: data sits below the suite loader
    from vbench.suites import Suite

ERASING_ATTEMPTS = 10  # as torchvision's RandomErasing: up to 10 draws until the box fits


@dataclass
class TrainBatch:
    x: torch.Tensor  # float [B,3,H,W], normalised, on the recipe's device
    y_a: torch.Tensor  # int64 [B]
    y_b: torch.Tensor  # int64 [B]: the partners' labels (== y_a when the batch is not mixed)
    lam: float  # weight of y_a in the loss
    mode: str = "none"  # none | mixup | cutmix


def mixed_cross_entropy(logits: torch.Tensor, batch: TrainBatch, label_smoothing: float) -> torch.Tensor:
    """lam * CE(y_a) + (1 - lam) * CE(y_b), label smoothing inside each CE."""
    loss = F.cross_entropy(logits, batch.y_a, label_smoothing=label_smoothing)
    if batch.lam >= 1.0:
        return loss
    return batch.lam * loss + (1.0 - batch.lam) * F.cross_entropy(logits, batch.y_b, label_smoothing=label_smoothing)


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """The generator of one epoch: its own stream, seeded from (seed, epoch) only."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed % 2**64, epoch % 2**64, 0x7EC1, stream])))


def epoch_order(rng: np.random.Generator, num_train: int, repeats: int, batch_size: int,
                aug_repeats: int = 1) -> np.ndarray:
    """``repeats`` back-to-back shuffled passes, cut to whole batches (drop_last). With ``aug_repeats`` > 1 a pass
    draws each image that many times in a row and keeps its first ``num_train`` draws (timm's RepeatAugSampler:
    the epoch keeps its length, the copies land in the same global batch, each augmented on its own)."""
    order = np.concatenate([np.repeat(rng.permutation(num_train), aug_repeats)[:num_train] for _ in range(repeats)])
    return order[: (repeats * num_train // batch_size) * batch_size]


# ---------------------------------------------------------------------------------------------
# Per-image random parameters


@dataclass
class CropFlipParams:
    dy: np.ndarray  # [n] row offset into the padded image, 0..2*padding (shift = dy - padding)
    dx: np.ndarray  # [n]
    flip: np.ndarray  # [n] bool


def sample_crop_flip(rng: np.random.Generator, n: int, padding: int, hflip: float) -> CropFlipParams:
    return CropFlipParams(
        dy=rng.integers(0, 2 * padding + 1, n), dx=rng.integers(0, 2 * padding + 1, n), flip=rng.random(n) < hflip
    )


def crop_and_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-image crop of the zero-padded batch at (dy, dx), then per-image horizontal flip: one gather
    over the flattened padded images (a seventh of 4-d advanced indexing's time for 128 CIFAR images: 2-core AMD
    EPYC, 1 thread, torch 2.14.1, December 2026)."""
    n, channels, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    padded_width = width + 2 * padding
    rows = dy[:, None] + torch.arange(height, device=x.device)  # [n,H]
    cols = dx[:, None] + torch.arange(width, device=x.device)  # [n,W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * padded_width + cols[:, None, :]).view(n, 1, height * width)
    flat = padded.reshape(n, channels, -1)
    return flat.gather(2, index.expand(n, channels, height * width)).view(n, channels, height, width)


@dataclass
class ErasingParams:
    apply: np.ndarray  # [n] bool
    top: np.ndarray  # [n]
    left: np.ndarray  # [n]
    height: np.ndarray  # [n]
    width: np.ndarray  # [n]


def sample_erasing(rng: np.random.Generator, n: int, img_h: int, img_w: int, recipe: Recipe) -> ErasingParams:
    """Random Erasing boxes: area uniform in [min, max] of the image, the first of several attempts that
    fits, position uniform. torchvision: aspect log-uniform in (aspect, 1/aspect), up to 10 attempts;
    authors: aspect uniform, up to 100 attempts (``authors_erasing_shapes``)."""
    apply = rng.random(n) < recipe.erasing_prob
    areas = (recipe.erasing_min_area, recipe.erasing_max_area)
    if recipe.augment_impl == "authors":
        height, width, found = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
        height[apply], width[apply], found[apply] = authors_erasing_shapes(
            rng, int(apply.sum()), img_h, img_w, *areas, recipe.erasing_aspect)
    else:
        area = rng.uniform(*areas, (n, ERASING_ATTEMPTS)) * img_h * img_w
        log_aspect = math.log(recipe.erasing_aspect)
        aspect = np.exp(rng.uniform(log_aspect, -log_aspect, (n, ERASING_ATTEMPTS)))
        heights = np.round(np.sqrt(area * aspect)).astype(np.int64)
        widths = np.round(np.sqrt(area / aspect)).astype(np.int64)
        fits = (heights < img_h) & (widths < img_w)
        first = fits.argmax(axis=1)
        rows = np.arange(n)
        height, width, found = heights[rows, first], widths[rows, first], fits.any(axis=1)
    apply &= found
    top = np.floor(rng.random(n) * (img_h - height + 1)).astype(np.int64)
    left = np.floor(rng.random(n) * (img_w - width + 1)).astype(np.int64)
    return ErasingParams(apply=apply, top=top, left=left, height=height * apply, width=width * apply)


def erase(x: torch.Tensor, top, left, height, width, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Fill each image's box with ``fill`` per channel ([3]), or, when it is None, with 0 (the dataset
    mean after normalisation), in place."""
    img_h, img_w = x.shape[-2:]
    rows = torch.arange(img_h, device=x.device)[None, :]
    cols = torch.arange(img_w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])
    box = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
    if fill is None:
        return x.masked_fill_(box, 0.0)
    for channel, value in enumerate(fill):  # a 0-d tensor on the device: no host sync
        x[:, channel].masked_fill_(box[:, 0], value)
    return x


class TorchvisionOps:
    """torchvision's AutoAugment ops and magnitude bins (nearest interpolation, fill 0): the op set of
    ``BatchedAutoAugment`` for ``augment_impl = "torchvision"``."""

    def __init__(self, autoaugment: AutoAugment, height: int, width: int):
        self.autoaugment, self.height, self.width = autoaugment, height, width

    def magnitude(self, name: str, bin_index: int | None) -> tuple[float, bool]:
        magnitudes_fn, signed = self.autoaugment._AUGMENTATION_SPACE[name]
        magnitudes = magnitudes_fn(10, self.height, self.width)
        return (float(magnitudes[bin_index]) if magnitudes is not None else 0.0), signed

    def apply(self, x: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
        tv = self.autoaugment
        return tv._apply_image_or_video_transform(x, name, magnitude, interpolation=tv.interpolation, fill=tv._fill)


class BatchedAutoAugment:
    """An AutoAugment policy, with per-image sub-policies, applied to a whole uint8 batch with the ops of
    ``impl``: "torchvision" (``TorchvisionOps``) or "authors" (``vbench.data.authors_augment.AuthorsOps``)."""

    def __init__(self, policy: str, img_size: int | tuple[int, int], impl: str = "torchvision"):
        height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
        torchvision = AutoAugment(AutoAugmentPolicy(policy))  # nearest interpolation, fill 0
        self.policies = torchvision._policies  # 25 sub-policies of two (op, probability, bin) each
        self.op_set = AuthorsOps(height, width) if impl == "authors" else TorchvisionOps(torchvision, height, width)
        self.ops: list[tuple[str, float]] = []  # distinct (op name, signed magnitude)
        # op_table[k, slot, negative] -> index into self.ops
        self.op_table = np.zeros((len(self.policies), 2, 2), dtype=np.int64)
        self.probabilities = np.zeros((len(self.policies), 2))
        for k, sub_policy in enumerate(self.policies):
            for slot, (name, probability, bin_index) in enumerate(sub_policy):
                magnitude, signed = self.op_set.magnitude(name, bin_index)
                self.probabilities[k, slot] = probability
                for negative in (0, 1):
                    key = (name, -magnitude if (negative and signed) else magnitude)
                    if key not in self.ops:
                        self.ops.append(key)
                    self.op_table[k, slot, negative] = self.ops.index(key)

    @property
    def num_sub_policies(self) -> int:
        return len(self.policies)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per image: the sub-policy drawn, and for each of its two ops the index into ``self.ops``
        of the (op, signed magnitude) to apply, or -1 when the op's probability says skip."""
        sub_policy = rng.integers(0, self.num_sub_policies, n)
        applies = rng.random((n, 2)) < self.probabilities[sub_policy]
        negative = rng.random((n, 2)) < 0.5
        op_ids = self.op_table[sub_policy[:, None], np.arange(2)[None, :], negative.astype(np.int64)]
        return sub_policy, np.where(applies, op_ids, -1)

    def apply_op(self, x: torch.Tensor, op_id: int) -> torch.Tensor:
        name, magnitude = self.ops[op_id]
        return self.op_set.apply(x, name, magnitude)

    def __call__(self, x: torch.Tensor, op_ids: np.ndarray) -> torch.Tensor:
        """Apply slot 0 then slot 1; within a slot, each group of images that drew the same
        (op, magnitude) goes through the op as one batched call."""
        for slot in range(op_ids.shape[1]):
            ids = op_ids[:, slot]
            active = np.flatnonzero(ids >= 0)
            if active.size == 0:
                continue
            active = active[np.argsort(ids[active], kind="stable")]
            sorted_ids = ids[active]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            ends = np.r_[starts[1:], sorted_ids.size]
            index = torch.from_numpy(active).to(x.device)
            grouped = x[index]
            for start, end in zip(starts.tolist(), ends.tolist()):
                grouped[start:end] = self.apply_op(grouped[start:end], int(sorted_ids[start]))
            x[index] = grouped
        return x


# ---------------------------------------------------------------------------------------------
# Per-batch mixing


@dataclass
class MixParams:
    mode: np.ndarray  # [steps] 0 none, 1 mixup, 2 cutmix
    lam: np.ndarray  # [steps] lambda drawn from the Beta distribution
    centre_y: np.ndarray  # [steps] CutMix box centre
    centre_x: np.ndarray
    partner: np.ndarray  # [steps, B] a random permutation of each batch


MIX_MODES = ("none", "mixup", "cutmix")


def sample_mixing(rng: np.random.Generator, steps: int, batch_size: int, img_h: int, img_w: int, recipe: Recipe) -> MixParams:
    """With ``mix_prob`` a mixing step; CutMix with ``switch_prob`` (when both alphas are on), else Mixup."""
    mixes = rng.random(steps) < recipe.mix_prob
    wants_cutmix = rng.random(steps) < recipe.switch_prob
    mixup_lam = rng.beta(recipe.mixup_alpha, recipe.mixup_alpha, steps) if recipe.mixup_alpha > 0 else np.ones(steps)
    cutmix_lam = rng.beta(recipe.cutmix_alpha, recipe.cutmix_alpha, steps) if recipe.cutmix_alpha > 0 else np.ones(steps)
    if recipe.mixup_alpha > 0 and recipe.cutmix_alpha > 0:
        is_cutmix = wants_cutmix
    else:
        is_cutmix = np.full(steps, recipe.cutmix_alpha > 0)
    mixes &= (recipe.mixup_alpha > 0) | (recipe.cutmix_alpha > 0)
    mode = np.where(mixes, np.where(is_cutmix, 2, 1), 0)
    return MixParams(
        mode=mode,
        lam=np.where(is_cutmix, cutmix_lam, mixup_lam),
        centre_y=rng.integers(0, img_h, steps),
        centre_x=rng.integers(0, img_w, steps),
        partner=np.argsort(rng.random((steps, batch_size)), axis=1),
    )


def cutmix_box(lam: float, centre_y: int, centre_x: int, img_h: int, img_w: int) -> tuple[int, int, int, int]:
    """CutMix's box: side sqrt(1 - lam) of the image around the centre, clipped to the image."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    y1, y2 = np.clip([centre_y - cut_h // 2, centre_y + cut_h // 2], 0, img_h)
    x1, x2 = np.clip([centre_x - cut_w // 2, centre_x + cut_w // 2], 0, img_w)
    return int(y1), int(y2), int(x1), int(x2)


def mix_batch(x: torch.Tensor, y: torch.Tensor, params: MixParams, step: int, inplace: bool = False) -> TrainBatch:
    """Mixup or CutMix of step ``step``; ``inplace``: ``x`` is the caller's to overwrite (a streamed batch), which
    spares a copy of the batch."""
    mode = MIX_MODES[int(params.mode[step])]
    if mode == "none":
        return TrainBatch(x=x, y_a=y, y_b=y, lam=1.0, mode=mode)
    partner = torch.from_numpy(params.partner[step]).to(x.device)
    lam = float(params.lam[step])
    if mode == "mixup":
        partners = x[partner]
        x = (x.mul_(lam) if inplace else x.mul(lam)).add_(partners, alpha=1.0 - lam)
    else:
        img_h, img_w = x.shape[-2:]
        y1, y2, x1, x2 = cutmix_box(lam, int(params.centre_y[step]), int(params.centre_x[step]), img_h, img_w)
        x = x if inplace else x.clone()
        x[:, :, y1:y2, x1:x2] = x[partner, :, y1:y2, x1:x2]
        lam = 1.0 - (y2 - y1) * (x2 - x1) / (img_h * img_w)
    return TrainBatch(x=x, y_a=y, y_b=y[partner], lam=lam, mode=mode)


# ---------------------------------------------------------------------------------------------


@dataclass
class EpochPlan:
    """Every random number of one epoch, drawn up front in a fixed order."""

    order: np.ndarray  # [steps*B] training-set index of every augmented image
    crop_flip: CropFlipParams
    op_ids: np.ndarray | None  # [steps*B, 2] AutoAugment op per slot, -1 none
    sub_policy: np.ndarray | None  # [steps*B]
    erasing: ErasingParams
    mixing: MixParams

    @classmethod
    def draw(cls, seed: int, epoch: int, num_train: int, recipe: Recipe, img_h: int, img_w: int,
             autoaugment: BatchedAutoAugment | None) -> "EpochPlan":
        rng = epoch_rng(seed, epoch)
        # order and mixing first: the reference pipeline draws those two and nothing else from here
        order = epoch_order(rng, num_train, recipe.repeats, recipe.batch_size, recipe.aug_repeats)
        n, steps = order.size, order.size // recipe.batch_size
        mixing = sample_mixing(rng, steps, recipe.batch_size, img_h, img_w, recipe)
        crop_flip = sample_crop_flip(rng, n, recipe.crop_padding, recipe.hflip)
        erasing = sample_erasing(rng, n, img_h, img_w, recipe)
        sub_policy, op_ids = autoaugment.sample(rng, n) if autoaugment else (None, None)
        return cls(order, crop_flip, op_ids, sub_policy, erasing, mixing)


@contextmanager
def intra_op_threads(threads: int | None):
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class BatchedPipeline:
    """The recipe of a suite as batched tensor ops on ``device``; see the module docstring."""

    def __init__(self, suite: Suite, device: torch.device | str = "cpu", chunk_images: int | None = None,
                 cpu_threads: int | None = 1):
        self.suite = suite
        self.recipe = suite.recipe
        self.device = torch.device(device)
        self.img_size = suite.img_size
        self.mean = torch.tensor(suite.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(suite.std, device=self.device).view(1, 3, 1, 1)
        policy, impl = self.recipe.autoaugment, self.recipe.augment_impl
        self.autoaugment = BatchedAutoAugment(policy, suite.img_size, impl) if policy != "none" else None
        # the authors' Random Erasing writes the raw dataset mean into the normalised tensor; torchvision's 0
        self.erasing_fill = torch.tensor(suite.mean, device=self.device) if impl == "authors" else None
        # Images are augmented a chunk of whole batches at a time: the per-op groups get larger and the
        # per-call overhead is paid once per chunk, not once per batch.
        pixels = suite.img_size * suite.img_size
        budget = (16384 if self.device.type == "cuda" else 2048) * 1024 // pixels
        self.chunk_batches = max(1, (chunk_images or budget) // self.recipe.batch_size)
        # On CPU the augmentation is many small ops (one per group of images); OpenMP's fork/join per op
        # costs more than a second thread gains, badly so on a busy machine (`vbench bench pipeline` times the
        # pipeline; README, "Benchmarks"). The setting is restored before each batch is yielded.
        self.cpu_threads = cpu_threads if self.device.type == "cpu" else None

    def steps_per_epoch(self, num_train: int) -> int:
        return self.recipe.repeats * num_train // self.recipe.batch_size

    def plan(self, num_train: int, seed: int, epoch: int) -> EpochPlan:
        return EpochPlan.draw(seed, epoch, num_train, self.recipe, self.img_size, self.img_size, self.autoaugment)

    def normalize(self, x_u8: torch.Tensor) -> torch.Tensor:
        return x_u8.to(self.device, non_blocking=True).float().div_(255.0).sub_(self.mean).div_(self.std)

    def augment(self, x_u8: torch.Tensor, plan: EpochPlan, positions: slice) -> torch.Tensor:
        """Per-image recipe for plan positions ``positions`` of images ``x_u8`` (already on the device):
        crop, flip, AutoAugment on uint8, then normalise and erase. Returns normalised floats."""
        as_tensor = lambda array: torch.from_numpy(np.ascontiguousarray(array[positions])).to(self.device)
        cf = plan.crop_flip
        x = crop_and_flip(x_u8, as_tensor(cf.dy), as_tensor(cf.dx), as_tensor(cf.flip), self.recipe.crop_padding)
        if self.autoaugment is not None:
            x = self.autoaugment(x, plan.op_ids[positions])
        x = self.normalize(x)
        er = plan.erasing
        return erase(x, *(as_tensor(a) for a in (er.top, er.left, er.height, er.width)), fill=self.erasing_fill)

    def train_batches(self, images_u8: torch.Tensor, labels: torch.Tensor, seed: int, epoch: int) -> Iterator[TrainBatch]:
        """Deterministic given (seed, epoch); ``images_u8`` [N,3,H,W] may live on any device."""
        plan = self.plan(len(images_u8), seed, epoch)
        batch_size = self.recipe.batch_size
        chunk = self.chunk_batches * batch_size
        for start in range(0, plan.order.size, chunk):
            positions = slice(start, min(start + chunk, plan.order.size))
            with intra_op_threads(self.cpu_threads):
                index = torch.from_numpy(plan.order[positions])
                x_u8 = images_u8[index.to(images_u8.device)].to(self.device, non_blocking=True)
                y = labels[index.to(labels.device)].to(self.device, non_blocking=True)
                x = self.augment(x_u8, plan, positions)
                first_step = start // batch_size
                batches = [
                    mix_batch(x[offset : offset + batch_size], y[offset : offset + batch_size], plan.mixing, first_step + k)
                    for k, offset in enumerate(range(0, len(x), batch_size))
                ]
            yield from batches

    def eval_batches(self, images_u8: torch.Tensor, labels: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Centre images, no augmentation, in order, ``eval_batch_size`` at a time."""
        size = self.recipe.eval_batch_size
        for start in range(0, len(images_u8), size):
            yield self.normalize(images_u8[start : start + size]), labels[start : start + size].to(self.device)
