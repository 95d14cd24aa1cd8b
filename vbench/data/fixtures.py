"""Tiny datasets written in each real on-disk format, for tests (loaded through the real loaders).

Every writer puts the files exactly where a real copy would be under a data root, with the real
keys, shapes and dtypes, and returns a ``Fixture`` with the images and labels it wrote (images as
uint8 [N,3,H,W], labels int64 [N]) so a test can compare what the loader decodes. The class counts
default to the built-in suites' (10, 100, 10, 200) so those suites load the fixtures unchanged.
JPEG is lossy: the images written as JPEG are smooth so that decoded pixels stay within a few levels.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vbench.data.folders import imagenet_wnids

__all__ = [
    "Fixture",
    "write_cifar10",
    "write_cifar100",
    "write_svhn",
    "write_tiny_imagenet",
    "write_image_folder",
    "write_image_folder_suite",
    "write_fixture",
    "write_imagenet",
    "imagenet_wnids",
    "truncate_file",
]


@dataclass
class Fixture:
    root: Path  # what to pass as data_root (or the image folder's root)
    train_images: np.ndarray  # uint8 [N,3,H,W] as written (before any JPEG loss)
    train_labels: np.ndarray  # int64 [N]
    test_images: np.ndarray
    test_labels: np.ndarray
    files: list[Path]  # every file written


def _images(rng: np.random.Generator, n: int, size: int, smooth: bool = False) -> np.ndarray:
    """uint8 [n,3,size,size]: noise, or (for JPEG) smooth gradients with a flat block."""
    if not smooth:
        return rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    ramp = np.linspace(0.0, 1.0, size)
    start, slope = rng.uniform(0, 128, (n, 3, 1, 1)), rng.uniform(-60, 120, (n, 3, 1, 1))
    images = start + slope * (ramp[None, None, :, None] * 0.5 + ramp[None, None, None, :] * 0.5)
    block = size // 4
    images[:, :, block : 2 * block, block : 2 * block] = rng.uniform(0, 255, (n, 3, 1, 1))
    return np.clip(images, 0, 255).round().astype(np.uint8)


def _class_images(rng: np.random.Generator, classes: np.ndarray, size: int, num_classes: int) -> np.ndarray:
    """Smooth images (see ``_images``) whose gradient and block colour are their class's, jittered per image: a
    model can learn them, so a test of training can tell learning from chance."""
    table = np.random.default_rng(1234)
    start, slope = table.uniform(0, 128, (num_classes, 3, 1, 1)), table.uniform(-60, 120, (num_classes, 3, 1, 1))
    block_colour = table.uniform(0, 255, (num_classes, 3, 1, 1))
    n = len(classes)
    ramp = np.linspace(0.0, 1.0, size)
    jitter = lambda scale: rng.normal(0, scale, (n, 3, 1, 1))  # noqa: E731
    images = (start[classes] + jitter(12)) + (slope[classes] + jitter(12)) * (
        ramp[None, None, :, None] * 0.5 + ramp[None, None, None, :] * 0.5)
    block = size // 4
    images[:, :, block: 2 * block, block: 2 * block] = block_colour[classes] + jitter(20)
    images += rng.normal(0, 6, images.shape)
    return np.clip(images, 0, 255).round().astype(np.uint8)


def _balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _dump_pickle(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)  # the release's files are Python 2 pickles
    return path


def write_cifar10(root: str | Path, per_batch: int = 20, num_test: int = 50, seed: int = 0) -> Fixture:
    """``root/cifar-10-batches-py/``: data_batch_1..5, test_batch, batches.meta."""
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    rng = np.random.default_rng(seed)
    train_images, train_labels = _images(rng, 5 * per_batch, 32), _balanced_labels(rng, 5 * per_batch, 10)
    test_images, test_labels = _images(rng, num_test, 32), _balanced_labels(rng, num_test, 10)
    files = []
    for b in range(5):
        part = slice(b * per_batch, (b + 1) * per_batch)
        files.append(_dump_pickle(folder / f"data_batch_{b + 1}", _cifar_batch(f"training batch {b + 1} of 5", train_images[part], train_labels[part], "labels")))
    files.append(_dump_pickle(folder / "test_batch", _cifar_batch("testing batch 1 of 1", test_images, test_labels, "labels")))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    files.append(_dump_pickle(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}))
    return Fixture(root, train_images, train_labels, test_images, test_labels, files)


def write_cifar100(root: str | Path, num_train: int = 200, num_test: int = 100, seed: int = 1) -> Fixture:
    """``root/cifar-100-python/``: train, test, meta (labels under fine_labels)."""
    root = Path(root)
    folder = root / "cifar-100-python"
    rng = np.random.default_rng(seed)
    train_images, train_labels = _images(rng, num_train, 32), _balanced_labels(rng, num_train, 100)
    test_images, test_labels = _images(rng, num_test, 32), _balanced_labels(rng, num_test, 100)
    files = [
        _dump_pickle(folder / "train", _cifar_batch("training batch 1 of 1", train_images, train_labels, "fine_labels")),
        _dump_pickle(folder / "test", _cifar_batch("testing batch 1 of 1", test_images, test_labels, "fine_labels")),
        _dump_pickle(folder / "meta", {"fine_label_names": [f"class_{i}" for i in range(100)], "coarse_label_names": [f"super_{i}" for i in range(20)]}),
    ]
    return Fixture(root, train_images, train_labels, test_images, test_labels, files)


def _cifar_batch(batch_label: str, images: np.ndarray, labels: np.ndarray, label_key: str) -> dict:
    batch = {
        "batch_label": batch_label,
        label_key: [int(label) for label in labels],
        "data": images.reshape(len(images), 3 * 32 * 32),  # row-major R, G, B planes as in the release
        "filenames": [f"image_{i:05d}.png" for i in range(len(images))],
    }
    if label_key == "fine_labels":
        batch["coarse_labels"] = [int(label) // 5 for label in labels]
    return batch


def write_svhn(root: str | Path, num_train: int = 100, num_test: int = 50, seed: int = 2) -> Fixture:
    """``root/train_32x32.mat`` and ``root/test_32x32.mat``: X is 32x32x3xN uint8, y is Nx1 with 10 for 0."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    import scipy.io

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {}
    files = []
    for split, n in (("train", num_train), ("test", num_test)):
        images, labels = _images(rng, n, 32), _balanced_labels(rng, n, 10)
        digits = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(n, 1)
        path = root / f"{split}_32x32.mat"
        scipy.io.savemat(str(path), {"X": images.transpose(2, 3, 1, 0), "y": digits})  # N,C,H,W -> H,W,C,N
        splits[split] = (images, labels)
        files.append(path)
    return Fixture(root, *splits["train"], *splits["test"], files)


