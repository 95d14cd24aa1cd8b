"""The 15 common corruptions of Hendrycks & Dietterich (ICLR 2019) at five severities, generated from
a clean split with the parameters of the released CIFAR-10-C/CIFAR-100-C (32x32) and Tiny-ImageNet-C
(64x64) files.

The operations come from ``imagecorruptions`` (the maintained fork on PyPI, ``imagecorruptions-imaug``:
the ImageNet-C code without ImageMagick) and the libraries it depends on (OpenCV, scikit-image, SciPy,
Pillow): its defocus disk, plasma fractal (fog), clipped zoom, its NumPy motion blur (ImageMagick's
MagickMotionBlurImage re-implemented), its compiled pixel shuffle (glass blur) and its frost pictures.
Its ``corrupt()`` only knows the ImageNet (224x224) parameters, so the few lines that combine those
operations are written here with the per-severity tables of Hendrycks' ``make_cifar_c.py`` and
``make_tinyimagenet_c.py`` (``PARAMETERS`` below, copied value for value).

What differs from the released files (besides the random draws, which no seed can reproduce):
- motion blur (and the snow streaks) use imagecorruptions' NumPy re-implementation of ImageMagick's
  motion blur, not ImageMagick: the same Gaussian line kernel, edges and rounding may differ by a level;
- frost uses the frost pictures shipped with imagecorruptions (one of the first five, as the scripts
  pick), read and scaled with OpenCV as the scripts do; the bytes were not compared with Hendrycks';
- fog's plasma fractal is computed in float32 (the scripts: float64);
- Tiny-ImageNet-C was made from ImageNet validation crops of the 200 classes, we corrupt the
  Tiny-ImageNet validation split (our clean test split). Its images were saved as JPEG quality 85,
  so generated Tiny-ImageNet images go through the same JPEG round trip;
- the random draws of one image are the same at every severity (common random numbers), so the
  severities of an image differ by the parameters only; in the release each draw was fresh.
As in the scripts, float results are clipped to [0, 255] and truncated (``np.uint8``) to bytes.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import multiprocessing
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from importlib import metadata
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from vbench.errors import VbenchError
from vbench.parse import parse_list

CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)
LIBRARY = "imagecorruptions-imaug"
GENERATOR_FORMAT = 1  # bump when generated images change for the same seed and library version

# Image size of each parameter set; the formulas below are only right at that size.
PARAMETER_SETS = {"cifar": 32, "tiny-imagenet": 64}
# The Tiny-ImageNet-C files were written as JPEG with this quality (make_tinyimagenet_c.py).
RELEASE_JPEG_QUALITY = {"tiny-imagenet": 85}


def _zoom_range(top: float) -> np.ndarray:
    return np.arange(1, top, 0.01)


# Per-severity parameters, copied from make_cifar_c.py and make_tinyimagenet_c.py (hendrycks/robustness,
# ImageNet-C/create_c). Tuples keep the scripts' order; the helpers below name the fields.
PARAMETERS: dict[str, dict[str, tuple]] = {
    "cifar": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": tuple(_zoom_range(top) for top in (1.06, 1.11, 1.16, 1.21, 1.26)),
        "snow": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "elastic_transform": tuple(
            (32 * a, 32 * s, 32 * d)
            for a, s, d in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
        ),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "jpeg_compression": (80, 65, 58, 50, 40),
    },
    "tiny-imagenet": {
        "gaussian_noise": (0.04, 0.08, 0.12, 0.15, 0.18),
        "shot_noise": (250, 100, 50, 30, 15),
        "impulse_noise": (0.01, 0.02, 0.05, 0.08, 0.14),
        "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
        "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
        "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
        "zoom_blur": tuple(_zoom_range(top) for top in (1.06, 1.11, 1.16, 1.21, 1.26)),
        "snow": (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.8),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
        ),
        "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
        "fog": ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": tuple(
            (64 * a, 64 * s, 64 * d)
            for a, s, d in ((0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03), (0.16, 0.03, 0.02))
        ),
        "pixelate": (0.9, 0.8, 0.7, 0.6, 0.5),
        "jpeg_compression": (65, 58, 50, 40, 25),
    },
}
# Frost pictures are scaled by this factor before a random crop (the scripts' cv2.resize fx = fy).
FROST_SCALE = {"cifar": 0.2, "tiny-imagenet": 0.3}


# --------------------------------------------------------------------------------------------------
# Parsing user input


def parse_corruptions(text: str) -> list[str]:
    """``"all"`` or a comma-separated list of corruption names -> names in the order given."""
    names = parse_list(text, "--corruptions", choices=CORRUPTIONS, all_word="all", example="fog,snow", unique=False,
                       noun="corruption")
    return list(dict.fromkeys(names))


def parse_severities(text: str) -> list[int]:
    """``"all"`` or a comma-separated list of severities in 1-5 -> sorted."""
    if str(text).strip() == "all":
        return list(SEVERITIES)
    return sorted(set(parse_list(text, "--severities", int, choices=SEVERITIES, example="1,3,5", unique=False,
                                 noun="severity")))


def check_corruption(name: str, severity: int) -> None:
    if name not in CORRUPTIONS:
        raise VbenchError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise VbenchError(f"severity {severity!r} is not one of 1, 2, 3, 4, 5")


def parameter_set_for(img_size: int) -> str:
    """``"cifar"`` for 32x32 images, ``"tiny-imagenet"`` for 64x64; other sizes have no released table."""
    for name, size in PARAMETER_SETS.items():
        if size == img_size:
            return name
    raise VbenchError(
        f"no corruption parameters for {img_size}x{img_size} images; Hendrycks' tables exist for "
        + " and ".join(f"{size}x{size} ({name})" for name, size in PARAMETER_SETS.items())
    )


def library_version() -> str:
    """Version of the corruption library (part of every cache key)."""
    try:
        return metadata.version(LIBRARY)
    except metadata.PackageNotFoundError:
        return "missing"


# --------------------------------------------------------------------------------------------------
# Corrupting a batch


def corrupt(
    images: torch.Tensor, name: str, severity: int, seed: int, parameters: str | None = None,
    workers: int = 1, progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``images`` (uint8 [N,3,H,W]) corrupted by ``name`` at ``severity`` (1-5): uint8 [N,3,H,W].

    The same (images, name, severity, seed) give the same bytes, whatever ``workers`` (processes).
    Image i draws its random numbers from a generator seeded by (seed, name, i), the same at every
    severity. ``parameters`` is "cifar" or "tiny-imagenet" (default: by image size). ``progress(n)``
    is called as images get done.
    """
    check_corruption(name, severity)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise VbenchError(f"expected uint8 images [N,3,H,W], got {images.dtype} {tuple(images.shape)}")
    height, width = images.shape[-2:]
    parameters = parameters or parameter_set_for(height)
    if parameters not in PARAMETER_SETS:
        raise VbenchError(f"unknown corruption parameter set {parameters!r}; choose one of {', '.join(PARAMETER_SETS)}")
    size = PARAMETER_SETS[parameters]
    if (height, width) != (size, size):
        raise VbenchError(f"the {parameters} corruption parameters are for {size}x{size} images, got {height}x{width}")

    _operations()  # a missing library is one error here, not one per worker
    pictures = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, as the scripts see PIL images
    starts = range(0, len(pictures), _CHUNK)
    jobs = [(pictures[start : start + _CHUNK], start, name, severity, seed, parameters) for start in starts]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            chunks = []
            for chunk in pool.map(_corrupt_chunk, *zip(*jobs)):
                chunks.append(chunk)
                if progress is not None:
                    progress(len(chunk))
    else:
        chunks = []
        for job in jobs:
            chunks.append(_corrupt_chunk(*job))
            if progress is not None:
                progress(len(chunks[-1]))
    out = np.concatenate(chunks) if chunks else np.empty_like(pictures)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


