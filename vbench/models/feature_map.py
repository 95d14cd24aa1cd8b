"""The feature-map contract: how a classification backbone hands out its last spatial feature map.

A backbone declares it where it registers, ``@register_backbone(..., feature_map="...")``, as a literal
(read from the source without importing torch, like the rest of the declaration):

- ``"timm"``: timm's own accessor, the last map of ``model.forward_intermediates(x, indices=1,
  intermediates_only=True)`` (NCHW; a ViT's token grid without its class token, a hierarchical model's
  last stage);
- ``"tokens:PATH"``: the output of the submodule ``PATH`` (``model.get_submodule(PATH)``) is a token
  sequence (B, N, C) whose leading prefix tokens (a class token) are dropped and whose other tokens are a
  square grid, or tokens already on their grid (B, H, W, C);
- ``"map:PATH"``: the output of the submodule ``PATH`` is the map itself (B, C, H, W);
- ``PATH[i]`` takes item ``i`` of a submodule that returns a tuple; a tuple output without an index is
  its maps laid on top of each other (concatenated on channels; they must share one grid);
- ``"none:WHY"``: the backbone has no last spatial feature map, and ``WHY`` says why.

A backbone that declares nothing has no feature map either: the analyses that need one (``vbench erf``)
refuse it in one line that says how to declare it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vbench.errors import VbenchError

KINDS = ("timm", "tokens", "map", "none")
_PATH = re.compile(r"^(?P<path>[A-Za-z_][\w.]*)(\[(?P<index>\d+)\])?$")
HOW = ('declare it with @register_backbone(..., feature_map="timm" | "tokens:MODULE" | "map:MODULE" | '
       '"none:WHY")')


@dataclass(frozen=True)
class FeatureMap:
    """A parsed ``feature_map`` declaration."""

    kind: str
    path: str = ""
    index: int | None = None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.kind != "none"

    @property
    def text(self) -> str:
        if self.kind == "timm":
            return "timm"
        if self.kind == "none":
            return f"none:{self.reason}"
        return f"{self.kind}:{self.path}" + (f"[{self.index}]" if self.index is not None else "")


def parse_feature_map(declaration: str | None, backbone: str = "") -> FeatureMap | None:
    """The declaration as a ``FeatureMap`` (None when nothing is declared); a malformed one is one error."""
    if declaration is None:
        return None
    where = f"backbone {backbone!r}: " if backbone else ""
    if not isinstance(declaration, str):
        raise VbenchError(f"{where}feature_map must be a string, not {type(declaration).__name__}; {HOW}")
    kind, _, rest = declaration.partition(":")
    if kind == "timm" and not rest:
        return FeatureMap("timm")
    if kind == "none" and rest.strip():
        return FeatureMap("none", reason=rest.strip())
    match = _PATH.match(rest)
    if kind in ("tokens", "map") and match:
        index = match.group("index")
        return FeatureMap(kind, match.group("path"), int(index) if index is not None else None)
    raise VbenchError(f"{where}feature_map {declaration!r} is not a declaration vbench reads; {HOW}")


def require_feature_map(feature_map: FeatureMap | None, backbone: str) -> FeatureMap:
    """The backbone's feature map, or one error saying why there is none and how to declare one."""
    if feature_map is None:
        raise VbenchError(f"backbone {backbone!r} declares no last feature map; {HOW}")
    if not feature_map.available:
        raise VbenchError(f"backbone {backbone!r} has no last spatial feature map: {feature_map.reason}")
    return feature_map


def last_feature_map(model, feature_map: FeatureMap, images):
    """The model's last spatial feature map of ``images`` (B, C, H, W), in the autograd graph of ``images``."""
    if feature_map.kind == "timm":
        if not hasattr(model, "forward_intermediates"):
            raise VbenchError(f"{type(model).__name__} has no forward_intermediates (timm's accessor); declare "
                              "the feature map as tokens:MODULE or map:MODULE instead")
        return model.forward_intermediates(images, indices=1, intermediates_only=True)[-1]
    try:
        module = model.get_submodule(feature_map.path)
    except AttributeError:
        raise VbenchError(f"{type(model).__name__} has no submodule {feature_map.path!r} (its feature_map "
                          f"{feature_map.text!r})") from None
    caught = []
    handle = module.register_forward_hook(lambda _module, _inputs, output: caught.append(output))
    try:
        model(images)
    finally:
        handle.remove()
    if not caught:
        raise VbenchError(f"the submodule {feature_map.path!r} of {type(model).__name__} did not run in its forward pass")
    output = caught[-1]
    if isinstance(output, (tuple, list)):
        if feature_map.index is not None:
            return _as_map(output[feature_map.index], feature_map)
        return _stack_on_channels([_as_map(item, feature_map) for item in output])
    return _as_map(output, feature_map)


def _as_map(output, feature_map: FeatureMap):
    if feature_map.kind == "map":
        if output.ndim != 4:
            raise VbenchError(f"{feature_map.text!r} gave a {output.ndim}-d output, not a (B, C, H, W) map")
        return output
    if output.ndim == 4:  # tokens on their grid, channels last
        return output.permute(0, 3, 1, 2)
    if output.ndim != 3:
        raise VbenchError(f"{feature_map.text!r} gave a {output.ndim}-d output, not (B, N, C) tokens")
    batch, tokens, channels = output.shape
    side = math.isqrt(tokens)
    if side == 0 or tokens - side * side > side:  # more than a few leading tokens: not a square grid
        raise VbenchError(f"{feature_map.text!r} gave {tokens} tokens, not a square grid after a class token")
    grid = output[:, tokens - side * side:]
    return grid.transpose(1, 2).reshape(batch, channels, side, side)


def _stack_on_channels(maps: list):
    # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
    import torch

    if len({tuple(m.shape[-2:]) for m in maps}) != 1:
        raise VbenchError(f"the maps of the tuple output differ in size ({[tuple(m.shape) for m in maps]}); "
                          "name one with PATH[i]")
    return torch.cat(maps, dim=1)
