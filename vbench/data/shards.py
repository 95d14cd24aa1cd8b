"""webdataset shards of a classification dataset, with a manifest that says what they hold.

``write_shards`` turns any split vbench reads (an image folder, the Tiny-ImageNet or ImageNet release layouts, or
a suite of any kind) into POSIX tar shards in webdataset's layout: per image a ``<key>.jpg`` (or ``.png`` /
``.webp``: the source file's bytes, unchanged; images that come as arrays, CIFAR's and SVHN's, are written as PNG)
and a ``<key>.cls`` holding the label as decimal text. The key is the image's index in its split's source order,
so a test split read back in key order is the in-memory split's order. The training split is written in a
seeded shuffled order (a streamed epoch reads whole shards through a bounded shuffle buffer, so each shard must
already mix the classes); the test split in source order. Shards hold ``shard_size`` images each.

``manifest.json`` beside them: the class names, per split the image count, the count per class and per shard
its file name, image count, size in bytes and sha256, and an identity (a hash over all of that) that becomes
the data identity of every run streamed from the folder. ``check_shards`` verifies the files against it.
The folder is written under a temporary name and renamed into place when complete, manifest last.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
from PIL import Image
from webdataset import TarWriter
from webdataset.tariterators import group_by_keys, tar_file_iterator

from vbench.data import folders, load_split, source_fingerprint
from vbench.errors import VbenchError
from vbench.paths import atomic_write, creatable, default_data_root

if TYPE_CHECKING:  # a suite is passed in: data sits below the suite loader
    from vbench.suites import Suite

MANIFEST = "manifest.json"
FORMAT = "vbench-shards"
VERSION = 1
SPLITS = ("train", "test")
DEFAULT_SHARD_SIZE = 5000  # ~0.5 GB of ImageNet JPEGs: large sequential reads, a few hundred shards for ImageNet
IMAGE_FIELDS = ("jpg", "png", "webp")
KEPT_SUFFIXES = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}
WRITE_ORDER_SEED = 0


@dataclass(frozen=True)
class ShardInfo:
    name: str  # file name inside the folder
    count: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SplitInfo:
    count: int
    per_class: list[int]
    shards: list[ShardInfo]


@dataclass
class Manifest:
    folder: Path
    classes: list[str]
    splits: dict[str, SplitInfo]
    identity: str
    source: dict = field(default_factory=dict)

    def path(self, shard: ShardInfo) -> Path:
        return self.folder / shard.name


@dataclass(frozen=True)
class SourceImage:
    """One image to write: its index in the split's source order, its label and where its bytes come from."""

    index: int
    label: int
    path: Path | None = None  # a file, copied as it is
    pixels: np.ndarray | None = None  # uint8 [3,H,W], written as PNG

    def payload(self) -> tuple[str, bytes]:
        if self.path is not None:
            suffix = KEPT_SUFFIXES.get(self.path.suffix.lower())
            if suffix is not None:
                return suffix, self.path.read_bytes()
            return "png", _png(_pil_rgb(self.path))
        return "png", _png(self.pixels.transpose(1, 2, 0))


@dataclass
class SourceSplits:
    """What ``write_shards`` reads: class names and both splits' images."""

    classes: list[str]
    splits: dict[str, list[SourceImage]]
    description: dict


# --- what to write -----------------------------------------------------------------------------------
def suite_sources(suite: Suite, data_root: str | Path | None = None) -> SourceSplits:
    """Both splits of a suite: the files of a dataset stored as files, else its decoded images (as PNG)."""
    if suite.task != "classification":
        raise VbenchError(f"suite {suite.name!r} is a {suite.task} suite; shards hold classification splits")
    root = Path(data_root or suite.root or "").expanduser() if (data_root or suite.root) else None
    if is_shard_folder(root):
        raise VbenchError(f"{root} already holds shards; point `vbench data shards` at the images they came from")
    if suite.kind in folders.FILE_KINDS:
        root = root or default_data_root()
        splits = {split: _file_images(*folders.split_files(suite.kind, root, split, suite.num_classes, suite.classes))
                  for split in SPLITS}
        classes = folders.split_classes(suite.kind, root, suite.classes)
        description = {"suite": suite.name, "kind": suite.kind, "root": str(root), "fingerprint": {
            split: source_fingerprint([image.path for image in images], root) for split, images in splits.items()}}
        return SourceSplits(classes, splits, description)
    splits = {}
    for split in SPLITS:
        images, labels = load_split(suite, split, data_root)
        splits[split] = [SourceImage(i, int(label), pixels=image.numpy()) for i, (image, label) in enumerate(zip(images, labels))]
    return SourceSplits([str(i) for i in range(suite.num_classes)], splits, {"suite": suite.name, "kind": suite.kind})


