"""Dataset loading: every split of every suite becomes one uint8 tensor [N,3,H,W] and int64 labels.

Each split is decoded once into a tensor cache file, keyed by dataset kind, split, image size and a
fingerprint (names, sizes and modification times) of its source files, under
``<data root>/.vbench-cache/`` or ``cache_dir``; later runs load it in a second or two.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vbench.data import folders, torchvision_sets
from vbench.data.digits import load_digits_split
from vbench.data.smoke import generate_smoke
from vbench.errors import VbenchError
from vbench.paths import atomic_path, default_data_root
from vbench.store.files import load_torch

if TYPE_CHECKING:  # the suite is passed in; data sits below the suite loader
    from vbench.suites import Suite

SPLITS = ("train", "test")
CACHE_FORMAT = 1  # bump when the decoded tensors change meaning
CACHE_FOLDER = ".vbench-cache"
_TORCHVISION_KINDS = ("cifar10", "cifar100", "svhn")
_FILE_KINDS = folders.FILE_KINDS
GENERATED_KINDS = ("smoke", "digits")
_progress_console = Console(stderr=True)

__all__ = ["load_split", "load_dataset", "Dataset", "SPLITS", "generate_smoke"]


@dataclass
class Dataset:
    """Both splits of a classification suite, and the data's identity (part of every run's key)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    root: str | None
    fingerprints: dict[str, str]
    limit: int | None = None

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_images), "test": len(self.test_images)}

    @property
    def identity(self) -> str:
        """A short hash of the fingerprints, the split sizes and the limit."""
        text = json.dumps({"fingerprints": self.fingerprints, "sizes": self.sizes, "limit": self.limit}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {"root": self.root, "sizes": self.sizes, "fingerprints": self.fingerprints, "limit": self.limit}


def load_dataset(suite: Suite, data_root: str | Path | None = None, download: bool = False,
                 limit: int | None = None) -> Dataset:
    """Both splits; ``limit`` keeps the first ``limit`` images of each (a quick debug run). Every split is found
    and checked before any is decoded or cached, so bad data writes nothing."""
    listings = {split: _listing(suite, split, data_root, download) for split in SPLITS}
    train = _load(suite, "train", data_root, listing=listings["train"])
    test = _load(suite, "test", data_root, listing=listings["test"])
    keep = slice(None) if limit is None else slice(0, limit)
    root = None if suite.kind in GENERATED_KINDS else str(_root(suite, data_root))
    return Dataset(train[0][keep], train[1][keep], test[0][keep], test[1][keep], root,
                   {"train": train[2], "test": test[2]}, limit)


def load_split(
    suite: Suite,
    split: str,
    data_root: str | Path | None = None,
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N,3,H,W] on CPU, labels int64 [N]) of ``split`` ("train" or "test").

    The data is looked for under ``data_root``, else the suite's ``root``, else ``default_data_root()``.
    ``download`` fetches a missing dataset (torchvision's downloads, checked against the release md5).
    Missing data or a corrupt file is one ``VbenchError`` naming the path.
    """
    images, labels, _ = _load(suite, split, data_root, download, cache_dir)
    return images, labels


def _root(suite: Suite, data_root) -> Path:
    return Path(data_root or suite.root or default_data_root()).expanduser()


def _content_fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Listing:
    """Where a split's images are: the files its fingerprint covers, and the image files with their labels (None
    for the releases torchvision decodes)."""

    root: Path
    sources: list
    paths: list | None = None
    labels: list | None = None


def _listing(suite: Suite, split: str, data_root=None, download: bool = False) -> Listing | None:
    """The split's files, found and checked (downloaded first with ``download``); None for the kinds generated
    or bundled in memory."""
    if split not in SPLITS:
        raise VbenchError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if suite.kind in GENERATED_KINDS:
        return None
    if suite.kind not in _TORCHVISION_KINDS + _FILE_KINDS:
        raise VbenchError(f"suite {suite.name!r}: no loader for dataset kind {suite.kind!r}")
    if suite.kind in _TORCHVISION_KINDS and suite.img_size != 32:
        raise VbenchError(f"suite {suite.name!r}: {suite.kind} images are 32x32, the suite says img_size = {suite.img_size}")
    root = _root(suite, data_root)
    if download:
        _download(suite, root, split)
    if suite.kind in _TORCHVISION_KINDS:
        for path in torchvision_sets.all_files(suite.kind, root):
            if not path.is_file():
                raise VbenchError(torchvision_sets.missing_message(suite.kind, root, path))
        return Listing(root, torchvision_sets.source_files(suite.kind, root, split))
    paths, file_labels = folders.split_files(suite.kind, root, split, suite.num_classes, suite.classes)
    return Listing(root, paths, paths, file_labels)


def _load(suite: Suite, split: str, data_root=None, download: bool = False,
          cache_dir=None, listing: Listing | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images, labels, fingerprint of the source files) of one split."""
    if split not in SPLITS:
        raise VbenchError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    images, labels, fingerprint = _images_and_labels(suite, split, data_root, download, cache_dir, listing)
    check_labels(suite, split, labels)
    return images, labels, fingerprint


