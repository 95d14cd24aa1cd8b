"""Calibration of a classifier's confidence, from its class probabilities (the per-image predictions a run keeps):

- ECE, the expected calibration error of Guo et al. (ICML 2017): the top-1 confidences in 15 equal-width bins,
  the mean |accuracy - confidence| of the bins weighted by their share of the images (torchmetrics'
  ``multiclass_calibration_error``, norm l1);
- NLL, the mean negative log-likelihood of the true class (nats);
- Brier score, the mean over images of sum_c (p_c - [c = label])^2 (Brier 1950; 0 is perfect, 2 the worst);
- temperature scaling (Guo et al.): one temperature T for every image, fitted by minimising the NLL of
  softmax(log p / T) on a fixed, seeded part of the test split (``FIT_SHARE`` of it, seed ``SPLIT_SEED``) and
  applied to the rest, where every metric is reported before and after it. Under a corruption (Ovadia et al.,
  NeurIPS 2019) the temperature is the one fitted on the clean split, and the metrics are reported on the same
  held-out images, corrupted.

``log p`` stands for the logits: softmax is blind to a shift of the logits, so scaling the log-probabilities by
1/T gives what scaling the logits would. Probabilities are kept as float16; a probability that rounded to 0 is
read as ``FLOOR`` so that its log stays finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

ECE_BINS = 15
FIT_SHARE = 0.5
SPLIT_SEED = 0
FLOOR = 1e-8
TEMPERATURE_BOUNDS = (0.05, 20.0)


@dataclass(frozen=True)
class CalibrationSplit:
    """The images a temperature is fitted on and the images the metrics are reported on (indices)."""

    fit: np.ndarray
    held_out: np.ndarray


def calibration_split(images: int, seed: int = SPLIT_SEED, share: float = FIT_SHARE) -> CalibrationSplit:
    """A fixed, seeded split of ``images`` test images: the same for every run of one test split."""
    order = np.random.default_rng(seed).permutation(images)
    cut = int(round(images * share))
    return CalibrationSplit(np.sort(order[:cut]), np.sort(order[cut:]))


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), FLOOR, None))


def scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), float64."""
    logits = log_probabilities(probabilities) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exponentials = np.exp(logits)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    # lazy: torch and torchmetrics, only when calibration is measured
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    preds = torch.as_tensor(np.asarray(probabilities, dtype=np.float32))
    target = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return float(multiclass_calibration_error(preds, target, num_classes=preds.shape[1], n_bins=bins, norm="l1"))


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    true = np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(true, FLOOR, None)).mean())


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    # one line of arithmetic: torchmetrics has no multi-class Brier score
    target = np.zeros_like(probabilities, dtype=np.float64)
    target[np.arange(len(labels)), labels] = 1.0
    return float(((np.asarray(probabilities, dtype=np.float64) - target) ** 2).sum(axis=1).mean())


def calibration_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``ece``, ``nll`` and ``brier`` of class probabilities [images, classes] against labels [images]."""
    labels = np.asarray(labels, dtype=np.int64)
    return {"ece": expected_calibration_error(probabilities, labels),
            "nll": negative_log_likelihood(probabilities, labels), "brier": brier_score(probabilities, labels)}


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the NLL of softmax(log p / T) (Guo et al.'s temperature scaling).

    One bounded scalar minimisation (over log T) with scipy: netcal's TemperatureScaling fits an unbounded
    weight instead and gives a negative temperature on a model near chance."""
    labels = np.asarray(labels, dtype=np.int64)
    log_p = log_probabilities(probabilities)

    def nll(log_temperature: float) -> float:
        logits = log_p / np.exp(log_temperature)
        logits -= logits.max(axis=1, keepdims=True)
        log_normaliser = np.log(np.exp(logits).sum(axis=1))
        return float((log_normaliser - logits[np.arange(len(labels)), labels]).mean())

    low, high = np.log(TEMPERATURE_BOUNDS)
    return float(np.exp(minimize_scalar(nll, bounds=(low, high), method="bounded",
                                        options={"xatol": 1e-4}).x))


def held_out_calibration(probabilities: np.ndarray, labels: np.ndarray, temperature: float,
                         split: CalibrationSplit) -> dict[str, float]:
    """Every metric on the held-out images, before (``ece``) and after temperature scaling (``ece_ts``)."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels, dtype=np.int64)
    held_p, held_y = probabilities[split.held_out], labels[split.held_out]
    before = calibration_metrics(held_p, held_y)
    after = calibration_metrics(scaled(held_p, temperature), held_y)
    return {**before, **{f"{name}_ts": value for name, value in after.items()}, "temperature": temperature,
            "held_out_images": int(len(split.held_out))}


def temperature_scaled(probabilities: np.ndarray, labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, float]:
    """Fit the temperature on the seeded fitting part of the split and report on the rest (see the module)."""
    labels = np.asarray(labels, dtype=np.int64)
    split = calibration_split(len(labels), seed)
    if len(split.fit) == 0 or len(split.held_out) == 0:
        raise ValueError(f"{len(labels)} test images cannot be split into a fitting part and a held-out part")
    temperature = fit_temperature(np.asarray(probabilities)[split.fit], labels[split.fit])
    return {**held_out_calibration(probabilities, labels, temperature, split), "fit_images": int(len(split.fit))}
