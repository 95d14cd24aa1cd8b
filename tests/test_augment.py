"""The batched recipe: statistics over many draws with fixed seeds, agreement with torchvision's
ops, determinism, the epoch structure, the loss; and the reference pipeline on the same terms.

Rates are checked against binomial tolerances of 5 standard deviations (a false alarm about once in
3.5 million runs; the seeds are fixed anyway, so a pass is a pass every time)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import _apply_op

from vbench.data.augment import (
    BatchedAutoAugment,
    BatchedPipeline,
    TrainBatch,
    cutmix_box,
    mixed_cross_entropy,
    sample_mixing,
)
from vbench.data.reference_pipeline import ReferencePipeline
from vbench.data.smoke import generate_smoke
from vbench.suites import load_suite

SIGMAS = 5.0
GEOMETRIC_AND_EXACT = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Invert", "Posterize", "Solarize", "Equalize"}


def assert_rate(hits: int, trials: int, p: float, what: str):
    tolerance = SIGMAS * math.sqrt(p * (1 - p) / trials)
    assert abs(hits / trials - p) <= tolerance, f"{what}: {hits}/{trials} = {hits / trials:.4f}, expected {p} +- {tolerance:.4f}"


def suite_with(**recipe):
    """The cifar10 suite with only the named parts of the recipe switched on (the rest off), with
    torchvision's AutoAugment and Random Erasing (tests/test_authors_augment.py covers the authors')."""
    off = dict(crop_padding=0, hflip=0.0, autoaugment="none", erasing_prob=0.0, mix_prob=0.0, repeats=1, batch_size=256,
               augment_impl="torchvision")
    return load_suite("cifar10").with_recipe(**{**off, **recipe})


def denormalise(x: torch.Tensor, suite) -> torch.Tensor:
    mean = torch.tensor(suite.mean).view(1, 3, 1, 1)
    std = torch.tensor(suite.std).view(1, 3, 1, 1)
    return (x * std + mean).mul(255).round()


def coordinate_images(n: int) -> torch.Tensor:
    """R encodes the row, G the column, B is constant: every pixel says where it came from."""
    ramp = 10 + 7 * torch.arange(32)
    images = torch.empty(n, 3, 32, 32, dtype=torch.uint8)
    images[:, 0] = ramp.view(32, 1)
    images[:, 1] = ramp.view(1, 32)
    images[:, 2] = 200
    return images


def collect(recipe, images, labels, seed=0, epoch=0) -> list[TrainBatch]:
    return list(recipe.train_batches(images, labels, seed=seed, epoch=epoch))


# ---------------------------------------------------------------------------------------------
# crop and flip


def test_crop_offsets_uniform_and_flip_rate_half():
    suite = suite_with(crop_padding=4, hflip=0.5)
    n = 4608
    batches = collect(BatchedPipeline(suite, "cpu"), coordinate_images(n), torch.zeros(n, dtype=torch.int64))
    pixels = denormalise(torch.cat([b.x for b in batches]), suite)
    assert len(pixels) == n
    rows = (pixels[:, 0, 16, 16] - 10) / 7  # source row of the output's centre pixel
    cols = (pixels[:, 1, 16, 16] - 10) / 7
    flipped = pixels[:, 1, 16, 17] < pixels[:, 1, 16, 15]  # columns run backwards
    assert_rate(int(flipped.sum()), n, 0.5, "flip rate")
    shift_y = (rows - 16).long()
    shift_x = torch.where(flipped, cols - 15, cols - 16).long()  # a flip mirrors about 15.5
    for shift, axis in ((shift_y, "row"), (shift_x, "column")):
        assert shift.min() == -4 and shift.max() == 4
        counts = torch.bincount(shift + 4, minlength=9)
        for offset, count in enumerate(counts.tolist()):
            assert_rate(count, n, 1 / 9, f"{axis} offset {offset - 4}")


def test_crop_pads_with_zeros_and_keeps_content():
    suite = suite_with(crop_padding=4, hflip=0.5)
    n = 512
    batches = collect(BatchedPipeline(suite, "cpu"), coordinate_images(n), torch.zeros(n, dtype=torch.int64))
    pixels = denormalise(torch.cat([b.x for b in batches]), suite)
    # every pixel is either zero padding (0,0,0) or an untouched source pixel (B == 200)
    padding = pixels.eq(0).all(dim=1)
    source = pixels[:, 2].eq(200)
    assert (padding ^ source).all()
    # within each image the visible source block is a contiguous 32-4..32 window: its rows are consecutive
    for image in pixels[:20]:
        visible_rows = ((image[0, :, 16][image[2, :, 16] == 200] - 10) / 7).long()
        assert torch.equal(visible_rows, torch.arange(int(visible_rows[0]), int(visible_rows[0]) + len(visible_rows)))


# ---------------------------------------------------------------------------------------------
# Random Erasing


def test_erasing_rate_and_box_areas():
    suite = suite_with(erasing_prob=0.25)
    n = 4096
    images = torch.full((n, 3, 32, 32), 255, dtype=torch.uint8)  # normalised: far from 0 everywhere
    x = torch.cat([b.x for b in collect(BatchedPipeline(suite, "cpu"), images, torch.zeros(n, dtype=torch.int64))])
    erased = x.eq(0).all(dim=1)  # [n,32,32]: filled with 0, the dataset mean after normalisation
    assert torch.equal(erased, x.eq(0).any(dim=1))  # all three channels at once
    hit = erased.flatten(1).any(dim=1)
    assert_rate(int(hit.sum()), n, 0.25, "erasing rate")
    areas, aspects = [], []
    for mask in erased[hit]:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert int(mask.sum()) == h * w  # a rectangle
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w
        areas.append(h * w / 1024)
        aspects.append(h / w)
    areas, aspects = np.array(areas), np.array(aspects)
    # target area uniform in [0.02, 0.4] of the image; rounding h and w moves it by under a row
    assert areas.min() >= 0.015 and areas.max() <= 0.45
    assert (areas < 0.1).mean() > 0.15 and (areas > 0.3).mean() > 0.1  # spread over the range
    assert aspects.min() >= 0.25 and aspects.max() <= 1 / 0.25
    assert 0.8 < np.exp(np.log(aspects).mean()) < 1.25  # log-uniform around 1


# ---------------------------------------------------------------------------------------------
# Mixup / CutMix


def test_mixing_rates():
    """Per batch: mixed with probability 0.5; a mixed batch is CutMix or Mixup with equal chance."""
    suite = suite_with(mix_prob=0.5)
    mixing = sample_mixing(np.random.default_rng(0), 20_000, 8, 32, 32, suite.recipe)
    mixed = mixing.mode != 0
    assert_rate(int(mixed.sum()), len(mixed), 0.5, "mixing rate")
    assert_rate(int((mixing.mode == 2).sum()), int(mixed.sum()), 0.5, "CutMix share of the mixing steps")
    lam = mixing.lam[mixed]  # Beta(1, 1) = uniform
    assert abs(lam.mean() - 0.5) < SIGMAS * math.sqrt(1 / 12 / len(lam))
    assert_rate(int((lam < 0.1).sum()), len(lam), 0.1, "lambda below 0.1")
    for centre in (mixing.centre_y, mixing.centre_x):  # CutMix box centre uniform over the image
        counts = np.bincount(centre, minlength=32)
        assert all(abs(c / len(centre) - 1 / 32) < SIGMAS * math.sqrt(1 / 32 * 31 / 32 / len(centre)) for c in counts)
    assert all(sorted(p) == list(range(8)) for p in mixing.partner[:100])
    assert len({tuple(p) for p in mixing.partner[:100]}) > 90  # a fresh permutation per batch


def test_mixing_is_exact():
    """Mixup blends with the partner by lambda; CutMix pastes one box and resets lambda to its pixel ratio."""
    mixed_suite = suite_with(mix_prob=0.5, batch_size=16)
    plain_suite = suite_with(mix_prob=0.0, batch_size=16)  # the same draws otherwise: the batches before mixing
    n = 16 * 60
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    labels = torch.arange(n)
    mixed_recipe = BatchedPipeline(mixed_suite, "cpu")
    mixed = collect(mixed_recipe, images, labels)
    plain = collect(BatchedPipeline(plain_suite, "cpu"), images, labels)
    partners = mixed_recipe.plan(n, seed=0, epoch=0).mixing.partner
    assert len(mixed) == 60 and {b.mode for b in mixed} == {"none", "mixup", "cutmix"}
    for step, (m, p) in enumerate(zip(mixed, plain)):
        assert torch.equal(m.y_a, p.y_a)
        partner = torch.from_numpy(partners[step])
        if m.mode == "none":
            assert m.lam == 1.0 and torch.equal(m.x, p.x) and torch.equal(m.y_b, m.y_a)
            continue
        assert torch.equal(m.y_b, p.y_a[partner])
        if m.mode == "mixup":
            assert torch.allclose(m.x, m.lam * p.x + (1 - m.lam) * p.x[partner], atol=1e-5)
            continue
        from_partner = (m.x == p.x[partner]).all(dim=1) & (m.x != p.x).any(dim=1)  # [B,H,W]
        moved = from_partner[partner != torch.arange(16)]
        box = moved[0]
        assert all(torch.equal(mask, box) for mask in moved)  # one box for the whole batch
        assert torch.equal(m.x[:, :, ~box], p.x[:, :, ~box])  # everything else untouched
        rows, cols = box.any(dim=1).nonzero().flatten(), box.any(dim=0).nonzero().flatten()
        assert int(box.sum()) == len(rows) * len(cols)  # a rectangle
        assert m.lam == pytest.approx(1 - len(rows) * len(cols) / 1024)  # the exact pixel ratio


def test_cutmix_box_side_and_clipping():
    assert cutmix_box(0.75, 16, 16, 32, 32) == (8, 24, 8, 24)  # side sqrt(0.25) * 32 = 16
    assert cutmix_box(0.75, 2, 30, 32, 32) == (0, 10, 22, 32)  # clipped at the borders
    assert cutmix_box(1.0, 5, 5, 32, 32) == (5, 5, 5, 5)  # an empty box


def test_mixed_cross_entropy_matches_soft_targets():
    torch.manual_seed(0)
    logits = torch.randn(16, 10)
    y_a, y_b = torch.randint(0, 10, (16,)), torch.randint(0, 10, (16,))
    batch = TrainBatch(x=torch.zeros(16, 3, 4, 4), y_a=y_a, y_b=y_b, lam=0.3, mode="mixup")
    smooth = lambda y: F.one_hot(y, 10).float() * 0.9 + 0.01
    target = 0.3 * smooth(y_a) + 0.7 * smooth(y_b)
    expected = -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert torch.allclose(mixed_cross_entropy(logits, batch, 0.1), expected, atol=1e-6)
    plain = TrainBatch(x=batch.x, y_a=y_a, y_b=y_a, lam=1.0)
    assert torch.allclose(mixed_cross_entropy(logits, plain, 0.0), F.cross_entropy(logits, y_a))


# ---------------------------------------------------------------------------------------------
# AutoAugment


def test_every_autoaugment_op_matches_torchvision():
    """Every (op, magnitude) of the CIFAR10, SVHN and ImageNet policies, applied batched, against
    torchvision's own per-image op on the same images."""
    images, _ = generate_smoke("test", num_images=8)
    noise = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    images = torch.cat([images, noise])
    checked = set()
    for policy in ("cifar10", "svhn", "imagenet"):
        autoaugment = BatchedAutoAugment(policy, 32)
        for op_id, (name, magnitude) in enumerate(autoaugment.ops):
            if (name, magnitude) in checked:
                continue
            checked.add((name, magnitude))
            batched = autoaugment.apply_op(images.clone(), op_id)
            v1_magnitude = magnitude * 255 if name == "Solarize" else magnitude  # v1 takes the threshold in levels
            expected = torch.stack([_apply_op(img, name, v1_magnitude, InterpolationMode.NEAREST, None) for img in images])
            difference = (batched.int() - expected.int()).abs()
            if name in GEOMETRIC_AND_EXACT:
                assert difference.max() == 0, f"{policy} {name} {magnitude}"
            else:  # colour ops: the same formula, but float rounding may move a pixel by one level
                assert difference.max() <= 1 and difference.float().mean() < 0.1, f"{policy} {name} {magnitude}"
            if magnitude != 0 and name != "Posterize":
                assert not torch.equal(batched, images), f"{name} {magnitude} did nothing"
    assert {name for name, _ in checked} == GEOMETRIC_AND_EXACT | {"Brightness", "Color", "Contrast", "Sharpness", "AutoContrast"}
    assert len(checked) > 80  # both signs of every signed magnitude


