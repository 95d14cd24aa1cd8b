"""The authors' AutoAugment and Random Erasing (``augment_impl = "authors"``): every batched op against
the per-image PIL definition (geometric ops exactly, colour ops within one level), the sub-policy draws,
Random Erasing's statistics against their exact values at 5 standard deviations, the recipe key, and
the reference pipeline on the authors' terms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import integrate

from vbench.data.augment import BatchedAutoAugment, BatchedPipeline, sample_erasing
from vbench.data.authors_augment import AuthorsOps, AuthorsRandomErasing, authors_erasing_shapes, authors_pil_op
from vbench.data.reference_pipeline import ReferencePipeline
from vbench.errors import VbenchError
from vbench.suites import load_suite

SIGMAS = 5.0
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
COLOUR = {"Color", "Contrast", "Sharpness", "Brightness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert"}


def assert_rate(hits: int, trials: int, p: float, what: str):
    tolerance = SIGMAS * math.sqrt(p * (1 - p) / trials)
    assert abs(hits / trials - p) <= tolerance, f"{what}: {hits}/{trials} = {hits / trials:.4f}, expected {p:.4f} +- {tolerance:.4f}"


def sample_images(height: int, width: int) -> torch.Tensor:
    """Noise, smooth images (long runs of near values: rounding edges), a flat image and a two-level
    image (the corner cases of AutoContrast and Equalize)."""
    generator = torch.Generator().manual_seed(height * 1000 + width)
    noise = torch.randint(0, 256, (10, 3, height, width), generator=generator, dtype=torch.uint8)
    coarse = torch.randint(0, 256, (6, 3, 4, 4), generator=generator).float()
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
    flat = torch.full((1, 3, height, width), 77, dtype=torch.uint8)
    two_level = torch.where(torch.rand(1, 3, height, width, generator=generator) < 0.3, 40, 200).to(torch.uint8)
    return torch.cat([noise, smooth.round().clamp(0, 255).to(torch.uint8), flat, two_level])


def pil_batch(images: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    outputs = [np.array(authors_pil_op(Image.fromarray(image.permute(1, 2, 0).numpy()), name, magnitude))
               for image in images]
    return torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("height, width", [(32, 32), (64, 64), (24, 40)])
def test_every_op_and_magnitude_matches_pil(height, width):
    """All 14 ops, every magnitude bin, both signs of the signed ones: the batched op on a group of
    images against the authors' PIL op on each image."""
    ops = AuthorsOps(height, width)
    images = sample_images(height, width)
    checked = set()
    for name in sorted(GEOMETRIC | COLOUR):
        for bin_index in range(10):
            magnitude, signed = ops.magnitude(name, bin_index)
            for value in {magnitude, -magnitude} if signed else {magnitude}:
                if (name, value) in checked:
                    continue
                checked.add((name, value))
                batched = ops.apply(images.clone(), name, value)
                expected = pil_batch(images, name, value)
                difference = (batched.int() - expected.int()).abs()
                if name in GEOMETRIC:
                    assert difference.max() == 0, f"{name} {value}: {int((difference > 0).sum())} pixels differ"
                else:
                    assert difference.max() <= 1 and difference.float().mean() < 0.01, f"{name} {value}"
    assert len(checked) == 5 * 19 - 9 + 4 * 19 + 5 + 10 + 3  # shear/translate: 19 values, rotate: 10


