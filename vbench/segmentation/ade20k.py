"""ADE20K (SceneParsing / ``ADEChallengeData2016``) with mmsegmentation's 512x512 pipelines.

Layout on disk (the official release, unzipped)::

    ADEChallengeData2016/images/{training,validation}/*.jpg
    ADEChallengeData2016/annotations/{training,validation}/*.png   (values 0..150, 0 = "other")

Labels use the reduce-zero-label convention: 0 becomes the ignore label 255, every other label
minus one, so the 150 classes are 0..149.

The transforms follow mmseg's ``configs/_base_/datasets/ade20k.py`` step by step (RandomResize,
RandomCrop with ``cat_max_ratio``, RandomFlip, PhotoMetricDistortion, normalise, pad) with the
same random draws, in numpy + Pillow: mmseg's versions need mmcv and OpenCV, neither of which is
installable next to this torch (see ``vbench.segmentation.heads``). Two known differences:
Pillow's bilinear resize antialiases when shrinking (OpenCV's does not), and the hue/saturation
steps go through Pillow's 8-bit HSV (hue 0-255) instead of OpenCV's (hue 0-179); the hue shift is
converted between the two scales.

Every random draw comes from a ``numpy.random.Generator`` seeded per sample by the sampler, so
the batches are the same for any number of loader workers and can be replayed from any iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vbench.errors import VbenchError

IGNORE_INDEX = 255
NUM_CLASSES = 150
RELEASE_DIR = "ADEChallengeData2016"
RELEASE_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation",
          "test": "validation"}
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair",
    "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box",
    "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet",
    "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower",
    "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle",
    "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower",
    "radiator", "glass", "clock", "flag",
)


def _how_to_get(where: Path) -> str:
    return (f"vbench cannot download ADE20K (--download does not cover it): get {RELEASE_URL}, "
            f"unzip it so that {where / RELEASE_DIR} exists, or point --data-root at the folder holding it")


def find_release_root(data_root: str | Path, root: str | None = RELEASE_DIR) -> Path:
    """The ``ADEChallengeData2016`` folder under ``data_root`` (or ``data_root`` itself)."""
    data_root = Path(data_root).expanduser()
    candidates = [data_root / root] if root else []
    candidates.append(data_root)
    for candidate in candidates:
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise VbenchError(f"ADE20K not found: {candidates[0]} has no images/ and annotations/ folders; "
                      + _how_to_get(data_root))


def list_pairs(release_root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, annotation) paths of a split, sorted by file name; any gap is a VbenchError."""
    folder = SPLITS.get(split)
    if folder is None:
        raise VbenchError(f"unknown ADE20K split {split!r}; use one of {sorted(set(SPLITS))}")
    image_dir, label_dir = release_root / "images" / folder, release_root / "annotations" / folder
    for needed in (image_dir, label_dir):
        if not needed.is_dir():
            raise VbenchError(f"ADE20K is incomplete: {needed} is missing; " + _how_to_get(release_root.parent))
    images = sorted(image_dir.glob("*.jpg"))
    if not images:
        raise VbenchError(f"ADE20K is incomplete: no .jpg images in {image_dir}; " + _how_to_get(release_root.parent))
    pairs = [(image, label_dir / f"{image.stem}.png") for image in images]
    missing = [label for _, label in pairs if not label.is_file()]
    if missing:
        raise VbenchError(f"ADE20K is incomplete: {len(missing)} annotation(s) missing, first {missing[0]}; "
                          "re-extract the release")
    return pairs


def load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise VbenchError(f"cannot read ADE20K image {path} ({exc}); re-extract the release") from None


def load_label(path: Path, reduce_zero_label: bool = True) -> np.ndarray:
    """A uint8 class map with the ignore label 255 (reduce-zero-label applied when asked)."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise VbenchError(f"ADE20K annotation {path} is a {image.mode} image; it must be a "
                                  "single-channel PNG of class indices 0-150")
            label = np.array(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise VbenchError(f"cannot read ADE20K annotation {path} ({exc}); re-extract the release") from None
    if int(label.max(initial=0)) > NUM_CLASSES:
        raise VbenchError(f"ADE20K annotation {path} holds class {int(label.max())} > {NUM_CLASSES}; "
                          "it is not an ADEChallengeData2016 annotation")
    if reduce_zero_label:
        label = label.astype(np.int16) - 1
        label[label < 0] = IGNORE_INDEX
        label = label.astype(np.uint8)
    return label


@dataclass(frozen=True)
class PipelineConfig:
    """mmseg's ADE20K 512x512 settings; ``crop_size`` is (h, w), ``scale`` is (long, short)."""

    crop_size: tuple[int, int] = (512, 512)
    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    hflip: float = 0.5
    photometric: bool = True
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    reduce_zero_label: bool = True