_CHUNK = 500  # images per task when several workers share a split


def _corrupt_chunk(
    pictures: np.ndarray, start: int, name: str, severity: int, seed: int, parameters: str
) -> np.ndarray:
    ops = _operations()
    apply = _CORRUPTION_FUNCTIONS[name]
    value = PARAMETERS[parameters][name][severity - 1]
    jpeg_quality = RELEASE_JPEG_QUALITY.get(parameters)
    name_key = zlib.crc32(name.encode())
    out = np.empty_like(pictures)
    for offset, picture in enumerate(pictures):
        rng = np.random.default_rng(np.random.SeedSequence([seed, name_key, start + offset]))
        result = apply(np.ascontiguousarray(picture), value, rng, parameters, ops)
        result = np.clip(np.asarray(result, dtype=np.float64), 0, 255).astype(np.uint8)  # truncates, as np.uint8 in the scripts
        out[offset] = _jpeg_round_trip(result, jpeg_quality) if jpeg_quality else result
    return out


@functools.lru_cache(maxsize=1)
def _operations():
    """The library's module, imported on first use (it pulls in OpenCV, scikit-image and Numba)."""
    try:
        # lazy: the optional robustness extra, only when corruptions are generated
        from imagecorruptions import corruptions as library
    except ImportError as exc:
        raise VbenchError(
            f"generating corrupted images needs the {LIBRARY} package ({exc}); `pip install 'vbench[robustness]'` "
            "or put the released CIFAR-10-C / CIFAR-100-C / Tiny-ImageNet-C under the data root"
        ) from None
    return library


