"""Corrupted test splits (generated and released) and the CE / mCE metrics."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from vbench.data.fixtures import write_tiny_imagenet
from vbench.data.smoke import generate_smoke
from vbench.errors import VbenchError
from vbench.robustness import (
    CORRUPTIONS,
    SEVERITIES,
    accuracy_table,
    corrupt,
    corrupted_split,
    corruption_errors,
    load_corrupted,
    load_released,
    parse_corruptions,
    parse_severities,
    robustness_summary,
)
from vbench.robustness import corruptions as corruptions_module
from vbench.robustness.fixtures import write_cifar_c, write_tiny_imagenet_c

# Corruptions that draw random numbers (the others are fixed functions of the image).
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost", "fog", "elastic_transform"}

# Where Hendrycks' own tables do not make the mean pixel change grow with severity (measured on the
# smoke images below; these are properties of the released parameters, not of our code):
# - frost: the image weight falls and the frost weight rises by so little (CIFAR severities 3 -> 4:
#   0.9 -> 0.85 and 0.4 -> 0.4) that a bright frost crop changes the pixels less at the next severity;
# - elastic_transform: the random affine shrinks with severity (CIFAR 8% -> 3% of the side) while the
#   elastic field gets finer rather than larger, so pixels move less at higher severities;
# - glass_blur: severities trade blur for shuffle passes (CIFAR 3 -> 4: sigma 0.4 x 1 pass -> 0.25 x 2);
# - pixelate at 64x64: severity 5 is an exact 2x block (64 -> 32), which changes fewer pixels than
#   severity 4's 64 -> 38 resampling.
# For these the test asks that every severity changes the images and that the five differ.
NOT_MONOTONE_IN_PIXELS = {
    32: {"frost", "elastic_transform", "glass_blur"},
    64: {"frost", "elastic_transform", "glass_blur", "pixelate"},
}
TIE = 0.05  # grey levels: CIFAR motion blur 3 -> 4 only adds kernel taps of weight e^-4.5 (radius 6 -> 8, sigma 2)


@pytest.fixture(scope="module")
def smoke_images():
    """Textured shapes (edges, stripes, dots, pixel noise): 32 at 32x32 and 8 at 64x64."""
    return {32: generate_smoke("test", num_images=32)[0], 64: generate_smoke("test", num_images=8, img_size=64)[0]}


def mean_change(corrupted: torch.Tensor, clean: torch.Tensor) -> float:
    return (corrupted.float() - clean.float()).abs().mean().item()


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_changes_images_more_with_severity_and_repeats_for_a_seed(smoke_images, name, size):
    clean = smoke_images[size]
    outputs = [corrupt(clean, name, severity, seed=3) for severity in SEVERITIES]
    changes = [mean_change(out, clean) for out in outputs]

    for out in outputs:
        assert out.dtype == torch.uint8 and out.shape == clean.shape
    assert min(changes) > 0.3, changes
    few = clean[:4]  # an image's draws do not depend on the rest of the batch (tested below)
    assert torch.equal(corrupt(few, name, 4, seed=3), outputs[3][:4])
    assert torch.equal(corrupt(few, name, 4, seed=4), outputs[3][:4]) == (name not in RANDOM)
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert not torch.equal(outputs[i], outputs[j]), (i + 1, j + 1)
    if name not in NOT_MONOTONE_IN_PIXELS[size]:
        for lower, higher in zip(changes, changes[1:]):
            assert higher > lower - TIE, changes
        assert changes[-1] > 1.05 * changes[0], changes


def test_image_draws_do_not_depend_on_the_batch():
    images = generate_smoke("test", num_images=6)[0]
    whole = corrupt(images, "snow", 2, seed=9)
    assert torch.equal(corrupt(images[:3], "snow", 2, seed=9), whole[:3])
    assert not torch.equal(corrupt(images[3:], "snow", 2, seed=9), whole[:3])


def test_chunks_and_workers_do_not_change_the_bytes(monkeypatch):
    """Workers each corrupt a chunk; an image's draws depend on its index in the whole split."""
    images = generate_smoke("test", num_images=7)[0]
    whole = corrupt(images, "gaussian_noise", 5, seed=1)
    monkeypatch.setattr(corruptions_module, "_CHUNK", 3)
    assert torch.equal(corrupt(images, "gaussian_noise", 5, seed=1), whole)


