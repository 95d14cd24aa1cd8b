"""The recipe as the paper's code ran it: PIL transforms per image in DataLoader workers.

``--pipeline reference`` uses this to compare the batched pipeline against on equal terms: the same
epoch order (three shuffled passes, drop_last) and the same per-batch Mixup/CutMix draws as
``BatchedPipeline`` (both come from the (seed, epoch) generator), with per-image transforms:
RandomCrop(padding), RandomHorizontalFlip, AutoAugment (PIL), ToTensor, Normalize, Random Erasing.
AutoAugment and Random Erasing follow the recipe's ``augment_impl``: "authors" runs the authors' own
PIL ops and erasing class as ``vbench.data.authors_augment`` defines them (their trainer's pipeline, and
the check for the batched version); "torchvision" runs torchvision's AutoAugment and RandomErasing
(value 0, i.e. the dataset mean after normalisation).

Per-image randomness comes from torch's generator in each worker, which the DataLoader seeds from its
own generator seeded from (seed, epoch): deterministic for a given ``num_workers``. With
``num_workers=0`` the transforms draw from the global torch generator, which is re-seeded from
(seed, epoch) at the start of each epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from vbench.data.augment import EpochPlan, TrainBatch, epoch_rng, mix_batch
from vbench.data.authors_augment import AuthorsAutoAugment, AuthorsRandomErasing

if TYPE_CHECKING:  # a suite is passed in: data sits below the suite loader
    from vbench.suites import Suite


class _PILImages(Dataset):
    """uint8 [N,3,H,W] tensors served as PIL images through a transform, as torchvision's CIFAR10 does."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images_u8.permute(0, 2, 3, 1).contiguous().numpy()  # N,H,W,C for PIL
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


class ReferencePipeline:
    """Same three methods as ``BatchedPipeline``, built from per-image PIL transforms and a DataLoader."""

    def __init__(self, suite: Suite, device: torch.device | str = "cpu", num_workers: int = 4):
        self.suite = suite
        self.recipe = recipe = suite.recipe
        self.device = torch.device(device)
        self.num_workers = num_workers
        authors = recipe.augment_impl == "authors"
        areas = (recipe.erasing_min_area, recipe.erasing_max_area)
        per_image = [T.RandomCrop(suite.img_size, padding=recipe.crop_padding), T.RandomHorizontalFlip(recipe.hflip)]
        if recipe.autoaugment != "none":
            policy = recipe.autoaugment
            per_image.append(AuthorsAutoAugment(policy) if authors else T.AutoAugment(T.AutoAugmentPolicy(policy)))
        if authors:
            erasing = AuthorsRandomErasing(recipe.erasing_prob, *areas, recipe.erasing_aspect, fill=suite.mean)
        else:
            ratio = (recipe.erasing_aspect, 1.0 / recipe.erasing_aspect)
            erasing = T.RandomErasing(p=recipe.erasing_prob, scale=areas, ratio=ratio, value=0)
        per_image += [T.ToTensor(), T.Normalize(suite.mean, suite.std), erasing]
        self.train_transform = T.Compose(per_image)
        self.eval_transform = T.Compose([T.ToTensor(), T.Normalize(suite.mean, suite.std)])

    def steps_per_epoch(self, num_train: int) -> int:
        return self.recipe.repeats * num_train // self.recipe.batch_size

    def _loader(self, dataset: Dataset, batches, seed: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(seed),
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def train_batches(self, images_u8: torch.Tensor, labels: torch.Tensor, seed: int, epoch: int) -> Iterator[TrainBatch]:
        plan = EpochPlan.draw(seed, epoch, len(images_u8), self.recipe, self.suite.img_size, self.suite.img_size, None)
        batch_size = self.recipe.batch_size
        batches = plan.order.reshape(-1, batch_size).tolist()
        worker_seed = int(epoch_rng(seed, epoch, stream=1).integers(0, 2**62))
        if self.num_workers == 0:
            torch.manual_seed(worker_seed)
        dataset = _PILImages(images_u8.cpu(), labels.cpu(), self.train_transform)
        for step, (x, y) in enumerate(self._loader(dataset, batches, worker_seed)):
            x = x.to(self.device, non_blocking=True)
            yield mix_batch(x, y.to(self.device, non_blocking=True), plan.mixing, step)

    def eval_batches(self, images_u8: torch.Tensor, labels: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        size = self.recipe.eval_batch_size
        batches = [list(range(start, min(start + size, len(images_u8)))) for start in range(0, len(images_u8), size)]
        dataset = _PILImages(images_u8.cpu(), labels.cpu(), self.eval_transform)
        for x, y in self._loader(dataset, batches, 0):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
