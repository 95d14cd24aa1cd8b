"""Per-image predictions of a run's final evaluation, one compressed ``.npz`` file per run.

What is kept (enough for McNemar's test and bootstraps over test images, see ``vbench.reporting.stats``,
and for calibration, see ``vbench.reporting.calibration``):
- classification: the top-k class indices of every test image, best first (k = 5, or the number of
  classes when smaller), and its label; top-1/top-k correctness is derived from them; since format 2 also
  its class probabilities in float16: every class's when there are at most ``WHOLE_PROBABILITIES_UP_TO``
  classes (every built-in suite), else those of the top-k classes and of the true class;
- segmentation: per image and class, the pixel counts of the intersection, the union and the label
  (ignore label excluded), from which every score of ``vbench.segmentation.metrics`` follows.

Why ``.npz``: NumPy reads and writes it (no new dependency), it keeps bool and small-int dtypes, and
its zip compression shrinks the mostly-zero per-class segmentation counts many times over
(safetensors, already installed with timm, has no compression). It is read with ``allow_pickle=False``,
so loading a file never runs code. Images are in the order of the evaluation split; two runs on the
same split can be compared image by image. Files of format 1 (no probabilities) still load.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vbench.errors import VbenchError
from vbench.paths import atomic_path
from vbench.store.files import load_numpy

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)  # 1: before class probabilities were kept
TOP_K = 5
WHOLE_PROBABILITIES_UP_TO = 256  # classes; above, only the top-k and the true class's probabilities are kept
SUFFIX = ".npz"


def predictions_path(directory: str | Path, run_id: int | str) -> Path:
    """Where the predictions of run ``run_id`` live inside ``directory`` (the store's predictions folder)."""
    run_id = str(run_id)
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        raise VbenchError(f"run id {run_id!r} cannot name a file; use the id the store gave the run")
    return Path(directory) / f"run-{run_id}{SUFFIX}"


def _smallest_int(values: np.ndarray) -> np.ndarray:
    """int16 when every value fits (class indices of any common dataset), else int32."""
    values = np.asarray(values)
    fits = values.size == 0 or (values.min() >= np.iinfo(np.int16).min and values.max() <= np.iinfo(np.int16).max)
    return values.astype(np.int16 if fits else np.int32)


@dataclass(frozen=True)
class ClassificationPredictions:
    """``top_k``: int [images, k], class indices best first; ``labels``: int [images]; the class probabilities
    (float16, None in files of format 1): ``probabilities`` [images, classes] when every class's is kept,
    else ``top_k_probabilities`` [images, k] (those of ``top_k``) and ``label_probability`` [images]."""

    top_k: np.ndarray
    labels: np.ndarray
    meta: dict = field(default_factory=dict)
    probabilities: np.ndarray | None = None
    top_k_probabilities: np.ndarray | None = None
    label_probability: np.ndarray | None = None
    num_classes: int | None = None

    def __post_init__(self):
        if self.top_k.ndim != 2 or self.labels.shape != (self.top_k.shape[0],):
            raise ValueError(f"top_k must be [images, k] and labels [images], got {self.top_k.shape} "
                             f"and {self.labels.shape}")
        if self.probabilities is not None and self.probabilities.shape[0] != self.images:
            raise ValueError(f"probabilities must be [images, classes], got {self.probabilities.shape}")
        if (self.top_k_probabilities is None) != (self.label_probability is None):
            raise ValueError("top_k_probabilities and label_probability are kept together")

    @classmethod
    def from_logits(cls, logits, labels, meta: dict | None = None) -> "ClassificationPredictions":
        """From model outputs [images, classes] (torch or NumPy) and labels [images]; keeps the softmax."""
        # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
        import torch

        logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
        top_k = logits.topk(min(TOP_K, logits.shape[-1]), dim=-1).indices
        return cls.from_probabilities(logits.float().softmax(dim=-1), labels, top_k, meta)

    @classmethod
    def from_probabilities(cls, probabilities, labels, top_k, meta: dict | None = None) -> "ClassificationPredictions":
        """From class probabilities [images, classes], labels [images] and the top-k classes [images, k] (torch
        tensors): every class's probability kept, or the top-k's and the true class's where there are many."""
        labels, classes = labels.long().cpu(), probabilities.shape[-1]
        probabilities, top_k = probabilities.float().cpu(), top_k.cpu()
        kept = dict(top_k=_smallest_int(top_k.numpy()), labels=_smallest_int(labels.numpy()), meta=dict(meta or {}),
                    num_classes=classes)
        if classes <= WHOLE_PROBABILITIES_UP_TO:
            return cls(**kept, probabilities=probabilities.numpy().astype(np.float16))
        return cls(**kept, top_k_probabilities=probabilities.gather(1, top_k.long()).numpy().astype(np.float16),
                   label_probability=probabilities.gather(1, labels[:, None])[:, 0].numpy().astype(np.float16))

    @classmethod
    def from_top_k(cls, top_k, labels, meta: dict | None = None) -> "ClassificationPredictions":
        """From class indices [images, k], best first, and labels [images] (torch or NumPy), without probabilities."""
        return cls(_smallest_int(np.asarray(top_k)), _smallest_int(np.asarray(labels)), dict(meta or {}))

    @property
    def images(self) -> int:
        return self.labels.shape[0]

    @property
    def correct(self) -> np.ndarray:
        """bool [images]: the top-1 class is the label."""
        return self.top_k[:, 0] == self.labels

    @property
    def correct_top_k(self) -> np.ndarray:
        """bool [images]: the label is among the top-k classes."""
        return (self.top_k == self.labels[:, None]).any(axis=1)

    @property
    def has_probabilities(self) -> bool:
        return self.probabilities is not None or self.top_k_probabilities is not None

    def class_probabilities(self) -> np.ndarray:
        """float32 [images, classes]: the kept probabilities; where only the top-k and the true class's were kept,
        the rest of each image's probability is spread evenly over its other classes (an approximation, exact
        for the top-1 confidence and the true class's probability)."""
        if self.probabilities is not None:
            return self.probabilities.astype(np.float32)
        if self.top_k_probabilities is None or self.num_classes is None:
            raise VbenchError("these predictions keep no class probabilities (a file of format 1); evaluate the "
                              "run again to keep them")
        rows = np.arange(self.images)
        known = np.zeros((self.images, self.num_classes), dtype=bool)
        known[rows[:, None], self.top_k] = True
        known[rows, self.labels] = True
        dense = np.zeros((self.images, self.num_classes), dtype=np.float32)
        dense[rows[:, None], self.top_k] = self.top_k_probabilities
        dense[rows, self.labels] = self.label_probability
        rest = np.clip(1.0 - dense.sum(axis=1), 0.0, None) / np.maximum((~known).sum(axis=1), 1)
        return np.where(known, dense, rest[:, None]).astype(np.float32)


@dataclass(frozen=True)
class SegmentationPredictions:
    """Per-image, per-class pixel counts, int64 [images, classes] each."""

    intersection: np.ndarray
    union: np.ndarray
    label: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        shapes = {self.intersection.shape, self.union.shape, self.label.shape}
        if len(shapes) != 1 or self.intersection.ndim != 2:
            raise ValueError(f"intersection, union and label must share one [images, classes] shape, got {shapes}")

    @classmethod
    def from_histograms(cls, intersection, prediction, label, meta: dict | None = None) -> "SegmentationPredictions":
        """From per-image (intersection, prediction, label) histograms, e.g. stacked
        ``vbench.segmentation.metrics.intersect_and_union`` outputs [images, classes]."""
        intersection, prediction, label = (np.asarray(h, dtype=np.int64) for h in (intersection, prediction, label))
        return cls(intersection, prediction + label - intersection, label, dict(meta or {}))

    @property
    def images(self) -> int:
        return self.intersection.shape[0]

    @property
    def prediction(self) -> np.ndarray:
        return self.union - self.label + self.intersection

    def totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(intersection, prediction, label) summed over images: the input of ``scores_from_histograms``."""
        return self.intersection.sum(0), self.prediction.sum(0), self.label.sum(0)


Predictions = ClassificationPredictions | SegmentationPredictions


def _arrays(predictions: Predictions) -> dict[str, np.ndarray]:
    if isinstance(predictions, ClassificationPredictions):
        optional = {name: getattr(predictions, name) for name in ("probabilities", "top_k_probabilities",
                                                                   "label_probability")}
        return {"top_k": predictions.top_k, "labels": predictions.labels,
                **{name: value for name, value in optional.items() if value is not None}}
    return {"intersection": predictions.intersection.astype(np.int64), "union": predictions.union.astype(np.int64),
            "label": predictions.label.astype(np.int64)}


def save_predictions(path: str | Path, predictions: Predictions) -> Path:
    """Write ``predictions`` to ``path`` atomically: a reader sees the old file or the whole new one."""
    path = Path(path)
    kind = "classification" if isinstance(predictions, ClassificationPredictions) else "segmentation"
    header = {"format": FORMAT_VERSION, "kind": kind, "meta": predictions.meta}
    if kind == "classification" and predictions.num_classes is not None:
        header["num_classes"] = predictions.num_classes
    header = json.dumps(header, sort_keys=True)
    with atomic_path(path, sync=True) as temporary, open(temporary, "wb") as stream:
        np.savez_compressed(stream, header=np.array(header), **_arrays(predictions))
    return path


def load_predictions(path: str | Path, probabilities: bool = True) -> Predictions:
    """Read a file written by :func:`save_predictions` (without its class probabilities where they are not
    needed: they are most of a file)."""
    path = Path(path)
    if not path.is_file():
        raise VbenchError(f"no per-image predictions at {path}; the run's final evaluation did not keep them")
    try:
        with load_numpy(path) as archive:
            header = json.loads(str(archive["header"]))
            if header.get("format") not in READABLE_FORMATS:
                raise VbenchError(f"{path} has predictions format {header.get('format')!r}; this vbench reads "
                                  f"formats {', '.join(map(str, READABLE_FORMATS))}")
            if header.get("kind") == "classification":
                kept = ("probabilities", "top_k_probabilities", "label_probability") if probabilities else ()
                optional = {name: archive[name] for name in kept if name in archive.files}
                return ClassificationPredictions(archive["top_k"], archive["labels"], header["meta"], **optional,
                                                 num_classes=header.get("num_classes"))
            return SegmentationPredictions(archive["intersection"], archive["union"], archive["label"],
                                           header["meta"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise VbenchError(f"{path} is not a vbench predictions file ({exc}); delete it and rerun the "
                          "evaluation") from exc


def paired_correct(a: ClassificationPredictions, b: ClassificationPredictions) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 correctness of A and B, image by image, after checking they saw the same test images."""
    if a.images != b.images or not np.array_equal(a.labels, b.labels):
        raise VbenchError(f"the predictions cover different test sets ({a.images} and {b.images} images, "
                          "labels differ); compare runs evaluated on the same split")
    return a.correct, b.correct
