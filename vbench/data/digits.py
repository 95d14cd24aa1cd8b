"""The ``digits`` dataset: scikit-learn's bundled handwritten digits, real data with no download.

``sklearn.datasets.load_digits`` ships 1,797 greyscale 8x8 images of the digits 0-9 (the UCI
"Optical Recognition of Handwritten Digits" test set; 174-183 images per class). Each pixel counts
the "on" cells of a 4x4 block of a 32x32 bitmap, so it holds an integer 0..16.

Pixels: ``uint8 = (v * 255 + 8) // 16``, i.e. ``v * 255 / 16`` rounded half up (0 -> 0, 8 -> 128,
16 -> 255), in integer arithmetic so it is exact on every machine. The grey image is replicated to 3
channels because every backbone takes RGB input.

Split: fixed and stratified, ``sklearn.model_selection.train_test_split(indices, test_size=TEST_SIZE,
stratify=labels, random_state=SPLIT_SEED)``: 1,297 training and 500 test images; test images per class
0..9 = 50, 51, 49, 51, 50, 51, 50, 50, 48, 50. The images of each split keep the dataset's order.
Loading takes milliseconds, so no cache is written.
"""

from __future__ import annotations

import numpy as np
import torch

from vbench.errors import VbenchError

TEST_SIZE = 500
SPLIT_SEED = 0
IMG_SIZE = 8
NUM_CLASSES = 10
MAX_VALUE = 16  # load_digits pixels are counts 0..16


def to_uint8(values: np.ndarray) -> np.ndarray:
    """load_digits pixel counts 0..16 -> uint8 0..255: ``v * 255 / 16`` rounded half up."""
    counts = np.asarray(values).astype(np.int64)
    if counts.min() < 0 or counts.max() > MAX_VALUE or not np.array_equal(counts, values):
        raise VbenchError("load_digits returned pixels outside the integers 0..16; is scikit-learn's dataset intact?")
    return ((counts * 255 + MAX_VALUE // 2) // MAX_VALUE).astype(np.uint8)


def split_indices() -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) into ``load_digits()``, each sorted: the fixed stratified split."""
    # lazy: keeps `vbench --help` and `vbench list` fast
    from sklearn.model_selection import train_test_split

    labels = _load()[1]
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    return np.sort(train), np.sort(test)


def load_digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N,3,8,8] and labels int64 [N] of ``split`` ("train" or "test")."""
    if split not in ("train", "test"):
        raise VbenchError(f"unknown split {split!r}; expected train or test")
    images, labels = _load()
    train, test = split_indices()
    chosen = train if split == "train" else test
    grey = torch.from_numpy(to_uint8(images[chosen]))  # [N,8,8]
    rgb = grey[:, None].expand(-1, 3, -1, -1).contiguous()
    return rgb, torch.from_numpy(labels[chosen].astype(np.int64))


def _load() -> tuple[np.ndarray, np.ndarray]:
    try:
        # lazy: keeps `vbench --help` and `vbench list` fast
        from sklearn.datasets import load_digits
    except ImportError:
        raise VbenchError("the digits suite needs scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    return bunch.images, bunch.target