def write_tiny_imagenet(
    root: str | Path, num_classes: int = 200, train_per_class: int = 2, val_per_class: int = 1, img_size: int = 64, seed: int = 3,
    learnable: bool = False,
) -> Fixture:
    """``root/tiny-imagenet-200/`` in the release layout. The first training image and the first
    validation image are grayscale JPEGs (as some real ones are); their returned pixels are the gray
    value in all three channels. ``learnable``: each image drawn around its class's look (``_class_images``)
    rather than at random, so that a model trained on the fixture can beat chance."""
    root = Path(root)
    base = root / "tiny-imagenet-200"
    rng = np.random.default_rng(seed)
    wnids = [f"n{1440000 + 37 * i:08d}" for i in range(num_classes)]
    order = rng.permutation(num_classes)  # wnids.txt is not sorted in the release either
    files = [base / "wnids.txt", base / "words.txt"]
    base.mkdir(parents=True, exist_ok=True)
    files[0].write_text("".join(f"{wnids[i]}\n" for i in order))
    files[1].write_text("".join(f"{wnid}\tthing number {i}, object\n" for i, wnid in enumerate(wnids)))
    label_of = {wnid: i for i, wnid in enumerate(sorted(wnids))}

    train_images = _images(rng, num_classes * train_per_class, img_size, smooth=True)
    if learnable:
        train_images = _class_images(rng, np.arange(num_classes * train_per_class) // train_per_class, img_size, num_classes)
    train_labels = []
    for c, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True, exist_ok=True)
        boxes = []
        for k in range(train_per_class):
            i = c * train_per_class + k
            name = f"{wnid}_{k}.JPEG"
            files.append(_save_jpeg(folder / name, train_images, i, grayscale=(i == 0)))
            boxes.append(f"{name}\t0\t0\t{img_size - 1}\t{img_size - 1}\n")
            train_labels.append(label_of[wnid])
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))

    val_images = _images(rng, num_classes * val_per_class, img_size, smooth=True)
    val_classes = rng.permutation(np.arange(num_classes * val_per_class) % num_classes)
    val_wnids = [wnids[i] for i in val_classes]
    if learnable:
        val_images = _class_images(rng, val_classes, img_size, num_classes)
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    annotations = []
    for i, wnid in enumerate(val_wnids):
        name = f"val_{i}.JPEG"
        files.append(_save_jpeg(base / "val" / "images" / name, val_images, i, grayscale=(i == 0)))
        annotations.append(f"{name}\t{wnid}\t0\t0\t{img_size - 1}\t{img_size - 1}\n")
    files.append(base / "val" / "val_annotations.txt")
    files[-1].write_text("".join(annotations))
    (base / "test" / "images").mkdir(parents=True, exist_ok=True)
    files.append(_save_jpeg(base / "test" / "images" / "test_0.JPEG", val_images[:1], 0))  # unlabelled, unused
    return Fixture(
        root, train_images, np.array(train_labels, dtype=np.int64), val_images,
        np.array([label_of[w] for w in val_wnids], dtype=np.int64), files,
    )


