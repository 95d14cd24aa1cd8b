"""Tiny backbones for the engine's tests, written as a user's --plugin file."""

from pathlib import Path

TINY_PLUGIN = '''
import os
import time

import torch
import torch.nn as nn
from timm.layers import DropPath
from vbench.models import registry


def register_backbone(name, **options):
    """Every test loads this file afresh (conftest unregisters plugin backbones after each test)."""
    if name in registry.BACKBONES.names():
        registry.unregister_backbone(name)
    return registry.register_backbone(name, accepts=("drop_path_rate",), **options)


def hang_once(calls):
    """After VBENCH_TEST_HANG_AFTER training steps, sleep (a job to kill mid-run), once: the first process
    to get there creates the file VBENCH_TEST_HANG_FLAG, and later ones (the resumed run) go on."""
    flag = os.environ.get("VBENCH_TEST_HANG_FLAG")
    if flag and calls > int(os.environ.get("VBENCH_TEST_HANG_AFTER", "1000000000")):
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        time.sleep(600)


class Tiny(nn.Module):
    """Conv stem, one residual block with drop-path, dropout before the head: every RNG a run has."""

    def __init__(self, num_classes, drop_path_rate, mode="ok", width=8):
        super().__init__()
        self.mode = mode
        self.calls = 0
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.GELU(), nn.Conv2d(width, width, 3, padding=1))
        self.drop_path = DropPath(drop_path_rate)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.mode == "boom":
                raise RuntimeError("boom from the test backbone")
            if self.calls > int(os.environ.get("VBENCH_TEST_INTERRUPT_AFTER", "1000000000")):
                raise KeyboardInterrupt
            hang_once(self.calls)
        x = self.stem(x)
        x = x + self.drop_path(self.block(x))
        logits = self.head(self.dropout(x.mean(dim=(2, 3))))
        return logits * float("nan") if self.mode == "nan" and self.training else logits


@register_backbone("tiny-test", family="test", paper_names=["Tiny"], in_paper=False)
def tiny_test(img_size=32, num_classes=10, drop_path_rate=0.0):
    """A tiny conv net for the engine's tests."""
    return Tiny(num_classes, drop_path_rate)


@register_backbone("tiny-wide", family="test", in_paper=False)
def tiny_wide(img_size=32, num_classes=10, drop_path_rate=0.0):
    """The tiny conv net, twice as wide."""
    return Tiny(num_classes, drop_path_rate, width=16)

class TinyBN(nn.Module):
    """BatchNorm and no random layer: a distributed run of it is the single-process run up to rounding."""

    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, num_classes)
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            hang_once(self.calls)
            if os.environ.get("VBENCH_TEST_BATCH_LOG"):  # the batch size each process trains on
                with open(f"{os.environ['VBENCH_TEST_BATCH_LOG']}.{os.getpid()}", "a") as log:
                    log.write(f"{len(x)}\\n")
        return self.head(self.features(x).mean(dim=(2, 3)))


@register_backbone("tiny-bn", family="test", in_paper=False)
def tiny_bn(img_size=32, num_classes=10, drop_path_rate=0.0):
    """BatchNorm, no dropout or drop-path (the distributed tests compare it with a single process)."""
    return TinyBN(num_classes)


@register_backbone("tiny-nan", family="test", in_paper=False)
def tiny_nan(img_size=32, num_classes=10, drop_path_rate=0.0):
    """Its training loss is NaN from the first step."""
    return Tiny(num_classes, drop_path_rate, mode="nan")


@register_backbone("tiny-boom", family="test", in_paper=False)
def tiny_boom(img_size=32, num_classes=10, drop_path_rate=0.0):
    """Raises inside its training forward pass."""
    return Tiny(num_classes, drop_path_rate, mode="boom")


@register_backbone("tiny-none", family="test", in_paper=False)
def tiny_none(img_size=32, num_classes=10, drop_path_rate=0.0):
    """A builder that forgets to return its model."""
    Tiny(num_classes, drop_path_rate)
'''

# The recipe cut down to what a 2-core test machine trains in a second.
FAST = ["--set", "repeats=1", "--set", "eval_batch_size=64", "--set", "autoaugment=none"]
# segmentation at test size: 32-pixel crops of a small rescale, two images a batch, no loader processes
SEG_TINY = ["img_size=32", "scale=[64, 32]", "batch_size=2", "num_workers=0", "warmup_iters=1", "eval_limit=1"]


def write_plugin(folder: Path) -> str:
    path = Path(folder) / "tiny_backbones.py"
    path.write_text(TINY_PLUGIN)
    return str(path)
