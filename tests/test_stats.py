"""vbench.reporting.stats against hand-computed cases (formulas in the test, quantiles from scipy.stats.t)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from vbench.errors import VbenchError
from vbench.reporting.stats import (
    bootstrap_accuracy_difference,
    bootstrap_miou_difference,
    mcnemar_exact,
    mean_interval,
    seed_difference,
)
from vbench.segmentation.metrics import scores_from_histograms


def test_same_seeds_are_paired_by_seed_not_by_order():
    a = {0: 91.0, 1: 92.0, 2: 94.0}
    b = {2: 91.0, 0: 90.0, 1: 90.0}  # per-seed differences 1, 2, 3
    result = seed_difference(a, b)
    assert result.method == "paired" and result.seeds_a == result.seeds_b == (0, 1, 2)
    # mean 2, sd 1, n 3: t = 2 / (1 / sqrt 3), df 2
    half_width = scipy_stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert result.difference == pytest.approx(2.0)
    assert (result.interval.low, result.interval.high) == pytest.approx((2 - half_width, 2 + half_width))
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(2 * math.sqrt(3), 2))
    assert result.interval.confidence == 0.95


def test_other_seeds_use_welch():
    a, b = {0: 1.0, 1: 2.0, 2: 4.0}, {3: 2.0, 4: 5.0}
    result = seed_difference(a, b, confidence=0.9)
    assert result.method == "welch"
    xa, xb = np.array([1.0, 2.0, 4.0]), np.array([2.0, 5.0])
    va, vb = xa.var(ddof=1) / 3, xb.var(ddof=1) / 2
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 1)  # Welch-Satterthwaite
    diff, se = xa.mean() - xb.mean(), math.sqrt(va + vb)
    half_width = scipy_stats.t.ppf(0.95, df) * se
    assert result.difference == pytest.approx(diff)
    assert (result.interval.low, result.interval.high) == pytest.approx((diff - half_width, diff + half_width))
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(diff) / se, df))


@pytest.mark.parametrize("a,b", [({0: 90.0}, {0: 89.0, 1: 88.0}), ({0: 90.0}, {0: 89.0})])
def test_a_single_seed_gives_the_difference_and_says_why_there_is_no_interval(a, b):
    result = seed_difference(a, b)
    assert result.method is None and result.interval is None and result.p_value is None
    assert result.difference == pytest.approx(90.0 - np.mean(list(b.values())))
    assert "at least 2 seeds" in result.reason and "predictions" in result.reason


def test_a_side_without_seeds_is_a_user_error():
    with pytest.raises(VbenchError, match="no finished seeds on side B"):
        seed_difference({0: 1.0, 1: 2.0}, {})


def test_mean_interval_and_the_papers_number():
    values = [93.0, 94.0, 95.0, 94.0]
    interval = mean_interval(values)
    half_width = scipy_stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert (interval.low, interval.high) == pytest.approx((94 - half_width, 94 + half_width))
    assert interval.contains(93.36 + 1) and not interval.contains(93.36 - 1)
    assert mean_interval([94.0]) is None


def flags(*pairs: tuple[bool, bool, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness from (a right, b right, how many images) groups."""
    a = np.concatenate([np.full(n, ra) for ra, _, n in pairs])
    b = np.concatenate([np.full(n, rb) for _, rb, n in pairs])
    return a, b


def test_mcnemar_exact_on_a_hand_computed_table():
    a, b = flags((True, True, 50), (True, False, 1), (False, True, 6), (False, False, 10))
    result = mcnemar_exact(a, b)
    assert (result.b, result.c, result.images) == (1, 6, 67)
    # P(X <= 1) for X ~ Bin(7, 1/2) is 8/128; two-sided: 16/128
    assert result.p_value == pytest.approx(16 / 128)
    assert result.accuracy_a == pytest.approx(51 / 67) and result.accuracy_b == pytest.approx(56 / 67)


def test_mcnemar_without_discordant_images_is_one():
    a, b = flags((True, True, 5), (False, False, 5))
    assert mcnemar_exact(a, b).p_value == 1.0


def test_predictions_of_different_test_sets_are_refused():
    with pytest.raises(VbenchError, match="same split"):
        mcnemar_exact(np.ones(5, bool), np.ones(6, bool))


def numpy_percentile_bootstrap(per_image: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = per_image[rng.integers(0, per_image.size, (resamples, per_image.size))].mean(axis=1)
    return tuple(np.percentile(means, [2.5, 97.5]))


def test_bootstrap_accuracy_difference_is_seeded_and_agrees_with_a_plain_resample():
    a, b = flags((True, True, 700), (True, False, 90), (False, True, 60), (False, False, 150))
    first = bootstrap_accuracy_difference(a, b, n_resamples=4000, seed=7)
    assert first == bootstrap_accuracy_difference(a, b, n_resamples=4000, seed=7)
    assert first.interval != bootstrap_accuracy_difference(a, b, n_resamples=4000, seed=8).interval
    assert first.difference == pytest.approx(0.03)
    low, high = numpy_percentile_bootstrap(a.astype(float) - b.astype(float), 4000, seed=1)
    # Monte-Carlo error of a 2.5% quantile from 4000 resamples is ~0.001 here.
    assert first.interval.low == pytest.approx(low, abs=0.004)
    assert first.interval.high == pytest.approx(high, abs=0.004)
    assert first.interval.low < 0.03 < first.interval.high


def test_bootstrap_of_identical_predictions_is_zero():
    a, _ = flags((True, True, 30), (False, False, 10))
    result = bootstrap_accuracy_difference(a, a.copy(), n_resamples=200)
    assert (result.difference, result.interval.low, result.interval.high) == (0.0, 0.0, 0.0)


def test_bootstrap_miou_difference_sums_counts_before_the_ratio():
    rng = np.random.default_rng(3)
    images, classes = 40, 6
    inter_a = rng.integers(0, 50, (images, classes))
    union_a = inter_a + rng.integers(0, 50, (images, classes))
    inter_b = rng.integers(0, 50, (images, classes))
    union_b = inter_b + rng.integers(0, 50, (images, classes))
    inter_a[:, 5] = union_a[:, 5] = 0  # a class A never predicts nor sees is skipped, not scored 0
    result = bootstrap_miou_difference(inter_a, union_a, inter_b, union_b, n_resamples=3000, seed=1)

    def miou(inter, union):  # the metric module's mIoU; prediction + label = union + intersection
        return scores_from_histograms(inter.sum(0), union.sum(0), inter.sum(0)).mIoU

    assert result.difference == pytest.approx(miou(inter_a, union_a) - miou(inter_b, union_b))
    draws = np.random.default_rng(0).integers(0, images, (3000, images))
    resampled = [miou(inter_a[d], union_a[d]) - miou(inter_b[d], union_b[d]) for d in draws]
    low, high = np.percentile(resampled, [2.5, 97.5])
    spread = high - low
    assert result.interval.low == pytest.approx(low, abs=0.05 * spread)
    assert result.interval.high == pytest.approx(high, abs=0.05 * spread)
    assert result == bootstrap_miou_difference(inter_a, union_a, inter_b, union_b, n_resamples=3000, seed=1)


def test_bootstrap_miou_refuses_counts_of_different_shapes():
    counts = np.ones((4, 3), np.int64)
    with pytest.raises(VbenchError, match="same split"):
        bootstrap_miou_difference(counts, counts, counts[:3], counts[:3])