def write_imagenet(
    root: str | Path, num_classes: int = 3, train_per_class: int = 6, val_per_class: int = 3, seed: int = 5,
    sizes: tuple[int, int] = (64, 224), learnable: bool = True, wnids: list[str] | None = None,
) -> Fixture:
    """``root/train/<wnid>/<wnid>_<k>.JPEG`` and ``root/val/<wnid>/ILSVRC2012_val_<n>.JPEG`` (the layout the usual
    valprep script leaves), the wnids ``wnids`` or the first ``num_classes`` of ImageNet's sorted synsets, each image a JPEG
    of its own size drawn from ``sizes`` (width and height apart, as ImageNet's vary). The returned pixels are
    those of a square ``sizes[0]`` image before it was resized to its own size (for counts and labels, not pixels)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    wnids = sorted(wnids) if wnids else imagenet_wnids()[:num_classes]
    num_classes = len(wnids)
    files, result = [], {}
    for split, folder, per_class in (("train", "train", train_per_class), ("test", "val", val_per_class)):
        classes = np.repeat(np.arange(num_classes), per_class)
        images = _class_images(rng, classes, sizes[0], num_classes) if learnable else _images(rng, len(classes), sizes[0], smooth=True)
        for i, c in enumerate(classes):
            (root / folder / wnids[c]).mkdir(parents=True, exist_ok=True)
            name = f"{wnids[c]}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{i + 1:08d}.JPEG"
            width, height = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
            picture = Image.fromarray(images[i].transpose(1, 2, 0)).resize((width, height), Image.Resampling.BILINEAR)
            picture.save(root / folder / wnids[c] / name, format="JPEG", quality=90)
            files.append(root / folder / wnids[c] / name)
        result[split] = (images, classes.astype(np.int64))
    return Fixture(root, *result["train"], *result["test"], files)


def _save_jpeg(path: Path, images: np.ndarray, i: int, grayscale: bool = False) -> Path:
    if grayscale:
        gray = images[i].mean(axis=0).round().astype(np.uint8)
        images[i] = gray[None]  # what an RGB conversion of the gray file gives back
        Image.fromarray(gray, mode="L").save(path, format="JPEG", quality=95, subsampling=0)
    else:
        Image.fromarray(images[i].transpose(1, 2, 0)).save(path, format="JPEG", quality=95, subsampling=0)
    return path


def write_image_folder(
    root: str | Path, classes: tuple[str, ...] = ("cat", "dog", "frog"), train_per_class: int = 6,
    test_per_class: int = 3, img_size: int = 32, test_folder: str = "val", seed: int = 4,
) -> Fixture:
    """``root/train/<class>/*.png`` and ``root/<test_folder>/<class>/*.png`` (lossless, so the pixels
    come back exactly). Labels follow the sorted class names, as torchvision's ImageFolder numbers them."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    label_of = {name: i for i, name in enumerate(sorted(classes))}
    result = {}
    files = []
    for split, folder, per_class in (("train", "train", train_per_class), ("test", test_folder, test_per_class)):
        images = _images(rng, len(classes) * per_class, img_size)
        labels = []
        for c, name in enumerate(sorted(classes)):
            (root / folder / name).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                i = c * per_class + k
                path = root / folder / name / f"{name}_{k:03d}.png"
                Image.fromarray(images[i].transpose(1, 2, 0)).save(path)
                files.append(path)
                labels.append(label_of[name])
        result[split] = (images, np.array(labels, dtype=np.int64))
    return Fixture(root, *result["train"], *result["test"], files)


def write_image_folder_suite(path: str | Path, root: str | Path, num_classes: int = 3, img_size: int = 32, **recipe) -> Path:
    """A user's suite file of kind image-folder over ``root``; ``recipe`` keys go into [recipe]."""
    path = Path(path)
    lines = [
        f'name = "{path.stem}"',
        'kind = "image-folder"',
        f"root = {_toml_string(str(root))}",
        f"img_size = {img_size}",
        f"num_classes = {num_classes}",
        "mean = [0.5, 0.5, 0.5]",
        "std = [0.25, 0.25, 0.25]",
        "",
        "[recipe]",
    ]
    for key, value in recipe.items():
        lines.append(f"{key} = {_toml_string(value) if isinstance(value, str) else repr(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_fixture(kind: str, root: str | Path, **options) -> Fixture:
    """The fixture of a dataset kind (cifar10, cifar100, svhn, tiny-imagenet, image-folder) under root."""
    writers = {
        "cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn,
        "tiny-imagenet": write_tiny_imagenet, "image-folder": write_image_folder,
    }
    return writers[kind](root, **options)


def truncate_file(path: str | Path, keep: float = 0.5) -> Path:
    """Cut a file to ``keep`` of its length, as an interrupted copy would leave it."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
