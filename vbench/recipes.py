"""Recipes: every hyper-parameter of a suite's training, one frozen dataclass per task.

A field's metadata says how the suite loader checks it (``min``, ``within``, ``choices``), and marks
the few fields that reach no built object as ``bookkeeping`` with the reason; a test makes sure every
other field changes what a run builds. Recipes import nothing heavy: ``vbench list suites`` reads them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from vbench.errors import VbenchError

AUTOAUGMENT_POLICIES = ("cifar10", "svhn", "imagenet", "none")
# whose augmentation ops: the authors' (vbench.data.authors_augment) and torchvision's AutoAugment run batched on
# the paper's crop-with-padding; "timm" is timm's ImageNet training transform (RandomResizedCrop, flip, timm's
# AutoAugment/RandAugment, Random Erasing), for streamed suites (vbench.data.stream)
AUGMENT_IMPLS = ("authors", "torchvision", "timm")
# timm's auto_augment strings (timm.data.auto_augment): "rand-m9-mstd0.5-inc1", "original", "v0r", "3a", ...
TIMM_AUTOAUGMENT = re.compile(r"^(rand(-(m|n|w|p|mstd|mmax|inc)[0-9.]+)*|(original|originalr|v0|v0r|3a)(-(mstd)[0-9.]+)?)$")
INTERPOLATIONS = ("bilinear", "bicubic")
OPTIMIZERS = ("adamw", "adam", "sgd")
HEADS = ("upernet", "fpn")
PAPER_WARMUP_SHARE = 10  # the paper warms up for 10 of its 100 epochs


# Every number of a recipe is finite and bounded (the suite loader's one check, vbench.suites.coerce): a field's
# own ``max`` where it has one, else these, so that no value the size of a typo reaches a schedule or a tensor.
INT_LIMIT = 2**31 - 1
FLOAT_LIMIT = 1e9


def spec(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **checks: Any):
    """A recipe field with its checks: ``min=``, ``max=``, ``within=(low, high)``, ``choices=``, ``bookkeeping=``."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=checks)
    return field(default=default, metadata=checks)


class Recipe:
    """Mixin of the recipe dataclasses: plain data, a stable hash, and cross-field checks."""

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of ``to_dict()``."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def key_hash(self) -> str:
        """The hash that identifies a run's recipe: the seed left out (the run's seed is a key of its own), and the
        keys added after runs were stored left out while they hold the value those runs ran with (``ADDED``), so
        that a new key never orphans the runs already in a store."""
        values = dataclasses.replace(self, seed=0).to_dict()
        for key, default in self.ADDED.items():
            if values.get(key) == default:
                del values[key]
        canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    ADDED = {}  # key -> the value every run stored before the key existed ran with

    def problems(self) -> list[str]:
        return []

    @classmethod
    def stored(cls, recipe: dict) -> dict:
        """A run's stored recipe with the keys of older vbench versions filled in as those versions ran."""
        return recipe

    @classmethod
    def expand_key(cls, key: str, tree: dict) -> list[tuple[str, ...]]:
        """The recipe paths a ``--set`` key addresses in the recipe ``tree`` (default: the dotted key)."""
        return [tuple(key.split("."))]

    def resolve_defaults(self, explicit: dict[str, int]) -> "Recipe":
        """This recipe with the values that depend on others filled in (``explicit``: key -> the layer that
        set it last, later layers higher)."""
        return self


