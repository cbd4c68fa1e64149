"""Separating touching objects (issue #15 groundwork): boundary targets, watershed labels, object matching and the
object table, each checked against a computation written here."""

from __future__ import annotations

import numpy as np
import pytest

from unet.instances import (
    BOUNDARY,
    INTERIOR,
    boundary_targets,
    labels_from_classes,
    object_table,
)
from unet.object_scores import iou_matrix, match_at


def match_objects(truth: np.ndarray, predicted: np.ndarray, threshold: float = 0.5):
    return match_at(iou_matrix(truth, predicted)[0], threshold)


def _touching(n: int = 4, side: int = 12) -> np.ndarray:
    """`n` squares in a row, each touching the next: one connected blob, `n` objects."""
    labels = np.zeros((side + 4, n * side + 4), np.int32)
    for k in range(n):
        labels[2 : 2 + side, 2 + k * side : 2 + (k + 1) * side] = k + 1
    return labels


def _as_sets(labels: np.ndarray) -> set[frozenset]:
    return {frozenset(zip(*np.nonzero(labels == k), strict=True)) for k in np.unique(labels) if k}


def test_touching_objects_get_a_boundary_band_between_them():
    labels = _touching()
    targets = boundary_targets(labels, width=1)
    assert set(np.unique(targets).tolist()) == {0, INTERIOR, BOUNDARY}
    assert targets[8, 13] == BOUNDARY and targets[8, 14] == BOUNDARY  # both sides of the seam between 1 and 2
    assert (targets[labels == 0] == 0).all() and (targets[labels > 0] > 0).all()


def test_the_watershed_gives_each_touching_object_its_own_id_where_components_merge_them():
    from skimage.measure import label

    truth = _touching()
    assert label(truth > 0).max() == 1  # connected components see one object
    separated = labels_from_classes(boundary_targets(truth, width=2))
    assert _as_sets(separated) == _as_sets(truth)  # the same pixels per object, whatever the ids


def test_objects_under_the_minimum_size_are_dropped():
    classes = np.zeros((20, 20), np.uint8)
    classes[2:10, 2:10] = INTERIOR
    classes[15:17, 15:17] = INTERIOR  # 4 pixels
    assert labels_from_classes(classes, min_size=5).max() == 1
    assert len(np.unique(labels_from_classes(classes))) == 3


def test_objects_match_at_iou_one_half_like_a_hand_count():
    truth = _touching(3)
    predicted = truth.copy()
    predicted[predicted == 3] = 0  # one object missed
    predicted[2:5, 2:5] = 9  # a small false object inside object 1 (object 1 keeps IoU > 0.5)
    match = match_objects(truth, predicted)
    assert (match.tp, match.fp, match.fn) == (2, 1, 1)
    assert match.average_precision == pytest.approx(2 / 4) and match.precision == pytest.approx(2 / 3)
    merged = np.where(truth > 0, 1, 0)  # all three as one: IoU 1/3 with each, no match
    assert (match_objects(truth, merged).tp, match_objects(truth, merged).fn) == (0, 3)
    assert match_objects(np.zeros((4, 4)), np.zeros((4, 4))).average_precision is None


def test_the_object_table_measures_each_object():
    labels = np.zeros((10, 12), np.int32)
    labels[1:4, 2:6] = 5
    image = np.arange(120, dtype=np.uint8).reshape(10, 12)
    rows = object_table(labels, image, name="a.png")
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["area"], row["image"]) == (5, 12, "a.png")
    assert (row["centroid_y"], row["centroid_x"]) == (2.0, 3.5)
    assert (row["bbox_top"], row["bbox_left"], row["bbox_bottom"], row["bbox_right"]) == (1, 2, 4, 6)
    assert row["mean_intensity_0"] == pytest.approx(image[1:4, 2:6].mean())
    assert object_table(np.zeros((4, 4), np.int32)) == []


def test_a_class_mask_gives_one_row_per_patch_with_its_class():
    from unet.instances import objects_of_mask, table_csv

    mask = np.zeros((20, 20), np.uint8)
    mask[1:5, 1:5], mask[10:14, 10:16], mask[15:18, 1:3] = 1, 1, 2
    rows = objects_of_mask(mask, ["background", "nucleus", "debris"], name="x.png")
    assert [(r["class"], r["area"]) for r in rows] == [("nucleus", 16), ("nucleus", 24), ("debris", 6)]
    text = table_csv(rows)
    assert text.splitlines()[0].startswith("class,image,id,area") and len(text.splitlines()) == 4
