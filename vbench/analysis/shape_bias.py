"""``vbench shape-bias``: do the models decide by an object's shape or by its texture? (Geirhos et al., "ImageNet-
trained CNNs are biased towards texture", ICLR 2019.) Each cue-conflict image carries the shape of one class and
the texture of another; a decision is a *shape* decision when the model's top-1 class is the shape's class, a
*texture* decision when it is the texture's, and shape bias = shape decisions / (shape + texture decisions).

Two sources of cue-conflict images:

- ``--stimuli DIR``: the cue-conflict stimuli of the model-vs-human toolbox (Geirhos et al., NeurIPS 2021;
  ``datasets/cue-conflict``) for models of its 16 ImageNet categories: ``DIR/<shape category>/<shape><i>-<texture>
  <j>.png``, the categories ``STIMULUS_CATEGORIES``. The model's suite must have those 16 classes (an image-folder
  suite whose class folders carry their names; classes are numbered in sorted order). Images whose shape and
  texture are one category are left out, as the toolbox does; the source images are not in the set, so every other
  image counts.
- without stimuli, for the small suites: hybrid images built from the test split (Oliva, Torralba & Schyns,
  "Hybrid images", SIGGRAPH 2006): the low spatial frequencies of image A (its shape: a Gaussian blur of standard
  deviation ``sigma`` pixels, by default ``max(1, img_size / 16)``) plus the high frequencies of image B of another
  class (its texture and fine detail: B minus its blur of the same sigma). Every test image is the shape source
  of one hybrid (or the first ``--images N``); its texture source is drawn, seeded, among the images of other
  classes. As Geirhos et al. do, only hybrids whose model is right on both source images alone count.

Each result is kept in the store's ``evaluations`` table (kind ``shape-bias``, condition ``hybrid:<sigma>`` or
``stimuli:<folder name>``), with the kernel size of the LKA, LSKA and LKCA mixers for the shape-bias-against-kernel
chart; a run already measured under the same condition is not measured again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from rich.console import Console
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from vbench.analysis.runs import TRAINED, finished_runs, large_kernel_size, measure_runs, run_model, select_runs
from vbench.data.folders import decode_images
from vbench.engine.evaluate import EvaluationOutcome
from vbench.errors import VbenchError
from vbench.paths import default_data_root

KIND = "shape-bias"
PAIRING_SEED = 0
STIMULUS_CATEGORIES = ("airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair", "clock", "dog",
                       "elephant", "keyboard", "knife", "oven", "truck")
STIMULUS_NAME = re.compile(r"^(?P<shape>[a-z]+)\d+-(?P<texture>[a-z]+)\d+$")
LAYOUT = "DIR/<shape category>/<shape><i>-<texture><j>.png, as model-vs-human's datasets/cue-conflict"


@dataclass(frozen=True)
class CueConflict:
    """uint8 images [N, 3, H, W] with their shape and texture classes; ``sources``: the indices of the shape and
    texture source images in the test split (hybrids), None for stimuli, whose sources are not in the set."""

    images: torch.Tensor
    shape_labels: torch.Tensor
    texture_labels: torch.Tensor
    condition: str
    details: dict
    sources: tuple[np.ndarray, np.ndarray] | None = None


def default_sigma(img_size: int) -> float:
    return max(1.0, img_size / 16)


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of float images [N, 3, H, W] (torchvision's, reflect padding), kernel of 3 sigma each side."""
    side = min(images.shape[-2:])
    size = min(2 * math.ceil(3 * sigma) + 1, side if side % 2 else side - 1)
    return TF.gaussian_blur(images, [size, size], [sigma, sigma])


def hybrid_images(shapes: torch.Tensor, textures: torch.Tensor, sigma: float) -> torch.Tensor:
    """Low frequencies of ``shapes`` plus high frequencies of ``textures`` (uint8 in, uint8 out)."""
    low = blurred(shapes.float(), sigma)
    texture = textures.float()
    return (low + texture - blurred(texture, sigma)).round().clamp(0, 255).to(torch.uint8)


def texture_partners(labels: np.ndarray, seed: int = PAIRING_SEED) -> np.ndarray:
    """For every image, a seeded draw among the images of the other classes."""
    rng = np.random.default_rng(seed)
    partners = np.empty(len(labels), dtype=np.int64)
    for index, label in enumerate(labels):
        others = np.flatnonzero(labels != label)
        if not len(others):
            raise VbenchError("the test split has a single class; cue-conflict images need two")
        partners[index] = others[rng.integers(len(others))]
    return partners


def hybrid_set(images: torch.Tensor, labels: torch.Tensor, count: int, sigma: float) -> CueConflict:
    """The first ``count`` test images as shape sources, each with a texture source of another class."""
    images, labels = images.cpu(), labels.cpu()
    shapes = np.arange(min(count, len(labels)))
    textures = texture_partners(labels.numpy())[shapes]
    made = hybrid_images(images[shapes], images[textures], sigma)
    return CueConflict(made, labels[shapes], labels[textures], f"hybrid:{sigma:g}",
                       {"construction": "hybrid", "sigma": sigma}, (shapes, textures))