def rescale_size(width: int, height: int, scale: tuple[float, float]) -> tuple[int, int]:
    """mmcv ``rescale_size`` with keep_ratio: fit the long edge in max(scale), the short in min(scale)."""
    factor = min(max(scale) / max(width, height), min(scale) / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def random_crop_box(label: np.ndarray, crop: tuple[int, int], cat_max_ratio: float,
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """mmseg ``RandomCrop.crop_bbox``: up to 10 re-draws until no class fills ``cat_max_ratio``."""

    def draw() -> tuple[int, int, int, int]:
        top = int(rng.integers(0, max(label.shape[0] - crop[0], 0) + 1))
        left = int(rng.integers(0, max(label.shape[1] - crop[1], 0) + 1))
        return top, top + crop[0], left, left + crop[1]

    box = draw()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            # np.unique's counts without the ignore label, by bincount (20x faster at 512x512: AMD EPYC, NumPy 2.4,
            # December 2026)
            counts = np.bincount(label[box[0]:box[1], box[2]:box[3]].ravel(), minlength=256)
            counts[IGNORE_INDEX] = 0
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            box = draw()
    return box


def _scale_values(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator, brightness_delta: int = 32,
                           contrast: tuple[float, float] = (0.5, 1.5),
                           saturation: tuple[float, float] = (0.5, 1.5), hue_delta: int = 18) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion`` on an RGB uint8 array (same draws, same order)."""

    def coin() -> bool:
        return bool(rng.integers(2))

    def adjust_contrast(img: np.ndarray) -> np.ndarray:
        return _scale_values(img, alpha=rng.uniform(*contrast)) if coin() else img

    if coin():
        image = _scale_values(image, beta=rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = bool(rng.integers(2))
    if contrast_first:
        image = adjust_contrast(image)
    if coin():
        hsv = np.array(Image.fromarray(image).convert("HSV"))
        hsv[..., 1] = _scale_values(hsv[..., 1], alpha=rng.uniform(*saturation))
        image = np.array(Image.fromarray(hsv, "HSV").convert("RGB"))
    if coin():
        shift = int(rng.integers(-hue_delta, hue_delta))   # OpenCV hue units (0-179), as mmseg draws it
        hsv = np.array(Image.fromarray(image).convert("HSV"))
        hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(shift * 256 / 180)) % 256
        image = np.array(Image.fromarray(hsv, "HSV").convert("RGB"))
    if not contrast_first:
        image = adjust_contrast(image)
    return image


def normalise(image: np.ndarray, config: PipelineConfig) -> torch.Tensor:
    array = (image.astype(np.float32) - np.array(config.mean, np.float32)) / np.array(config.std, np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def train_transform(image: Image.Image, label: np.ndarray, config: PipelineConfig,
                    rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """RandomResize -> RandomCrop(cat_max_ratio) -> RandomFlip -> PhotoMetricDistortion -> normalise -> pad."""
    ratio = rng.random() * (config.ratio_range[1] - config.ratio_range[0]) + config.ratio_range[0]
    target_scale = (int(config.scale[0] * ratio), int(config.scale[1] * ratio))
    size = rescale_size(image.width, image.height, target_scale)
    image = image.resize(size, Image.BILINEAR)
    label = np.array(Image.fromarray(label).resize(size, Image.NEAREST))

    top, bottom, left, right = random_crop_box(label, config.crop_size, config.cat_max_ratio, rng)
    pixels = np.asarray(image)[top:bottom, left:right]
    label = label[top:bottom, left:right]
    if rng.random() < config.hflip:
        pixels, label = pixels[:, ::-1], label[:, ::-1]
    if config.photometric:
        pixels = photometric_distortion(np.ascontiguousarray(pixels), rng)

    crop_h, crop_w = config.crop_size
    image_tensor = torch.zeros(3, crop_h, crop_w)            # pad value 0 after normalisation, as mmseg
    label_tensor = torch.full((crop_h, crop_w), IGNORE_INDEX, dtype=torch.long)
    image_tensor[:, :pixels.shape[0], :pixels.shape[1]] = normalise(pixels, config)
    label_tensor[:label.shape[0], :label.shape[1]] = torch.from_numpy(label.astype(np.int64))
    return image_tensor, label_tensor


def eval_transform(image: Image.Image, label: np.ndarray, config: PipelineConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize the image to ``scale`` keeping its ratio; the label keeps the original size."""
    image = image.resize(rescale_size(image.width, image.height, config.scale), Image.BILINEAR)
    return normalise(np.asarray(image), config), torch.from_numpy(label.astype(np.int64))


class ADE20K(torch.utils.data.Dataset):
    """One split of ``ADEChallengeData2016``.

    ``train=True``: items are addressed by ``(index, sample_seed)`` (see :class:`InfiniteSampler`)
    and go through the training pipeline; ``train=False``: items are addressed by index and go
    through the evaluation pipeline (label at the original size).
    """

    def __init__(self, data_root: str | Path, split: str, config: PipelineConfig = PipelineConfig(),
                 train: bool | None = None, root: str | None = RELEASE_DIR):
        self.release_root = find_release_root(data_root, root)
        self.split = SPLITS.get(split, split)
        self.pairs = list_pairs(self.release_root, split)
        self.config = config
        self.train = self.split == "training" if train is None else train

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[Image.Image, np.ndarray]:
        image_path, label_path = self.pairs[index]
        image, label = load_image(image_path), load_label(label_path, self.config.reduce_zero_label)
        if (image.height, image.width) != label.shape:
            raise VbenchError(f"ADE20K annotation {label_path} is {label.shape[1]}x{label.shape[0]} but its "
                              f"image is {image.width}x{image.height}; re-extract the release")
        return image, label

    def __getitem__(self, key):
        if self.train:
            index, sample_seed = key if isinstance(key, tuple) else (key, key)
            image, label = self.load(index)
            return train_transform(image, label, self.config, np.random.default_rng(sample_seed))
        image, label = self.load(key)
        return eval_transform(image, label, self.config)


class InfiniteSampler(torch.utils.data.Sampler):
    """mmengine's InfiniteSampler (shuffled passes, back to back) yielding ``(index, sample_seed)``.

    Pass ``p`` is ``permutation(n)`` of a generator seeded ``(seed, p)``; the sample at stream
    position ``k`` gets seed ``(seed, k)``. ``start`` skips the first ``start`` positions, so a run
    resumed at iteration ``i`` with batch ``b`` passes ``start = i * b`` and sees the same samples.
    """

    def __init__(self, size: int, seed: int = 0, start: int = 0):
        self.size, self.seed, self.start = size, seed, start

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int]]]:
        position = self.start
        while True:
            epoch, offset = divmod(position, self.size)
            order = np.random.default_rng((self.seed, epoch)).permutation(self.size)
            for index in order[offset:]:
                yield int(index), np.random.SeedSequence((self.seed, position)).generate_state(2).tolist()
                position += 1