def _images_and_labels(suite: Suite, split: str, data_root, download: bool, cache_dir,
                       listing: Listing | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    if suite.kind == "smoke":
        images, labels = generate_smoke(split, img_size=suite.img_size)
        return images, labels, _content_fingerprint(images, labels)
    if suite.kind == "digits":  # bundled with scikit-learn, loads in milliseconds: no cache
        if suite.img_size != 8:
            raise VbenchError(f"suite {suite.name!r}: digits images are 8x8, the suite says img_size = {suite.img_size}")
        images, labels = load_digits_split(split)
        return images, labels, _content_fingerprint(images, labels)
    listing = listing or _listing(suite, split, data_root, download)
    fingerprint = source_fingerprint(listing.sources, listing.root)
    cache_file = _cache_path(suite, split, listing.root, fingerprint, cache_dir)
    cached = read_cache(cache_file)
    if cached is not None:
        return (*cached, fingerprint)
    if listing.paths is None:
        images, labels = torchvision_sets.decode(suite.kind, listing.root, split, suite.num_classes)
    else:
        images = _decode_with_progress(listing.paths, suite.img_size, f"decoding {suite.name} {split}")
        labels = torch.tensor(listing.labels, dtype=torch.int64)
    check_labels(suite, split, labels)  # before a cache of a mislabelled split is written
    write_cache(cache_file, images, labels)
    return images, labels, fingerprint


def check_labels(suite: Suite, split: str, labels: torch.Tensor) -> None:
    """Every label a class of the suite: 0 <= label < num_classes, for every kind of data."""
    if not labels.numel():
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= suite.num_classes:
        raise VbenchError(f"suite {suite.name!r}: its {split} split holds label {low if low < 0 else high}, but the "
                          f"suite says num_classes = {suite.num_classes}; set num_classes to the data's classes "
                          f"({high + 1} or more)")


def _download(suite: Suite, root: Path, split: str) -> None:
    if suite.kind in _TORCHVISION_KINDS:
        torchvision_sets.download(suite.kind, root, split)
    elif suite.kind == "tiny-imagenet":
        folders.download_tiny_imagenet(root)
    elif suite.kind == "imagenet":
        raise VbenchError(f"--download does not apply to ImageNet (image-net.org hands it out after a sign-up); put "
                          f"train/<wnid>/ and val/<wnid>/ (or shards) under {root}")
    else:
        raise VbenchError(f"--download does not apply to an image folder ({root}); put the images there yourself")


def _decode_with_progress(paths: list[Path], img_size: int, label: str) -> torch.Tensor:
    if len(paths) < 5000:
        return folders.decode_images(paths, img_size)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_progress_console, transient=True) as progress:
        task = progress.add_task(label, total=len(paths))
        return folders.decode_images(paths, img_size, progress=lambda: progress.advance(task))


def source_fingerprint(files: list[Path], root: Path) -> str:
    """sha256 over (relative name, size, mtime) of every source file: a changed, added or removed
    file gives a new cache key, while re-reading the contents is never needed."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        try:
            name = str(path.relative_to(root))
        except ValueError:
            name = str(path)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _cache_path(suite: Suite, split: str, root: Path, fingerprint: str, cache_dir) -> Path:
    folder = Path(cache_dir).expanduser() if cache_dir else root / CACHE_FOLDER
    return folder / f"{suite.kind}-{split}-{suite.img_size}px-v{CACHE_FORMAT}-{fingerprint}.pt"


def read_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not path.is_file():
        return None
    try:
        blob = load_torch(path)
        images, labels = blob["images"], blob["labels"]
    except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt, never trusted
        return None
    if images.dtype != torch.uint8 or labels.dtype != torch.int64 or len(images) != len(labels):
        return None
    return images, labels


def write_cache(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Atomic; a read-only data root (or a full disk) just means no cache."""
    try:
        with atomic_path(path) as temporary:
            torch.save({"images": images, "labels": labels}, temporary)
    except (OSError, VbenchError) as exc:
        _progress_console.print(f"[yellow]note:[/yellow] could not write the dataset cache {path}: {exc}")