def test_sub_policy_and_op_frequencies():
    suite = load_suite("cifar10").with_recipe(augment_impl="torchvision")
    recipe = BatchedPipeline(suite, "cpu")
    plan = recipe.plan(50_000, seed=0, epoch=0)
    sub_policy, op_ids = plan.sub_policy, plan.op_ids
    n = len(sub_policy)
    counts = np.bincount(sub_policy, minlength=25)
    assert len(counts) == 25
    for k, count in enumerate(counts):
        assert_rate(int(count), n, 1 / 25, f"sub-policy {k}")
    autoaugment = recipe.autoaugment
    for k, sub in enumerate(autoaugment.policies):
        chosen = op_ids[sub_policy == k]
        for slot, (name, probability, _) in enumerate(sub):
            applied = chosen[:, slot] >= 0
            assert_rate(int(applied.sum()), len(chosen), probability, f"sub-policy {k} op {slot} ({name})")
            assert all(autoaugment.ops[i][0] == name for i in np.unique(chosen[applied, slot]))
            magnitudes = np.array([autoaugment.ops[i][1] for i in chosen[applied, slot]])
            if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness") and magnitudes.any():
                assert_rate(int((magnitudes < 0).sum()), len(magnitudes), 0.5, f"sign of {name}")


def test_batched_autoaugment_equals_per_image_torchvision_in_sequence():
    """The grouped, batched application gives each image exactly its own sub-policy, in order."""
    images, _ = generate_smoke("test", num_images=300)
    autoaugment = BatchedAutoAugment("cifar10", 32)
    _, op_ids = autoaugment.sample(np.random.default_rng(5), len(images))
    batched = autoaugment(images.clone(), op_ids)
    off_by_more = []
    for image, out, ids in zip(images, batched, op_ids):
        expected = image
        for op_id in ids:
            if op_id >= 0:
                name, magnitude = autoaugment.ops[op_id]
                expected = _apply_op(expected, name, magnitude * 255 if name == "Solarize" else magnitude, InterpolationMode.NEAREST, None)
        difference = (out.int() - expected.int()).abs()
        if all(i < 0 or autoaugment.ops[i][0] in GEOMETRIC_AND_EXACT for i in ids):
            assert difference.max() == 0
        # a colour op's one-level rounding can grow when Equalize or Solarize follows; it stays rare
        off_by_more.append((difference > 1).float().mean().item())
    assert max(off_by_more) < 0.03 and np.mean(off_by_more) < 0.001


