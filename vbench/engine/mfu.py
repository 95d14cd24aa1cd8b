"""How close a training step gets to the machine's limit: the model FLOP/s a run achieved and its fraction of
the machine's measured matmul peak at the run's precision (MFU, model FLOPs utilisation, as PaLM defines it).

- Model FLOPs are counted, not measured: the fvcore multiply-accumulates of one image (the run's FLOPs), 2
  FLOPs each, times 3 for the forward and the backward pass (the backward costs twice the forward), times the
  training images per second.
- The peak is a short probe in this process: square ``torch.mm`` at the precision's dtype (fp32; bf16 or fp16
  for autocast runs) on the run's device with its thread count, the best of a few timed trials. It is cached
  under ``vbench.paths.cache_root()/mfu`` per machine (``vbench.engine.hardware``), device, precision, thread
  count and torch version, so a machine is probed once.

A matmul is the fastest thing a device does, so MFU is the share of that a whole training step keeps; element-wise
work, memory traffic and the framework's overhead are what the rest goes to.
"""

from __future__ import annotations

import json
import math
import re
import time

import torch

from vbench.engine.hardware import fingerprint
from vbench.paths import atomic_write, cache_root

FLOPS_PER_MAC = 2
TRAINING_PASSES = 3  # forward + backward (the backward is two matmuls per forward matmul)
PROBE_SIZES = {"cpu": 1024, "cuda": 8192}  # big enough to reach the matmul peak, small enough to take a second
PROBE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PROBE_TRIALS = 5
PROBE_TRIAL_S = 0.1  # each trial repeats the matmul for about this long
PROBE_FORMAT = 1  # bump when the probe changes, so older cached peaks are measured again


def training_flops_per_s(macs_per_image: float, images_per_s: float) -> float:
    """Model FLOP/s of training: counted MACs x 2 FLOPs x 3 passes per image, times images/s."""
    return macs_per_image * FLOPS_PER_MAC * TRAINING_PASSES * images_per_s


def matmul_peak(device: torch.device | str, precision: str = "fp32") -> float:
    """The measured matmul FLOP/s of this machine's ``device`` at ``precision`` with this process's thread count,
    from the cache when this machine was probed before."""
    device = torch.device(device)
    path = _cache_file(device, precision)
    try:
        cached = json.loads(path.read_text())
        if cached.get("format") == PROBE_FORMAT and cached.get("peak_flops_per_s", 0) > 0:
            return float(cached["peak_flops_per_s"])
    except (OSError, ValueError, AttributeError):
        pass
    size = PROBE_SIZES.get(device.type, PROBE_SIZES["cpu"])
    peak = measure_matmul_peak(device, precision, size)
    record = {"format": PROBE_FORMAT, "peak_flops_per_s": peak, "size": size, "precision": precision,
              "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "hardware": fingerprint(device).as_dict()}
    try:
        atomic_write(path, json.dumps(record, indent=1))
    except OSError:  # an unwritable cache costs a probe next time, nothing more
        pass
    return peak


def measure_matmul_peak(device: torch.device, precision: str, size: int, trials: int = PROBE_TRIALS) -> float:
    """The best FLOP/s of ``trials`` timed runs of ``size`` x ``size`` matmuls (a neighbour on the machine can only
    slow a trial down, so the best one is the machine's)."""
    dtype = PROBE_DTYPES[precision]
    generator = torch.Generator(device=device).manual_seed(0)  # leaves torch's global RNG alone
    a = torch.randn(size, size, device=device, generator=generator).to(dtype)
    b = torch.randn(size, size, device=device, generator=generator).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    flops = FLOPS_PER_MAC * size ** 3
    _sync(device)
    started = time.perf_counter()
    torch.mm(a, b, out=out)  # the first call also warms up the kernels
    _sync(device)
    repeats = max(1, math.ceil(PROBE_TRIAL_S / max(time.perf_counter() - started, 1e-6)))
    best = 0.0
    for _ in range(trials):
        _sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        _sync(device)
        best = max(best, flops * repeats / (time.perf_counter() - started))
    return best


def utilization(macs_per_image: float | None, images_per_s: float | None, device: torch.device | str,
                precision: str, processes: int = 1) -> dict:
    """The run settings that say how close training came to the machine's limit: ``model_flops_per_s``,
    ``matmul_peak_flops_per_s`` (of all ``processes`` together, each assumed to have the probed machine's
    peak) and ``mfu`` (a fraction); empty when the run has no FLOP count or throughput."""
    if not macs_per_image or not images_per_s or precision not in PROBE_DTYPES:
        return {}
    achieved = training_flops_per_s(macs_per_image, images_per_s)
    peak = matmul_peak(device, precision) * processes
    return {"model_flops_per_s": achieved, "matmul_peak_flops_per_s": peak, "mfu": achieved / peak}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cache_file(device: torch.device, precision: str):
    version = re.sub(r"[^\w.]+", "_", torch.__version__)
    where = f"{device.type}{device.index if device.index is not None else ''}"
    return cache_root() / "mfu" / f"{fingerprint(device).id}-{where}-{precision}-t{torch.get_num_threads()}-torch{version}.json"
