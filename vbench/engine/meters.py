"""What a run measures while it trains: the running sums of a stage (read every ``SYNC_EVERY`` steps, which is
when the NaN/inf guard looks), the run's own peak memory, and the totals carried through checkpoints."""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vbench.engine import distributed
from vbench.errors import PlainMessage, VbenchError
from vbench.tasks.base import Stage

SYNC_EVERY = 25  # steps between reads of the on-device loss sum (the NaN/inf guard and the progress stats)


class NonFiniteLoss(PlainMessage, RuntimeError):
    """The training loss became NaN or infinite; the run is marked failed with this message."""


class StageMeter:
    """Running sums of one stage kept on the device and read every ``SYNC_EVERY`` steps, which is
    also when the NaN/inf guard looks at them: no host sync on every step."""

    def __init__(self, device: torch.device, stage: Stage, unit: str, dist: distributed.Distributed = distributed.SINGLE):
        self.device, self.stage, self.unit, self.dist = device, stage, unit, dist
        self.sums: dict[str, torch.Tensor] = {}
        self.seen = 0
        self.steps = 0
        self.excluded_s = 0.0  # the step that compiled, timed apart
        self.excluded_images = 0
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, stats: dict, size: int) -> None:
        for name, value in {"loss": loss, **stats}.items():
            weighted = value.detach().double() * size
            self.sums[name] = weighted if name not in self.sums else self.sums[name] + weighted
        self.seen += size * self.dist.world_size  # every rank trains an equal share of the global batch
        self.steps += 1

    @property
    def due(self) -> bool:
        return self.steps % SYNC_EVERY == 0 or self.steps == self.stage.iterations

    def means(self) -> dict[str, float]:
        values = {name: float(total) / self.seen for name, total in self._global_sums().items()}
        if not math.isfinite(values["loss"]):
            raise NonFiniteLoss(f"non-finite training loss ({values['loss']}) in {self.unit} {self.stage.label}, "
                                f"within its first {self.steps} steps")
        return values

    def _global_sums(self) -> dict[str, torch.Tensor]:
        """The sums over every rank (each rank calls this at the same step)."""
        if not self.dist.active:
            return self.sums
        names = sorted(self.sums)
        summed = self.dist.sum(torch.stack([self.sums[name] for name in names]))
        return dict(zip(names, summed))

    def close(self) -> dict:
        if self.steps == 0:
            raise VbenchError(f"the task yielded no training batch for stage {self.stage.label}")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        means = self.means()
        elapsed = time.perf_counter() - self.started - self.excluded_s
        timed = self.seen - self.excluded_images
        return {**{f"train_{name}": value for name, value in means.items()}, "images": timed,
                "time_s": elapsed, "images_per_s": timed / elapsed if elapsed > 0 and timed else None}


@dataclass
class Totals:
    """What a run has done so far, carried through checkpoints."""

    history: list = field(default_factory=list)  # (step label, metrics row)
    train_images: int = 0
    train_time_s: float = 0.0
    prior_wall_s: float = 0.0
    peak_memory: int = 0
    compile_s: float = 0.0

    @classmethod
    def restore(cls, checkpoint: dict | None) -> "Totals":
        if not checkpoint:
            return cls()
        return cls(list(checkpoint["history"]), checkpoint["train_images"], checkpoint["train_time_s"],
                   checkpoint["wall_time_s"], checkpoint.get("peak_memory_bytes") or 0, checkpoint.get("compile_s", 0.0))

    def add(self, label: int, row: dict, peak_memory: int) -> None:
        row = dict(row)
        self.train_images += row.pop("images")
        self.train_time_s += row["time_s"]
        self.peak_memory = max(self.peak_memory, peak_memory)
        self.history.append((label, row))

    @property
    def images_per_s(self) -> float | None:
        return self.train_images / self.train_time_s if self.train_time_s > 0 else None

    def state(self, wall_s: float) -> dict:
        return {"history": self.history, "train_images": self.train_images, "train_time_s": self.train_time_s,
                "wall_time_s": wall_s, "peak_memory_bytes": self.peak_memory, "compile_s": self.compile_s}


class PeakMemory:
    """This run's own peak: CUDA max allocated since the run started; on the CPU the process's peak
    resident set since the run started (Linux resets it through /proc/self/clear_refs), else the
    process's lifetime peak. ``kind`` says which."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.kind = "cuda_max_allocated"
        elif _reset_peak_rss():
            self.kind = "cpu_peak_rss_of_run"
        else:
            self.kind = "cpu_peak_rss_of_process"

    def read(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.kind == "cpu_peak_rss_of_run":
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