def collate_eval(batch):
    """Evaluation items differ in size: keep them as lists."""
    images, labels = zip(*batch)
    return list(images), list(labels)


def write_ade20k_fixture(root: str | Path, n_train: int = 4, n_val: int = 2, size: int | tuple[int, int] = 48,
                         seed: int = 0) -> Path:
    """Write a tiny ``ADEChallengeData2016`` tree (real formats) under ``root``; returns the release folder.

    Each label map is a few rectangles of random classes in 0..150 (0 included, so the ignore label
    appears); the image colours each class with its own RGB value plus noise, so a model can learn it.
    Odd images are transposed so that both orientations meet the keep-ratio resize.
    """
    rng = np.random.default_rng(seed)
    height, width = (size, size) if isinstance(size, int) else size
    release = Path(root) / RELEASE_DIR
    palette = rng.integers(0, 256, size=(NUM_CLASSES + 1, 3))
    for folder, count, prefix in (("training", n_train, "ADE_train"), ("validation", n_val, "ADE_val")):
        (release / "images" / folder).mkdir(parents=True, exist_ok=True)
        (release / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        for number in range(1, count + 1):
            h, w = (height, width) if number % 2 else (width, height)
            label = np.full((h, w), rng.integers(0, NUM_CLASSES + 1), dtype=np.uint8)
            for _ in range(4):
                top, left = rng.integers(0, h - 1), rng.integers(0, w - 1)
                label[top:top + rng.integers(2, h), left:left + rng.integers(2, w)] = rng.integers(0, NUM_CLASSES + 1)
            label[0, 0], label[-1, -1] = 0, NUM_CLASSES
            image = np.clip(palette[label] + rng.normal(0, 8, size=(h, w, 3)), 0, 255).astype(np.uint8)
            name = f"{prefix}_{number:08d}"
            Image.fromarray(image).save(release / "images" / folder / f"{name}.jpg", quality=95)
            Image.fromarray(label, "L").save(release / "annotations" / folder / f"{name}.png")
    return release