def test_bad_names_and_severities_are_one_line_errors():
    assert parse_corruptions("all") == list(CORRUPTIONS)
    assert parse_corruptions(" fog,snow,fog ") == ["fog", "snow"]
    assert parse_severities("5,1,3") == [1, 3, 5]
    for text in ("gaussian_noise,gausian_blur", "speckle_noise", ""):
        with pytest.raises(VbenchError) as error:
            parse_corruptions(text)
        assert "\n" not in str(error.value)
    for text in ("0", "6", "1,x", "2.5", ""):
        with pytest.raises(VbenchError) as error:
            parse_severities(text)
        assert "\n" not in str(error.value)
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(VbenchError, match="severity"):
        corrupt(images, "fog", 6, seed=0)
    with pytest.raises(VbenchError, match="unknown corruption"):
        corrupt(images, "haze", 1, seed=0)
    with pytest.raises(VbenchError, match="48x48"):
        corrupt(torch.zeros(1, 3, 48, 48, dtype=torch.uint8), "fog", 1, seed=0)


# --- generated splits and their cache ---------------------------------------------------------------


def test_generated_split_is_cached_and_keyed_by_seed(tmp_path):
    images, labels = generate_smoke("test", num_images=5)
    first, first_labels = corrupted_split(images, labels, "fog", 2, 0, tmp_path, "cifar10")
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and "fog-s2-seed0" in files[0].name
    assert torch.equal(first_labels, labels)
    again, _ = corrupted_split(images, labels, "fog", 2, 0, tmp_path, "cifar10")
    assert torch.equal(again, first)
    other, _ = corrupted_split(images, labels, "fog", 2, 1, tmp_path, "cifar10")
    assert not torch.equal(other, first) and len(list(tmp_path.glob("*.pt"))) == 2
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    corrupted_split(changed, labels, "fog", 2, 0, tmp_path, "cifar10")
    assert len(list(tmp_path.glob("*.pt"))) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_load_corrupted_generates_without_a_release(tmp_path):
    images, labels = generate_smoke("test", num_images=4)
    split = load_corrupted("cifar10", tmp_path, images, labels, "contrast", 5, cache_dir=tmp_path / "cache")
    assert split.source == "generated"
    assert torch.equal(split.images, corrupt(images, "contrast", 5, seed=0))


# --- released files -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_released_cifar_c_layout_round_trip(tmp_path, kind):
    written = write_cifar_c(tmp_path, kind, corruptions=("gaussian_noise", "jpeg_compression"), per_severity=6)
    for (name, severity), (images, labels) in written.items():
        loaded = load_released(kind, tmp_path, name, severity)
        assert loaded is not None
        assert torch.equal(loaded[0], torch.from_numpy(images))
        assert torch.equal(loaded[1], torch.from_numpy(labels))
    clean, clean_labels = generate_smoke("test", num_images=6)
    split = load_corrupted(kind, tmp_path, clean, clean_labels, "jpeg_compression", 4)
    assert split.source == "released" and torch.equal(split.images, torch.from_numpy(written[("jpeg_compression", 4)][0]))


def test_no_release_folder_is_none_and_an_incomplete_release_is_an_error(tmp_path):
    assert load_released("cifar10", tmp_path, "fog", 1) is None
    assert load_released("svhn", tmp_path, "fog", 1) is None
    write_cifar_c(tmp_path, "cifar10", corruptions=("fog",), per_severity=2)
    with pytest.raises(VbenchError, match="snow.npy does not exist"):
        load_released("cifar10", tmp_path, "snow", 1)
    fog = tmp_path / "CIFAR-10-C" / "fog.npy"
    fog.write_bytes(fog.read_bytes()[:200])
    with pytest.raises(VbenchError, match="corrupt"):
        load_released("cifar10", tmp_path, "fog", 1)


def test_released_tiny_imagenet_c_layout_round_trip(tmp_path):
    write_tiny_imagenet(tmp_path, num_classes=3, train_per_class=1, val_per_class=1)
    wnids = (tmp_path / "tiny-imagenet-200" / "wnids.txt").read_text().split()
    written = write_tiny_imagenet_c(tmp_path, wnids, corruptions=("frost",), severities=(2, 5), per_class=2)
    cache = tmp_path / "cache"
    for (name, severity), (images, labels) in written.items():
        loaded = load_released("tiny-imagenet", tmp_path, name, severity, cache_dir=cache)
        assert loaded[0].shape == (6, 3, 64, 64)
        assert (loaded[0].int() - torch.from_numpy(images).int()).abs().max() <= 6  # JPEG quality 95
        assert torch.equal(loaded[1], torch.from_numpy(labels))
    assert len(list(cache.glob("tiny-imagenet-c-frost-*.pt"))) == 2
    again = load_released("tiny-imagenet", tmp_path, "frost", 5, cache_dir=cache)
    assert torch.equal(again[1], torch.from_numpy(written[("frost", 5)][1]))
    with pytest.raises(VbenchError, match="frost/3 does not exist"):
        load_released("tiny-imagenet", tmp_path, "frost", 3, cache_dir=cache)


