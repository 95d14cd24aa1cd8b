"""What machine a measurement ran on: a fingerprint of the CPU (model, core count, the instruction-set flags
that decide which precisions are fast) and, on a GPU, its name and driver.

Speeds measured on one machine are only compared with speeds of the same fingerprint: ``Hardware.id`` (a
short hash of it) is part of the key of every deployment result and of the cached matmul peak (``vbench.engine.mfu``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# The flags that change which kernels run: AVX-512 VNNI and AMX for INT8, AVX512_BF16 and AMX for bf16 (x86);
# the ARM ones for the same on ARM. Other flags do not change deployment speed and would only split the key.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
               "amx_int8", "amx_bf16", "amx_fp16", "asimd", "asimddp", "sve", "sve2", "bf16", "i8mm")
NVIDIA_SMI_TIMEOUT_S = 10
NATIVE_BF16 = ("avx512_bf16", "amx_bf16")  # a CPU with either computes bf16 natively


@dataclass(frozen=True)
class Hardware:
    cpu: str
    cores: int  # logical CPUs of the machine
    flags: tuple[str, ...]
    gpu: str | None = None
    driver: str | None = None

    @property
    def id(self) -> str:
        """12 hex digits of sha256 over the fingerprint: short enough for a result's key."""
        text = json.dumps(asdict(self), sort_keys=True)
        return "hw" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def text(self) -> str:
        flags = " ".join(self.flags) or "none of " + "/".join(SPEED_FLAGS[:6])
        described = f"{self.cpu}, {self.cores} cores, flags {flags}"
        return described + (f"; GPU {self.gpu}, driver {self.driver or 'unknown'}" if self.gpu else "")

    def as_dict(self) -> dict:
        return {**asdict(self), "flags": list(self.flags), "id": self.id}

    def has(self, *flags: str) -> bool:
        """Whether any of ``flags`` is present."""
        return any(flag in self.flags for flag in flags)


def fingerprint(device: torch.device | str = "cpu") -> Hardware:
    device = torch.device(device)
    cpu, flags = _cpu()
    gpu = driver = None
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
        driver = _nvidia_driver(device.index or 0)
    return Hardware(cpu, os.cpu_count() or 1, flags, gpu, driver)


@functools.lru_cache(maxsize=1)
def _cpu() -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and its speed flags, from /proc/cpuinfo (Linux), else from ``platform``."""
    model, present = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model name", "Hardware") and model is None:
                model = value.strip()
            elif key in ("flags", "Features"):
                present.update(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), tuple(f for f in SPEED_FLAGS if f in present)


@functools.lru_cache(maxsize=None)
def _nvidia_driver(index: int) -> str | None:
    """The driver version as nvidia-smi reports it (torch has no call for it), None without nvidia-smi."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", str(index)],
                              capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
