from itertools import islice

import numpy as np
import pytest
import torch
from PIL import Image

from vbench.errors import VbenchError
from vbench.segmentation.ade20k import (
    ADE20K,
    IGNORE_INDEX,
    InfiniteSampler,
    PipelineConfig,
    load_label,
    photometric_distortion,
    random_crop_box,
    rescale_size,
    write_ade20k_fixture,
)

TINY = PipelineConfig(crop_size=(32, 32), scale=(64, 32))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_ade20k_fixture(tmp_path_factory.mktemp("ade"), n_train=3, n_val=2, size=(40, 56))


def test_fixture_has_the_release_layout(release):
    assert release.name == "ADEChallengeData2016"
    assert len(list((release / "images" / "training").glob("*.jpg"))) == 3
    assert len(list((release / "annotations" / "validation").glob("*.png"))) == 2
    raw = np.array(Image.open(release / "annotations" / "training" / "ADE_train_00000001.png"))
    assert raw.dtype == np.uint8 and raw.shape == (40, 56)
    assert raw.min() == 0 and raw.max() == 150


def test_reduce_zero_label(release):
    path = release / "annotations" / "training" / "ADE_train_00000001.png"
    raw = np.array(Image.open(path)).astype(int)
    reduced = load_label(path).astype(int)
    assert (reduced[raw == 0] == IGNORE_INDEX).all()
    assert (reduced[raw > 0] == raw[raw > 0] - 1).all()
    assert reduced.max(initial=0, where=reduced != IGNORE_INDEX) == 149


def test_training_items_are_crops_with_labels_in_range(release):
    dataset = ADE20K(release.parent, "train", TINY)
    image, label = dataset[(0, 7)]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.shape == (32, 32) and label.dtype == torch.long
    values = set(label.unique().tolist())
    assert values <= set(range(150)) | {IGNORE_INDEX}
    again_image, again_label = dataset[(0, 7)]
    assert torch.equal(image, again_image) and torch.equal(label, again_label)
    other_image, _ = dataset[(0, 8)]
    assert not torch.equal(image, other_image)


def test_small_images_are_padded_with_zero_and_the_ignore_label(release):
    config = PipelineConfig(crop_size=(32, 32), scale=(16, 8), ratio_range=(1.0, 1.0), photometric=False)
    image, label = ADE20K(release.parent, "train", config)[(0, 1)]
    # 56x40 fits 16x8 at 11x8 (factor 0.2), so everything right of column 11 / below row 8 is padding
    assert (label[8:, :] == IGNORE_INDEX).all() and (label[:, 11:] == IGNORE_INDEX).all()
    assert (image[:, 8:, :] == 0).all() and (image[:, :, 11:] == 0).all()
    assert (label[:8, :11] != IGNORE_INDEX).any()


def test_evaluation_items_keep_the_original_label(release):
    dataset = ADE20K(release.parent, "val", TINY)
    assert not dataset.train
    image, label = dataset[0]
    assert label.shape == (40, 56)
    assert image.shape == (3, 32, 45)   # 56x40 rescaled to fit (64, 32): factor min(64/56, 32/40) = 0.8
    image, label = dataset[1]           # the second image is transposed: 40 wide, 56 high
    assert label.shape == (56, 40) and image.shape == (3, 45, 32)


def test_rescale_size_matches_mmcv():
    assert rescale_size(683, 512, (2048, 512)) == (683, 512)
    assert rescale_size(512, 683, (2048, 512)) == (512, 683)     # portrait: the short edge is already 512
    assert rescale_size(1000, 400, (2048, 512)) == (1280, 512)   # upscaled until the short edge is 512
    assert rescale_size(4000, 500, (2048, 512)) == (2048, 256)   # the long edge limits


def test_crop_retries_until_no_class_fills_three_quarters():
    label = np.zeros((10, 20), dtype=np.uint8)
    label[:, 10:15], label[:, 15:] = 1, 2
    def dominant(box, ratio):
        _, counts = np.unique(label[box[0]:box[1], box[2]:box[3]], return_counts=True)
        return counts.max() / counts.sum() >= ratio
    boxes = [random_crop_box(label, (10, 10), 0.75, np.random.default_rng(seed)) for seed in range(60)]
    assert not any(dominant(box, 0.75) for box in boxes)
    single_draws = [random_crop_box(label, (10, 10), 1.0, np.random.default_rng(seed)) for seed in range(60)]
    assert any(dominant(box, 0.75) for box in single_draws)


def test_photometric_distortion_is_seeded_and_keeps_the_shape():
    image = np.random.default_rng(0).integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    first = photometric_distortion(image, np.random.default_rng(3))
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(first, photometric_distortion(image, np.random.default_rng(3)))
    assert any(not np.array_equal(image, photometric_distortion(image, np.random.default_rng(s))) for s in range(5))


def test_sampler_is_a_resumable_stream_of_permutations():
    stream = [index for index, _ in islice(InfiniteSampler(5, seed=1), 10)]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:]) == list(range(5))
    resumed = list(islice(InfiniteSampler(5, seed=1, start=7), 3))
    assert resumed == list(islice(InfiniteSampler(5, seed=1), 10))[7:]


def test_missing_dataset_names_the_path_and_how_to_get_it(tmp_path):
    with pytest.raises(VbenchError) as error:
        ADE20K(tmp_path, "train")
    message = str(error.value)
    assert str(tmp_path / "ADEChallengeData2016") in message
    assert "--download" in message and "ADEChallengeData2016.zip" in message
    assert "\n" not in message


def test_missing_annotation_and_corrupt_files_are_named(tmp_path):
    release = write_ade20k_fixture(tmp_path, n_train=2, n_val=1, size=24)
    missing = release / "annotations" / "training" / "ADE_train_00000002.png"
    missing.unlink()
    with pytest.raises(VbenchError, match="ADE_train_00000002.png"):
        ADE20K(tmp_path, "train")

    corrupt = release / "images" / "validation" / "ADE_val_00000001.jpg"
    corrupt.write_bytes(b"not a jpeg")
    with pytest.raises(VbenchError, match="ADE_val_00000001.jpg"):
        ADE20K(tmp_path, "val")[0]


def test_annotations_that_are_not_ade20k_label_maps_are_rejected(tmp_path):
    release = write_ade20k_fixture(tmp_path, n_train=1, n_val=1, size=24)
    path = release / "annotations" / "validation" / "ADE_val_00000001.png"
    Image.fromarray(np.full((24, 24), 151, dtype=np.uint8)).save(path)
    with pytest.raises(VbenchError, match="151"):
        ADE20K(tmp_path, "val")[0]
    Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(path)
    with pytest.raises(VbenchError, match="RGB"):
        ADE20K(tmp_path, "val")[0]
