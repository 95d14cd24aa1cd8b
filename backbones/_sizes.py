"""Image-size rules of the baseline families, checked when a model is built.

The libraries the baselines come from either assert deep inside ``__init__`` or fail with a shape
error in the middle of the first forward pass when an image size does not fit their patching and
windowing. The builders call these helpers first, so a bad size is one clear ``VbenchError`` at build
time that names the sizes the model does support.
"""

from __future__ import annotations

from vbench.errors import VbenchError

TOKEN_GRID = 8  # the paper: patch 4 at 32x32 and patch 8 at 64x64, i.e. an 8x8 token grid


def multiples_of(step: int) -> str:
    return f"that is a multiple of {step} ({step}, {2 * step}, {3 * step}, ...)"


def require_img_size(name: str, img_size: int, supported: bool, sizes: str) -> None:
    """Raise one clear error unless ``supported``; ``sizes`` completes "use an image size ..."."""
    if not supported:
        raise VbenchError(f"{name} cannot run on {img_size}x{img_size} images; use an image size {sizes}")


def require_multiple(name: str, img_size: int, step: int) -> None:
    require_img_size(name, img_size, img_size > 0 and img_size % step == 0, multiples_of(step))


def token_patch_size(name: str, img_size: int, patch_size: int | None = None) -> int:
    """The paper's patch size (``img_size // 8``: 4 at 32x32, 8 at 64x64) unless one is given."""
    if patch_size is None:
        require_multiple(name, img_size, TOKEN_GRID)
        return img_size // TOKEN_GRID
    fits = patch_size > 0 and img_size % patch_size == 0
    require_img_size(name, img_size, fits, f"divisible by patch_size={patch_size}")
    return patch_size
