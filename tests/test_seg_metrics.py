import math

import numpy as np
import pytest
import torch

from vbench.segmentation.metrics import (
    SegmentationMetric,
    intersect_and_union,
    intersect_and_union_per_image,
    scores_from_histograms,
)


def scores_of(pred, label, num_classes):
    metric = SegmentationMetric(num_classes)
    metric.update(torch.tensor(pred), torch.tensor(label))
    return metric.compute()


def test_hand_computed_case_with_ignore_label():
    # the ignored pixel predicts class 2: it must not reach the prediction histogram
    label = [[0, 0, 1], [1, 255, 2]]
    pred = [[0, 1, 1], [1, 2, 0]]
    scores = scores_of(pred, label, 3)
    assert scores.intersection.tolist() == [1, 2, 0]
    assert scores.prediction.tolist() == [2, 3, 0]
    assert scores.label.tolist() == [2, 2, 1]
    assert scores.aAcc == pytest.approx(60.0)
    assert scores.per_class_iou == pytest.approx([100 / 3, 200 / 3, 0.0])
    assert scores.mIoU == pytest.approx(100 / 3)
    assert scores.mAcc == pytest.approx(50.0)


def test_classes_absent_from_both_maps_are_skipped():
    label = [[0, 0, 1], [1, 255, 2]]
    pred = [[0, 1, 1], [1, 2, 0]]
    scores = scores_of(pred, label, 5)
    assert math.isnan(scores.per_class_iou[3]) and math.isnan(scores.per_class_iou[4])
    assert scores.mIoU == pytest.approx(100 / 3)
    assert scores.mAcc == pytest.approx(50.0)


def test_class_only_in_prediction_counts_for_iou_not_for_acc():
    label = [0, 0, 2, 255]
    pred = [0, 3, 2, 3]
    scores = scores_of(pred, label, 4)
    assert scores.per_class_iou[3] == 0.0
    assert math.isnan(scores.per_class_acc[3])
    assert math.isnan(scores.per_class_iou[1])
    assert scores.mIoU == pytest.approx(50.0)   # (50 + 100 + 0) / 3
    assert scores.mAcc == pytest.approx(75.0)   # (50 + 100) / 2
    assert scores.aAcc == pytest.approx(200 / 3)


def test_histograms_are_summed_over_the_set_before_dividing():
    metric = SegmentationMetric(2)
    metric.update(torch.zeros(10, 10, dtype=torch.long), torch.zeros(10, 10, dtype=torch.long))
    metric.update(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long))
    scores = metric.compute()
    # per-image averaging would give 50.0; the whole-set histograms give (100/101 + 0) / 2
    assert scores.mIoU == pytest.approx(100 / 101 / 2 * 100)
    assert scores.aAcc == pytest.approx(100 / 101 * 100)


def test_labels_outside_the_class_range_fall_out_of_the_label_histogram():
    intersection, prediction, label = intersect_and_union(torch.tensor([0, 1]), torch.tensor([0, 7]), 2)
    assert intersection.tolist() == [1, 0]
    assert prediction.tolist() == [1, 1]
    assert label.tolist() == [1, 0]


def test_agrees_with_an_independent_confusion_matrix_on_random_maps():
    rng = np.random.default_rng(0)
    num_classes = 11
    metric = SegmentationMetric(num_classes)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for _ in range(4):
        label = rng.integers(0, num_classes, size=(2, 37, 23))
        label[rng.random(label.shape) < 0.2] = 255
        label[label == 10] = 255        # class 10 never in the labels
        pred = rng.integers(0, num_classes - 1, size=label.shape)   # nor in the predictions: skipped
        metric.update(torch.from_numpy(pred), torch.from_numpy(label))
        kept = label != 255
        confusion += np.bincount(label[kept] * num_classes + pred[kept],
                                 minlength=num_classes ** 2).reshape(num_classes, num_classes)
    scores = metric.compute()
    intersection = np.diag(confusion)
    label_count, pred_count = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (label_count + pred_count) > 0
    iou = intersection[present] / (label_count + pred_count - intersection)[present]
    in_label = label_count > 0
    assert scores.intersection.tolist() == intersection.tolist()
    assert scores.prediction.tolist() == pred_count.tolist()
    assert scores.label.tolist() == label_count.tolist()
    assert not present[10] and math.isnan(scores.per_class_iou[10])
    assert scores.mIoU == pytest.approx(iou.mean() * 100)
    assert scores.mAcc == pytest.approx((intersection[in_label] / label_count[in_label]).mean() * 100)
    assert scores.aAcc == pytest.approx(intersection.sum() / confusion.sum() * 100)
    table = scores.per_class_table()
    assert list(table.columns) == ["class", "IoU", "Acc", "pixels"]
    assert table["pixels"].sum() == confusion.sum()


def test_compute_without_updates_is_an_error():
    with pytest.raises(ValueError):
        SegmentationMetric(3).compute()


def test_top10_miou_on_a_hand_made_histogram():
    # 14 classes: IoU of class c is c/20 for c = 1..12; class 0 has IoU 0; class 13 appears nowhere.
    union = np.full(14, 20)
    union[13] = 0
    intersection = np.arange(14)
    intersection[13] = 0
    scores = scores_from_histograms(intersection, prediction=union, label=intersection)  # P + L - I = union
    assert scores.top10_mIoU == pytest.approx(np.mean(np.arange(3, 13)) / 20 * 100)  # classes 3..12
    assert scores.mIoU == pytest.approx(np.mean(np.arange(13)) / 20 * 100)  # class 13 skipped, class 0 counts
    assert scores.as_dict()["top10_mIoU"] == scores.top10_mIoU


def test_top10_miou_with_fewer_than_ten_present_classes_is_the_miou():
    scores = scores_of([[0, 1, 1], [1, 2, 0]], [[0, 0, 1], [1, 255, 2]], 20)
    assert scores.top10_mIoU == pytest.approx(scores.mIoU)


def test_top10_miou_is_never_below_the_miou():
    rng = np.random.default_rng(0)
    for _ in range(50):
        classes = int(rng.integers(1, 40))
        label = rng.integers(0, classes, (2, 16, 16))
        pred = np.where(rng.random(label.shape) < rng.random(), label, rng.integers(0, classes, label.shape))
        scores = scores_of(pred, label, classes + int(rng.integers(0, 5)))
        assert scores.top10_mIoU >= scores.mIoU - 1e-9


def test_per_image_histograms_sum_to_the_batch_histograms():
    rng = np.random.default_rng(1)
    label = torch.tensor(rng.integers(0, 5, (3, 8, 8)))
    label[0, 0, :4] = 255
    label[1, 1, 1] = 7  # outside the class range: falls out of the label histogram
    pred = torch.tensor(rng.integers(0, 5, (3, 8, 8)))
    per_image = intersect_and_union_per_image(pred, label, 5)
    for index in range(3):
        alone = intersect_and_union(pred[index], label[index], 5)
        assert all(torch.equal(rows[index], single) for rows, single in zip(per_image, alone))

    metric = SegmentationMetric(5, keep_per_image=True)
    metric.update(pred[:2], label[:2])
    metric.update(pred[2:], label[2:])
    kept = metric.per_image()
    assert kept.images == 3
    whole = metric.compute()
    assert [total.tolist() for total in kept.totals()] == [
        whole.intersection.tolist(), whole.prediction.tolist(), whole.label.tolist()]
