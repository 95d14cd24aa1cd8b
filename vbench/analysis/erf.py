"""``vbench erf``: effective receptive fields, measured as RepLKNet measures them (Ding et al., CVPR 2022, the
``erf/visualize_erf.py`` and ``erf/analyze_erf.py`` of DingXiaoH/RepLKNet-pytorch).

- For every image, the contribution score of each input pixel is the absolute gradient of the central point of
  the model's last feature map (its channels passed through a ReLU and summed, as RepLKNet does) with respect to
  the input, summed over the input's channels; the ERF matrix is its mean over the first N test images (images
  whose gradient is not finite are skipped, as RepLKNet skips NaN ones). RepLKNet keeps the positive part of the
  gradient; the absolute value here counts inhibiting pixels too. The images are the suite's test images at the
  suite's size (RepLKNet enlarges ImageNet images to 1024 x 1024).
- The heatmap is RepLKNet's: log10(matrix + 1), divided by its maximum.
- The high-contribution area ratio at threshold t is the area of the smallest centred square (side 2i + 1,
  i = 1, 2, ...) whose share of the scaled matrix's sum exceeds t, over the image's area, for t = 20%, 30%, 50%
  and 99%. RepLKNet stops one square short of the border; here the squares grow, cut at the border, until they
  cover the image, so that every threshold has an answer on small images.

The last feature map is the one the backbone declares (``vbench.models.feature_map``). Each result is kept in the
store's ``evaluations`` table (kind ``erf``, condition ``trained`` or ``init``) as soon as it is measured; a run
already measured on as many images is not measured again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
from rich.console import Console

from vbench.analysis.runs import (
    INIT,
    TRAINED,
    finished_runs,
    large_kernel_size,
    measure_runs,
    run_model,
    select_runs,
)
from vbench.engine.evaluate import EvaluationOutcome
from vbench.errors import VbenchError
from vbench.models import registry
from vbench.models.feature_map import FeatureMap, last_feature_map, require_feature_map

KIND = "erf"
THRESHOLDS = (0.2, 0.3, 0.5, 0.99)
DEFAULT_IMAGES = 50


def threshold_key(threshold: float) -> str:
    return f"area_ratio_{round(threshold * 100)}"


def central_point(feature_map: torch.Tensor) -> torch.Tensor:
    """RepLKNet's objective: the ReLU of the central point's channels, summed (over the batch too: each image's
    gradient is its own, the images do not mix in eval mode). Without the ReLU a LayerNorm-ed map would sum to a
    constant."""
    height, width = feature_map.shape[-2:]
    return torch.relu(feature_map[:, :, height // 2, width // 2]).sum()


def contribution_scores(output_map: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """|d central point / d inputs| summed over the input channels: [B, H, W] for inputs [B, C, H, W]."""
    gradient, = torch.autograd.grad(central_point(output_map), inputs)
    return gradient.abs().sum(dim=1)


def model_scores(model: torch.nn.Module, feature_map: FeatureMap, images: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The contribution scores [B, H, W] of a batch of (normalised) images through the model's last feature map,
    and that map's size."""
    inputs = images.detach().float().requires_grad_(True)
    with torch.enable_grad():
        output_map = last_feature_map(model, feature_map, inputs)
        return contribution_scores(output_map, inputs), list(output_map.shape[-2:])


def mean_scores(batches: Iterable[torch.Tensor], scores_of) -> tuple[np.ndarray, int]:
    """The mean contribution-score matrix over every image of ``batches`` whose scores are finite, and their count."""
    total, used = None, 0
    for batch in batches:
        scores = scores_of(batch).double()
        finite = torch.isfinite(scores).flatten(1).all(dim=1)
        if finite.any():
            kept = scores[finite].sum(dim=0).cpu().numpy()
            total = kept if total is None else total + kept
            used += int(finite.sum())
    if not used:
        raise VbenchError("every image gave a gradient that is not finite; the model's weights hold NaN or inf")
    return total / used, used


def scaled(matrix: np.ndarray) -> np.ndarray:
    """RepLKNet's heatmap values: log10(matrix + 1) over its maximum (zeros stay zeros)."""
    logged = np.log10(np.asarray(matrix, dtype=np.float64) + 1.0)
    peak = logged.max()
    return logged / peak if peak > 0 else logged


