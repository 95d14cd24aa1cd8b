"""ImageNet's test sets for robustness, as the LSKA abstract and timm's ``results-imagenet-{a,r,sketch,
v2-matched-frequency}.csv`` use them: the final weights of finished ImageNet runs on each set that is under the
data root (or beside it), in its release layout; nothing is downloaded.

- ImageNet-C (Hendrycks & Dietterich, 2019): ``ImageNet-C/<corruption>/<severity>/<wnid>/*.JPEG`` (or with the
  archives' category folders, ``ImageNet-C/<noise|blur|weather|digital>/<corruption>/...``), 224x224 centre crops
  fed as they are (normalised only, as Hendrycks' test.py does); mCE against AlexNet's published errors when no
  reference backbone is given.
- ImageNet-A and ImageNet-R: ``imagenet-a/<wnid>/*.jpg``, ``imagenet-r/<wnid>/*.jpg``: 200 classes each, so the
  logits are masked to those 200 before the top-k (timm's ``--valid-labels`` with its ``imagenet_{a,r}_synsets``).
- ImageNet-Sketch: ``sketch/<wnid>/*.JPEG`` (also ``imagenet-sketch/`` or ``ImageNet-Sketch/``), 1000 classes.
- ImageNetV2, matched frequency: ``imagenetv2-matched-frequency-format-val/<class index>/*.jpeg``: folders named by
  the class's index among ImageNet's 1000 sorted wnids.

A model trained on fewer classes (ImageNet-100) is scored on the images of its classes, its logits masked to the
classes a set holds. Sets other than ImageNet-C go through the suite's evaluation transform (timm's resize 256 /
crop 224 for the ImageNet suites). Results are rows of the store's evaluations: kind ``imagenet-c``
(condition ``<corruption>/<severity>``) and ``imagenet-test`` (condition: the set's name), each kept as soon as
it is measured, so an interrupted evaluation continues where it stopped.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from vbench.data.folders import imagenet_wnids
from vbench.data.readers import data_root_of
from vbench.data.stream import EvalStream, SquareImage, file_split
from vbench.engine.evaluate import EvaluationOutcome, progress_bar
from vbench.engine.precision import resolve_device
from vbench.errors import VbenchError
from vbench.models import registry
from vbench.robustness.corruptions import CORRUPTIONS
from vbench.robustness.evaluate import finished_runs, select_runs
from vbench.store.artifacts import load_weights, weights_path
from vbench.tasks.classification import ClassificationTask

KIND_C = "imagenet-c"
KIND_SETS = "imagenet-test"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".webp")
C_CATEGORIES = ("noise", "blur", "weather", "digital", "extra")
# AlexNet's top-1 error (%) on ImageNet-C, the mean over severities 1-5 (Hendrycks' robustness repository, as
# AugMix's imagenet.py and others copy it), the mCE reference when no reference backbone is given
ALEXNET_ERRORS = {
    "gaussian_noise": 88.6428, "shot_noise": 89.4468, "impulse_noise": 92.2640, "defocus_blur": 81.9880,
    "glass_blur": 82.6268, "motion_blur": 78.5948, "zoom_blur": 79.8360, "snow": 86.6816, "frost": 82.6572,
    "fog": 81.9324, "brightness": 56.4592, "contrast": 85.3204, "elastic_transform": 64.6056, "pixelate": 71.7840,
    "jpeg_compression": 60.6500,
}
ALEXNET_CLEAN_ERROR = 43.5  # Hendrycks & Dietterich (2019), Table 1: AlexNet's clean ImageNet error


@dataclass(frozen=True)
class TestSet:
    name: str  # the evaluation's condition
    title: str
    folders: tuple[str, ...]  # the release's folder names, looked for under the data root
    layout: str  # wnid: <wnid>/*; index: <class index>/*; corruption: <corruption>/<severity>/<wnid>/*
    synsets: str | None = None  # timm's list of the set's classes (the logits are masked to them)


TEST_SETS = (
    TestSet("imagenet-a", "ImageNet-A", ("imagenet-a",), "wnid", "imagenet_a_synsets.txt"),
    TestSet("imagenet-r", "ImageNet-R", ("imagenet-r",), "wnid", "imagenet_r_synsets.txt"),
    TestSet("imagenet-sketch", "ImageNet-Sketch", ("sketch", "imagenet-sketch", "ImageNet-Sketch"), "wnid"),
    TestSet("imagenet-v2", "ImageNetV2", ("imagenetv2-matched-frequency-format-val",), "index"),
)
IMAGENET_C = TestSet("imagenet-c", "ImageNet-C", ("ImageNet-C", "imagenet-c"), "corruption")


# --- finding and listing the sets ----------------------------------------------------------------------------
def search_roots(suite, data_root=None) -> list[Path]:
    """Where the sets are looked for: the data root and the folder that holds it."""
    root = data_root_of(suite, data_root).resolve()
    return [root, root.parent]


def find_set(test_set: TestSet, roots: list[Path]) -> Path | None:
    for root in roots:
        for name in test_set.folders:
            if (root / name).is_dir():
                return root / name
    return None


def set_synsets(test_set: TestSet) -> list[str] | None:
    if test_set.synsets is None:
        return None
    return pkgutil.get_data("timm.data", f"_info/{test_set.synsets}").decode().split()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def class_folder_files(folder: Path, classes: list[str], by_index: bool = False) -> tuple[list[Path], list[int]]:
    """Images of ``folder/<class>/`` whose class the model knows (labels: the model's); ``by_index``: the class
    folders are named by their index among ImageNet's 1000 sorted wnids (ImageNetV2)."""
    label = {wnid: i for i, wnid in enumerate(classes)}
    wnids = imagenet_wnids() if by_index else None
    paths, labels = [], []
    for class_dir in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name):
        name = class_dir.name
        if by_index:
            if not name.isdigit() or int(name) >= len(wnids):
                raise VbenchError(f"{class_dir}: an ImageNetV2 class folder is named by a class index 0-999")
            name = wnids[int(name)]
        if name in label:
            files = _images(class_dir)
            paths += files
            labels += [label[name]] * len(files)
    if not paths:
        raise VbenchError(f"{folder} holds no images of the model's classes; expected {folder}/<class>/*.JPEG")
    return paths, labels


