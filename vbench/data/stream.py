"""Streamed classification data: images decoded by DataLoader workers as training goes, never a whole split in
memory, so the memory a run takes does not grow with the data.

A split is a list of units, each read start to end by one worker: a webdataset shard (``vbench.data.shards``) or
one image file of a folder. Workers decode (PIL) and transform each image and hand whole batches to the training
process, which finishes them there (normalise, batched augmentation, Mixup/CutMix) on the training device.

Training, per (seed, epoch): the units are shuffled by a generator seeded from (seed, epoch) alone, pass after
pass as the epoch needs (``repeats`` passes, or more when images are skipped), and dealt round-robin to the
``world_size x workers`` readers, rank-major: reader ``s`` reads units ``s``, ``s + R``, ``s + 2R``, ... of that
endless shuffled sequence. Each reader draws every image ``aug_repeats`` times in a row (timm's repeated
augmentation) and passes them through a shuffle buffer of ``SHUFFLE_BUFFER`` images seeded from (seed, epoch,
reader); a rank's workers make its ``steps`` batches between them (worker ``w`` the batches ``w``, ``w + W``, ...:
the order in which the DataLoader hands them on), so every rank takes the same number of steps. The same seed,
epoch, world size and worker count give the same batches: a run resumed at an epoch boundary sees what an
uninterrupted one would.

Evaluation reads unit ``i`` on rank ``i % world_size``, in worker ``(i // world_size) % workers``: every test
image exactly once over all ranks; each batch carries the images' indices, so the task puts the ranks' results
back in the split's order.

A corrupt image (one PIL cannot decode) is skipped and reported with the batch that follows it, by name, so the
training process counts the distinct images it lost. A missing or truncated shard, or one that does not match its
manifest, ends the run with one line naming it.

Per image in the workers or batched after decode: for the paper's recipe both exist (``pipeline`` "reference":
the per-image PIL transforms of ``vbench.data.reference_pipeline`` in the workers; "batched": the workers only
decode, ``vbench.data.augment.BatchedPipeline`` augments the batch); ``vbench bench data`` measures them and
"batched", the faster, is the default. timm's recipe (``augment_impl = "timm"``) runs timm's ImageNet transform
per image in the workers, as timm's loader does with its prefetcher: RandomResizedCrop, flip and
AutoAugment/RandAugment on the PIL image, uint8 out, then normalisation and Random Erasing on the batch.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch
from PIL import Image, ImageOps
from timm.data.random_erasing import RandomErasing
from timm.data.transforms_factory import transforms_imagenet_eval, transforms_imagenet_train
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vbench.data.augment import (
    BatchedPipeline,
    EpochPlan,
    TrainBatch,
    epoch_rng,
    intra_op_threads,
    mix_batch,
    sample_mixing,
)
from vbench.data.reference_pipeline import ReferencePipeline
from vbench.data.shards import Manifest, read_shard
from vbench.errors import VbenchError

if TYPE_CHECKING:  # a suite is passed in: data sits below the suite loader
    from vbench.suites import Suite

SHUFFLE_BUFFER = 1024  # images per reader (their encoded bytes, or paths): ~110 MB of ImageNet JPEGs
WORKERS_ENV = "VBENCH_DATA_WORKERS"
MAX_WORKERS = 8
PIPELINES = ("batched", "reference")


# --- units and splits --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """What one reader reads start to end: a shard, or one image file."""

    name: str  # the shard's or the image's path
    count: int  # images it holds (those read, under --limit)
    shard: bool
    label: int = -1  # an image file's label
    index: int = -1  # an image file's index in its split
    whole: bool = True  # False: only its first ``count`` images are read (--limit)


@dataclass
class StreamSplit:
    name: str  # train | test
    units: list[Unit]
    num_classes: int

    @property
    def count(self) -> int:
        return sum(unit.count for unit in self.units)


def shard_split(manifest: Manifest, split: str, limit: int | None = None) -> StreamSplit:
    """The shards of a split (its first ``limit`` images with ``limit``)."""
    units, left = [], limit
    for shard in manifest.splits[split].shards:
        if left is not None and left <= 0:
            break
        count = shard.count if left is None else min(shard.count, left)
        units.append(Unit(str(manifest.path(shard)), count, shard=True, whole=count == shard.count))
        left = None if left is None else left - count
    return StreamSplit(split, units, len(manifest.classes))


def file_split(split: str, paths: list[Path], labels: list[int], num_classes: int, limit: int | None = None) -> StreamSplit:
    """Image files as a split (its first ``limit`` files with ``limit``)."""
    keep = len(paths) if limit is None else min(limit, len(paths))
    return StreamSplit(split, [Unit(str(path), 1, shard=False, label=label, index=i)
                               for i, (path, label) in enumerate(zip(paths[:keep], labels[:keep]))], num_classes)


@dataclass(frozen=True)
class Raw:
    """An image not yet decoded: its index in the split, label, encoded bytes (or file path) and name."""

    index: int
    label: int
    payload: bytes | str
    name: str


def read_unit(unit: Unit, num_classes: int) -> Iterator[Raw]:
    if not unit.shard:
        yield Raw(unit.index, unit.label, unit.name, unit.name)
        return
    images = read_shard(Path(unit.name), num_classes, expected=unit.count if unit.whole else None)
    for n, (index, label, data, name) in enumerate(images):
        if n == unit.count:
            images.close()
            return
        yield Raw(index, label, data, name)


class CorruptImage(Exception):
    """An image that does not decode: skipped and counted."""


def decode(raw: Raw) -> Image.Image:
    """The image as RGB (grayscale, palette and RGBA images converted, as the in-memory loader does)."""
    try:
        image = Image.open(io.BytesIO(raw.payload) if isinstance(raw.payload, bytes) else raw.payload)
        image.load()  # reads the whole image (and closes a file Pillow opened), so that a corrupt one fails here
        return image if image.mode == "RGB" else image.convert("RGB")
    except FileNotFoundError:
        raise VbenchError(f"missing image {raw.name} (listed by the dataset but not on disk)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImage(f"{raw.name}: {exc}") from None


# --- per-image transforms, run in the workers -----------------------------------------------------------------
class SquareImage:
    """The in-memory splits' decode (``vbench.data.folders``): resized to img_size x img_size (bilinear, PIL's
    antialiasing), then uint8 [3,H,W], or through ``then`` (a PIL transform of the reference pipeline)."""

    def __init__(self, img_size: int, then: Callable | None = None):
        self.img_size, self.then = img_size, then

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.size != (self.img_size, self.img_size):
            image = image.resize((self.img_size, self.img_size), Image.Resampling.BILINEAR)
        if self.then is not None:
            return self.then(image)
        return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def timm_train_transform(suite: Suite) -> Callable:
    """timm's ImageNet training transform with the recipe's values, uint8 out (its prefetcher's form)."""
    recipe = suite.recipe
    return pillow_safe_posterize(transforms_imagenet_train(
        suite.img_size, scale=tuple(recipe.crop_scale), ratio=tuple(recipe.crop_ratio), hflip=recipe.hflip,
        auto_augment=None if recipe.autoaugment == "none" else recipe.autoaugment, interpolation=recipe.interpolation,
        mean=tuple(suite.mean), std=tuple(suite.std), use_prefetcher=True))


def _posterize(image: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize with 0 bits meaning what it did before Pillow refused it: every pixel 0."""
    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return Image.new(image.mode, image.size)
    return ImageOps.posterize(image, bits_to_keep)


def pillow_safe_posterize(transform):
    """``transform`` with the Posterize ops of its timm AutoAugment/RandAugment replaced by ``_posterize``: timm's
    ``rand-...-mstd`` draws magnitudes up to 10, where its increasing posterize keeps 0 bits, and Pillow 13 raises
    on 0 bits (an error in a DataLoader worker that ends the run, about one image in a thousand), so the op is
    patched on the transform's own op objects, timm itself left as it is."""
    for step in getattr(transform, "transforms", [transform]):
        ops = list(getattr(step, "ops", [])) + [op for sub in getattr(step, "policy", []) for op in sub]
        for op in ops:
            if getattr(op, "name", "").startswith("Posterize"):
                op.aug_fn = _posterize
    return transform


def timm_eval_transform(suite: Suite) -> Callable:
    """timm's evaluation: resize the short side to img_size / crop_pct, centre crop img_size; uint8 out."""
    return transforms_imagenet_eval(suite.img_size, crop_pct=suite.recipe.eval_crop_pct,
                                    interpolation=suite.recipe.interpolation, use_prefetcher=True)


# --- which reader reads what ------------------------------------------------------------------------------
def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([p % 2**63 for p in parts]).generate_state(1, dtype=np.uint64)[0] % 2**63)


@dataclass(frozen=True)
class TrainOrder:
    seed: int
    epoch: int
    rank: int
    world_size: int
    steps: int  # batches of this rank
    aug_repeats: int = 1
    buffer: int = SHUFFLE_BUFFER

    def batches(self, worker: int, workers: int) -> int:
        return self.steps // workers + (worker < self.steps % workers)

    def worker_seed(self, worker: int) -> int:
        return _seed(self.seed, self.epoch, self.rank, worker, 0x57E)

    def raws(self, split: StreamSplit, worker: int, workers: int, batch_size: int = 1) -> Iterator[Raw]:
        """This reader's images pass after pass, endlessly (the batches stop it): each pass's through the shuffle
        buffer, which is emptied at the end of the pass, so that (as in memory) a pass hands out every image of the
        reader's share once before the next pass begins. The buffer holds at most what the reader hands out in the
        epoch."""
        reader, readers = self.rank * workers + worker, self.world_size * workers
        rng = np.random.default_rng(self.worker_seed(worker))
        size = max(1, min(self.buffer, self.batches(worker, workers) * batch_size))
        for units in self._passes(len(split.units), reader, readers):
            yield from _shuffled(self._repeated(split, units), size, rng)

    def _passes(self, count: int, reader: int, readers: int) -> Iterator[list[int]]:
        """Per pass, the units this reader reads: positions ``reader``, ``reader + readers``, ... of the endless
        sequence of passes, each pass a permutation seeded from (seed, epoch, pass); passes where the reader's
        position falls in no unit (fewer units than readers) are skipped."""
        number = 0
        while True:
            order = np.random.default_rng(_seed(self.seed, self.epoch, number, 0x0DE)).permutation(count)
            first = (reader - number * count) % readers  # this reader's first position inside the pass
            if first < count:
                yield [int(order[i]) for i in range(first, count, readers)]
            number += 1

    def _repeated(self, split: StreamSplit, units: list[int]) -> Iterator[Raw]:
        for unit in units:
            for raw in read_unit(split.units[unit], split.num_classes):
                for _ in range(self.aug_repeats):
                    yield raw


def _shuffled(items: Iterator[Raw], size: int, rng: np.random.Generator) -> Iterator[Raw]:
    """webdataset's shuffle buffer: fill it, then hand out a random one and put the next in its place."""
    buffer: list[Raw] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        pick = int(rng.integers(size))
        yield buffer[pick]
        buffer[pick] = item
    rng.shuffle(buffer)
    yield from buffer


@dataclass(frozen=True)
class EvalOrder:
    rank: int = 0
    world_size: int = 1
    aug_repeats: int = 1  # every image once

    def batches(self, worker: int, workers: int) -> int | None:
        return None  # every image, then the last partial batch

    def worker_seed(self, worker: int) -> int:
        return _seed(self.rank, worker, 0xE7A1)

    def raws(self, split: StreamSplit, worker: int, workers: int, batch_size: int = 1) -> Iterator[Raw]:
        for i, unit in enumerate(split.units):
            if i % self.world_size == self.rank and (i // self.world_size) % workers == worker:
                yield from read_unit(unit, split.num_classes)


# --- the dataset the workers iterate -------------------------------------------------------------------------
class StreamDataset(IterableDataset):
    """Batches of one rank: dicts of ``x`` (stacked transformed images), ``labels`` ([2, B]: the labels and the images'
    indices in the split) and ``skipped`` (names of the corrupt images met since the last batch); ``{"error": line}``
    ends the stream."""

    def __init__(self, split: StreamSplit, transform: Callable, batch_size: int, order: TrainOrder | EvalOrder):
        self.split, self.transform, self.batch_size, self.order = split, transform, batch_size, order

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        state = _rng_state(self.order.worker_seed(worker))
        batches = self._batches(worker, workers)
        if info is not None:  # a worker process: its generators are its own
            _set_rng(state)
        try:
            while True:
                if info is None:  # in the training process: its own generators, the caller's left as they were
                    with _swapped_rng(state):
                        item = next(batches, None)
                else:
                    item = next(batches, None)
                if item is None:
                    return
                yield item
        except VbenchError as exc:
            yield {"error": str(exc)}

    def _batches(self, worker: int, workers: int) -> Iterator[dict]:
        quota = self.order.batches(worker, workers)
        if quota == 0:
            return
        xs, ys, indices, skipped, made, failures = [], [], [], [], 0, 0
        for raw in self.order.raws(self.split, worker, workers, self.batch_size):
            try:
                x = self.transform(decode(raw))
            except CorruptImage:
                skipped.append(raw.name)
                failures += 1
                if failures > max(self.split.count, 1) * self.order.aug_repeats:
                    raise VbenchError(f"no image of the {self.split.name} split decodes ({raw.name} and the others "
                                      "before it are corrupt)") from None
                continue
            failures = 0
            xs.append(x)
            ys.append(raw.label)
            indices.append(raw.index)
            if len(xs) == self.batch_size:
                yield _batch(xs, ys, indices, skipped)
                xs, ys, indices, skipped, made = [], [], [], [], made + 1
                if made == quota:
                    return
        if xs or skipped:
            yield _batch(xs, ys, indices, skipped)


def _batch(xs: list, ys: list, indices: list, skipped: list) -> dict:
    # labels and indices in one tensor: each tensor a worker hands over costs a shared-memory segment
    return {"x": torch.stack(xs) if xs else None, "labels": torch.tensor([ys, indices], dtype=torch.int64).view(2, -1),
            "skipped": list(skipped)}


def _rng_state(seed: int) -> dict:
    """The generators timm's and torchvision's per-image transforms draw from (Python's, NumPy's global and
    torch's), seeded for one reader."""
    return {"python": random.Random(seed).getstate(), "numpy": np.random.RandomState(seed % 2**32).get_state(),
            "torch": torch.Generator().manual_seed(seed).get_state()}


def _set_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


@contextmanager
def _swapped_rng(state: dict):
    """Run a block on the reader's generators and keep where they got to, the caller's restored afterwards."""
    saved = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    try:
        yield
    finally:
        state.update(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
        random.setstate(saved["python"])
        np.random.set_state(saved["numpy"])
        torch.set_rng_state(saved["torch"])


# --- the training process's side -----------------------------------------------------------------------------
def default_workers(world_size: int = 1) -> int:
    """DataLoader workers per process: ``$VBENCH_DATA_WORKERS``, else the CPUs this process may use shared among
    the processes of a distributed run, at most 8."""
    text = os.environ.get(WORKERS_ENV)
    if text is not None:
        try:
            workers = int(text)
        except ValueError:
            workers = -1
        if workers < 0:
            raise VbenchError(f"{WORKERS_ENV} must be a number of DataLoader workers (0 or more), got {text!r}")
        return workers
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_WORKERS, cpus // max(world_size, 1)))


def process_group() -> tuple[int, int]:
    """(rank, world size) of torch.distributed's process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Streamer:
    """A suite's streamed splits as the classification task uses them: ``train_batches(seed, epoch)`` (mixed
    ``TrainBatch``es of this rank's share of each global batch) and ``eval_batches()`` (this rank's share of
    the test split with the images' indices). ``skipped`` holds the names of the corrupt images met."""

    def __init__(self, train: StreamSplit, test: StreamSplit, suite: Suite, device: torch.device,
                 pipeline: str = "batched", workers: int | None = None, rank: int | None = None,
                 world_size: int | None = None):
        if pipeline not in PIPELINES:
            raise VbenchError(f"unknown pipeline {pipeline!r}; choose batched or reference")
        group = process_group()
        self.rank = group[0] if rank is None else rank
        self.world_size = group[1] if world_size is None else world_size
        self.train, self.test, self.suite, self.recipe = train, test, suite, suite.recipe
        self.device = torch.device(device)
        self.workers = default_workers(self.world_size) if workers is None else workers
        self.pipeline = pipeline
        self.timm = self.recipe.augment_impl == "timm"
        self.mean = 255.0 * torch.tensor(suite.mean, device=self.device).view(1, 3, 1, 1)  # on the 0-255 scale
        self.std = 255.0 * torch.tensor(suite.std, device=self.device).view(1, 3, 1, 1)
        self.skipped: dict[str, set[str]] = {"train": set(), "test": set()}
        self.local_batch = self.recipe.batch_size // self.world_size
        if self.timm:
            self.train_transform, self.eval_transform = timm_train_transform(suite), timm_eval_transform(suite)
        elif pipeline == "reference":
            self.train_transform = SquareImage(suite.img_size, ReferencePipeline(suite, self.device).train_transform)
            self.eval_transform = SquareImage(suite.img_size)
        else:
            local = dataclasses.replace(self.recipe, batch_size=self.local_batch, repeats=1, aug_repeats=1)
            self.batched = BatchedPipeline(dataclasses.replace(suite, recipe=local), self.device)
            self.train_transform, self.eval_transform = SquareImage(suite.img_size), SquareImage(suite.img_size)

    # the schedule -----------------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return self.recipe.repeats * self.train.count // self.recipe.batch_size

    def _plan_seed(self, seed: int) -> int:
        """The (seed, epoch) plan of rank 0 is a single process's; other ranks draw their own."""
        return seed if self.rank == 0 else _seed(seed, self.rank, 0x9A7)

    # batches ---------------------------------------------------------------------------------------------
    def train_batches(self, seed: int, epoch: int) -> Iterator[TrainBatch]:
        steps = self.steps_per_epoch()
        order = TrainOrder(seed, epoch, self.rank, self.world_size, steps, self.recipe.aug_repeats)
        dataset = StreamDataset(self.train, self.train_transform, self.local_batch, order)
        size = self.suite.img_size
        plan = None
        if not self.timm and self.pipeline == "batched":
            plan = self.batched.plan(steps * self.local_batch, self._plan_seed(seed), epoch)
            mixing = plan.mixing
        else:
            rng = epoch_rng(self._plan_seed(seed), epoch, stream=3)
            mixing = sample_mixing(rng, steps, self.local_batch, size, size, self.recipe)
        erasing = _ErasingState(self.recipe, self.device, _seed(seed, epoch, self.rank, 0xE2A)) if self.timm else None
        made = 0
        for item in self._items(dataset, "train"):
            x, y = item["x"].to(self.device, non_blocking=True), item["labels"][0].to(self.device, non_blocking=True)
            x = self._finish(x, plan, made, erasing)
            yield mix_batch(x, y, mixing, made, inplace=True)  # x is this batch's own tensor
            made += 1
        if made != steps:
            raise VbenchError(f"the {self.train.name} stream gave {made} batches, {steps} were due")

    def _finish(self, x: torch.Tensor, plan: EpochPlan | None, step: int, erasing) -> torch.Tensor:
        if plan is not None:  # the paper's recipe, batched on the device
            positions = slice(step * self.local_batch, (step + 1) * self.local_batch)
            with intra_op_threads(self.batched.cpu_threads):  # one thread: see BatchedPipeline
                return self.batched.augment(x, plan, positions)
        if erasing is not None:  # timm: normalise and erase the batch, as timm's prefetcher does
            return erasing(self.normalize(x))
        return x  # per image in the workers: normalised and erased there

    def normalize(self, x_u8: torch.Tensor) -> torch.Tensor:
        return x_u8.float().sub_(self.mean).div_(self.std)

    def eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        stream = EvalStream(self.test, self.eval_transform, self.recipe.eval_batch_size, self.device, self.suite.mean,
                            self.suite.std, self.workers, self.rank, self.world_size, skipped=self.skipped["test"])
        yield from stream

    def _items(self, dataset: StreamDataset, split: str) -> Iterator[dict]:
        return stream_items(dataset, self.workers, self.device, self.skipped[split])

    def skipped_counts(self) -> dict[str, int]:
        return {split: len(names) for split, names in self.skipped.items()}


def stream_items(dataset: StreamDataset, workers: int, device: torch.device, skipped: set[str]) -> Iterator[dict]:
    """The dataset's batches through a DataLoader of ``workers`` processes; corrupt images' names go to ``skipped``,
    a worker's error is raised here as one line."""
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    for item in loader:
        if "error" in item:
            raise VbenchError(item["error"])
        skipped.update(item["skipped"])
        if item["x"] is not None:
            yield item


class EvalStream:
    """A split read once over all ranks (this rank's share): batches of (normalised x, labels, the images' indices
    in the split); the corrupt images met are named in ``skipped``. Also reads ImageNet's test sets
    (``vbench.robustness.imagenet``) with a transform of their own."""

    def __init__(self, split: StreamSplit, transform: Callable, batch_size: int, device: torch.device, mean, std,
                 workers: int | None = None, rank: int = 0, world_size: int = 1, skipped: set[str] | None = None):
        self.split, self.transform, self.batch_size, self.device = split, transform, batch_size, torch.device(device)
        self.workers = default_workers(world_size) if workers is None else workers
        self.rank, self.world_size = rank, world_size
        self.mean = 255.0 * torch.tensor(mean, device=self.device).view(1, 3, 1, 1)  # on the 0-255 scale
        self.std = 255.0 * torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.skipped = set() if skipped is None else skipped

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        dataset = StreamDataset(self.split, self.transform, self.batch_size, EvalOrder(self.rank, self.world_size))
        for item in stream_items(dataset, self.workers, self.device, self.skipped):
            x = item["x"].to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
            yield x, item["labels"][0].to(self.device, non_blocking=True), item["labels"][1]


class _ErasingState:
    """timm's Random Erasing on the normalised batch (mode "pixel": normal noise), drawing from its own generators."""

    def __init__(self, recipe, device: torch.device, seed: int):
        self.erase = RandomErasing(recipe.erasing_prob, min_area=recipe.erasing_min_area,
                                   max_area=recipe.erasing_max_area, min_aspect=recipe.erasing_aspect,
                                   mode="pixel", device=str(device))
        self.state = _rng_state(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.erase.probability <= 0:
            return x
        with _swapped_rng(self.state):
            return self.erase(x)