def test_documented_differences_from_torchvision():
    """Grey fill, translation to the nearest whole pixel, no-op solarize at bin 0, Rotate unsigned."""
    ops = AuthorsOps(32, 32)
    ramp = (10 + 7 * torch.arange(32)).to(torch.uint8).view(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    shift, _ = ops.magnitude("TranslateX", 9)  # 150/331 * 32 = 14.50 pixels
    moved = ops.apply(ramp, "TranslateX", shift)
    assert torch.equal(moved[..., :17], ramp[..., 15:])  # PIL samples at pixel centres: a shift of 15, not 14
    assert moved[..., 17:].eq(128).all()  # grey
    assert torch.equal(ops.apply(ramp, "Solarize", ops.magnitude("Solarize", 0)[0]), ramp)
    autoaugment = BatchedAutoAugment("imagenet", 32, "authors")
    _, op_ids = autoaugment.sample(np.random.default_rng(0), 20_000)
    rotations = [autoaugment.ops[i][1] for i in op_ids.flatten() if i >= 0 and autoaugment.ops[i][0] == "Rotate"]
    assert len(rotations) > 1000 and min(rotations) > 0  # always counter-clockwise


@pytest.mark.parametrize("policy, size", [("cifar10", 32), ("svhn", 32), ("imagenet", 64)])
def test_batched_policy_equals_per_image_pil_in_sequence(policy, size):
    """The grouped application gives each image exactly its own sub-policy, in order."""
    autoaugment = BatchedAutoAugment(policy, size, "authors")
    images = sample_images(size, size).repeat(8, 1, 1, 1)
    _, op_ids = autoaugment.sample(np.random.default_rng(3), len(images))
    batched = autoaugment(images.clone(), op_ids)
    off_by_more = []
    for image, out, ids in zip(images, batched, op_ids):
        expected = Image.fromarray(image.permute(1, 2, 0).numpy())
        for op_id in ids[ids >= 0]:
            expected = authors_pil_op(expected, *autoaugment.ops[op_id])
        difference = (out.int() - torch.from_numpy(np.array(expected)).permute(2, 0, 1).int()).abs()
        if all(autoaugment.ops[i][0] in GEOMETRIC for i in ids[ids >= 0]):
            assert difference.max() == 0
        off_by_more.append((difference > 1).float().mean().item())  # a colour op's level can grow later
    assert max(off_by_more) < 0.03 and np.mean(off_by_more) < 0.001


def test_sub_policy_op_and_sign_frequencies():
    recipe = BatchedPipeline(load_suite("cifar10"), "cpu")
    assert recipe.recipe.augment_impl == "authors"
    plan = recipe.plan(50_000, seed=0, epoch=0)
    autoaugment, sub_policy, op_ids = recipe.autoaugment, plan.sub_policy, plan.op_ids
    for k, count in enumerate(np.bincount(sub_policy, minlength=25)):
        assert_rate(int(count), len(sub_policy), 1 / 25, f"sub-policy {k}")
    for k, sub in enumerate(autoaugment.policies):
        chosen = op_ids[sub_policy == k]
        for slot, (name, probability, _) in enumerate(sub):
            applied = chosen[:, slot] >= 0
            assert_rate(int(applied.sum()), len(chosen), probability, f"sub-policy {k} op {slot} ({name})")
            magnitudes = np.array([autoaugment.ops[i][1] for i in chosen[applied, slot]])
            if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Color", "Contrast", "Sharpness", "Brightness") and magnitudes.any():
                assert_rate(int((magnitudes < 0).sum()), len(magnitudes), 0.5, f"sign of {name}")
            if name == "Rotate":
                assert (magnitudes > 0).all()


# ---------------------------------------------------------------------------------------------
# Random Erasing


def fit_probability(img: int, min_area: float, max_area: float, aspect: float) -> float:
    """Exact chance that one attempt fits a square image: area A uniform, aspect r uniform, and the
    rounded sides sqrt(A r), sqrt(A / r) both below ``img`` (i.e. below img - 0.5 before rounding)."""
    limit = (img - 0.5) ** 2
    low, high = min_area * img * img, max_area * img * img

    def aspect_share(area: float) -> float:
        allowed = min(limit / area, 1 / aspect) - max(area / limit, aspect)
        return max(allowed, 0.0) / (1 / aspect - aspect)

    kinks = [a for a in (limit * aspect, limit, limit / aspect) if low < a < high]
    return integrate.quad(aspect_share, low, high, points=kinks or None, limit=200)[0] / (high - low)


def test_erasing_uses_up_to_100_attempts():
    """Boxes of 90-100% of the image rarely fit (p ~ 0.017 per attempt): the share of images that get
    one is 1 - (1 - p)^100 with 100 attempts (0.82), where 10 attempts would give 0.16."""
    p = fit_probability(32, 0.9, 1.0, 0.3)
    expected = 1 - (1 - p) ** 100
    assert 0.01 < p < 0.03 and expected > 0.7
    heights, widths, found = authors_erasing_shapes(np.random.default_rng(0), 20_000, 32, 32, 0.9, 1.0, 0.3)
    assert_rate(int(found.sum()), len(found), expected, "boxes found within 100 attempts")
    assert (heights[found] < 32).all() and (widths[found] < 32).all()
    assert (heights[found] * widths[found] >= 0.9 * 1024 - 32).all()  # area, up to the rounding of the sides
    torch.manual_seed(0)
    reference = AuthorsRandomErasing(1.0, 0.9, 1.0, 0.3, fill=(0.0, 0.0, 0.0))
    boxes = [reference.box(32, 32) for _ in range(2000)]
    assert_rate(sum(box is not None for box in boxes), len(boxes), expected, "reference: boxes found")


def test_erasing_aspect_is_uniform():
    """On a large image where every attempt fits and rounding is negligible, height / width is the
    drawn aspect: uniform in (0.3, 1/0.3), so 23% of the boxes are wider than tall (log-uniform: 50%)."""
    r = 0.3
    uniform_share = lambda low, high: (min(high, 1 / r) - max(low, r)) / (1 / r - r)
    heights, widths, found = authors_erasing_shapes(np.random.default_rng(1), 20_000, 2000, 2000, 0.02, 0.25, r)
    assert found.all()
    torch.manual_seed(1)
    reference = AuthorsRandomErasing(1.0, 0.02, 0.25, r, fill=(0.0, 0.0, 0.0))
    reference_boxes = np.array([reference.box(2000, 2000) for _ in range(5000)])
    for who, ratio in (("batched", heights / widths), ("reference", reference_boxes[:, 2] / reference_boxes[:, 3])):
        assert ratio.min() > 0.29 and ratio.max() < 1 / 0.29
        for low, high in ((0.3, 0.5), (0.3, 1.0), (1.0, 2.0), (2.0, 1 / r)):
            hits = int(((ratio >= low) & (ratio < high)).sum())
            assert_rate(hits, len(ratio), uniform_share(low, high), f"{who}: aspect in [{low}, {high:.2f})")


def test_erasing_rate_fill_and_boxes_in_the_recipe():
    """Through the batched recipe: a quarter of the images erased, each in one rectangle holding the raw
    channel mean (about +0.5 sigma after normalisation), every other pixel untouched."""
    suite = load_suite("cifar10").with_recipe(
        crop_padding=0, hflip=0.0, autoaugment="none", erasing_prob=0.25, mix_prob=0.0, repeats=1, batch_size=256)
    n = 4096
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    recipe = BatchedPipeline(suite, "cpu")
    order = recipe.plan(n, seed=0, epoch=0).order
    x = torch.cat([b.x for b in recipe.train_batches(images, torch.zeros(n, dtype=torch.int64), seed=0, epoch=0)])
    clean = recipe.normalize(images[torch.from_numpy(order)])
    fill = torch.tensor(suite.mean, dtype=torch.float32).view(1, 3, 1, 1)
    changed = (x != clean).any(dim=1)
    assert torch.equal(x.eq(fill).all(dim=1) & changed, changed)  # a changed pixel holds the mean, all channels
    hit = changed.flatten(1).any(dim=1)
    assert_rate(int(hit.sum()), n, 0.25 * (1 - (1 - fit_probability(32, 0.02, 0.4, 0.3)) ** 100), "erasing rate")
    for mask in changed[hit][:500]:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        assert int(mask.sum()) == len(rows) * len(cols) and rows[-1] - rows[0] + 1 == len(rows)  # a rectangle


def test_torchvision_erasing_is_unchanged_by_the_key():
    """The torchvision recipe keeps today's draws: 10 attempts, log-uniform aspect."""
    suite = load_suite("cifar10").with_recipe(augment_impl="torchvision")
    params = sample_erasing(np.random.default_rng(0), 20_000, 2000, 2000, suite.with_recipe(erasing_prob=1.0, erasing_max_area=0.25).recipe)
    assert_rate(int((params.height < params.width).sum()), 20_000, 0.5, "torchvision: wider than tall")


# ---------------------------------------------------------------------------------------------
# the recipe key and the reference pipeline


def test_augment_impl_key():
    for name in ("cifar10", "cifar100", "svhn", "tiny-imagenet"):
        assert load_suite(name).recipe.augment_impl == "authors"
    suite = load_suite("cifar10")
    other = suite.with_recipe(augment_impl="torchvision")
    assert other.recipe.hash() != suite.recipe.hash() and other.recipe.to_dict()["augment_impl"] == "torchvision"
    with pytest.raises(VbenchError, match=r"key 'recipe.augment_impl' must be one of authors, torchvision, timm, got 'pil'"):
        load_suite("cifar10", sets=["augment_impl=pil"])


@pytest.mark.parametrize("impl", ["authors", "torchvision"])
def test_reference_pipeline_erases_as_its_impl(impl):
    """Per image, with every image erased: the authors' box holds the raw mean, torchvision's holds 0."""
    suite = load_suite("smoke").with_recipe(batch_size=50, erasing_prob=1.0, mix_prob=0.0, autoaugment="none",
                                               crop_padding=0, hflip=0.0, augment_impl=impl)
    images = torch.randint(1, 255, (100, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    reference = ReferencePipeline(suite, "cpu", num_workers=0)
    x = torch.cat([b.x for b in reference.train_batches(images, torch.zeros(100, dtype=torch.int64), seed=0, epoch=0)])
    value = torch.tensor(suite.mean if impl == "authors" else (0.0, 0.0, 0.0)).view(1, 3, 1, 1)
    erased = x.eq(value).all(dim=1).flatten(1)
    assert erased.any(dim=1).all() and erased.sum(dim=1).min() >= 12  # 2% of the image, less rounding
