"""Datasets stored as image files: the Tiny-ImageNet release layout and plain image folders.

Tiny-ImageNet has no torchvision class; its validation labels sit in ``val/val_annotations.txt`` rather
than in class folders, so the file lists are built here. Image folders reuse torchvision's
``find_classes``/``make_dataset``. Decoding is PIL's, in a thread pool (PIL releases the GIL while
it decodes); grayscale and palette images become RGB; images of another size are resized to the
suite's size (bilinear, antialiased) so that every split is one [N,3,H,W] tensor.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data import ImageNetInfo
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.datasets.utils import download_and_extract_archive

from vbench.errors import VbenchError

TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
TINY_IMAGENET_LAYOUT = (
    "tiny-imagenet-200/ with wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
    "val/images/*.JPEG and val/val_annotations.txt"
)


# ---------------------------------------------------------------------------------------------
# Tiny-ImageNet


def tiny_imagenet_dir(root: Path) -> Path:
    """``root/tiny-imagenet-200`` or ``root`` itself when it already is that folder."""
    return root if (root / "wnids.txt").is_file() else root / TINY_IMAGENET_FOLDER


def tiny_imagenet_files(root: Path, split: str, num_classes: int) -> tuple[list[Path], list[int]]:
    """Image paths and labels of a split; label = index of the wnid in sorted order (as ImageFolder
    over ``train/`` numbers them). The test split is the labelled validation set."""
    base = tiny_imagenet_dir(root)
    wnids_file = base / "wnids.txt"
    if not wnids_file.is_file():
        raise VbenchError(
            f"Tiny-ImageNet not found: {wnids_file} does not exist; expected the release layout "
            f"{TINY_IMAGENET_LAYOUT} under --data-root (pass --download to fetch it)"
        )
    wnids = sorted({line.strip() for line in wnids_file.read_text().splitlines() if line.strip()})
    if len(wnids) != num_classes:
        raise VbenchError(f"{wnids_file} lists {len(wnids)} classes, the suite expects {num_classes}")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    paths: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for wnid in wnids:
            folder = base / "train" / wnid / "images"
            if not folder.is_dir():
                raise VbenchError(f"Tiny-ImageNet is incomplete: {folder} does not exist; expected {TINY_IMAGENET_LAYOUT}")
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
            paths += files
            labels += [index[wnid]] * len(files)
    else:
        annotations = base / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise VbenchError(f"Tiny-ImageNet is incomplete: {annotations} does not exist; expected {TINY_IMAGENET_LAYOUT}")
        for number, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise VbenchError(f"corrupt Tiny-ImageNet file {annotations}: line {number} is not 'file<TAB>wnid<TAB>box' with a known wnid")
            paths.append(base / "val" / "images" / fields[0])
            labels.append(index[fields[1]])
    if not paths:
        raise VbenchError(f"Tiny-ImageNet {split} split under {base} holds no images; expected {TINY_IMAGENET_LAYOUT}")
    return paths, labels


def download_tiny_imagenet(root: Path) -> None:
    if (tiny_imagenet_dir(root) / "wnids.txt").is_file():
        return
    try:
        download_and_extract_archive(TINY_IMAGENET_URL, str(root), md5=TINY_IMAGENET_MD5)
    except (OSError, RuntimeError) as exc:
        raise VbenchError(f"could not download Tiny-ImageNet into {root}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Image folders: root/train/<class>/*, root/val/<class>/* (or root/test/<class>/*)


def image_folder_split_dir(root: Path, split: str) -> Path:
    if split == "train":
        return root / "train"
    for name in ("val", "test"):
        if (root / name).is_dir():
            return root / name
    return root / "val"


def image_folder_files(root: Path, split: str, num_classes: int,
                       keep: list[str] | None = None) -> tuple[list[Path], list[int]]:
    """Class names come from ``train/`` (sorted, as torchvision's ImageFolder numbers them); ``keep``: only
    these class folders (ImageNet-100 out of ImageNet), every one of which must be there."""
    train_dir = root / "train"
    split_dir = image_folder_split_dir(root, split)
    for folder in (train_dir, split_dir):
        if not folder.is_dir():
            raise VbenchError(
                f"image folder not found: {folder} does not exist; expected {root}/train/<class>/* and "
                f"{root}/val/<class>/* (or test/); set 'root' in the suite file or pass --data-root"
            )
    classes, class_to_idx = folder_classes(train_dir, keep)
    if len(classes) != num_classes:
        raise VbenchError(f"image folder {train_dir} has {len(classes)} classes, the suite says num_classes = {num_classes}")
    if split != "train" and keep is None:
        extra = sorted(set(find_classes(str(split_dir))[0]) - set(classes))
        if extra:
            raise VbenchError(f"image folder {split_dir} has classes that {train_dir} lacks: {', '.join(extra[:5])}")
    try:
        samples = make_dataset(str(split_dir), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=split != "train")
    except FileNotFoundError as exc:
        raise VbenchError(f"image folder {split_dir}: {exc}".replace("\n", " ")) from None
    if not samples:
        raise VbenchError(f"image folder {split_dir} holds no images ({', '.join(IMG_EXTENSIONS)})")
    return [Path(path) for path, _ in samples], [label for _, label in samples]


def folder_classes(train_dir: Path, keep: list[str] | None = None) -> tuple[list[str], dict[str, int]]:
    """The class folders of ``train_dir`` (sorted), or of them the ``keep`` list, numbered in sorted order."""
    try:
        classes, class_to_idx = find_classes(str(train_dir))
    except FileNotFoundError:
        raise VbenchError(f"image folder {train_dir} has no class folders; expected {train_dir}/<class>/*") from None
    if keep is None:
        return classes, class_to_idx
    missing = sorted(set(keep) - set(classes))
    if missing:
        raise VbenchError(f"image folder {train_dir} lacks {len(missing)} of the suite's {len(set(keep))} classes "
                          f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    kept = sorted(set(keep))
    return kept, {name: i for i, name in enumerate(kept)}


def read_class_list(path: str | Path) -> list[str]:
    """A suite's ``classes`` file: one class folder name a line (``#`` comments and blank lines skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise VbenchError(f"cannot read the class list {path}: {exc}") from None
    names = [line.split("#")[0].strip() for line in lines]
    names = [name for name in names if name]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if not names or repeated:
        raise VbenchError(f"class list {path} " + (f"repeats {', '.join(repeated[:3])}" if repeated else "lists no class"))
    return names


# ---------------------------------------------------------------------------------------------
# ImageNet (ILSVRC-2012): root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG, the layout of the usual valprep
# script; root is the data root itself or its imagenet/ folder

IMAGENET_FOLDER = "imagenet"
FILE_KINDS = ("tiny-imagenet", "image-folder", "imagenet")  # datasets stored as image files, one a file


def imagenet_wnids() -> list[str]:
    """ImageNet-1k's 1000 WordNet ids in sorted order, the labels' order (timm's copy of the list)."""
    return sorted(ImageNetInfo().label_names())


def imagenet_dir(root: Path) -> Path:
    return root if (root / "train").is_dir() or not (root / IMAGENET_FOLDER).is_dir() else root / IMAGENET_FOLDER


def split_files(kind: str, root: Path, split: str, num_classes: int,
                classes_file: str | None = None) -> tuple[list[Path], list[int]]:
    """Image paths and labels of a split of a dataset stored as files (tiny-imagenet, image-folder, imagenet)."""
    keep = read_class_list(classes_file) if classes_file else None
    if kind == "tiny-imagenet":
        return tiny_imagenet_files(root, split, num_classes)
    return image_folder_files(imagenet_dir(root) if kind == "imagenet" else root, split, num_classes, keep)


def split_classes(kind: str, root: Path, classes_file: str | None = None) -> list[str]:
    """The class names of a dataset stored as files, in label order."""
    if kind == "tiny-imagenet":
        wnids_file = tiny_imagenet_dir(root) / "wnids.txt"
        return sorted({line.strip() for line in wnids_file.read_text().splitlines() if line.strip()})
    folder = (imagenet_dir(root) if kind == "imagenet" else root) / "train"
    return folder_classes(folder, read_class_list(classes_file) if classes_file else None)[0]


# ---------------------------------------------------------------------------------------------


def decode_images(paths: list[Path], img_size: int, progress=None) -> torch.Tensor:
    """uint8 [N,3,img_size,img_size]; an image that does not decode is named in the error."""
    out = np.empty((len(paths), img_size, img_size, 3), dtype=np.uint8)

    def decode_one(i: int) -> None:
        out[i] = _read_rgb(paths[i], img_size)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for _ in pool.map(decode_one, range(len(paths)), chunksize=256):
            if progress is not None:
                progress()
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _read_rgb(path: Path, img_size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")  # grayscale, palette and RGBA images become RGB
            if image.size != (img_size, img_size):
                image = image.resize((img_size, img_size), Image.Resampling.BILINEAR)
            return np.asarray(image)
    except FileNotFoundError:
        raise VbenchError(f"missing image {path} (listed by the dataset but not on disk)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise VbenchError(f"corrupt image file {path}: {exc}; replace or delete it") from None
