"""Per-class errors of a classification run, from its per-image predictions: the confusion matrix (rows: the true
class, columns: the top-1 class; scikit-learn's ``confusion_matrix``), the accuracy of every class and the
classes it gets most wrong."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORST = 5


@dataclass(frozen=True)
class ClassErrors:
    """``matrix[true, predicted]`` image counts; ``accuracy[c]`` in % (NaN for a class with no test image)."""

    matrix: np.ndarray

    @property
    def images(self) -> np.ndarray:
        return self.matrix.sum(axis=1)

    @property
    def accuracy(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return 100.0 * np.diag(self.matrix) / self.images

    def worst(self, count: int = WORST) -> list[dict]:
        """The ``count`` classes of lowest accuracy (those with test images), each with the class it is most
        often taken for."""
        present = np.flatnonzero(self.images > 0)
        order = present[np.argsort(self.accuracy[present], kind="stable")][:count]
        rows = []
        for label in order:
            mistakes = self.matrix[label].copy()
            mistakes[label] = 0
            confused = int(mistakes.argmax())
            rows.append({"class": int(label), "images": int(self.images[label]), "accuracy": float(self.accuracy[label]),
                         "taken_for": confused if mistakes[confused] > 0 else None,
                         "taken_for_images": int(mistakes[confused])})
        return rows

    def as_record(self, count: int = WORST) -> dict:
        """JSON-ready: per-class accuracy (None where a class has no image) and the worst classes."""
        return {"accuracy": [None if np.isnan(a) else round(float(a), 4) for a in self.accuracy],
                "images": [int(n) for n in self.images], "worst": self.worst(count)}


def class_errors(predictions, num_classes: int | None = None) -> ClassErrors:
    """The confusion matrix of ``predictions`` (``vbench.store.predictions.ClassificationPredictions``) over
    ``num_classes`` classes (by default every class the predictions name)."""
    # lazy: scikit-learn takes a second to import, and `vbench report` reaches this module without needing it
    from sklearn.metrics import confusion_matrix

    labels, predicted = predictions.labels.astype(np.int64), predictions.top_k[:, 0].astype(np.int64)
    classes = num_classes or predictions.num_classes or int(max(labels.max(initial=0), predicted.max(initial=0)) + 1)
    return ClassErrors(confusion_matrix(labels, predicted, labels=np.arange(classes)))
