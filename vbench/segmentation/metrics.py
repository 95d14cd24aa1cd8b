"""Semantic-segmentation metrics as mmsegmentation's ``IoUMetric`` computes them.

Per image, pixels whose label is the ignore index are dropped; the per-class histograms of the
intersection (prediction == label), of the prediction and of the label are summed over the whole
validation set, and only then turned into scores:

    aAcc  = sum(I) / sum(L)
    IoU_c = I_c / (P_c + L_c - I_c)      NaN when the class is in neither prediction nor label
    Acc_c = I_c / L_c                    NaN when the class is not in the label
    mIoU, mAcc = NaN-skipping means over the classes, in percent.
    top-10 mIoU = mean IoU of the 10 classes with the highest IoU (all present classes when fewer):
                  the paper's "mIoU in 10 high-score categories" (its section 4.2), never below mIoU.

Values outside ``[0, num_classes)`` fall out of the histograms, as with mmseg's ``torch.histc``.
The histograms stay on the device of the maps (``torch.bincount``) and are summed in int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vbench.store.predictions import SegmentationPredictions

IGNORE_INDEX = 255


def _class_histogram(values: torch.Tensor, num_classes: int) -> torch.Tensor:
    values = values[(values >= 0) & (values < num_classes)]
    return torch.bincount(values, minlength=num_classes)


def intersect_and_union(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                        ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(intersection, prediction, label) histograms of one map or a batch of maps, int64 [num_classes]."""
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}")
    pred, label = pred.long().flatten(), label.long().flatten()
    kept = label != ignore_index
    pred, label = pred[kept], label[kept]
    intersection = _class_histogram(pred[pred == label], num_classes)
    return intersection, _class_histogram(pred, num_classes), _class_histogram(label, num_classes)


def intersect_and_union_per_image(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                                  ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(intersection, prediction, label) histograms of each map of a batch [images, H, W]: int64 [images, classes].

    One ``bincount`` over image-offset class ids; rows sum to :func:`intersect_and_union` of the batch.
    """
    if pred.shape != label.shape or pred.dim() < 2:
        raise ValueError(f"expected prediction and label batches of one shape [images, ...], got "
                         f"{tuple(pred.shape)} and {tuple(label.shape)}")
    images = pred.shape[0]
    pred, label = pred.long().reshape(images, -1), label.long().reshape(images, -1)
    offsets = torch.arange(images, device=pred.device)[:, None] * num_classes
    kept = label != ignore_index

    def per_image_histogram(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask & (values >= 0) & (values < num_classes)
        counts = torch.bincount((values + offsets)[mask], minlength=images * num_classes)
        return counts.reshape(images, num_classes)

    return (per_image_histogram(pred, kept & (pred == label)), per_image_histogram(pred, kept),
            per_image_histogram(label, kept))


TOP_MIOU_CLASSES = 10


def top_k_mean(per_class: np.ndarray, k: int = TOP_MIOU_CLASSES) -> float:
    """Mean of the ``k`` highest non-NaN values (all of them when fewer); NaN when there are none."""
    present = np.sort(per_class[np.isfinite(per_class)])
    return float(present[-k:].mean()) if present.size else float("nan")


@dataclass(frozen=True)
class SegScores:
    """Scores of one evaluation, in percent; per-class arrays hold NaN for skipped classes."""

    aAcc: float
    mIoU: float
    mAcc: float
    top10_mIoU: float
    per_class_iou: np.ndarray
    per_class_acc: np.ndarray
    intersection: np.ndarray
    prediction: np.ndarray
    label: np.ndarray

    def as_dict(self) -> dict[str, float]:
        return {"aAcc": self.aAcc, "mIoU": self.mIoU, "mAcc": self.mAcc, "top10_mIoU": self.top10_mIoU}

    def per_class_table(self, class_names: list[str] | None = None):
        """A pandas DataFrame ``class | IoU | Acc | pixels`` (IoU/Acc in percent, NaN when skipped)."""
        # lazy: pandas, only for this table
        import pandas as pd

        names = class_names or [str(index) for index in range(len(self.per_class_iou))]
        return pd.DataFrame({"class": names, "IoU": self.per_class_iou, "Acc": self.per_class_acc,
                             "pixels": self.label})


def scores_from_histograms(intersection, prediction, label) -> SegScores:
    intersection, prediction, label = (np.asarray(h, dtype=np.float64) for h in (intersection, prediction, label))
    union = prediction + label - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersection / union
        acc = intersection / label
        all_acc = intersection.sum() / label.sum()

    def nanmean(values: np.ndarray) -> float:
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    return SegScores(
        aAcc=float(all_acc) * 100, mIoU=nanmean(iou) * 100, mAcc=nanmean(acc) * 100,
        top10_mIoU=top_k_mean(iou) * 100,
        per_class_iou=iou * 100, per_class_acc=acc * 100,
        intersection=intersection.astype(np.int64), prediction=prediction.astype(np.int64),
        label=label.astype(np.int64),
    )


class SegmentationMetric:
    """Accumulates the three histograms over a validation set; ``compute()`` gives :class:`SegScores`.

    With ``keep_per_image``, ``update`` takes batches [images, H, W] and also keeps every image's
    histograms; ``per_image()`` returns them as ``vbench.store.predictions.SegmentationPredictions``.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, keep_per_image: bool = False):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.keep_per_image = keep_per_image
        self.reset()

    def reset(self) -> None:
        self._hist = None
        self._per_image: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """Add predicted class maps and label maps of the same shape (any leading batch dims)."""
        if self.keep_per_image:
            rows = torch.stack(intersect_and_union_per_image(pred, label, self.num_classes, self.ignore_index), 1)
            self._per_image.append(rows.cpu())
            hist = rows.sum(0)
        else:
            hist = torch.stack(intersect_and_union(pred, label, self.num_classes, self.ignore_index))
        self._hist = hist if self._hist is None else self._hist + hist.to(self._hist.device)

    def compute(self) -> SegScores:
        if self._hist is None:
            raise ValueError("no segmentation maps were added before compute()")
        intersection, prediction, label = self._hist.cpu().numpy()
        return scores_from_histograms(intersection, prediction, label)

    def per_image(self, meta: dict | None = None):
        """Every image's histograms so far, in the order added (needs ``keep_per_image=True``)."""
        if not self.keep_per_image:
            raise ValueError("per-image histograms were not kept; build the metric with keep_per_image=True")
        rows = torch.cat(self._per_image).numpy() if self._per_image else np.zeros((0, 3, self.num_classes), np.int64)
        return SegmentationPredictions.from_histograms(rows[:, 0], rows[:, 1], rows[:, 2], meta)