def corruption_folder(release: Path, name: str, severity: int) -> Path:
    for base in (release, *(release / category for category in C_CATEGORIES)):
        if (base / name / str(severity)).is_dir():
            return base / name / str(severity)
    raise VbenchError(f"incomplete ImageNet-C: {release}/{name}/{severity}/ does not exist (nor under a category "
                      f"folder: {', '.join(C_CATEGORIES)}); restore it or leave {name} out with --corruptions")


def logit_mask(test_set: TestSet, classes: list[str]) -> torch.Tensor | None:
    """The model's label indices of a set's classes, when the set holds fewer classes than the model knows."""
    synsets = set_synsets(test_set)
    if synsets is None:
        return None
    kept = [i for i, wnid in enumerate(classes) if wnid in set(synsets)]
    return torch.tensor(kept, dtype=torch.int64) if len(kept) < len(classes) else None


# --- scoring -------------------------------------------------------------------------------------------------
class Tally:
    """Top-1 and top-5 hits of one model on one set, the logits masked to the set's classes."""

    def __init__(self, mask: torch.Tensor | None):
        self.mask, self.top1, self.top5, self.images = mask, 0, 0, 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits = logits.float()
        if self.mask is not None:
            mask = self.mask.to(logits.device)
            top = mask[logits[:, mask].topk(min(5, len(mask)), dim=-1).indices]
        else:
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        hits = top.eq(labels[:, None])
        self.top1 += int(hits[:, 0].sum())
        self.top5 += int(hits.any(dim=-1).sum())
        self.images += len(labels)

    def metrics(self, skipped: int) -> dict:
        if not self.images:
            raise VbenchError("no image of the set could be decoded")
        return {"top1": 100.0 * self.top1 / self.images, "top5": 100.0 * self.top5 / self.images,
                "images": self.images, "skipped": skipped}


# --- the evaluation ------------------------------------------------------------------------------------------
@dataclass
class Point:
    kind: str  # KIND_C or KIND_SETS
    condition: str
    set_title: str
    files: tuple[list[Path], list[int]]
    mask: torch.Tensor | None
    as_released: bool  # ImageNet-C's crops: normalised only


@dataclass
class ImageNetOutcome(EvaluationOutcome):
    sets: dict[str, str] = field(default_factory=dict)  # set title -> folder
    missing: list[str] = field(default_factory=list)  # sets not found