@functools.lru_cache(maxsize=1)
def _glass_shuffle():
    """imagecorruptions' Numba pixel shuffle, compiled with an on-disk cache (the library's own is not
    cached, and compiling it costs seconds in every new process)."""
    # lazy: the optional robustness extra, only when corruptions are generated
    import numba

    return numba.njit(cache=True)(_operations()._shuffle_pixels_njit_glass_blur.py_func)


@contextmanager
def _numpy_global_seed(rng: np.random.Generator) -> Iterator[None]:
    """Seed NumPy's global generator from ``rng`` for a library helper that draws from it, then restore it."""
    state = np.random.get_state()
    np.random.seed(int(rng.integers(2**31)))
    try:
        yield
    finally:
        np.random.set_state(state)


def _jpeg_round_trip(picture: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def _centred_zoom(ops, picture: np.ndarray, factor: float) -> np.ndarray:
    """The scripts' clipped_zoom: the library's crop-and-zoom, trimmed about the centre."""
    size = picture.shape[0]
    zoomed = ops.clipped_zoom(picture, factor)
    top = (zoomed.shape[0] - size) // 2
    return zoomed[top : top + size, top : top + size]


def _gaussian(picture: np.ndarray, sigma: float) -> np.ndarray:
    # lazy: the optional robustness extra, only when corruptions are generated
    from skimage.filters import gaussian

    return gaussian(picture, sigma=sigma, channel_axis=-1)


# One function per corruption: (HWC uint8 picture, this severity's parameters, rng, parameter set,
# the library module) -> float or uint8 HWC picture in [0, 255]. Each follows the scripts' formula.


def _gaussian_noise(x, c, rng, _set, _ops):
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _shot_noise(x, c, rng, _set, _ops):
    x = x / 255.0
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


def _impulse_noise(x, c, rng, _set, _ops):
    # lazy: the optional robustness extra, only when corruptions are generated
    from skimage.util import random_noise

    noisy = random_noise(x / 255.0, "s&p", int(rng.integers(2**31)), amount=c)
    return np.clip(noisy, 0, 1) * 255


def _defocus_blur(x, c, _rng, _set, ops):
    # lazy: the optional robustness extra, only when corruptions are generated
    import cv2

    x = x / 255.0
    kernel = ops.disk(radius=c[0], alias_blur=c[1])
    channels = [cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 1) * 255


def _glass_blur(x, c, rng, _set, _ops):
    sigma, max_delta, iterations = c
    x = np.uint8(_gaussian(x / 255.0, sigma) * 255)
    x = _glass_shuffle()(x.shape[0], x.shape[1], x, (float(sigma), int(max_delta), int(iterations)), int(rng.integers(2**31)))
    return np.clip(_gaussian(x / 255.0, sigma), 0, 1) * 255


def _motion_blur(x, c, rng, _set, ops):
    blurred = ops._motion_blur(x, radius=c[0], sigma=c[1], angle=rng.uniform(-45, 45))
    return np.clip(blurred, 0, 255)


def _zoom_blur(x, c, _rng, _set, ops):
    x = (x / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for factor in c:
        out += _centred_zoom(ops, x, factor)
    return np.clip((x + out) / (len(c) + 1), 0, 1) * 255


def _snow(x, c, rng, _set, ops):
    # lazy: the optional robustness extra, only when corruptions are generated
    import cv2

    size = x.shape[0]
    x = np.asarray(x, dtype=np.float32) / 255.0
    layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    layer = _centred_zoom(ops, layer[..., None], c[2])
    layer[layer < c[3]] = 0
    layer = (np.clip(layer.squeeze(-1), 0, 1) * 255).astype(np.uint8)  # the scripts' 8-bit PNG
    streaks = ops._motion_blur(layer, radius=c[4], sigma=c[5], angle=rng.uniform(-135, -45))
    streaks = np.clip(np.round(streaks), 0, 255)[..., None] / 255.0  # ImageMagick writes 8-bit
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(size, size, 1)
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + streaks + np.rot90(streaks, k=2), 0, 1) * 255


@functools.lru_cache(maxsize=None)
def _frost_pictures(scale: float) -> tuple[np.ndarray, ...]:
    """The first five of the library's frost pictures (the scripts draw randint(5)), RGB, scaled."""
    # lazy: the optional robustness extra, only when corruptions are generated
    import cv2

    names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
    folder = importlib.resources.files(_operations().__package__) / "frost"
    pictures = []
    for name in names:
        with importlib.resources.as_file(folder / name) as path:
            picture = cv2.imread(str(path))
        if picture is None:
            raise VbenchError(f"cannot read the frost picture {name} of {LIBRARY}; reinstall it")
        pictures.append(cv2.resize(picture, (0, 0), fx=scale, fy=scale)[..., ::-1])  # BGR -> RGB
    return tuple(pictures)


def _frost(x, c, rng, parameters, _ops):
    size = x.shape[0]
    frost = _frost_pictures(FROST_SCALE[parameters])[int(rng.integers(5))]
    top = int(rng.integers(0, frost.shape[0] - size))
    left = int(rng.integers(0, frost.shape[1] - size))
    return np.clip(c[0] * x + c[1] * frost[top : top + size, left : left + size], 0, 255)


def _fog(x, c, rng, _set, ops):
    size = x.shape[0]
    x = x / 255.0
    max_value = x.max()
    with _numpy_global_seed(rng):
        fractal = ops.plasma_fractal(mapsize=size, wibbledecay=c[1])
    x = x + c[0] * fractal[:size, :size][..., None]
    return np.clip(x * max_value / (max_value + c[0]), 0, 1) * 255


def _brightness(x, c, _rng, _set, _ops):
    # lazy: the optional robustness extra, only when corruptions are generated
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _contrast(x, c, _rng, _set, _ops):
    x = x / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _elastic_transform(x, c, rng, _set, _ops):
    # lazy: the optional robustness extra, only when corruptions are generated
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    alpha, sigma, affine = c
    image = np.asarray(x, dtype=np.float32) / 255.0
    shape = image.shape
    centre = np.float32(shape[:2]) // 2
    square = min(shape[:2]) // 3
    pts1 = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    pts2 = pts1 + rng.uniform(-affine, affine, size=pts1.shape).astype(np.float32)
    matrix = cv2.getAffineTransform(pts1, pts2)
    image = cv2.warpAffine(image, matrix, shape[:2][::-1], borderMode=cv2.BORDER_REFLECT_101)
    dx = (gaussian(rng.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (gaussian(rng.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    cols, rows, chans = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = (
        np.reshape(rows + dy[..., None], (-1, 1)),
        np.reshape(cols + dx[..., None], (-1, 1)),
        np.reshape(chans, (-1, 1)),
    )
    return np.clip(map_coordinates(image, indices, order=1, mode="reflect").reshape(shape), 0, 1) * 255


def _pixelate(x, c, _rng, _set, _ops):
    size = x.shape[0]
    small = Image.fromarray(x).resize((int(size * c), int(size * c)), Image.Resampling.BOX)
    return np.asarray(small.resize((size, size), Image.Resampling.BOX))


def _jpeg_compression(x, c, _rng, _set, _ops):
    return _jpeg_round_trip(x, c)


_CORRUPTION_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
assert tuple(_CORRUPTION_FUNCTIONS) == CORRUPTIONS
