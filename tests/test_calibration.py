"""Calibration metrics (vbench.reporting.calibration) and per-class errors (vbench.reporting.confusion) on
predictions whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vbench.reporting.calibration import (
    brier_score,
    calibration_split,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    scaled,
    temperature_scaled,
)
from vbench.reporting.confusion import class_errors
from vbench.store.predictions import ClassificationPredictions


def overconfident(images: int = 4000, classes: int = 10, temperature: float = 2.5, seed: int = 0):
    """Labels drawn from softmax(z / T) while the model says softmax(z): calibrated after dividing by T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(images, classes)) * 3
    truth = scaled(np.exp(logits), temperature)
    labels = np.array([rng.choice(classes, p=p) for p in truth])
    said = np.exp(logits - logits.max(axis=1, keepdims=True))
    return said / said.sum(axis=1, keepdims=True), labels


def test_temperature_scaling_finds_the_temperature_and_calibrates():
    probabilities, labels = overconfident()
    assert fit_temperature(probabilities, labels) == pytest.approx(2.5, rel=0.1)
    result = temperature_scaled(probabilities, labels)
    assert result["fit_images"] == result["held_out_images"] == 2000
    assert result["ece_ts"] < result["ece"] / 3 and result["nll_ts"] < result["nll"] and result["brier_ts"] < result["brier"]


def test_a_calibrated_model_keeps_a_temperature_near_one():
    probabilities, labels = overconfident(temperature=1.0, seed=1)
    assert fit_temperature(probabilities, labels) == pytest.approx(1.0, abs=0.1)
    assert expected_calibration_error(probabilities, labels) < 0.03


def test_metrics_of_a_certain_model():
    labels = np.array([0, 1, 2, 1])
    right = np.eye(3)[labels]
    assert expected_calibration_error(right, labels) == pytest.approx(0.0, abs=1e-6)
    assert brier_score(right, labels) == 0.0 and negative_log_likelihood(right, labels) == pytest.approx(0.0, abs=1e-6)
    wrong = np.eye(3)[(labels + 1) % 3]
    assert expected_calibration_error(wrong, labels) == pytest.approx(1.0) and brier_score(wrong, labels) == 2.0


def test_the_split_is_fixed_and_seeded():
    first, again = calibration_split(101), calibration_split(101)
    assert np.array_equal(first.fit, again.fit) and len(first.fit) + len(first.held_out) == 101
    assert not set(first.fit) & set(first.held_out)
    assert not np.array_equal(calibration_split(101, seed=1).fit, first.fit)


def test_per_class_errors():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    top1 = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 2])
    logits = torch.nn.functional.one_hot(top1, 4).float()
    errors = class_errors(ClassificationPredictions.from_logits(logits, labels), num_classes=4)
    assert errors.matrix.tolist() == [[3, 1, 0, 0], [0, 2, 0, 0], [0, 2, 1, 0], [0, 0, 0, 0]]
    assert errors.accuracy[:3] == pytest.approx([75.0, 100.0, 100 / 3]) and np.isnan(errors.accuracy[3])
    [worst, *_] = errors.worst()
    assert (worst["class"], worst["taken_for"], worst["taken_for_images"]) == (2, 1, 2)
    assert [row["class"] for row in errors.worst()] == [2, 0, 1]  # a class without test images is not listed


def test_a_run_page_draws_the_whole_confusion_matrix_or_its_worst_classes():
    import json
    import re

    from vbench.leaderboard.behaviour import WORST_SHOWN, confusion_block

    def spec_of(classes: int) -> dict:
        generator = torch.Generator().manual_seed(0)
        labels = torch.randint(0, classes, (3000,), generator=generator)
        logits = torch.randn(3000, classes, generator=generator)
        logits[torch.arange(1500), labels[:1500]] += 10
        html = str(confusion_block(ClassificationPredictions.from_logits(logits, labels), classes))
        return json.loads(re.search(r'id="confusion-spec">(.*?)</script>', html).group(1))

    whole = spec_of(10)["data"][0]
    assert len(whole["z"]) == 10 and sum(map(sum, whole["z"])) == 3000 and whole["y"] == [str(c) for c in range(10)]
    worst = spec_of(200)["data"][0]
    assert len(worst["z"]) == len(worst["y"]) == WORST_SHOWN and len(worst["x"]) >= WORST_SHOWN