def read_stimuli(folder: str | Path, img_size: int) -> CueConflict:
    """The cue-conflict stimuli of ``folder`` (model-vs-human's layout), checked before anything is measured."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise VbenchError(f"--stimuli {str(folder)!r} is not a folder; expected {LAYOUT}")
    index = {name: i for i, name in enumerate(STIMULUS_CATEGORIES)}
    paths, shapes, textures, same = [], [], [], 0
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir() or entry.name not in index:
            raise VbenchError(f"--stimuli: {entry} is not a folder named after one of the 16 categories "
                              f"({', '.join(STIMULUS_CATEGORIES)}); expected {LAYOUT}")
        for path in sorted(entry.iterdir()):
            if path.name.startswith("."):
                continue
            match = STIMULUS_NAME.match(path.stem)
            if path.suffix.lower() not in IMG_EXTENSIONS or not match or match["shape"] != entry.name \
                    or match["texture"] not in index:
                raise VbenchError(f"--stimuli: {path} is not named <shape><i>-<texture><j> with the shape "
                                  f"{entry.name!r} and a texture among the 16 categories; expected {LAYOUT}")
            if match["texture"] == entry.name:
                same += 1
                continue
            paths.append(path)
            shapes.append(index[entry.name])
            textures.append(index[match["texture"]])
    if not paths:
        raise VbenchError(f"--stimuli {str(folder)!r} holds no cue-conflict image of two categories; expected {LAYOUT}")
    return CueConflict(decode_images(paths, img_size), torch.tensor(shapes), torch.tensor(textures),
                       f"stimuli:{folder.name}", {"construction": "stimuli", "folder": str(folder),
                                                  "same_category_left_out": same})


def check_stimulus_classes(suite, data_root: str | None) -> None:
    """A model judged on the 16-category stimuli must have those 16 classes, numbered in sorted order."""
    if suite.num_classes != len(STIMULUS_CATEGORIES):
        raise VbenchError(f"--stimuli needs a suite of the 16 categories ({', '.join(STIMULUS_CATEGORIES)}); suite "
                          f"{suite.name!r} has {suite.num_classes} classes")
    train = Path(data_root or suite.root or default_data_root()).expanduser() / "train"
    classes = find_classes(str(train))[0] if suite.kind == "image-folder" and train.is_dir() else None
    if classes != sorted(STIMULUS_CATEGORIES):
        raise VbenchError(f"--stimuli needs a suite whose classes are the 16 categories: an image-folder suite whose "
                          f"train/ folders are named {', '.join(STIMULUS_CATEGORIES)}; suite {suite.name!r} is not")


def decisions(predicted: np.ndarray, conflict: CueConflict, counted: np.ndarray) -> dict:
    """Shape and texture decisions among the ``counted`` images, and the shape bias."""
    shape = (predicted == conflict.shape_labels.numpy()) & counted
    texture = (predicted == conflict.texture_labels.numpy()) & counted
    shape_count, texture_count, kept = int(shape.sum()), int(texture.sum()), int(counted.sum())
    cue = shape_count + texture_count
    return {"images": len(predicted), "counted": kept, "shape": shape_count, "texture": texture_count,
            "other": kept - cue, "shape_bias": shape_count / cue if cue else None,
            "cue_decisions": cue / kept if kept else None}


@dataclass(kw_only=True)
class ShapeBiasOutcome(EvaluationOutcome):
    condition: str
    results: list = field(default_factory=list)  # (run, metrics)


def evaluate_shape_bias(store, suite, backbones: list[str] | None = None, seeds: list[int] | None = None,
                        stimuli: str | None = None, images: int | None = None, sigma: float | None = None,
                        data_root=None, device: str = "auto", limit: int | None = None,
                        console: Console | None = None) -> ShapeBiasOutcome:
    """Measure the shape bias of every selected finished run on cue-conflict images (see the module)."""
    if images is not None and images < 1:
        raise VbenchError(f"--images must be at least 1, got {images}")
    if sigma is not None and not sigma > 0:
        raise VbenchError(f"--sigma must be a positive number of pixels, got {sigma}")
    if stimuli is not None and sigma is not None:
        raise VbenchError("--sigma shapes the hybrid images; it does not apply to --stimuli")
    if stimuli is not None:
        check_stimulus_classes(suite, data_root)
        conflict = read_stimuli(stimuli, suite.img_size)  # a wrong layout is one error before any model is built
    candidates = finished_runs(store, suite, backbones, seeds, "shape bias")
    selection = select_runs(store, suite, candidates, data_root, device, limit,
                           in_memory="shape bias on hybrid images" if stimuli is None else None)
    task = selection.task
    if stimuli is None:
        conflict = hybrid_set(task.data.test_images, task.data.test_labels, images or len(task.data.test_labels),
                              sigma or default_sigma(suite.img_size))
    outcome = ShapeBiasOutcome(condition=conflict.condition, runs=selection.runs, skipped=selection.skipped)
    cue_images = conflict.images.to(task.device)
    cue_labels = conflict.shape_labels.to(task.device)

    def measure(run) -> dict:
        model = run_model(store, task, run, TRAINED)
        predicted = task.evaluate_images(model, cue_images, cue_labels).predictions.top_k[:, 0].astype(np.int64)
        counted = np.ones(len(predicted), dtype=bool)
        if conflict.sources is not None:  # right on both source images alone
            correct = task.evaluate_images(model, task.data.test_images, task.data.test_labels).predictions.correct
            counted = correct[conflict.sources[0]] & correct[conflict.sources[1]]
        return {**decisions(predicted, conflict, counted), **conflict.details, "kernel_size": large_kernel_size(model)}

    return measure_runs(store, outcome, KIND, conflict.condition, f"{suite.name}: shape bias ({conflict.condition})",
                        measure, console, images=len(conflict.shape_labels))
