"""Loaders on fixtures written in every real on-disk format, the cache, and the error messages."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

from vbench.data import load_split
from vbench.data.fixtures import (
    truncate_file,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_image_folder_suite,
    write_svhn,
    write_tiny_imagenet,
)
from vbench.data.smoke import CLASSES, generate_smoke
from vbench.errors import VbenchError
from vbench.suites import load_suite


def _check_split(images, labels, expected_images, expected_labels, max_mean_error=0.0):
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert images.shape == expected_images.shape and images.is_contiguous()
    assert torch.equal(labels, torch.from_numpy(expected_labels))
    error = (images.int() - torch.from_numpy(expected_images).int()).abs().float()
    assert error.mean().item() <= max_mean_error


@pytest.mark.parametrize("kind, writer", [("cifar10", write_cifar10), ("cifar100", write_cifar100), ("svhn", write_svhn)])
def test_torchvision_formats_load_exactly(tmp_path, kind, writer):
    fixture = writer(tmp_path)  # re-packed files: torchvision's release md5 would reject every one
    suite = load_suite(kind)
    _check_split(*load_split(suite, "train", data_root=tmp_path), fixture.train_images, fixture.train_labels)
    _check_split(*load_split(suite, "test", data_root=tmp_path), fixture.test_images, fixture.test_labels)


def test_svhn_label_10_is_digit_0(tmp_path):
    fixture = write_svhn(tmp_path)
    import scipy.io

    raw = scipy.io.loadmat(str(tmp_path / "train_32x32.mat"))["y"].reshape(-1)
    assert 10 in raw and 0 not in raw
    _, labels = load_split(load_suite("svhn"), "train", data_root=tmp_path)
    assert torch.equal(labels == 0, torch.from_numpy(raw == 10))
    assert torch.equal(labels, torch.from_numpy(fixture.train_labels))


def test_tiny_imagenet_release_layout(tmp_path):
    fixture = write_tiny_imagenet(tmp_path, num_classes=200, train_per_class=2, val_per_class=1)
    suite = load_suite("tiny-imagenet")
    train = load_split(suite, "train", data_root=tmp_path)
    test = load_split(suite, "test", data_root=tmp_path)
    _check_split(*train, fixture.train_images, fixture.train_labels, max_mean_error=3.0)  # JPEG
    _check_split(*test, fixture.test_images, fixture.test_labels, max_mean_error=3.0)
    assert train[0].shape == (400, 3, 64, 64) and test[0].shape == (200, 3, 64, 64)
    # the validation labels come from val_annotations.txt, not from folder order
    assert not torch.equal(test[1], torch.sort(test[1]).values)
    # the grayscale JPEGs came back as RGB with three equal channels
    for images in (train[0], test[0]):
        assert torch.equal(images[0, 0], images[0, 1]) and torch.equal(images[0, 1], images[0, 2])
    # data_root may also point at tiny-imagenet-200/ itself
    again = load_split(suite, "test", data_root=tmp_path / "tiny-imagenet-200")
    assert torch.equal(again[0], test[0])


@pytest.mark.parametrize("test_folder", ["val", "test"])
def test_image_folder_suite(tmp_path, test_folder):
    fixture = write_image_folder(tmp_path / "pictures", classes=("zebra", "ant", "moth"), test_folder=test_folder)
    suite_file = write_image_folder_suite(tmp_path / "mine.toml", "pictures", num_classes=3, epochs=2)
    suite = load_suite(str(suite_file))
    assert suite.kind == "image-folder" and suite.recipe.epochs == 2
    _check_split(*load_split(suite, "train"), fixture.train_images, fixture.train_labels)
    _check_split(*load_split(suite, "test"), fixture.test_images, fixture.test_labels)
    assert sorted(set(fixture.train_labels.tolist())) == [0, 1, 2]  # ant, moth, zebra: sorted names


def test_image_folder_resizes_and_converts(tmp_path):
    from PIL import Image

    write_image_folder(tmp_path, classes=("a", "b"), train_per_class=2, test_per_class=1, img_size=32)
    Image.new("L", (50, 40), color=77).save(tmp_path / "train" / "a" / "odd.png")
    Image.new("RGBA", (32, 32), color=(1, 2, 3, 4)).save(tmp_path / "train" / "b" / "alpha.png")
    suite = load_suite(str(write_image_folder_suite(tmp_path / "s.toml", tmp_path, num_classes=2)))
    images, labels = load_split(suite, "train")
    assert images.shape == (6, 3, 32, 32)
    odd = images[2]  # a/ sorts 'a_000', 'a_001', 'odd'
    assert odd.eq(77).all()
    assert torch.equal(images[3][:, 0, 0], torch.tensor([1, 2, 3], dtype=torch.uint8))  # b/alpha.png


def test_cache_is_written_once_and_follows_the_files(tmp_path):
    fixture = write_cifar10(tmp_path)
    suite = load_suite("cifar10")
    first = load_split(suite, "test", data_root=tmp_path)
    cache_files = list((tmp_path / ".vbench-cache").glob("cifar10-test-*.pt"))
    assert len(cache_files) == 1
    # a later load reads the cache, not the pickles: break the pickle's content but keep size and mtime
    test_batch = fixture.root / "cifar-10-batches-py" / "test_batch"
    stat = test_batch.stat()
    test_batch.write_bytes(b"\0" * stat.st_size)
    import os

    os.utime(test_batch, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load_split(suite, "test", data_root=tmp_path)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # a changed file (new mtime) gets a new key: decoded again, and here found corrupt
    os.utime(test_batch, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(VbenchError, match="test_batch"):
        load_split(suite, "test", data_root=tmp_path)


def test_cache_dir_option(tmp_path):
    write_svhn(tmp_path / "data")
    load_split(load_suite("svhn"), "test", data_root=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("svhn-test-32px-*.pt"))) == 1
    assert not (tmp_path / "data" / ".vbench-cache").exists()


@pytest.mark.parametrize("kind", ["cifar10", "cifar100", "svhn", "tiny-imagenet"])
def test_missing_dataset_names_path_and_download_flag(tmp_path, kind):
    with pytest.raises(VbenchError) as info:
        load_split(load_suite(kind), "train", data_root=tmp_path / "empty")
    message = str(info.value)
    assert str(tmp_path / "empty") in message and "--download" in message and "\n" not in message
    if kind == "tiny-imagenet":
        assert "val/val_annotations.txt" in message and "wnids.txt" in message


def test_missing_image_folder_names_the_layout(tmp_path):
    suite = load_suite(str(write_image_folder_suite(tmp_path / "s.toml", tmp_path / "nowhere")))
    with pytest.raises(VbenchError, match=r"nowhere/train does not exist; expected .*train/<class>/\*"):
        load_split(suite, "train")


@pytest.mark.parametrize(
    "kind, writer, file_index",
    [
        ("cifar10", write_cifar10, 2),  # data_batch_3
        ("cifar100", write_cifar100, 0),  # train
        ("svhn", write_svhn, 0),  # train_32x32.mat
        ("tiny-imagenet", write_tiny_imagenet, 7),  # a training JPEG
    ],
)
def test_truncated_file_is_named(tmp_path, kind, writer, file_index):
    options = {"num_classes": 200, "train_per_class": 1, "val_per_class": 1} if kind == "tiny-imagenet" else {}
    fixture = writer(tmp_path, **options)
    broken = truncate_file(fixture.files[file_index], keep=0.5)
    with pytest.raises(VbenchError) as info:
        load_split(load_suite(kind), "train", data_root=tmp_path)
    assert str(broken) in str(info.value) and "corrupt" in str(info.value) and "\n" not in str(info.value)


def test_truncated_image_folder_file_is_named(tmp_path):
    fixture = write_image_folder(tmp_path)
    broken = truncate_file(fixture.files[-1], keep=0.3)  # a test-split image
    suite = load_suite(str(write_image_folder_suite(tmp_path / "s.toml", tmp_path)))
    load_split(suite, "train")
    with pytest.raises(VbenchError, match=f"corrupt image file {broken}"):
        load_split(suite, "test")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda batch: batch.pop("labels"), "has no key 'labels'"),
        (lambda batch: batch.__setitem__("data", batch["data"][:, :1000]), r"'data' has shape \(20, 1000\)"),
        (lambda batch: batch["labels"].__setitem__(0, 10), r"labels span 0..10, expected 0..9"),
    ],
)
def test_cifar_structure_is_checked(tmp_path, damage, message):
    fixture = write_cifar10(tmp_path)
    path = fixture.files[1]
    batch = pickle.loads(path.read_bytes(), encoding="latin1")
    damage(batch)
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(VbenchError, match=f"{path}: {message}"):
        load_split(load_suite("cifar10"), "train", data_root=tmp_path)


def test_tiny_imagenet_bad_annotation_line(tmp_path):
    write_tiny_imagenet(tmp_path, num_classes=200, train_per_class=1, val_per_class=1)
    annotations = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "val_x.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(VbenchError, match=f"{annotations}: line 201"):
        load_split(load_suite("tiny-imagenet"), "test", data_root=tmp_path)


def test_class_count_must_match_the_suite(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b", "c", "d"))
    suite = load_suite(str(write_image_folder_suite(tmp_path / "s.toml", tmp_path, num_classes=3)))
    with pytest.raises(VbenchError, match="has 4 classes, the suite says num_classes = 3"):
        load_split(suite, "train")


def test_torchvision_sets_are_32_pixels(tmp_path):
    suite = dataclasses.replace(load_suite("svhn"), img_size=64)
    with pytest.raises(VbenchError, match="svhn images are 32x32, the suite says img_size = 64"):
        load_split(suite, "train", data_root=tmp_path)


def test_unknown_split():
    with pytest.raises(VbenchError, match="unknown split 'val'"):
        load_split(load_suite("smoke"), "val")


# ---------------------------------------------------------------------------------------------
# smoke


@pytest.fixture(scope="module")
def smoke_splits():
    suite = load_suite("smoke")
    return suite, {split: load_split(suite, split) for split in ("train", "test")}


def test_smoke_dataset_is_fixed_balanced_and_offline(smoke_splits):
    suite, splits = smoke_splits
    (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
    assert train_images.shape == (5000, 3, 32, 32) and test_images.shape == (1000, 3, 32, 32)
    assert torch.bincount(train_labels).tolist() == [500] * 10 and torch.bincount(test_labels).tolist() == [100] * 10
    again, _ = generate_smoke("test")
    assert torch.equal(again, test_images)  # same seed, same images
    assert not torch.equal(train_images[:1000], test_images)
    assert len(CLASSES) == suite.num_classes
    # the suite's normalisation matches the data
    pixels = train_images[::5].float() / 255
    assert torch.allclose(pixels.mean(dim=(0, 2, 3)), torch.tensor(suite.mean), atol=0.02)
    assert torch.allclose(pixels.std(dim=(0, 2, 3)), torch.tensor(suite.std), atol=0.02)


def test_smoke_is_not_solvable_by_colour_statistics(smoke_splits):
    """A softmax classifier on per-image channel means stays at chance (10%); with the stds added it
    tells shapes from textures a little, and still gets nowhere near solving the task."""
    torch.manual_seed(0)
    statistics = {}
    for split, (images, labels) in smoke_splits[1].items():
        pixels = images.float() / 255
        statistics[split] = (pixels.mean(dim=(2, 3)), pixels.std(dim=(2, 3)), labels)
    (train_means, train_stds, train_labels), (test_means, test_stds, test_labels) = statistics["train"], statistics["test"]
    means_only = _linear_probe_accuracy(train_means, train_labels, test_means, test_labels)
    with_stds = _linear_probe_accuracy(
        torch.cat([train_means, train_stds], dim=1), train_labels, torch.cat([test_means, test_stds], dim=1), test_labels
    )
    assert means_only < 0.15 and with_stds < 0.3


def _linear_probe_accuracy(x, y, x_test, y_test) -> float:
    torch.manual_seed(0)
    mean, std = x.mean(0), x.std(0)
    x, x_test = (x - mean) / std, (x_test - mean) / std
    linear = torch.nn.Linear(x.shape[1], 10)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return (linear(x_test).argmax(1) == y_test).float().mean().item()