@dataclass(frozen=True)
class ClassificationRecipe(Recipe):
    """The paper's classification recipe (recipe.md); suites/_paper.toml holds its values."""

    epochs: int = spec(100, min=1, max=100_000)
    warmup_epochs: int = spec(10, min=0, max=100_000)
    batch_size: int = spec(128, min=1, max=1 << 20)
    optimizer: str = spec("adamw", choices=OPTIMIZERS)
    lr: float = spec(1e-3, min=0, max=100)
    min_lr: float = spec(1e-6, min=0, max=100)
    weight_decay: float = spec(0.05, min=0, max=100)
    label_smoothing: float = spec(0.1, within=(0, 1))
    drop_path: float = spec(0.1, within=(0, 1))
    repeats: int = spec(3, min=1, max=1000)
    crop_padding: int = spec(4, min=0, max=4096)
    hflip: float = spec(0.5, within=(0, 1))
    autoaugment: str = spec("cifar10")  # a policy of AUTOAUGMENT_POLICIES; with augment_impl timm, timm's string
    augment_impl: str = spec("authors", choices=AUGMENT_IMPLS)  # the authors' trainer's ops, torchvision's or timm's
    erasing_prob: float = spec(0.25, within=(0, 1))
    erasing_max_area: float = spec(0.4, within=(0, 1))
    erasing_min_area: float = spec(0.02, within=(0, 1))
    erasing_aspect: float = spec(0.3, within=(0, 1))
    mix_prob: float = spec(0.5, within=(0, 1))
    switch_prob: float = spec(0.5, within=(0, 1))
    mixup_alpha: float = spec(1.0, min=0, max=1000)
    cutmix_alpha: float = spec(1.0, min=0, max=1000)
    eval_batch_size: int = spec(256, min=1, max=1 << 20)
    seed: int = spec(0, min=0, bookkeeping="the default of --seeds; each run's seed is a key column of its own")
    # timm's recipe keys (DeiT as timm's train.py runs it): every image drawn aug_repeats times per epoch (timm's
    # RepeatAugSampler), lr scaled by batch_size / lr_base_size, no weight decay on norms and biases
    aug_repeats: int = spec(1, min=1)
    lr_base_size: int = spec(0, min=0)  # 0: lr as given; else lr * batch_size / lr_base_size (timm's --lr-base-size)
    filter_bias_and_bn: bool = spec(False)  # timm's optimizer factory: 1-d parameters get no weight decay
    # augment_impl timm only: RandomResizedCrop's area and aspect ranges, the resize filter, and the evaluation's
    # resize to img_size / eval_crop_pct then centre crop (timm's crop_pct)
    crop_scale: tuple[float, float] = spec((0.08, 1.0))
    crop_ratio: tuple[float, float] = spec((0.75, 4.0 / 3.0))
    interpolation: str = spec("bicubic", choices=INTERPOLATIONS)
    eval_crop_pct: float = spec(0.875, within=(0.1, 1))

    ADDED = {"aug_repeats": 1, "lr_base_size": 0, "filter_bias_and_bn": False, "crop_scale": [0.08, 1.0],
             "crop_ratio": [0.75, 4.0 / 3.0], "interpolation": "bicubic", "eval_crop_pct": 0.875}

    @property
    def scaled_lr(self) -> float:
        """The learning rate the optimiser starts from: ``lr``, linearly scaled to the batch when lr_base_size is set."""
        return self.lr * self.batch_size / self.lr_base_size if self.lr_base_size else self.lr

    @classmethod
    def stored(cls, recipe: dict) -> dict:
        """A run's stored recipe with the keys of older vbench versions filled in as those versions ran."""
        return {"augment_impl": "torchvision", **cls.ADDED, **recipe}  # before the key, every run used torchvision's ops

    def problems(self) -> list[str]:
        problems = []
        if self.augment_impl == "timm":
            if self.autoaugment != "none" and not TIMM_AUTOAUGMENT.match(self.autoaugment):
                problems.append(f"key 'recipe.autoaugment' must be none or one of timm's auto_augment strings "
                                f"(rand-m9-mstd0.5-inc1, original, v0r, ...) with augment_impl = \"timm\", got "
                                f"{self.autoaugment!r}")
        elif self.autoaugment not in AUTOAUGMENT_POLICIES:
            problems.append(f"key 'recipe.autoaugment' must be one of {', '.join(AUTOAUGMENT_POLICIES)}, got "
                            f"{self.autoaugment!r} (timm's strings such as rand-m9-mstd0.5-inc1 need augment_impl = \"timm\")")
        for key in ("crop_scale", "crop_ratio"):
            low, high = getattr(self, key)
            if not 0 < low <= high:
                problems.append(f"recipe.{key} must be [low, high] with 0 < low <= high, got {[low, high]}")
        if self.erasing_min_area > self.erasing_max_area:
            problems.append("recipe.erasing_min_area must not exceed recipe.erasing_max_area")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            problems.append(f"recipe.warmup_epochs ({self.warmup_epochs}) must be shorter than recipe.epochs "
                            f"({self.epochs}); lower warmup_epochs or leave it out (it follows the epochs)")
        return problems

    def resolve_defaults(self, explicit: dict[str, int]) -> "ClassificationRecipe":
        """Warm-up follows the epochs: unless warmup_epochs was set where the epochs were or later, it is
        the paper's share of the run (10 of 100 epochs), rounded down, so a run under 10 epochs has none."""
        if explicit.get("warmup_epochs", -1) < explicit.get("epochs", -1):
            return dataclasses.replace(self, warmup_epochs=self.epochs // PAPER_WARMUP_SHARE)
        return self


@dataclass(frozen=True)
class OptimizerConfig:
    """One optimiser and its schedule: linear warm-up from ``warmup_ratio * lr`` over ``warmup_iters``,
    then poly decay ``(lr - min_lr) * (1 - t / T) ** power + min_lr``."""

    name: str = spec("adamw", choices=("adamw", "sgd"))
    lr: float = spec(6e-5, min=0, max=100)
    weight_decay: float = spec(0.01, min=0, max=100)
    betas: tuple[float, float] = spec((0.9, 0.999))
    momentum: float = spec(0.9, min=0)
    warmup_iters: int = spec(1500, min=0, max=100_000_000)
    warmup_ratio: float = spec(1e-6, min=0)
    power: float = spec(1.0, min=0)
    min_lr: float = spec(0.0, min=0, max=100)
    no_decay_keys: tuple[str, ...] = spec(())  # parameters whose name holds one of these get no weight decay
    source: str = spec("", bookkeeping="the mmsegmentation config the values come from")


def _default_optimizers() -> dict[str, OptimizerConfig]:
    return {"transformer": OptimizerConfig(),
            "cnn": OptimizerConfig(name="sgd", lr=0.01, weight_decay=5e-4, warmup_iters=0, power=0.9, min_lr=1e-4)}


@dataclass(frozen=True)
class SegmentationRecipe(Recipe):
    """mmsegmentation's ADE20K pipeline and iteration-based schedule (suites/ade20k.toml)."""

    head: str = spec("upernet", choices=HEADS)
    scale: tuple[int, int] = spec((2048, 512))
    ratio_range: tuple[float, float] = spec((0.5, 2.0))
    cat_max_ratio: float = spec(0.75, within=(0, 1))
    hflip: float = spec(0.5, within=(0, 1))
    photometric: bool = spec(True)
    iterations: int = spec(20000, min=1, max=100_000_000)
    eval_at: tuple[int, ...] = spec((2000, 4000, 8000, 10000, 16000, 20000))
    batch_size: int = spec(16, min=1, max=1 << 20)
    eval_batch_size: int = spec(1, min=1, max=1 << 20)
    eval_limit: int = spec(0, min=0)  # evaluate on the first N validation images only (0: all)
    num_workers: int = spec(4, min=0, max=1024)
    seed: int = spec(0, min=0, bookkeeping="the default of --seeds; each run's seed is a key column of its own")
    aux_weight: float = spec(0.4, min=0)
    optimizer: dict[str, OptimizerConfig] = spec(factory=_default_optimizers)

    def optimizer_for(self, kind: str) -> OptimizerConfig:
        if kind not in self.optimizer:
            raise VbenchError(f"the suite has no [recipe.optimizer.{kind}] table; it has {', '.join(self.optimizer)}")
        return self.optimizer[kind]

    @property
    def evaluation_points(self) -> tuple[int, ...]:
        """``eval_at``, sorted, with the last iteration added: the final weights are always evaluated."""
        return tuple(sorted({*self.eval_at, self.iterations}))

    def problems(self) -> list[str]:
        problems = []
        if not self.eval_at or any(not 1 <= it <= self.iterations for it in self.eval_at):
            problems.append(f"recipe.eval_at must list iterations in 1..{self.iterations}, got {list(self.eval_at)}")
        if not 0 < self.ratio_range[0] <= self.ratio_range[1]:
            problems.append(f"recipe.ratio_range must be [low, high] with 0 < low <= high, got {list(self.ratio_range)}")
        return problems

    @classmethod
    def expand_key(cls, key: str, tree: dict) -> list[tuple[str, ...]]:
        """``transformer.lr`` sets one optimiser's key; a bare optimiser key (``warmup_iters``) sets every one."""
        parts = tuple(key.split("."))
        kinds = list(tree.get("optimizer") or _default_optimizers())
        optimizer_keys = {f.name for f in dataclasses.fields(OptimizerConfig)}
        if len(parts) == 2 and parts[0] in kinds:
            return [("optimizer", *parts)]
        if len(parts) == 1 and parts[0] in optimizer_keys and parts[0] not in {f.name for f in dataclasses.fields(cls)}:
            return [("optimizer", kind, parts[0]) for kind in kinds]
        return [parts]


# --- recipes compared, and their values as text ---------------------------------------------------
def recipe_differences(recipe: dict, reference: dict | None) -> list[str]:
    """``"epochs 1 instead of 100"`` for every key (seed aside) where ``recipe`` departs from ``reference``."""
    if reference is None:
        return []
    mine, theirs = flatten(recipe), flatten(reference)
    differences = []
    for key in sorted(set(mine) | set(theirs)):
        if key == "seed" or key.endswith(".source") or mine.get(key) == theirs.get(key):
            continue
        differences.append(f"{key} {value_text(mine.get(key))} instead of {value_text(theirs.get(key))}")
    return differences


def flatten(values: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def value_text(value) -> str:
    """A recipe value as a person reads it: ``1e-05``, ``[0.5, 0.5]``, ``-`` for none."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return "-" if value is None else str(value)
