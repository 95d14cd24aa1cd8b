"""The ``smoke`` dataset: procedurally generated 32x32 images of 10 classes, fully offline.

Six shapes (disk, square, triangle, ring, upright plus, diagonal cross) and four textures (stripes,
checkerboard, concentric rings, dot grid), each drawn with random foreground and background colours
(independent of the class, so the mean colour says next to nothing), random position, size, small
rotation, texture frequency and phase, brightness and contrast jitter and pixel noise. A small model
has to look at shape and texture to beat chance, and a small ViT does so within a minute or two of
CPU training. Generation is a few vectorised tensor ops from a fixed seed: the same images on every
machine, so it needs no cache.
"""

from __future__ import annotations

import math

import torch

CLASSES = ("disk", "square", "triangle", "ring", "plus", "stripes", "checkerboard", "concentric", "dots", "x-cross")
NUM_TRAIN = 5000
NUM_TEST = 1000
IMG_SIZE = 32
_SEEDS = {"train": 20240601, "test": 20240602}


def generate_smoke(split: str, num_images: int | None = None, img_size: int = IMG_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N,3,H,W] and labels int64 [N] of a split ("train" or "test"), balanced classes."""
    n = num_images if num_images is not None else (NUM_TRAIN if split == "train" else NUM_TEST)
    g = torch.Generator().manual_seed(_SEEDS[split])
    labels = torch.arange(n) % len(CLASSES)
    labels = labels[torch.randperm(n, generator=g)]
    uniform = lambda *shape, lo=0.0, hi=1.0: torch.rand(*shape, generator=g) * (hi - lo) + lo

    coords = (torch.arange(img_size) + 0.5) / img_size * 2 - 1  # pixel centres in [-1, 1]
    p = {
        "yy": coords.view(1, -1, 1).expand(n, -1, 1),
        "xx": coords.view(1, 1, -1).expand(n, 1, -1),
        "centre_y": uniform(n, 1, 1, lo=-0.3, hi=0.3),
        "centre_x": uniform(n, 1, 1, lo=-0.3, hi=0.3),
        "radius": uniform(n, 1, 1, lo=0.35, hi=0.65),
        "tilt": uniform(n, 1, 1, lo=-math.radians(15), hi=math.radians(15)),
        "frequency": uniform(n, 1, 1, lo=2.5, hi=5.0) * math.pi,
        "phase": uniform(n, 1, 1, lo=0.0, hi=2 * math.pi),
        "angle": uniform(n, 1, 1, lo=0.0, hi=math.pi),  # orientation of the stripes
    }
    mask = torch.zeros(n, 1, img_size, img_size)
    for label, draw in enumerate(_DRAW):
        chosen = labels == label
        mask[chosen, 0] = draw(**{key: value[chosen] for key, value in p.items()}).float()

    background = uniform(n, 3, 1, 1)
    foreground = (background + uniform(n, 3, 1, 1, lo=0.35, hi=0.65)) % 1.0  # far from the background
    image = background * (1 - mask) + foreground * mask
    contrast, brightness = uniform(n, 1, 1, 1, lo=0.7, hi=1.0), uniform(n, 1, 1, 1, lo=-0.1, hi=0.1)
    image = (image - 0.5) * contrast + 0.5 + brightness
    image = image + torch.randn(image.shape, generator=g) * uniform(n, 1, 1, 1, lo=0.02, hi=0.08)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8), labels.to(torch.int64)


def _shape_frame(yy, xx, centre_y, centre_x, tilt, **_):
    """Coordinates relative to the shape centre, rotated by a small tilt, and the distance to it."""
    dy, dx = yy - centre_y, xx - centre_x
    u = dx * torch.cos(tilt) + dy * torch.sin(tilt)
    v = -dx * torch.sin(tilt) + dy * torch.cos(tilt)
    return u, v, torch.sqrt(u**2 + v**2)


def _disk(radius, **p):
    u, v, dist = _shape_frame(**p)
    return dist < radius


def _square(radius, **p):
    u, v, _ = _shape_frame(**p)
    return torch.maximum(u.abs(), v.abs()) < radius * 0.8


def _ring(radius, **p):
    _, _, dist = _shape_frame(**p)
    return (dist - radius * 0.75).abs() < radius * 0.2


def _upright_plus(radius, **p):
    u, v, _ = _shape_frame(**p)
    return _plus(u, v, radius)


def _x_cross(radius, **p):
    u, v, _ = _shape_frame(**p)
    return _plus((u + v) / math.sqrt(2), (v - u) / math.sqrt(2), radius)


def _upright_triangle(radius, **p):
    u, v, _ = _shape_frame(**p)
    return _triangle(u, v, radius * 1.15)


def _stripes(yy, xx, frequency, phase, angle, **_):
    return torch.sin(frequency * (xx * torch.cos(angle) + yy * torch.sin(angle)) + phase) > 0


def _checkerboard(yy, xx, frequency, phase, tilt, **_):
    along = xx * torch.cos(tilt) + yy * torch.sin(tilt)
    across = -xx * torch.sin(tilt) + yy * torch.cos(tilt)
    return torch.sin(frequency * along + phase) * torch.sin(frequency * across + phase) > 0


def _concentric(frequency, phase, **p):
    _, _, dist = _shape_frame(**p)
    return torch.sin(frequency * 1.5 * dist + phase) > 0


def _dots(yy, xx, frequency, phase, **_):
    return (torch.sin(frequency * 1.2 * xx + phase) > 0.5) & (torch.sin(frequency * 1.2 * yy + phase) > 0.5)


def _plus(u: torch.Tensor, v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    return ((u.abs() < radius * 0.22) & (v.abs() < radius)) | ((v.abs() < radius * 0.22) & (u.abs() < radius))


def _triangle(u: torch.Tensor, v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """An upright equilateral triangle inscribed in the circle of ``radius`` (v grows downwards)."""
    corners = [(math.cos(a), math.sin(a)) for a in (math.radians(-90), math.radians(30), math.radians(150))]
    inside = torch.ones_like(u * v * radius, dtype=torch.bool)
    for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1]):
        # the corners go clockwise on screen, so the inside is where this cross product is positive
        inside &= (x2 - x1) * (v - y1 * radius) - (y2 - y1) * (u - x1 * radius) > 0
    return inside


_DRAW = (_disk, _square, _upright_triangle, _ring, _upright_plus, _stripes, _checkerboard, _concentric, _dots, _x_cross)