def area_ratio(scaled_matrix: np.ndarray, threshold: float) -> tuple[int, float] | None:
    """(side, area ratio) of the smallest centred square holding more than ``threshold`` of the sum (see the
    module); None when the matrix is all zeros."""
    height, width = scaled_matrix.shape
    total = scaled_matrix.sum()
    if total <= 0:
        return None
    row, column = height // 2, width // 2
    reach = max(row, height - 1 - row, column, width - 1 - column)
    for i in range(1, max(reach, 1) + 1):
        top, bottom = max(row - i, 0), min(row + i + 1, height)
        left, right = max(column - i, 0), min(column + i + 1, width)
        if scaled_matrix[top:bottom, left:right].sum() / total > threshold:
            return 2 * i + 1, (bottom - top) * (right - left) / (height * width)
    return 2 * reach + 1, 1.0  # only a threshold of 100% or more gets here


def erf_summary(matrix: np.ndarray) -> dict:
    """The area ratios (and square sides) of RepLKNet's analysis at every threshold."""
    values = scaled(matrix)
    summary = {}
    for threshold in THRESHOLDS:
        found = area_ratio(values, threshold)
        summary[threshold_key(threshold)] = found[1] if found else None
        summary[f"side_{round(threshold * 100)}"] = found[0] if found else None
    return summary


def rounded_matrix(matrix: np.ndarray, digits: int = 6) -> list[list[float]]:
    """The matrix as nested lists of floats to ``digits`` significant digits (JSON in the store)."""
    return [[float(f"{value:.{digits}g}") for value in row] for row in np.asarray(matrix, dtype=np.float64)]


@dataclass(kw_only=True)
class ErfOutcome(EvaluationOutcome):
    condition: str
    results: list = field(default_factory=list)  # (run, metrics) of every run, new or kept


def check_feature_maps(runs: list) -> dict[str, FeatureMap]:
    """Every run's backbone declares its last feature map: one error naming the first that does not."""
    maps = {}
    for name in dict.fromkeys(run.backbone for run in runs):
        variant = registry.get_backbone(name).variant("classification")
        try:
            maps[name] = require_feature_map(variant.feature_map, name)
        except VbenchError as exc:
            raise VbenchError(f"{exc} (leave it out with --backbones)") from None
    return maps


def evaluate_erf(store, suite, backbones: list[str] | None = None, seeds: list[int] | None = None,
                 images: int = DEFAULT_IMAGES, init: bool = False, data_root=None, device: str = "auto",
                 limit: int | None = None, console: Console | None = None) -> ErfOutcome:
    """Measure the ERF of every selected finished run (its final weights, or with ``init`` its initial ones)."""
    if images < 1:
        raise VbenchError(f"--images must be at least 1, got {images}")
    condition = INIT if init else TRAINED
    candidates = finished_runs(store, suite, backbones, seeds, "the ERF")
    maps = check_feature_maps(candidates)
    selection = select_runs(store, suite, candidates, data_root, device, limit, need_weights=not init,
                           in_memory="the effective receptive field")
    task = selection.task
    outcome = ErfOutcome(condition=condition, runs=selection.runs, skipped=selection.skipped)
    count = min(images, len(task.data.test_images))
    test_images, test_labels = task.data.test_images[:count], task.data.test_labels[:count]

    def measure(run) -> dict:
        return measure_erf(run_model(store, task, run, condition), maps[run.backbone], task, test_images, test_labels)

    return measure_runs(store, outcome, KIND, condition, f"{suite.name}: ERF ({condition})", measure, console,
                        images=count)


def measure_erf(model: torch.nn.Module, feature_map: FeatureMap, task, images: torch.Tensor,
                labels: torch.Tensor) -> dict:
    """The ERF of one model over uint8 test ``images`` (normalised as the task evaluates them): the matrix, the
    area ratios and what they were measured on."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # only the input's gradient is wanted
    sizes = []

    def scores_of(batch: torch.Tensor) -> torch.Tensor:
        scores, size = model_scores(model, feature_map, batch)
        sizes.append(size)
        return scores

    matrix, used = mean_scores((x for x, _ in task.batches.eval_batches(images, labels)), scores_of)
    return {"images": len(labels), "finite_images": used, "feature_map": feature_map.text, "map_size": sizes[0],
            "input_size": list(matrix.shape), "kernel_size": large_kernel_size(model), **erf_summary(matrix),
            "matrix": rounded_matrix(matrix)}