# ---------------------------------------------------------------------------------------------
# epoch structure and determinism


def test_repeated_augmentation_epoch():
    suite = suite_with(repeats=3, batch_size=128)
    recipe = BatchedPipeline(suite, "cpu")
    n = 1000
    assert recipe.steps_per_epoch(n) == 23  # 3000 // 128, drop_last
    batches = collect(recipe, torch.zeros(n, 3, 32, 32, dtype=torch.uint8), torch.arange(n))
    seen = torch.cat([b.y_a for b in batches])
    assert len(batches) == 23 and all(len(b.y_a) == 128 for b in batches)
    assert torch.equal(torch.sort(seen[:n]).values, torch.arange(n))  # the first pass is a permutation
    assert torch.equal(torch.sort(seen[n : 2 * n]).values, torch.arange(n))
    counts = torch.bincount(seen, minlength=n)
    assert set(counts.tolist()) == {2, 3} and int((counts == 2).sum()) == 3000 - 23 * 128


def test_same_seed_same_batches_different_seed_different_batches():
    suite = load_suite("cifar10").with_recipe(batch_size=64, repeats=1)  # the paper's every augmentation
    images, labels = generate_smoke("test", num_images=320)
    run = lambda seed, epoch, **kw: collect(BatchedPipeline(suite, "cpu", **kw), images, labels, seed, epoch)
    first, again = run(0, 0), run(0, 0)
    small_chunks = run(0, 0, chunk_images=64)  # how the epoch is cut into chunks does not matter
    for a, b, c in zip(first, again, small_chunks):
        assert torch.equal(a.x, b.x) and torch.equal(a.x, c.x)
        assert torch.equal(a.y_a, b.y_a) and torch.equal(a.y_b, c.y_b) and a.lam == b.lam == c.lam
    for other in (run(1, 0), run(0, 1)):
        assert not torch.equal(torch.cat([b.y_a for b in other]), torch.cat([b.y_a for b in first]))
        assert not any(torch.equal(a.x, b.x) for a, b in zip(first, other))


