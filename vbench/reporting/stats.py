"""Is A really better than B? Differences with confidence intervals and p-values.

Every distribution comes from ``scipy.stats``; nothing here evaluates a distribution by hand. Differences
are always A minus B, so a positive difference means A scored higher.

- Over seeds (final scores of runs): :func:`seed_difference`, a paired t-test when both sides ran the
  same seeds, Welch's t-test otherwise; :func:`mean_interval`, the t interval of one side's mean (does
  the paper's number lie inside it?).
- Over test images, from per-image predictions of one seed each: :func:`mcnemar_exact` and
  :func:`bootstrap_accuracy_difference` (classification), :func:`bootstrap_miou_difference`
  (segmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import stats

from vbench.errors import VbenchError

MIN_SEEDS = 2


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    confidence: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class SeedDifference:
    """Mean score of A minus mean score of B over seeds.

    ``method`` is "paired" (same seeds on both sides: t-test on the per-seed differences), "welch" (other
    seeds: Welch's unequal-variance t-test) or None when a side has fewer than 2 seeds; then
    ``interval`` and ``p_value`` are None and ``reason`` says why. With zero spread (every per-seed
    difference equal, or every score of each side equal) the t statistic is infinite or undefined: scipy
    warns and gives a zero-width interval with a p-value of 0 (a nonzero difference) or NaN.
    """

    method: str | None
    seeds_a: tuple[int, ...]
    seeds_b: tuple[int, ...]
    mean_a: float
    mean_b: float
    difference: float
    interval: Interval | None
    p_value: float | None
    reason: str = ""


def _scores(side: str, scores: Mapping[int, float]) -> tuple[tuple[int, ...], np.ndarray]:
    if not scores:
        raise VbenchError(f"no finished seeds on side {side}; run it first or pick seeds that exist")
    seeds = tuple(sorted(scores))
    values = np.array([scores[seed] for seed in seeds], dtype=np.float64)
    if not np.isfinite(values).all():
        raise VbenchError(f"side {side} has a non-finite score (seeds {list(seeds)}); rerun the failed seed")
    return seeds, values


def seed_difference(a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95) -> SeedDifference:
    """Compare final scores ``{seed: score}`` of A and B (see :class:`SeedDifference`)."""
    seeds_a, values_a = _scores("A", a)
    seeds_b, values_b = _scores("B", b)
    base = dict(seeds_a=seeds_a, seeds_b=seeds_b, mean_a=float(values_a.mean()), mean_b=float(values_b.mean()),
                difference=float(values_a.mean() - values_b.mean()))
    if min(len(seeds_a), len(seeds_b)) < MIN_SEEDS:
        reason = (f"a t interval needs at least {MIN_SEEDS} seeds on each side (A has {len(seeds_a)}, "
                  f"B has {len(seeds_b)}); compare the per-image predictions instead")
        return SeedDifference(method=None, interval=None, p_value=None, reason=reason, **base)
    if seeds_a == seeds_b:
        method, result = "paired", stats.ttest_rel(values_a, values_b)
    else:
        method, result = "welch", stats.ttest_ind(values_a, values_b, equal_var=False)
    ci = result.confidence_interval(confidence_level=confidence)
    return SeedDifference(method=method, interval=Interval(float(ci.low), float(ci.high), confidence),
                          p_value=float(result.pvalue), **base)


def mean_interval(values, confidence: float = 0.95) -> Interval | None:
    """The t interval of the mean of ``values`` (scores over seeds); None with fewer than 2 values.

    ``mean_interval(scores).contains(paper_value)``: does the published number lie inside it?
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < MIN_SEEDS:
        return None
    ci = stats.ttest_1samp(values, popmean=0.0).confidence_interval(confidence_level=confidence)
    return Interval(float(ci.low), float(ci.high), confidence)


def _paired_flags(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.ndim != 1 or correct_a.shape != correct_b.shape or correct_a.size == 0:
        raise VbenchError(
            f"per-image predictions of A ({correct_a.shape[0] if correct_a.ndim else 0} images) and B "
            f"({correct_b.shape[0] if correct_b.ndim else 0} images) do not cover the same test set; "
            "compare runs evaluated on the same split")
    return correct_a, correct_b


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on the images where exactly one of A and B is right.

    ``only_a_correct`` and ``only_b_correct`` are b and c of the 2x2 table; under the null hypothesis
    (same accuracy) b ~ Binomial(b + c, 1/2). With b + c == 0 the p-value is 1.
    """

    images: int
    accuracy_a: float
    accuracy_b: float
    only_a_correct: int
    only_b_correct: int
    p_value: float

    @property
    def b(self) -> int:
        return self.only_a_correct

    @property
    def c(self) -> int:
        return self.only_b_correct


def mcnemar_exact(correct_a, correct_b) -> McNemarResult:
    """Exact (binomial) McNemar test of two classifiers on the same images, from per-image correctness."""
    correct_a, correct_b = _paired_flags(correct_a, correct_b)
    only_a = int(np.count_nonzero(correct_a & ~correct_b))
    only_b = int(np.count_nonzero(~correct_a & correct_b))
    discordant = only_a + only_b
    p_value = stats.binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0
    return McNemarResult(images=correct_a.size, accuracy_a=float(correct_a.mean()),
                         accuracy_b=float(correct_b.mean()), only_a_correct=only_a, only_b_correct=only_b,
                         p_value=float(p_value))


@dataclass(frozen=True)
class BootstrapDifference:
    """A score of A minus the same score of B on one test set, with a bootstrap interval over its images."""

    images: int
    difference: float
    interval: Interval
    n_resamples: int
    seed: int


def bootstrap_accuracy_difference(correct_a, correct_b, n_resamples: int = 9999, seed: int = 0,
                                  confidence: float = 0.95) -> BootstrapDifference:
    """Accuracy of A minus accuracy of B (in [-1, 1]), percentile interval from resampling test images.

    Resampling is paired (an image is drawn with both predictions), so it is the bootstrap of the mean of
    the per-image differences ``correct_a - correct_b``. Same ``seed``, same interval.
    """
    correct_a, correct_b = _paired_flags(correct_a, correct_b)
    per_image = correct_a.astype(np.float64) - correct_b.astype(np.float64)
    result = stats.bootstrap((per_image,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                             method="percentile", vectorized=True, batch=_batch(per_image.size),
                             rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return BootstrapDifference(images=per_image.size, difference=float(per_image.mean()),
                               interval=Interval(float(ci.low), float(ci.high), confidence),
                               n_resamples=n_resamples, seed=seed)


def _batch(images: int, max_values: int = 4_000_000) -> int:
    """Resamples per batch, so that one batch of resampled indices stays near 32 MB."""
    return max(1, max_values // max(images, 1))


def miou_from_counts(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """mIoU in percent from summed per-class counts [..., classes]; classes with no union are skipped."""
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
    return np.nanmean(iou, axis=-1) * 100


def bootstrap_miou_difference(intersection_a, union_a, intersection_b, union_b, n_resamples: int = 9999,
                              seed: int = 0, confidence: float = 0.95) -> BootstrapDifference:
    """mIoU of A minus mIoU of B (percent points), percentile interval from resampling validation images.

    Arguments are per-image, per-class pixel counts [images, classes]. mIoU is not a mean over images:
    each resample sums the counts of the drawn images (paired: the same draw for A and B) and then takes
    the mIoU, as the metric does over the whole validation set.
    """
    counts = [np.asarray(c, dtype=np.float64) for c in (intersection_a, union_a, intersection_b, union_b)]
    if len({c.shape for c in counts}) != 1 or counts[0].ndim != 2 or counts[0].shape[0] == 0:
        raise VbenchError(f"per-image counts of A and B differ in shape ({', '.join(str(c.shape) for c in counts)}); "
                          "compare runs evaluated on the same split with the same classes")
    images = counts[0].shape[0]
    stacked = np.concatenate(counts, axis=1)  # [images, 4 * classes]

    def difference(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        # How often each resample drew each image; one matrix product then sums the drawn counts.
        resamples = indices.reshape(-1, images)
        draws = np.zeros((resamples.shape[0], images))
        np.add.at(draws, (np.arange(resamples.shape[0])[:, None], resamples), 1)
        inter_a, uni_a, inter_b, uni_b = np.split(draws @ stacked, 4, axis=-1)
        return (miou_from_counts(inter_a, uni_a) - miou_from_counts(inter_b, uni_b)).reshape(indices.shape[:-1])

    image_indices = np.arange(images)
    result = stats.bootstrap((image_indices,), difference, n_resamples=n_resamples, confidence_level=confidence,
                             method="percentile", vectorized=True, batch=_batch(images),
                             rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    observed = float(difference(image_indices))
    return BootstrapDifference(images=images, difference=observed,
                               interval=Interval(float(ci.low), float(ci.high), confidence),
                               n_resamples=n_resamples, seed=seed)
