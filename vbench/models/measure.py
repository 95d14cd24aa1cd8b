"""Parameter and FLOP counting.

FLOPs are fvcore's count, in which one multiply-add counts as one flop: they are
multiply-accumulates (MACs), the same unit as the paper's "Flops" column. The paper's own counter
(ptflops 0.7.1, which leaves out attention products written with einsum and F.conv2d) gives
``count_flops_paper``, reported beside it as ``flops_paper_counter``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from math import prod

import torch
import torch.nn as nn

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    # in here: fvcore.nn scripts its focal loss at import, which torch 2.14 warns about on every command
    import fvcore.nn  # noqa: F401
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape

from vbench import __version__
from vbench.errors import VbenchError, one_line
from vbench.models.paper_flops import count_flops_paper  # noqa: F401  (re-exported: the paper's counter)
from vbench.paths import atomic_write, cache_root

FLOPS_UNIT_NOTE = "FLOPs are fvcore multiply-accumulates (one multiply-add = one flop), as in the paper."

# Element-wise, reduction and data-movement ops cost no MACs under fvcore's convention (it counts
# matmuls, convolutions, norms and resampling). Declaring them here keeps them out of the
# "uncounted" report, so that report only names ops whose arithmetic would really be missing.
ZERO_MAC_OPS = (
    "aten::add", "aten::add_", "aten::sub", "aten::sub_", "aten::rsub", "aten::mul", "aten::mul_",
    "aten::div", "aten::div_", "aten::neg", "aten::pow", "aten::sqrt", "aten::rsqrt", "aten::exp",
    "aten::log", "aten::abs", "aten::sin", "aten::cos", "aten::reciprocal", "aten::sign",
    "aten::gelu", "aten::gelu_", "aten::silu", "aten::silu_", "aten::sigmoid", "aten::sigmoid_",
    "aten::tanh", "aten::hardswish", "aten::hardswish_", "aten::hardsigmoid", "aten::leaky_relu",
    "aten::relu6", "aten::hardtanh", "aten::hardtanh_", "aten::elu", "aten::softplus", "aten::glu",
    "aten::softmax", "aten::log_softmax", "aten::_softmax", "aten::mean", "aten::sum", "aten::norm",
    "aten::linalg_vector_norm", "aten::frobenius_norm", "aten::amax", "aten::argmax", "aten::topk",
    "aten::clone", "aten::fill_", "aten::masked_fill", "aten::masked_fill_", "aten::where",
    "aten::roll", "aten::pad", "aten::repeat", "aten::repeat_interleave", "aten::unfold",
    "aten::new_zeros", "aten::new_ones", "aten::ones", "aten::ones_like", "aten::zero_",
    "aten::expand_as", "aten::view_as", "aten::type_as", "aten::unflatten", "aten::lt", "aten::le",
    "aten::ne", "aten::logical_and", "aten::logical_not", "aten::scatter", "aten::scatter_",
    "aten::index_select", "aten::embedding", "aten::max_pool2d", "aten::avg_pool2d", "aten::avg_pool1d",
    "aten::adaptive_max_pool2d", "aten::pixel_shuffle", "aten::im2col", "aten::col2im",
    "aten::randn", "aten::rand", "aten::bernoulli_", "aten::feature_dropout", "aten::alpha_dropout",
    "aten::erf", "aten::tril", "aten::triu", "aten::einsum_path", "aten::diagonal", "aten::clamp_min",
    "aten::clamp_max", "aten::minimum", "aten::maximum", "aten::min", "aten::std", "aten::var",
    "aten::cumsum", "aten::lift_fresh", "aten::resolve_conj", "aten::resolve_neg", "aten::movedim",
    "aten::channel_shuffle", "aten::flip", "aten::atan2", "aten::meshgrid", "aten::linspace",
    "aten::stft", "aten::mish", "aten::celu", "aten::selu", "aten::prelu", "aten::fmod",
)


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _sdpa_macs(inputs, outputs) -> int:
    """q @ k^T plus attn @ v: L*S*E + L*S*Ev MACs per batch-head."""
    q_shape, k_shape, v_shape = (get_shape(value) for value in inputs[:3])
    batch = prod(q_shape[:-2])
    length, dim_qk = q_shape[-2:]
    source = k_shape[-2]
    return batch * length * source * (dim_qk + v_shape[-1])


def _linalg_matmul_macs(inputs, outputs) -> int:
    a_shape, b_shape = get_shape(inputs[0]), get_shape(inputs[1])
    out_shape = get_shape(outputs[0])
    return prod(out_shape) * a_shape[-1] if len(a_shape) > 1 else prod(b_shape[:-1])


EXTRA_HANDLES = {
    "aten::scaled_dot_product_attention": _sdpa_macs,
    "aten::_scaled_dot_product_attention_math": _sdpa_macs,
    "aten::baddbmm": _linalg_matmul_macs,
}


@dataclass
class FlopCount:
    total: int
    by_operator: dict[str, int] = field(default_factory=dict)
    uncounted_ops: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.uncounted_ops

    def describe(self) -> str:
        if self.complete:
            return f"{self.total / 1e6:.2f}M"
        names = ", ".join(sorted(self.uncounted_ops))
        return f"{self.total / 1e6:.2f}M (incomplete: no FLOP rule for {names})"


def flop_analysis(model: nn.Module, inputs: tuple):
    analysis = FlopCountAnalysis(model, inputs)
    analysis.set_op_handle(**EXTRA_HANDLES)
    analysis.set_op_handle(**{name: None for name in ZERO_MAC_OPS})
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def count_flops(model: nn.Module, img_size: int | tuple[int, int] = 32, in_chans: int = 3) -> FlopCount:
    """fvcore MACs of one image through ``model`` (in eval mode, on the CPU, in float32)."""
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    image = torch.zeros(1, in_chans, height, width, device=device)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            analysis = flop_analysis(model, (image,))
            total = int(analysis.total())
            by_operator = {name: int(v) for name, v in analysis.by_operator().items()}
            uncounted = dict(Counter(analysis.unsupported_ops()))
    finally:
        model.train(was_training)
    return FlopCount(total=total, by_operator=by_operator, uncounted_ops=uncounted)


def measure_model(spec, task: str, img_size: int, num_classes: int) -> dict:
    """Params and FLOPs of a backbone's ``task`` model, as plain integers."""
    model = spec.build(img_size=img_size, num_classes=num_classes, task=task)
    flops = count_flops(model, img_size)
    return {"params": count_params(model), "flops": flops.total, "flops_complete": flops.complete,
            "uncounted_ops": sorted(flops.uncounted_ops), "flops_paper_counter": count_flops_paper(model, img_size)}


