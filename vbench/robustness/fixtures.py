"""Tiny corruption releases written in the exact on-disk formats, for tests (read by the real loaders).

- ``write_cifar_c``: ``<root>/CIFAR-10-C/<corruption>.npy`` (uint8 [5*N,32,32,3], severities in order)
  and ``labels.npy`` (uint8 [5*N]), or ``CIFAR-100-C`` for kind "cifar100";
- ``write_tiny_imagenet_c``: ``<root>/Tiny-ImageNet-C/<corruption>/<severity>/<wnid>/*.JPEG``.
Each returns what it wrote: ``{(corruption, severity): (images uint8 [N,3,H,W], labels int64 [N])}``.
- ``write_imagenet_test_sets``: ImageNet-C (with the archives' category folders), -A, -R, -Sketch and ImageNetV2
  in their release layouts, for the given wnids (A and R: only those among their 200 classes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vbench.robustness.corruptions import CORRUPTIONS, SEVERITIES
from vbench.robustness.datasets import RELEASE_FOLDERS

Written = dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]


def write_cifar_c(
    root: str | Path, kind: str = "cifar10", corruptions=CORRUPTIONS, per_severity: int = 6,
    num_classes: int | None = None, seed: int = 5,
) -> Written:
    """One ``<corruption>.npy`` per corruption and one ``labels.npy``, as the CIFAR-10-C archive holds them."""
    folder = Path(root) / RELEASE_FOLDERS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    num_classes = num_classes or (100 if kind == "cifar100" else 10)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, per_severity)
    np.save(folder / "labels.npy", np.tile(labels, len(SEVERITIES)).astype(np.uint8))
    written: Written = {}
    for name in corruptions:
        stacked = rng.integers(0, 256, (len(SEVERITIES) * per_severity, 32, 32, 3), dtype=np.uint8)
        np.save(folder / f"{name}.npy", stacked)
        for severity in SEVERITIES:
            part = stacked[(severity - 1) * per_severity : severity * per_severity]
            written[(name, severity)] = (part.transpose(0, 3, 1, 2).copy(), labels.astype(np.int64))
    return written


def write_tiny_imagenet_c(
    root: str | Path, wnids: list[str], corruptions=CORRUPTIONS, severities=SEVERITIES, per_class: int = 2,
    seed: int = 6,
) -> Written:
    """JPEGs under ``Tiny-ImageNet-C/<corruption>/<severity>/<wnid>/``; images are smooth so JPEG keeps
    them within a few levels. Labels number ``wnids`` in sorted order."""
    release = Path(root) / RELEASE_FOLDERS["tiny-imagenet"]
    rng = np.random.default_rng(seed)
    label_of = {wnid: i for i, wnid in enumerate(sorted(wnids))}
    written: Written = {}
    for name in corruptions:
        for severity in severities:
            images, labels = [], []
            for wnid in sorted(wnids):
                folder = release / name / str(severity) / wnid
                folder.mkdir(parents=True, exist_ok=True)
                for k in range(per_class):
                    picture = _smooth_picture(rng, 64)
                    Image.fromarray(picture).save(folder / f"{wnid}_{k}.JPEG", format="JPEG", quality=95, subsampling=0)
                    images.append(picture.transpose(2, 0, 1))
                    labels.append(label_of[wnid])
            written[(name, severity)] = (np.stack(images), np.array(labels, dtype=np.int64))
    return written


def _smooth_picture(rng: np.random.Generator, size: int) -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, size)
    start, slope = rng.uniform(20, 120, 3), rng.uniform(-40, 100, 3)
    picture = start + slope * (0.5 * ramp[:, None, None] + 0.5 * ramp[None, :, None])
    return np.clip(picture, 0, 255).round().astype(np.uint8)


C_CATEGORY = {"noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
              "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
              "weather": ("snow", "frost", "fog", "brightness"),
              "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression")}


def write_imagenet_test_sets(root: str | Path, wnids: list[str], per_class: int = 2, size: int = 48,
                             corruptions=("fog", "jpeg_compression"), severities=SEVERITIES, seed: int = 7) -> dict:
    """ImageNet's test sets under ``root``, a few JPEGs of ``size`` px per class of ``wnids``; returns
    ``{set folder: number of images written}``."""
    # lazy: the ImageNet helpers import the streaming stack, only for these fixtures
    from vbench.data.folders import imagenet_wnids
    from vbench.robustness.imagenet import TEST_SETS, set_synsets

    root, rng = Path(root), np.random.default_rng(seed)
    written: dict[str, int] = {}

    def save(folder: Path, suffix: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"image_{k}{suffix}", format="JPEG", quality=90)
        top = folder.relative_to(root).parts[0]
        written[top] = written.get(top, 0) + per_class

    for test_set in TEST_SETS:
        synsets = set_synsets(test_set)
        for wnid in wnids:
            if synsets is not None and wnid not in synsets:
                continue
            name = str(imagenet_wnids().index(wnid)) if test_set.layout == "index" else wnid
            save(root / test_set.folders[0] / name, ".jpeg" if test_set.layout == "index" else ".JPEG")
    for name in corruptions:
        category = next(c for c, names in C_CATEGORY.items() if name in names)
        for severity in severities:
            for wnid in wnids:
                save(root / "ImageNet-C" / category / name / str(severity) / wnid, ".JPEG")
    return written
