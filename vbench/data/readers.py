"""Where a classification suite's images come from: one factory (``open_data``) over a registry of readers, as
timm's ``create_reader`` picks among its readers.

- ``shards``: the data root (or the suite's ``root``) holds ``manifest.json``: webdataset shards written by
  ``vbench data shards``, streamed (``vbench.data.stream``); the run's data identity is the manifest's.
- ``folder``: a suite with ``stream = true`` over images stored as files (``tiny-imagenet``, ``image-folder``,
  ``imagenet``), streamed file by file.
- ``memory``: the default: every split decoded once into a uint8 tensor, cached (``vbench.data.load_dataset``).

The first reader whose test accepts the suite reads it. A third party adds one with ``READERS.add`` or the
``vbench.readers`` entry-point group (a ``Reader`` whose ``open`` returns a ``StreamedData``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vbench.data import folders, load_dataset, source_fingerprint
from vbench.data.shards import check_shards, is_shard_folder, read_manifest
from vbench.data.stream import StreamSplit, file_split, shard_split
from vbench.errors import VbenchError
from vbench.paths import default_data_root
from vbench.registry import Registry

if TYPE_CHECKING:  # a suite is passed in: data sits below the suite loader
    from vbench.suites import Suite


@dataclass(frozen=True)
class Reader:
    name: str
    streamed: bool
    accepts: Callable[..., bool]  # (suite, root) -> whether this reader reads the suite
    open: Callable  # (suite, root, download, limit) -> vbench.data.Dataset (in memory) | StreamedData
    description: str = ""


@dataclass
class StreamedData:
    """Both splits of a streamed suite and the data's identity (part of every run's key)."""

    train: StreamSplit
    test: StreamSplit
    classes: list[str]
    identity: str
    description: dict = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": self.train.count, "test": self.test.count}


READERS: Registry[Reader] = Registry("data reader", group="vbench.readers")


def data_root_of(suite: Suite, data_root=None) -> Path:
    return Path(data_root or suite.root or default_data_root()).expanduser()


def shard_folder(suite: Suite, root: Path) -> Path | None:
    """The shard folder a suite points at: its root, or (ImageNet) the root's imagenet/ folder."""
    for folder in (root, folders.imagenet_dir(root) if suite.kind == "imagenet" else None):
        if is_shard_folder(folder):
            return folder
    return None


def _identity(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def open_shards(suite: Suite, root: Path, download: bool = False, limit: int | None = None) -> StreamedData:
    folder = shard_folder(suite, root)
    manifest = read_manifest(folder)
    if len(manifest.classes) != suite.num_classes:
        raise VbenchError(f"the shards in {folder} hold {len(manifest.classes)} classes, suite {suite.name!r} says "
                          f"num_classes = {suite.num_classes}")
    if suite.classes and sorted(set(folders.read_class_list(suite.classes))) != manifest.classes:
        raise VbenchError(f"the shards in {folder} hold other classes than suite {suite.name!r} lists in {suite.classes}; "
                          f"write its shards with `vbench data shards {suite.name} --output DIR`")
    check_shards(manifest, hashes=False)  # every shard there, whole: a missing one is one line before any work
    train, test = shard_split(manifest, "train", limit), shard_split(manifest, "test", limit)
    sizes = {"train": train.count, "test": test.count}
    identity = _identity({"reader": "shards", "manifest": manifest.identity, "sizes": sizes, "limit": limit})
    description = {"root": str(folder), "reader": "shards", "sizes": sizes, "manifest": manifest.identity,
                   "shards": {split: len(s.units) for split, s in (("train", train), ("test", test))}, "limit": limit}
    return StreamedData(train, test, manifest.classes, identity, description)


def open_folder(suite: Suite, root: Path, download: bool = False, limit: int | None = None) -> StreamedData:
    if download:
        raise VbenchError(f"--download does not apply to a streamed suite ({suite.name}); put the images under {root}")
    splits, fingerprints = {}, {}
    for split in ("train", "test"):
        paths, labels = folders.split_files(suite.kind, root, split, suite.num_classes, suite.classes)
        splits[split] = file_split(split, paths, labels, suite.num_classes, limit)
        fingerprints[split] = source_fingerprint(paths, root)
    sizes = {split: s.count for split, s in splits.items()}
    identity = _identity({"reader": "folder", "fingerprints": fingerprints, "sizes": sizes, "limit": limit})
    description = {"root": str(root), "reader": "folder", "sizes": sizes, "fingerprints": fingerprints, "limit": limit}
    return StreamedData(splits["train"], splits["test"], folders.split_classes(suite.kind, root, suite.classes),
                        identity, description)


def open_memory(suite: Suite, root: Path | None, download: bool = False, limit: int | None = None):
    return load_dataset(suite, root, download, limit)


def _streams_files(suite: Suite, root: Path) -> bool:
    if suite.stream and suite.kind not in folders.FILE_KINDS:
        raise VbenchError(f"suite {suite.name!r}: stream = true reads images stored as files "
                          f"({', '.join(folders.FILE_KINDS)}) or shards; {suite.kind} is read into memory (or write "
                          f"shards with `vbench data shards {suite.name} --output DIR` and point root at DIR)")
    return suite.stream


READERS.add("shards", Reader("shards", True, lambda suite, root: shard_folder(suite, root) is not None, open_shards,
                             "webdataset shards with vbench's manifest.json"))
READERS.add("folder", Reader("folder", True, _streams_files, open_folder,
                             "image files, streamed (suite key stream = true)"))
READERS.add("memory", Reader("memory", False, lambda suite, root: True, open_memory,
                             "each split decoded once into a uint8 tensor (the default)"))


def choose_reader(suite: Suite, data_root=None) -> Reader:
    root = data_root_of(suite, data_root)
    reader = next(r for r in READERS.values() if r.accepts(suite, root))
    if not reader.streamed and suite.recipe.augment_impl == "timm":
        raise VbenchError(f"suite {suite.name!r}: augment_impl = \"timm\" transforms every image as it is read; set "
                          "stream = true in the suite, or point its root at shards")
    return reader


def open_data(suite: Suite, data_root=None, download: bool = False, limit: int | None = None):
    """(the reader, what it opened: a ``vbench.data.Dataset`` in memory or a ``StreamedData``)."""
    reader = choose_reader(suite, data_root)
    root = data_root_of(suite, data_root) if reader.streamed else data_root
    return reader, reader.open(suite, root, download, limit)