UNMEASURED = {"params": None, "flops": None, "flops_complete": False, "uncounted_ops": [], "flops_paper_counter": None}


def cached_measurement(spec, task: str, img_size: int, num_classes: int) -> dict:
    """``measure_model`` through an on-disk cache keyed by (name, task, size, classes, vbench version and the
    size and time of the file that defines the model); a model that cannot be built gives its ``error``."""
    module = spec.variant(task).module
    source = getattr(sys.modules.get(module), "__file__", None) or _module_file(module)
    stat = os.stat(source) if source else None
    key = f"{spec.name}|{task}|{img_size}|{num_classes}|{__version__}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}"
    path = cache_root() / "measurements.json"
    cache = _read_json(path)
    if key not in cache:
        try:
            cache[key] = {**measure_model(spec, task, img_size, num_classes), "error": None}
        except VbenchError as exc:
            cache[key] = {**UNMEASURED, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a model that fails at this size is listed with the reason
            cache[key] = {**UNMEASURED, "error": f"{spec.name} fails at {img_size}x{img_size}: {one_line(exc)}"}
        _write_json(path, cache)
    return dict(cache[key])


def _module_file(module: str) -> str | None:
    found = importlib.util.find_spec(module)
    return found.origin if found else None


def _read_json(path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path, data: dict) -> None:
    """A cache that cannot be written just means measuring again next time."""
    try:
        atomic_write(path, json.dumps(data))
    except (OSError, VbenchError):  # VbenchError: a full disk
        pass


def layer_summary(model: nn.Module) -> list[dict]:
    """Top-level children, and the children of any top-level container, with their parameter counts."""
    rows = []
    for name, child in model.named_children():
        rows.append({"module": name, "type": type(child).__name__, "params": count_params(child)})
        if len(list(child.children())) > 1 and type(child).__name__ in ("Sequential", "ModuleList"):
            for sub_name, sub in child.named_children():
                rows.append({"module": f"  {name}.{sub_name}", "type": type(sub).__name__, "params": count_params(sub)})
    own = sum(p.numel() for p in model.parameters(recurse=False) if p.requires_grad)
    if own:
        rows.insert(0, {"module": "(own parameters)", "type": "Parameter", "params": own})
    return rows
