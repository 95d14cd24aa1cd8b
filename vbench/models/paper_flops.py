"""The paper's FLOP counter: ptflops 0.7.1.x, run as the LKCA authors ran it.

Which counter: ptflops 0.7.1.1 and 0.7.1.2 (the same counter; vbench needs 0.7.1.2, which passes a
tensor from ``input_constructor`` as-is) reproduce ``paper_convention_macs`` of reference-models.csv
exactly on every model built from vit-pytorch classes (CaiT, T2T, RvT, XCiT, DeepViT, RegionViT,
CrossViT, Twins-SVT, CvT: 55 of its 109 rows). Of the other releases, 0.6 to 0.7.1 match none of the
109 rows and 0.7.2.1 to 0.7.5 match 7. Its convention: multiply-accumulates of the nn modules it knows
(Linear with its bias counted once, Conv with its bias counted at every position, LayerNorm as one op
per element, activations and pooling twice: once by the module hook and once by the patched
functional the module calls), plus ``F.softmax``, ``torch.matmul`` and ``Tensor.add/mul``. ``einsum``,
``@`` and ``F.conv2d`` are not counted, which is why ViT's attention products and LKCA's large-kernel
convolution are missing from the published numbers.

Why adapters: ptflops matches module types exactly and sees only what the forward pass calls, so its
count depends on how a model is written, not only on what it computes. Four of our families compute
the authors' functions with other modules (the ViT/LKCA chassis and Swin from timm, MobileViT from
vit-pytorch), and ptflops alone is off on their 54 rows by 0.002% to 10%. Each adapter below adds, at
one module, the difference between what ptflops counted on the authors' layout and what it counts on
ours; with them all 109 rows are exact (tests/test_paper_flops.py).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import io
import warnings
from typing import Any, Callable

import torch
import torch.nn as nn
from ptflops import get_model_complexity_info
from timm.layers.adaptive_avgmax_pool import FastAdaptiveAvgPool
from timm.models.vision_transformer import Attention, VisionTransformer
from vit_pytorch.mobile_vit import MobileViT

from vbench.errors import VbenchError

PTFLOPS_REQUIREMENT = ">=0.7.1.2,<0.7.2"

# (module, inputs, output) -> MACs the authors' layout was counted at here, minus what ptflops counts here.
Adapter = Callable[[nn.Module, tuple, Any], int]


def _layer_norm_subclass(module: nn.Module, inputs: tuple, output: Any) -> int:
    """timm's LayerNorm subclasses nn.LayerNorm, which ptflops skips (exact type match); the authors'
    nn.LayerNorm counted one op per element (ptflops looks for ``affine``, which LayerNorm lacks)."""
    return inputs[0].numel()


def _class_token_norm(module: nn.Module, inputs: tuple, output: Any) -> int:
    """timm normalises every token and then takes the class token; the authors' head took the class
    token and then normalised it: one token's worth of LayerNorm."""
    tokens = inputs[0]
    return tokens.numel() // tokens.shape[1]


def _attention_softmax(module: nn.Module, inputs: tuple, output: Any) -> int:
    """timm's attention runs fused (no softmax call); the authors' nn.Softmax called the F.softmax that
    ptflops patches, one op per attention weight: heads * N * N per image."""
    batch, tokens, _ = inputs[0].shape
    return batch * module.num_heads * tokens * tokens


def _patch_conv_as_linear(module: nn.Module, inputs: tuple, output: Any) -> int:
    """A patchify conv counts its bias at every position; the authors' Rearrange + Linear counted it
    once (ptflops's Linear rule: ``out_features`` for the bias, whatever the number of tokens)."""
    if module.bias is None:
        return 0
    positions = output.shape[-2] * output.shape[-1]
    return -(positions - 1) * module.out_channels * output.shape[0]


def _average_pool_twice(module: nn.Module, inputs: tuple, output: Any) -> int:
    """A mean over the spatial positions that the authors wrote as an nn.AdaptiveAvgPool1d (Swin) or
    nn.AvgPool2d (MobileViT): ptflops counted the input once in the module hook and once more in the
    patched ``F.adaptive_avg_pool1d`` / ``F.avg_pool2d`` it calls."""
    return 2 * inputs[0].numel()


def paper_layout_adapters(model: nn.Module) -> list[tuple[nn.Module, Adapter]]:
    """The modules of ``model`` that ptflops counts otherwise than on the authors' layout, with the fix."""
    adapters: list[tuple[nn.Module, Adapter]] = []
    class_token_norms = set()
    for module in model.modules():
        if isinstance(module, VisionTransformer):
            adapters.append((module.patch_embed.proj, _patch_conv_as_linear))
            if module.global_pool == "token":
                class_token_norms.add(module.norm)
        elif isinstance(module, MobileViT):
            adapters.append((module.to_logits[1], _average_pool_twice))
    for module in model.modules():
        if module in class_token_norms:
            adapters.append((module, _class_token_norm))
        elif isinstance(module, nn.LayerNorm) and type(module) is not nn.LayerNorm:
            adapters.append((module, _layer_norm_subclass))
        elif isinstance(module, Attention):
            adapters.append((module, _attention_softmax))
        elif isinstance(module, FastAdaptiveAvgPool):
            adapters.append((module, _average_pool_twice))
    return adapters


def _use_lkca_conv_view(model: nn.Module) -> None:
    """The authors' LKCA ran the conv view (F.conv2d, never counted); our matrix view's torch.matmul
    would be counted, so count in the view a module declares as ``paper_counter_view`` (LKCA: the conv view,
    same parameters, same function)."""
    for module in model.modules():
        view = getattr(type(module), "paper_counter_view", None)
        if view is not None:
            module.view = view


def _require_paper_ptflops() -> None:
    """Other ptflops releases count otherwise (see the module docstring): refuse them."""
    installed = importlib.metadata.version("ptflops")
    release = tuple(int(part) if part.isdigit() else -1 for part in installed.split("."))
    if not (0, 7, 1, 2) <= release < (0, 7, 2):
        raise VbenchError(f"ptflops {installed} is installed, but the paper's counter is ptflops{PTFLOPS_REQUIREMENT}; "
                          f"run: pip install 'ptflops{PTFLOPS_REQUIREMENT}'")


def count_flops_paper(model: nn.Module, img_size: int | tuple[int, int] = 32, in_chans: int = 3) -> int:
    """MACs of one image through ``model`` as the paper counted them (``paper_convention_macs``).

    Counts a copy (ptflops sets eval mode and leaves attributes on the model). Not thread-safe: ptflops
    patches ``torch.matmul`` and ``torch.nn.functional`` while it runs.
    """
    _require_paper_ptflops()
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    model = copy.deepcopy(model)
    _use_lkca_conv_view(model)
    device = next(iter(model.parameters()), torch.empty(0)).device
    adapted: list[int] = []
    for module, fix in paper_layout_adapters(model):  # hooks on the copy, thrown away with it
        module.register_forward_hook(lambda mod, inputs, output, fix=fix: adapted.append(fix(mod, inputs, output)))
    log = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        macs, _ = get_model_complexity_info(
            model, (in_chans, height, width), as_strings=False, print_per_layer_stat=False, ost=log,
            input_constructor=lambda shape: torch.zeros(1, *shape, device=device),
        )
    if macs is None:  # ptflops catches the exception, prints it and returns None
        raise RuntimeError(f"ptflops could not count {type(model).__name__}: {log.getvalue().strip()[-500:]}")
    return int(round(macs)) + sum(adapted)