def test_eval_batches_are_normalised_in_order():
    suite = load_suite("smoke")
    images, labels = generate_smoke("test", num_images=1200)
    recipe = BatchedPipeline(suite, "cpu")
    batches = list(recipe.eval_batches(images, labels))
    assert [len(y) for _, y in batches] == [500, 500, 200]
    assert torch.equal(torch.cat([y for _, y in batches]), labels)
    x = torch.cat([x for x, _ in batches])
    assert torch.equal(denormalise(x, suite), images.float())


# ---------------------------------------------------------------------------------------------
# reference pipeline


@pytest.mark.parametrize("impl", ["torchvision", "authors"])
def test_reference_pipeline_same_terms(impl):
    suite = load_suite("smoke").with_recipe(batch_size=50, repeats=3, augment_impl=impl)
    images, labels = generate_smoke("test", num_images=200)
    reference = ReferencePipeline(suite, "cpu", num_workers=0)
    batched = BatchedPipeline(suite, "cpu")
    assert reference.steps_per_epoch(200) == batched.steps_per_epoch(200) == 12
    ref_batches = collect(reference, images, labels, seed=3)
    new_batches = collect(batched, images, labels, seed=3)
    assert len(ref_batches) == 12
    for r, b in zip(ref_batches, new_batches):  # same order, same mixing decisions
        assert r.x.shape == b.x.shape == (50, 3, 32, 32) and r.x.dtype == torch.float32
        assert torch.equal(r.y_a, b.y_a) and torch.equal(r.y_b, b.y_b) and r.mode == b.mode
        if r.mode != "cutmix":
            assert r.lam == b.lam
    again = collect(reference, images, labels, seed=3)
    assert all(torch.equal(a.x, b.x) for a, b in zip(ref_batches, again))
    # the augmented pixels follow the same distribution in both pipelines
    ref_x, new_x = torch.cat([b.x for b in ref_batches]), torch.cat([b.x for b in new_batches])
    assert abs(ref_x.mean() - new_x.mean()) < 0.1 and abs(ref_x.std() / new_x.std() - 1) < 0.1
    # pixels at 0 after normalisation (torchvision's erasing fill) or at the raw mean (the authors' fill)
    for value in (0.0, suite.mean[0]):
        share = lambda x: x[:, 0].eq(torch.tensor(value, dtype=x.dtype)).float().mean()
        assert abs(share(ref_x) - share(new_x)) < 0.03
    eval_x = torch.cat([x for x, _ in reference.eval_batches(images, labels)])
    assert torch.allclose(eval_x, torch.cat([x for x, _ in batched.eval_batches(images, labels)]), atol=1e-6)
