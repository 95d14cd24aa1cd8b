"""Per-image predictions round-trip through their file, compactly and atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from vbench.errors import VbenchError
from vbench.reporting.stats import mcnemar_exact
from vbench.store.predictions import (
    ClassificationPredictions,
    SegmentationPredictions,
    load_predictions,
    paired_correct,
    predictions_path,
    save_predictions,
)


def classification(seed: int = 0, images: int = 300, classes: int = 200) -> ClassificationPredictions:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(images, classes, generator=generator)
    labels = torch.randint(0, classes, (images,), generator=generator)
    logits[torch.arange(images // 2), labels[: images // 2]] += 10  # half of them right
    return ClassificationPredictions.from_logits(logits, labels, meta={"run_id": "r1", "seed": seed})


def test_classification_round_trip(tmp_path):
    saved = classification()
    path = save_predictions(predictions_path(tmp_path, "r1"), saved)
    loaded = load_predictions(path)
    assert isinstance(loaded, ClassificationPredictions)
    assert loaded.top_k.dtype == np.int16 and loaded.top_k.shape == (300, 5)
    assert np.array_equal(loaded.top_k, saved.top_k) and np.array_equal(loaded.labels, saved.labels)
    assert loaded.meta == {"run_id": "r1", "seed": 0}
    assert loaded.correct[:150].all() and loaded.correct.sum() < 160
    assert (loaded.correct_top_k >= loaded.correct).all()


def test_top_k_is_best_first_and_shrinks_to_the_number_of_classes():
    logits = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    predictions = ClassificationPredictions.from_logits(logits, torch.tensor([2, 0]))
    assert predictions.top_k.tolist() == [[1, 2, 0], [0, 2, 1]]
    assert predictions.correct.tolist() == [False, True]
    assert predictions.correct_top_k.tolist() == [True, True]


def test_segmentation_round_trip_keeps_every_count(tmp_path):
    rng = np.random.default_rng(0)
    intersection = rng.integers(0, 100, (20, 150)) * (rng.random((20, 150)) < 0.1)
    prediction = intersection + rng.integers(0, 100, (20, 150)) * (rng.random((20, 150)) < 0.1)
    label = intersection + rng.integers(0, 100, (20, 150)) * (rng.random((20, 150)) < 0.1)
    saved = SegmentationPredictions.from_histograms(intersection, prediction, label)
    loaded = load_predictions(save_predictions(tmp_path / "seg.predictions.npz", saved))
    assert isinstance(loaded, SegmentationPredictions)
    for name in ("intersection", "union", "label", "prediction"):
        assert np.array_equal(getattr(loaded, name), getattr(saved, name)) and getattr(loaded, name).dtype == np.int64
    assert np.array_equal(loaded.prediction, prediction)
    assert os.path.getsize(tmp_path / "seg.predictions.npz") < 3 * 20 * 150 * 8 / 3  # compressed


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = save_predictions(tmp_path / "r1.predictions.npz", classification(seed=0))

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_predictions(path, classification(seed=1))
    assert load_predictions(path).meta["seed"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1.predictions.npz"]


def test_unreadable_or_missing_files_are_user_errors(tmp_path):
    with pytest.raises(VbenchError, match="no per-image predictions"):
        load_predictions(tmp_path / "absent.predictions.npz")
    (tmp_path / "junk.predictions.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(VbenchError, match="not a vbench predictions file"):
        load_predictions(tmp_path / "junk.predictions.npz")


@pytest.mark.parametrize("run_id", ["", "../x", "a/b", ".."])
def test_run_ids_that_cannot_name_a_file_are_refused(tmp_path, run_id):
    with pytest.raises(VbenchError, match="cannot name a file"):
        predictions_path(tmp_path, run_id)


def test_paired_correctness_feeds_mcnemar_and_refuses_other_test_sets(tmp_path):
    a, b = classification(seed=0), classification(seed=0)
    correct_a, correct_b = paired_correct(a, b)
    assert mcnemar_exact(correct_a, correct_b).p_value == 1.0
    with pytest.raises(VbenchError, match="different test sets"):
        paired_correct(a, classification(seed=1))


def test_class_probabilities_are_kept_in_float16(tmp_path):
    saved = classification(classes=10)
    assert saved.probabilities.dtype == np.float16 and saved.probabilities.shape == (300, 10)
    loaded = load_predictions(save_predictions(tmp_path / "p.npz", saved))
    assert np.array_equal(loaded.probabilities, saved.probabilities) and loaded.num_classes == 10
    assert np.allclose(loaded.class_probabilities().sum(axis=1), 1.0, atol=1e-2)
    assert (loaded.class_probabilities().argmax(axis=1) == loaded.top_k[:, 0]).mean() > 0.99  # float16 ties aside


def test_many_classes_keep_the_top_k_and_the_true_class(tmp_path):
    generator = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(50, 300, generator=generator) * 3, torch.randint(0, 300, (50,), generator=generator)
    saved = ClassificationPredictions.from_logits(logits, labels)
    assert saved.probabilities is None and saved.top_k_probabilities.shape == (50, 5)
    loaded = load_predictions(save_predictions(tmp_path / "p.npz", saved))
    dense, exact = loaded.class_probabilities(), logits.softmax(dim=-1).numpy()
    rows = np.arange(50)
    assert np.allclose(dense[rows, labels.numpy()], exact[rows, labels.numpy()], rtol=1e-3, atol=1e-6)
    assert np.allclose(dense.max(axis=1), exact.max(axis=1), rtol=1e-3) and np.allclose(dense.sum(axis=1), 1, atol=1e-2)


def test_files_of_format_1_still_load(tmp_path):
    """Written as vbench wrote them before class probabilities were kept."""
    import json

    path = tmp_path / "old.npz"
    header = json.dumps({"format": 1, "kind": "classification", "meta": {"run_id": "7"}})
    np.savez_compressed(path, header=np.array(header), top_k=np.array([[1, 0], [0, 1]], dtype=np.int16),
                        labels=np.array([1, 1], dtype=np.int16))
    loaded = load_predictions(path)
    assert loaded.correct.tolist() == [True, False] and not loaded.has_probabilities
    with pytest.raises(VbenchError, match="keep no class probabilities"):
        loaded.class_probabilities()
