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


def _whole_image_watershed(foreground: np.ndarray, interior: np.ndarray, seed_probability: float = 0.8) -> np.ndarray:
    """The rule as one watershed over the whole image (what labels_from_probabilities computed before issue #24)."""
    from skimage.measure import label
    from skimage.segmentation import watershed

    seeds = label(foreground & (interior >= seed_probability), connectivity=1)
    return watershed(-interior, markers=seeds, mask=foreground)


def _blobs(shape: tuple[int, int], seed: int, sigma: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """A foreground and an interior probability like a model's on a crowded image: smooth random fields."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.random(shape), sigma)
    field = (field - field.min()) / (field.max() - field.min())
    interior = gaussian_filter(rng.random(shape), sigma / 2)
    interior = ((interior - interior.min()) / (interior.max() - interior.min())).astype(np.float32)
    return field > 0.45, interior


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_watershed_patch_by_patch_gives_the_whole_image_watersheds_objects(seed):
    from unet.instances import labels_from_probabilities

    foreground, interior = _blobs((160, 230), seed)
    interior[interior > 0.75] = 0.9  # plateaus: ties the flooding must break as the whole-image watershed does
    expected = _whole_image_watershed(foreground, interior)
    found = labels_from_probabilities(foreground, interior)
    assert found.dtype == np.int32 and found.max() == len(np.unique(found)) - 1, "ids are 1..n"
    assert _as_sets(found) == _as_sets(expected)
    assert len(_as_sets(found)) > 10, "the field must hold patches with several seeds, one seed and none"


def test_small_objects_are_dropped_and_the_ids_stay_one_to_n():
    from unet.instances import labels_from_probabilities

    foreground, interior = _blobs((120, 120), 5)
    every = labels_from_probabilities(foreground, interior)
    sizes = np.bincount(every.ravel())[1:]
    kept = labels_from_probabilities(foreground, interior, min_size=40)
    assert kept.max() == int((sizes >= 40).sum()) and set(np.unique(kept)) == set(range(kept.max() + 1))


def _random_objects(seed: int) -> np.ndarray:
    """Touching objects, holes, single pixels, lines and objects on the image's edges."""
    from skimage.measure import label

    rng = np.random.default_rng(seed)
    labels = label(rng.random((90, 70)) > 0.55, connectivity=1).astype(np.int32)
    labels[10:30, 10:40] = labels.max() + 1  # a block touching others
    labels[15:20, 20:25] = 0  # with a hole
    labels[0, :] = labels.max() + 1  # a line along the top edge
    labels[50:60, 0:12] = labels.max() + 1
    labels[labels == 3] = 0  # a gap in the ids
    return labels


@pytest.mark.parametrize("seed", [0, 1])
def test_the_object_table_measures_what_regionprops_measures(seed):
    from skimage.measure import regionprops_table

    from unet.instances import object_columns

    labels = _random_objects(seed)
    image = np.random.default_rng(seed).integers(0, 65535, (*labels.shape, 2)).astype(np.uint16)
    columns = object_columns(labels, image, name="a.tif")
    expected = regionprops_table(labels, intensity_image=image, properties=(
        "label", "area", "centroid", "bbox", "perimeter", "eccentricity", "intensity_mean"))
    assert columns["id"].tolist() == expected["label"].tolist()
    pairs = {"area": "area", "centroid_y": "centroid-0", "centroid_x": "centroid-1", "bbox_top": "bbox-0",
             "bbox_left": "bbox-1", "bbox_bottom": "bbox-2", "bbox_right": "bbox-3", "perimeter": "perimeter",
             "eccentricity": "eccentricity", "mean_intensity_0": "intensity_mean-0",
             "mean_intensity_1": "intensity_mean-1"}
    for ours, theirs in pairs.items():
        np.testing.assert_allclose(columns[ours], expected[theirs], rtol=1e-9, atol=1e-9, err_msg=ours)
    assert set(columns["image"]) == {"a.tif"}


def test_the_object_table_is_measured_in_strips_like_the_whole(monkeypatch):
    from unet import instances

    labels = _random_objects(3)
    whole = instances.object_columns(labels)
    monkeypatch.setattr(instances, "STRIP_PIXELS", 7 * labels.shape[1])  # 7 rows a strip: 13 strips
    assert len(instances._strips(*labels.shape)) == 13
    for name, values in instances.object_columns(labels).items():
        if name == "image":
            continue
        np.testing.assert_allclose(values.astype(float), whole[name].astype(float), rtol=1e-12, err_msg=name)


def test_more_than_65535_objects_are_a_32_bit_tiff():
    import io

    import tifffile

    from unet.instances import label_file

    labels = np.arange(300 * 300, dtype=np.int32).reshape(300, 300)
    data, suffix = label_file(labels)
    assert suffix == ".tif"
    back = tifffile.imread(io.BytesIO(data))
    assert back.dtype == np.uint32 and np.array_equal(back, labels)
    assert label_file(labels[:2])[1] == ".png"


def test_a_crowded_image_is_separated_and_measured_in_bounded_memory(monkeypatch):
    """Issue #24: a 6000x4000 noise image gave 345,000 objects in one patch of foreground; the watershed took 30
    bytes a pixel and regionprops 654 s. Here a 3-megapixel patch of 18,000 objects, with the windows and strips
    made small so that it is cut as a big image is: bytes a pixel stay within what the page's memory check
    assumes (`unet.inference.OBJECT_BYTES_PER_PIXEL`)."""
    import tracemalloc

    from unet import instances
    from unet.inference import OBJECT_BYTES_PER_PIXEL

    monkeypatch.setattr(instances, "WATERSHED_WHOLE_PIXELS", 250_000)
    monkeypatch.setattr(instances, "STRIP_PIXELS", 250_000)
    foreground, interior = _blobs((1500, 2000), 7, sigma=1.5)
    foreground[:] = True  # one patch of foreground holding every seed, as on the noise image
    tracemalloc.start()
    try:
        labels = instances.labels_from_probabilities(foreground, interior)
        separating = tracemalloc.get_traced_memory()[1] / labels.size
        tracemalloc.reset_peak()
        table = instances.object_columns(labels)
        measuring = tracemalloc.get_traced_memory()[1] / labels.size
    finally:
        tracemalloc.stop()
    assert len(table["id"]) == labels.max() > 10_000
    assert separating < 25 and measuring < 16, (separating, measuring)
    assert separating < OBJECT_BYTES_PER_PIXEL