def test_tiny_imagenet_c_labels_follow_the_sorted_wnids_of_the_clean_release(tmp_path):
    write_tiny_imagenet(tmp_path, num_classes=4, train_per_class=1, val_per_class=1)
    wnids = (tmp_path / "tiny-imagenet-200" / "wnids.txt").read_text().split()
    some = sorted(wnids)[2:]  # a release holding only the last two classes keeps labels 2 and 3
    write_tiny_imagenet_c(tmp_path, some, corruptions=("fog",), severities=(1,), per_class=1)
    _, labels = load_released("tiny-imagenet", tmp_path, "fog", 1, cache_dir=tmp_path / "cache")
    assert labels.tolist() == [2, 3]


# --- metrics --------------------------------------------------------------------------------------


def hand_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        # reference "vit": clean 80 (error 20)
        ("vit", 0, "gaussian_noise", 1, 70.0), ("vit", 0, "gaussian_noise", 2, 60.0),
        ("vit", 0, "defocus_blur", 1, 75.0), ("vit", 0, "defocus_blur", 2, 65.0),
        # "lkca", two seeds: clean 84 and 86 (error 15 on average)
        ("lkca", 0, "gaussian_noise", 1, 76.0), ("lkca", 1, "gaussian_noise", 1, 78.0),
        ("lkca", 0, "gaussian_noise", 2, 72.0), ("lkca", 1, "gaussian_noise", 2, 72.0),
        ("lkca", 0, "defocus_blur", 1, 80.0), ("lkca", 1, "defocus_blur", 1, 80.0),
        ("lkca", 0, "defocus_blur", 2, 70.0), ("lkca", 1, "defocus_blur", 2, 70.0),
    ]
    frame = pd.DataFrame(rows, columns=["backbone", "seed", "corruption", "severity", "accuracy"])
    clean = pd.DataFrame({"backbone": ["vit", "lkca", "lkca"], "accuracy": [80.0, 84.0, 86.0]})
    return frame, clean


def test_ce_mce_and_relative_mce_match_a_hand_computed_case():
    frame, clean = hand_case()
    per_corruption = corruption_errors(frame, clean, reference="vit").set_index(["backbone", "corruption"])
    # lkca errors: noise 23 + 28 = 51 against vit's 30 + 40 = 70; blur 20 + 30 = 50 against 25 + 35 = 60
    assert per_corruption.loc[("lkca", "gaussian_noise"), "ce"] == pytest.approx(100 * 51 / 70)
    assert per_corruption.loc[("lkca", "defocus_blur"), "ce"] == pytest.approx(100 * 50 / 60)
    # relative: noise (8 + 13) / (10 + 20); blur (5 + 15) / (5 + 15)
    assert per_corruption.loc[("lkca", "gaussian_noise"), "relative_ce"] == pytest.approx(100 * 21 / 30)
    assert per_corruption.loc[("lkca", "defocus_blur"), "relative_ce"] == pytest.approx(100.0)
    summary = robustness_summary(frame, clean, reference="vit").set_index("backbone")
    assert summary.loc["lkca", "mce"] == pytest.approx((100 * 51 / 70 + 100 * 50 / 60) / 2)
    assert summary.loc["lkca", "relative_mce"] == pytest.approx((70.0 + 100.0) / 2)
    assert summary.loc["lkca", "mean_corruption_accuracy"] == pytest.approx((77 + 72 + 80 + 70) / 4)
    assert summary.loc["lkca", "clean_accuracy"] == pytest.approx(85.0)
    assert summary.loc["vit", "mce"] == pytest.approx(100.0)
    assert summary.loc["vit", "relative_mce"] == pytest.approx(100.0)
    table = accuracy_table(frame)
    assert list(table.columns) == ["gaussian_noise", "defocus_blur"]  # in Hendrycks' order
    assert table.loc["lkca", "gaussian_noise"] == pytest.approx((77 + 72) / 2)


def test_metrics_refuse_a_missing_reference_or_severity():
    frame, clean = hand_case()
    with pytest.raises(VbenchError, match="reference backbone 'deit'"):
        robustness_summary(frame, clean, reference="deit")
    short = frame[~((frame["backbone"] == "vit") & (frame["severity"] == 2) & (frame["corruption"] == "defocus_blur"))]
    with pytest.raises(VbenchError, match="defocus_blur at severity 2"):
        robustness_summary(short, clean, reference="vit")
