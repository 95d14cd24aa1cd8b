"""CIFAR-10, CIFAR-100 and SVHN through torchvision's dataset classes.

torchvision compares every file against the official release's md5 before it reads anything, which
rejects re-packed copies and test fixtures. Without ``--download`` we therefore use subclasses whose
checksum entries are ``None`` (torchvision's ``check_integrity`` then only asks that the file exists)
and check structure instead, as the files are decoded: they unpickle / load, hold the expected keys
and shapes, and the labels are in range. With ``--download`` torchvision's own classes run unchanged,
so a download is verified against the release checksums.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100, SVHN

from vbench.errors import VbenchError

_DISPLAY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN"}


def _without_checksums(cls):
    """``cls`` with the release md5 entries replaced by None: files must exist, content is checked by us."""
    attrs: dict = {"__doc__": f"{cls.__name__} that checks structure instead of the release checksums."}
    if hasattr(cls, "train_list"):
        attrs["train_list"] = [[name, None] for name, _ in cls.train_list]
        attrs["test_list"] = [[name, None] for name, _ in cls.test_list]
        attrs["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):
        attrs["split_list"] = {split: [url, name, None] for split, (url, name, _) in cls.split_list.items()}
    return type(f"Unchecked{cls.__name__}", (cls,), attrs)


_CLASSES = {"cifar10": CIFAR10, "cifar100": CIFAR100, "svhn": SVHN}
_UNCHECKED = {kind: _without_checksums(cls) for kind, cls in _CLASSES.items()}


def source_files(kind: str, root: Path, split: str) -> list[Path]:
    """The files a split is decoded from (the CIFAR meta file included)."""
    cls = _CLASSES[kind]
    if kind == "svhn":
        return [root / cls.split_list[split][1]]
    folder = root / cls.base_folder
    names = cls.train_list if split == "train" else cls.test_list
    return [folder / name for name, _ in names] + [folder / cls.meta["filename"]]


def all_files(kind: str, root: Path) -> list[Path]:
    """Every file torchvision asks for before it loads either split."""
    cls = _CLASSES[kind]
    if kind == "svhn":
        return sorted({*source_files(kind, root, "train"), *source_files(kind, root, "test")})
    folder = root / cls.base_folder
    return [folder / name for name, _ in cls.train_list + cls.test_list] + [folder / cls.meta["filename"]]


def missing_message(kind: str, root: Path, missing: Path) -> str:
    where = root / _CLASSES[kind].base_folder if kind != "svhn" else root
    return (
        f"{_DISPLAY[kind]} not found: {missing} does not exist (looked in {where}); "
        f"pass --download to fetch it with torchvision, or --data-root DIR for where it already is"
    )


def download(kind: str, root: Path, split: str) -> None:
    """torchvision's download, verified against the release checksums."""
    root.mkdir(parents=True, exist_ok=True)
    cls = _CLASSES[kind]
    try:
        if kind == "svhn":
            cls(str(root), split=split, download=True)
        else:
            cls(str(root), train=(split == "train"), download=True)
    except (OSError, RuntimeError) as exc:
        raise VbenchError(f"could not download {_DISPLAY[kind]} into {root}: {exc}") from None


def decode(kind: str, root: Path, split: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N,3,32,32] and labels int64 [N]; a file that does not decode is named in the error."""
    cls = _UNCHECKED[kind]
    try:
        if kind == "svhn":
            dataset = cls(str(root), split=split)
            images = np.ascontiguousarray(dataset.data)  # already N,C,H,W
            labels = np.asarray(dataset.labels)
        else:
            dataset = cls(str(root), train=(split == "train"))
            images = np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2))  # N,H,W,C -> N,C,H,W
            labels = np.asarray(dataset.targets)
    except Exception as exc:  # noqa: BLE001 - any failure to decode means a broken file; find which
        bad, problem = _first_bad_file(kind, root, split) or (source_files(kind, root, split)[0], str(exc))
        raise VbenchError(f"corrupt {_DISPLAY[kind]} file {bad}: {problem}; delete it and pass --download, or replace it") from None
    problem = _shape_problem(images, labels, num_classes)
    if problem:
        bad, file_problem = _first_bad_file(kind, root, split) or (source_files(kind, root, split)[0], problem)
        raise VbenchError(f"corrupt {_DISPLAY[kind]} file {bad}: {file_problem}; delete it and pass --download, or replace it")
    return torch.from_numpy(images.astype(np.uint8, copy=False)), torch.from_numpy(labels.astype(np.int64))


def _shape_problem(images: np.ndarray, labels: np.ndarray, num_classes: int) -> str | None:
    if images.ndim != 4 or images.shape[1:] != (3, 32, 32):
        return f"images have shape {images.shape[1:]}, expected (3, 32, 32)"
    if images.dtype != np.uint8:
        return f"images are {images.dtype}, expected uint8"
    if labels.shape != (images.shape[0],):
        return f"{labels.shape[0] if labels.ndim else 0} labels for {images.shape[0]} images"
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        return f"labels span {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}"
    return None


def _first_bad_file(kind: str, root: Path, split: str) -> tuple[Path, str] | None:
    """The first source file of the split that does not hold what it should, with the reason."""
    num_classes = 100 if kind == "cifar100" else 10
    for path in source_files(kind, root, split):
        try:
            problem = _svhn_problem(path) if kind == "svhn" else _cifar_problem(kind, path, num_classes)
        except Exception as exc:  # noqa: BLE001
            problem = f"does not load ({type(exc).__name__}: {exc})"
        if problem:
            return path, problem
    return None


def _cifar_problem(kind: str, path: Path, num_classes: int) -> str | None:
    with open(path, "rb") as handle:
        entry = pickle.load(handle, encoding="latin1")
    if not isinstance(entry, dict):
        return f"holds a {type(entry).__name__}, expected a dict"
    if path.name == _CLASSES[kind].meta["filename"]:
        key = _CLASSES[kind].meta["key"]
        return None if key in entry else f"has no key {key!r}"
    label_key = "fine_labels" if kind == "cifar100" else "labels"
    for key in ("data", label_key):
        if key not in entry:
            return f"has no key {key!r} (keys: {', '.join(map(str, entry))})"
    data, labels = np.asarray(entry["data"]), np.asarray(entry[label_key])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        return f"'data' has shape {data.shape}, expected (N, 3072)"
    return _shape_problem(data.reshape(-1, 3, 32, 32), labels, num_classes)


def _svhn_problem(path: Path) -> str | None:
    # lazy: keeps `vbench --help` and `vbench list` fast
    import scipy.io

    mat = scipy.io.loadmat(str(path))
    for key in ("X", "y"):
        if key not in mat:
            return f"has no variable {key!r}"
    images, labels = mat["X"], mat["y"].reshape(-1)
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        return f"'X' has shape {images.shape}, expected (32, 32, 3, N)"
    if labels.size != images.shape[3]:
        return f"{labels.size} labels for {images.shape[3]} images"
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        return f"labels span {labels.min()}..{labels.max()}, expected 1..10 (10 is the digit 0)"
    return None
