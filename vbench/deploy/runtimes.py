"""The runtimes a trained model is deployed on, in one registry (``RUNTIMES``; third-party runtimes come from
the ``vbench.runtimes`` entry-point group):

- ``torch``: eager PyTorch, as the model trained (bf16 by autocast);
- ``torch-compile``: ``torch.compile`` (inductor), one static graph per batch size;
- ``onnxruntime``: the ONNX export in ONNX Runtime (the CPU provider, or the CUDA provider on a GPU); INT8 by
  ``quantize_static`` (QDQ);
- ``openvino``: the ONNX export converted by ``openvino.convert_model`` and compiled for the CPU; bf16 by the
  inference precision hint, INT8 by NNCF.

Each says which precisions it runs on this machine and, for the others, why not in one line (``unsupported``);
``prepare`` gives a predictor: a float32 CPU batch in, its float32 logits on the CPU out. Threads are fixed:
torch's intra-op threads (set for the whole command), ONNX Runtime's intra-op threads (inter-op 1, sequential),
OpenVINO's ``INFERENCE_NUM_THREADS`` with one stream and the latency hint; every runtime runs one request at a
time.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from vbench.deploy.export import INPUT, Export
from vbench.deploy.latency import Predictor
from vbench.deploy.quantize import Calibration, quantize_onnx, quantize_openvino
from vbench.engine.hardware import NATIVE_BF16, Hardware
from vbench.registry import Registry

PRECISIONS = ("fp32", "bf16", "int8")
INSTALL_HINT = "pip install 'vbench[deploy]'"


@dataclass
class Subject:
    """One run's model as the runtimes get it: the fp32 module (evaluation mode, on the CPU) and, made once on
    first use and shared by the runtimes, its ONNX export and the calibration images."""

    name: str  # for file names: "run-3"
    model: torch.nn.Module
    img_size: int
    device: torch.device
    threads: int
    transformer: bool  # the backbone's recipe kind: NNCF's transformer model type
    workdir: Path
    export: Callable[[], Export]
    calibration: Callable[[], Calibration]


@dataclass(frozen=True)
class Runtime:
    name: str
    summary: str
    packages: tuple[str, ...] = ()  # Python modules it needs (vbench[deploy])
    int8_packages: tuple[str, ...] = ()
    exported: bool = False  # runs the ONNX export
    devices: tuple[str, ...] = ("cpu", "cuda")

    def missing(self, precisions, exporter: str) -> list[str]:
        """The modules it would need for ``precisions`` that are not installed."""
        needed = list(self.packages)
        if self.exported:
            needed += ["onnx", *(["onnxscript"] if exporter == "dynamo" else [])]
        if "int8" in precisions:
            needed += self.int8_packages
        return [name for name in dict.fromkeys(needed) if importlib.util.find_spec(name) is None]

    def unsupported(self, precision: str, device: torch.device, hardware: Hardware) -> str | None:
        """Why ``precision`` cannot run here, in one line; None when it can."""
        if device.type not in self.devices:
            return f"{self.name} does not run on {device.type} devices"
        return None

    def version(self) -> str:
        return f"torch {torch.__version__}"

    def prepare(self, subject: Subject, precision: str) -> Predictor:
        raise NotImplementedError


def torch_bf16_reason(device: torch.device, hardware: Hardware) -> str | None:
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this GPU has no bf16"
    if not hardware.has(*NATIVE_BF16):
        return "this CPU has no native bf16 (avx512_bf16 or amx_bf16), so torch would emulate it"
    return None


class TorchEager(Runtime):
    def unsupported(self, precision, device, hardware):
        if precision == "int8":
            return ("torch eager has no post-training static INT8 for an arbitrary model (torch.ao's eager flow needs "
                    "QuantStub-wrapped modules); onnxruntime and openvino quantise the export")
        return torch_bf16_reason(device, hardware) if precision == "bf16" else super().unsupported(precision, device,
                                                                                                  hardware)

    def prepare(self, subject, precision):
        return torch_predictor(self.forward(subject.model.to(subject.device)), subject.device, precision)

    def forward(self, model):
        return model


class TorchCompile(TorchEager):
    def unsupported(self, precision, device, hardware):
        if precision == "int8":
            return ("static INT8 for torch.compile is PT2E quantisation, which lives in torchao, not a vbench "
                    "dependency; onnxruntime and openvino quantise the export")
        return super().unsupported(precision, device, hardware)

    def forward(self, model):
        # Graphs of earlier runs are dropped first: a forward compiled for every run, batch size and precision of a
        # command would pass dynamo's recompile limit, after which it runs eagerly without a word.
        torch.compiler.reset()
        return torch.compile(model, dynamic=False)  # a graph per batch size: the fastest kernels for each


def torch_predictor(forward, device: torch.device, precision: str) -> Predictor:
    autocast = precision == "bf16"

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            return forward(batch.to(device)).float().cpu()

    return predict


class OnnxRuntime(Runtime):
    def unsupported(self, precision, device, hardware):
        # lazy: an optional dependency (vbench[deploy]), imported only when deploying
        import onnxruntime

        if device.type == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
        if precision == "bf16":
            return (f"ONNX Runtime's {'CUDA' if device.type == 'cuda' else 'CPU'} provider has no bf16 kernels for "
                    "the convolutions and matmuls")
        if precision == "int8" and device.type == "cuda":
            return "QDQ INT8 runs through TensorRT on NVIDIA GPUs, not ONNX Runtime's CUDA provider"
        return super().unsupported(precision, device, hardware)

    def version(self):
        # lazy: an optional dependency (vbench[deploy]), imported only when deploying
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"

    def prepare(self, subject, precision):
        # lazy: an optional dependency (vbench[deploy]), imported only when deploying
        import onnxruntime

        path = subject.export().path
        if precision == "int8":
            path = quantize_onnx(path, subject.workdir / f"{subject.name}-ort-int8.onnx", subject.calibration(), INPUT)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = subject.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if subject.device.type == "cuda" else \
            ["CPUExecutionProvider"]
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        name = session.get_inputs()[0].name

        def predict(batch: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: batch.numpy()})[0]).float()

        return predict


class OpenVino(Runtime):
    def unsupported(self, precision, device, hardware):
        if device.type == "cuda":
            return "OpenVINO runs on CPUs and Intel GPUs, not on CUDA devices"
        capabilities = self.capabilities()
        if precision == "bf16" and "BF16" not in capabilities:
            return "OpenVINO's CPU plugin has no bf16 on this CPU (it needs avx512_bf16 or AMX)"
        if precision == "int8" and "INT8" not in capabilities:
            return "OpenVINO's CPU plugin has no INT8 on this CPU"
        return None

    def capabilities(self) -> list[str]:
        return list(openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))

    def version(self):
        # lazy: an optional dependency (vbench[deploy]), imported only when deploying
        import openvino

        return f"openvino {openvino.get_version()}"

    def prepare(self, subject, precision):
        # lazy: an optional dependency (vbench[deploy]), imported only when deploying
        import openvino

        model = openvino.convert_model(str(subject.export().path))
        if precision == "int8":
            model = quantize_openvino(model, subject.calibration(), subject.transformer)
        config = {"INFERENCE_NUM_THREADS": subject.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        request = openvino_core().compile_model(model, "CPU", config).create_infer_request()

        def predict(batch: torch.Tensor) -> torch.Tensor:
            request.infer({0: batch.numpy()})
            return torch.from_numpy(request.get_output_tensor(0).data.copy()).float()

        return predict


@functools.lru_cache(maxsize=1)
def openvino_core():
    """One OpenVINO Core for the process: each new one loads the CPU plugin again (seconds)."""
    # lazy: an optional dependency (vbench[deploy]), imported only when deploying
    import openvino

    return openvino.Core()


RUNTIMES: Registry[Runtime] = Registry("runtime", group="vbench.runtimes", listing="vbench deploy --help")
for _runtime in (
    TorchEager("torch", "eager PyTorch"),
    TorchCompile("torch-compile", "torch.compile (inductor), a static graph per batch size"),
    OnnxRuntime("onnxruntime", "the ONNX export in ONNX Runtime; INT8 by quantize_static (QDQ)",
                packages=("onnxruntime",), exported=True),
    OpenVino("openvino", "the ONNX export in OpenVINO; INT8 by NNCF", packages=("openvino",),
             int8_packages=("nncf",), exported=True, devices=("cpu",)),
):
    RUNTIMES.add(_runtime.name, _runtime)


def register_runtime(runtime: Runtime, replace: bool = False) -> Runtime:
    """Add a runtime (a ``Runtime`` with its own ``unsupported`` and ``prepare``) to ``vbench deploy``."""
    return RUNTIMES.add(runtime.name, runtime, replace=replace)