def imagenet_points(suite, classes: list[str], roots: list[Path], corruptions: list[str], severities: list[int],
                    outcome: ImageNetOutcome) -> list[Point]:
    """Every (set, condition) to evaluate, the sets' files listed, in the order: A, R, Sketch, V2, then C."""
    points = []
    for test_set in TEST_SETS:
        folder = find_set(test_set, roots)
        if folder is None:
            outcome.missing.append(test_set.title)
            continue
        outcome.sets[test_set.title] = str(folder)
        files = class_folder_files(folder, classes, by_index=test_set.layout == "index")
        points.append(Point(KIND_SETS, test_set.name, test_set.title, files, logit_mask(test_set, classes), False))
    release = find_set(IMAGENET_C, roots)
    if release is None:
        outcome.missing.append(IMAGENET_C.title)
    else:
        outcome.sets[IMAGENET_C.title] = str(release)
        for name in corruptions:
            for severity in severities:
                files = class_folder_files(corruption_folder(release, name, severity), classes)
                points.append(Point(KIND_C, f"{name}/{severity}", IMAGENET_C.title, files, None, True))
    if not points:
        expected = ", ".join(f"{s.title} ({s.folders[0]}/)" for s in (*TEST_SETS, IMAGENET_C))
        raise VbenchError(f"none of ImageNet's test sets is under {' or '.join(map(str, roots))}; expected any of: "
                          f"{expected} (vbench never downloads them)")
    return points


def evaluate_imagenet(store, suite, corruptions: list[str], severities: list[int], backbones: list[str] | None = None,
                      seeds: list[int] | None = None, data_root=None, device: str = "auto", limit: int | None = None,
                      console: Console | None = None, workers: int | None = None) -> ImageNetOutcome:
    """Evaluate the finished runs of an ImageNet suite on every test set present (see the module)."""
    unknown = [name for name in corruptions if name not in CORRUPTIONS]
    if unknown:
        raise VbenchError(f"unknown corruption {unknown[0]!r}; ImageNet-C's: {', '.join(CORRUPTIONS)}")
    candidates = finished_runs(store, suite, backbones, seeds)
    task = ClassificationTask(suite, resolve_device(device), data_root=data_root, limit=limit)
    data = task.load_data()
    if task.stream is None:
        raise VbenchError(f"suite {suite.name!r} is not streamed; ImageNet's test sets are read as the ImageNet suites "
                          "read their images (stream = true)")
    runs, skipped = select_runs(store, candidates, data.identity)
    outcome = ImageNetOutcome(runs=runs, skipped=skipped)
    points = imagenet_points(suite, task.data.classes, search_roots(suite, data_root), corruptions, severities, outcome)
    done = {(e.run_id, e.kind, e.condition) for e in store.evaluations(None, [run.id for run in runs])}
    models: dict[int, torch.nn.Module] = {}
    console = console or Console()
    progress = progress_bar(console, remaining=False)
    with progress:
        bar = progress.add_task(f"{suite.name}: ImageNet test sets", total=len(points))
        for point in points:
            todo = [run for run in runs if (run.id, point.kind, point.condition) not in done]
            outcome.kept += len(runs) - len(todo)
            progress.update(bar, description=f"{suite.name}: {point.set_title} {point.condition}")
            if todo:
                for run in todo:
                    if run.id not in models:
                        model = task.build_model(registry.get_backbone(run.backbone)).to(task.device)
                        models[run.id] = load_weights(weights_path(store, run.id), model).eval()
                results = _score(task, point, [models[run.id] for run in todo], workers)
                for run, metrics in zip(todo, results):
                    store.put_evaluation(run.id, point.kind, point.condition, metrics)
                    outcome.evaluated += 1
            progress.advance(bar)
    return outcome


@torch.no_grad()
def _score(task: ClassificationTask, point: Point, models: list, workers: int | None) -> list[dict]:
    """Every model on one set's images, read once (each batch goes through all the models)."""
    suite = task.suite
    transform = SquareImage(suite.img_size) if point.as_released else task.stream.eval_transform
    stream = EvalStream(file_split("test", *point.files, suite.num_classes), transform, task.recipe.eval_batch_size,
                        task.device, suite.mean, suite.std, workers)
    tallies = [Tally(point.mask) for _ in models]
    for x, y, _ in stream:
        for model, tally in zip(models, tallies):
            tally.add(model(x), y)
    return [tally.metrics(len(stream.skipped)) for tally in tallies]


# --- mCE against AlexNet ---------------------------------------------------------------------------------------
def alexnet_corruption_errors(errors: dict[str, dict[int, float]], clean_error: float) -> dict[str, dict]:
    """Per corruption, CE and relative CE (%) of a model against AlexNet's published errors, from the model's error
    per (corruption, severity): only corruptions evaluated at all five severities (AlexNet's errors are means over
    severities 1-5)."""
    rows = {}
    for name, per_severity in errors.items():
        if name not in ALEXNET_ERRORS or sorted(per_severity) != [1, 2, 3, 4, 5]:
            continue
        mean_error = sum(per_severity.values()) / 5
        rows[name] = {"ce": 100.0 * mean_error / ALEXNET_ERRORS[name],
                      "relative_ce": 100.0 * (mean_error - clean_error) / (ALEXNET_ERRORS[name] - ALEXNET_CLEAN_ERROR)}
    return rows
