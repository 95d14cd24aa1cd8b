"""Reading back what vbench wrote, without ever running code from the file: a checkpoint, a cache or weights on a
shared file system may have been replaced by anyone who can write there. Torch files are read with
``weights_only=True`` (tensors, containers and plain values only: an object that unpickling would build is
refused); weights are safetensors; predictions are NumPy archives read with ``allow_pickle=False``; everything
else is JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_torch(path: Path | str, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """A torch file of tensors, containers and plain values (``torch.load(weights_only=True)``)."""
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    import torch

    return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)


def load_numpy(path: Path | str, **options: Any) -> Any:
    """A NumPy file or archive, never its pickled objects."""
    # lazy: numpy, only when an array file is read
    import numpy as np

    return np.load(path, allow_pickle=False, **options)