def folder_sources(folder: Path) -> SourceSplits:
    """An image folder given by path: the Tiny-ImageNet release layout, or train/<class>/ and val|test/<class>/."""
    folder = Path(folder).expanduser().resolve()
    kind = "tiny-imagenet" if (folders.tiny_imagenet_dir(folder) / "wnids.txt").is_file() else "image-folder"
    classes = folders.split_classes(kind, folder)
    splits = {split: _file_images(*folders.split_files(kind, folder, split, len(classes))) for split in SPLITS}
    fingerprint = {split: source_fingerprint([image.path for image in images], folder) for split, images in splits.items()}
    return SourceSplits(classes, splits, {"folder": str(folder), "kind": kind, "fingerprint": fingerprint})


def _file_images(paths: list[Path], labels: list[int]) -> list[SourceImage]:
    return [SourceImage(i, label, path=path) for i, (path, label) in enumerate(zip(paths, labels))]


# --- reading the manifest ---------------------------------------------------------------------------
def is_shard_folder(folder: Path | str | None) -> bool:
    return folder is not None and (Path(folder).expanduser() / MANIFEST).is_file()


def read_manifest(folder: Path | str) -> Manifest:
    """The manifest of a shard folder; a missing or malformed one is one line naming the file."""
    folder = Path(folder).expanduser()
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise VbenchError(f"{folder} holds no {MANIFEST}: not a shard folder (write one with `vbench data shards`)") from None
    except (OSError, ValueError) as exc:
        raise VbenchError(f"unreadable shard manifest {path}: {exc}") from None
    try:
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}, expected {FORMAT} {VERSION}")
        classes = [str(name) for name in data["classes"]]
        splits = {}
        for split in SPLITS:
            entry = data["splits"][split]
            shards = [ShardInfo(str(s["name"]), int(s["count"]), int(s["bytes"]), str(s["sha256"])) for s in entry["shards"]]
            for shard in shards:
                if Path(shard.name).name != shard.name:
                    raise ValueError(f"shard name {shard.name!r} is not a file name in the folder")
            splits[split] = SplitInfo(int(entry["count"]), [int(n) for n in entry["per_class"]], shards)
            if sum(s.count for s in shards) != splits[split].count or len(splits[split].per_class) != len(classes):
                raise ValueError(f"the {split} counts do not add up")
        return Manifest(folder, classes, splits, str(data["identity"]), dict(data.get("source") or {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VbenchError(f"malformed shard manifest {path}: {exc}") from None


def manifest_identity(classes: list[str], splits: dict[str, SplitInfo]) -> str:
    text = json.dumps({"classes": classes, "splits": {
        name: {"count": split.count, "per_class": split.per_class, "shards": [[s.name, s.count, s.sha256] for s in split.shards]}
        for name, split in splits.items()}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- checking ---------------------------------------------------------------------------------------
def shard_problem(manifest: Manifest, shard: ShardInfo, hashes: bool) -> str | None:
    """What is wrong with one shard's file (missing, truncated, another size or content), or None."""
    path = manifest.path(shard)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"shard {path} is missing"
    if size < shard.bytes:
        return f"shard {path} is truncated ({size:,} of {shard.bytes:,} bytes)"
    if size != shard.bytes:
        return f"shard {path} does not match the manifest ({size:,} bytes, the manifest says {shard.bytes:,})"
    if hashes and file_sha256(path) != shard.sha256:
        return f"shard {path} does not match the manifest (its sha256 differs)"
    return None


def check_shards(manifest: Manifest, hashes: bool = True, progress: Callable[[ShardInfo], None] | None = None) -> None:
    """Every shard present with its size (and, with ``hashes``, its sha256); else one line naming the first
    bad shard (and how many more there are), to fix before anything reads them."""
    problems = []
    for split in SPLITS:
        for shard in manifest.splits[split].shards:
            problem = shard_problem(manifest, shard, hashes)
            if problem:
                problems.append(problem)
            if progress is not None:
                progress(shard)
    if problems:
        more = f" (and {len(problems) - 1} more bad shard{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise VbenchError(f"{problems[0]}{more}; write the shards again with `vbench data shards`")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- reading a shard ---------------------------------------------------------------------------------
def read_shard(path: Path, num_classes: int, expected: int | None = None) -> Iterator[tuple[int, int, bytes, str]]:
    """(index, label, image bytes, name) of every image of a shard, in file order; a truncated or malformed
    shard, or one with another number of images than its manifest says, is one line naming it."""
    seen = 0
    try:
        with open(path, "rb") as stream:
            files = ({**member, "__url__": str(path)} for member in tar_file_iterator(stream))
            for sample in group_by_keys(files):
                key = sample["__key__"]
                fields = [name for name in IMAGE_FIELDS if name in sample]
                if len(fields) != 1 or "cls" not in sample:
                    raise VbenchError(f"shard {path} does not match the manifest: sample {key!r} has "
                                      f"{', '.join(sorted(k for k in sample if not k.startswith('__'))) or 'no files'}, "
                                      f"expected one of .{', .'.join(IMAGE_FIELDS)} and a .cls")
                label = _label(sample["cls"], path, key, num_classes)
                seen += 1
                yield _index(key, path), label, sample[fields[0]], f"{path.name}:{key}"
    except FileNotFoundError:
        raise VbenchError(f"shard {path} is missing; write the shards again with `vbench data shards`") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise VbenchError(f"shard {path} is truncated or corrupt ({str(exc).split(' @ ')[0]}); check it with "
                          f"`vbench data check {path.parent}`") from None
    if expected is not None and seen != expected:
        raise VbenchError(f"shard {path} does not match the manifest: it holds {seen} images, the manifest says {expected}")


def _label(raw: bytes, path: Path, key: str, num_classes: int) -> int:
    try:
        label = int(raw.decode().strip())
    except (UnicodeDecodeError, ValueError):
        label = -1
    if not 0 <= label < num_classes:
        raise VbenchError(f"shard {path} does not match the manifest: sample {key!r} has label {raw[:20]!r}, "
                          f"expected 0..{num_classes - 1}")
    return label


def _index(key: str, path: Path) -> int:
    try:
        return int(key)
    except ValueError:
        raise VbenchError(f"shard {path} was not written by vbench: key {key!r} is not an image index") from None


# --- writing -----------------------------------------------------------------------------------------
class _HashingFile(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, handle):
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)


def check_output(output: Path) -> Path:
    """``output`` must be a new folder (or an empty one) whose parent can be written; checked before any work."""
    output = Path(output).expanduser().resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise VbenchError(f"--output {output} exists and is not an empty folder; choose a new folder")
    ok, blocker = creatable(output)
    if not ok:
        raise VbenchError(f"--output {output} cannot be created: {blocker} is not a writable folder")
    return output


def write_shards(source: SourceSplits, output: Path, shard_size: int = DEFAULT_SHARD_SIZE,
                 progress: Callable[[int], None] | None = None) -> Manifest:
    """Write both splits of ``source`` as shards of ``shard_size`` images into the new folder ``output``."""
    if shard_size < 1:
        raise VbenchError(f"--shard-size must be at least 1, got {shard_size}")
    output = check_output(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial"))
    try:
        splits = {}
        for split in SPLITS:
            images = source.splits[split]
            if split == "train":
                images = [images[i] for i in np.random.default_rng(WRITE_ORDER_SEED).permutation(len(images))]
            splits[split] = _write_split(partial, split, images, len(source.classes), shard_size, progress)
        identity = manifest_identity(source.classes, splits)
        manifest = {"format": FORMAT, "version": VERSION, "identity": identity, "classes": source.classes,
                    "source": source.description,
                    "splits": {name: {"count": s.count, "per_class": s.per_class, "shards": [vars(x) for x in s.shards]}
                               for name, s in splits.items()}}
        atomic_write(partial / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        if output.exists():
            output.rmdir()  # empty, checked above
        os.replace(partial, output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return read_manifest(output)


def _write_split(folder: Path, split: str, images: list[SourceImage], num_classes: int, shard_size: int,
                 progress) -> SplitInfo:
    per_class = [0] * num_classes
    shards = []
    for start in range(0, len(images), shard_size):
        name = f"{split}-{start // shard_size:06d}.tar"
        part = images[start:start + shard_size]
        with open(folder / name, "wb") as handle:
            hashing = _HashingFile(handle)
            writer = TarWriter(hashing, encoder=False, mtime=0)  # mtime 0: the same images give the same bytes
            for image in part:
                suffix, data = image.payload()
                writer.write({"__key__": f"{image.index:09d}", suffix: data, "cls": str(image.label).encode()})
                per_class[image.label] += 1
            writer.close()
        shards.append(ShardInfo(name, len(part), hashing.size, hashing.digest.hexdigest()))
        if progress is not None:
            progress(len(part))
    return SplitInfo(len(images), per_class, shards)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def _pil_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
