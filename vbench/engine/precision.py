"""Where and how a run computes: the device, the precision (fp32, or bf16/fp16 autocast with its attention
kernels and gradient scaler), ``torch.compile`` with its eager fallback, and the device's name for the run row."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from vbench.engine.hardware import NATIVE_BF16, fingerprint
from vbench.errors import VbenchError, first_line

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise VbenchError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VbenchError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    return fingerprint("cpu").has(*NATIVE_BF16)


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    device_type: str

    @classmethod
    def resolve(cls, amp: bool, device: torch.device) -> "Precision":
        if not amp:
            return cls("fp32", device.type)
        if device.type == "cuda":
            return cls("bf16" if torch.cuda.is_bf16_supported() else "fp16", "cuda")
        if not cpu_has_native_bf16():
            raise VbenchError("--amp: this CPU has no native bf16 (neither avx512_bf16 nor amx_bf16 in "
                              "/proc/cpuinfo), so bf16 autocast would be emulated and slower; leave out --amp")
        return cls("bf16", "cpu")

    def autocast(self):
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16 if self.name == "bf16" else torch.float16)

    def attention(self):
        """The attention kernels for training: on the CPU in bf16, the math path, which runs on the bf16 matmuls
        (AMX), instead of the fused kernel, whose bf16 backward dominated a ViT-Small step (the figures, with the
        machine they were measured on: README, "Speed on the CPU"). Results are equal up to bf16 rounding."""
        if self.name == "bf16" and self.device_type == "cpu":
            return sdpa_kernel([SDPBackend.MATH])
        return nullcontext()

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.name == "fp16")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {fingerprint('cpu').cpu}"


class Compiled:
    """``torch.compile`` of a model's training forward, run inside ``context`` (the precision's attention
    kernels; inside the compiled region, so that the graph is traced with them), falling back to eager with
    a one-line warning when compiling fails; ``compiled`` says what ran. Evaluation uses the model itself."""

    def __init__(self, model: nn.Module, enabled: bool, warn, context=nullcontext, backend="inductor"):
        self.warn = warn

        def forward(*args, **kwargs):
            with context():
                return model(*args, **kwargs)

        self.forward = forward
        self.module = torch.compile(forward, backend=backend) if enabled else forward
        self.compiled = enabled

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def run_step(self, step):
        """``step(self)``: a forward and a backward through this model. A compiled step that fails, in the
        forward, in the backward (compiled at its first call) or in a recompile (the last, smaller batch), is
        run again eagerly, and every later step with it."""
        try:
            return step(self)
        except Exception as exc:  # noqa: BLE001 - a graph inductor cannot take runs eagerly
            if not self.compiled:
                raise
            self.warn(f"warning: torch.compile failed ({type(exc).__name__}: {first_line(exc, 120)}); "
                      "training eagerly")
            self.module, self.compiled = self.forward, False
            return step(self)


