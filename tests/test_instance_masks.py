"""Instance label masks (one id per object, 16-bit, as Cellpose, StarDist, ilastik and QuPath write them) load as
one "object" class with their object counts, and the ids are kept (issue #14)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from unet.classmap import ClassMap
from unet.dataset import Dataset, ingest, inspect_source
from unet.masks import instance_objects


def _labels(seed: int, objects: int, size: int = 160) -> np.ndarray:
    """A 16-bit label image: `objects` touching squares in a grid, ids 1..objects in a shuffled order."""
    side = int(np.ceil(np.sqrt(objects)))
    cell = size // side
    ids = np.random.default_rng(seed).permutation(objects) + 1
    labels = np.zeros((size, size), np.uint16)
    for n, object_id in enumerate(ids):
        y, x = divmod(n, side)
        labels[y * cell : (y + 1) * cell - 1 + (x % 2), x * cell : (x + 1) * cell] = object_id  # some touch
    return labels


def _write(root: Path, masks: list[np.ndarray]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, mask in enumerate(masks):
        cv2.imwrite(str(root / "images" / f"n{i}.png"), np.random.default_rng(i).integers(0, 255, mask.shape[:2],
                                                                                              dtype=np.uint8))
        cv2.imwrite(str(root / "masks" / f"n{i}.png"), mask)
    return root


def test_a_16_bit_label_mask_with_300_objects_is_one_object_class_with_its_count(tmp_path):
    masks = [_labels(0, 300, 320), _labels(1, 40), _labels(2, 2), np.zeros((160, 160), np.uint16)]
    assert instance_objects(masks[0]) == 300
    report = inspect_source(_write(tmp_path / "raw", masks))
    assert report.pairs == 4 and report.mask_kind == "instances"
    assert [c["name"] for c in report.classes] == ["background", "object"]
    assert report.objects == {"masks/n0.png": 300, "masks/n1.png": 40, "masks/n2.png": 2, "masks/n3.png": 0}
    assert "0 to 300 objects per image (342 in all)" in report.summary()


def test_the_object_ids_are_kept_and_the_class_mask_is_their_union(tmp_path):
    masks = [_labels(i, 30) for i in range(4)]
    dataset, _ = ingest(_write(tmp_path / "raw", masks), "nuclei", tmp_path / "ws")
    assert dataset.instances and dataset.num_classes == 2
    for stem, labels in zip(dataset.stems, masks, strict=True):
        assert np.array_equal(dataset.read_mask(stem), (labels > 0).astype(np.uint8))
        kept = np.array(Image.open(dataset.root / "instances" / f"{stem}.png"))
        assert np.array_equal(kept, labels)  # ids exactly as drawn, 16-bit
    recorded = json.loads((dataset.root / "dataset.json").read_text())
    assert recorded["objects_per_image"] == {stem: 30 for stem in dataset.stems}


def test_class_masks_are_not_taken_for_instance_labels():
    semantic = np.zeros((64, 64), np.uint8)
    for k, x in enumerate((5, 25, 45), start=1):  # three classes, each painted in two separate places
        semantic[5:20, x : x + 10] = k
        semantic[40:60, x : x + 10] = k
    assert instance_objects(semantic) is None
    one_blob_each = np.zeros((64, 64), np.uint8)
    one_blob_each[5:20, 5:20], one_blob_each[30:40, 30:40], one_blob_each[50:60, 5:15] = 1, 2, 3
    assert instance_objects(one_blob_each) is None  # 8-bit with 3 ids: a class mask, as before
    assert instance_objects((_labels(0, 3) > 0).astype(np.uint16) * 1000) is None  # binary 0/1000


def test_an_instance_map_writes_the_class_mask_that_reads_back_as_the_same_classes():
    """The class mask of an instance run is 0 (background) / 1 (object): object ids are `Prediction.labels`'
    to give (`predict --labels`), not the class map's (issue #24: `--classes` wrote region ids)."""
    class_map = ClassMap.from_records([{"index": 0, "name": "background", "color": [0, 0, 0], "value": 0},
                                       {"index": 1, "name": "object", "color": [255, 0, 0], "value": None}],
                                      instances=True)
    predicted = np.zeros((40, 40), np.uint8)
    predicted[2:10, 2:10], predicted[20:30, 20:35] = 1, 1
    written = class_map.encode(predicted)
    assert np.array_equal(written, predicted)  # two separate objects, one class: 0 and 1 only
    assert np.array_equal(class_map.decode(written, "pred.png"), predicted)
    assert class_map.palette()[1] == (255, 0, 0)  # shown in the class colour
    assert class_map.describe() == "background = 0, object = every object id above 0"


def test_the_stored_dataset_loads_with_its_class_map(tmp_path):
    dataset, _ = ingest(_write(tmp_path / "raw", [_labels(i, 12) for i in range(4)]), "n", tmp_path / "ws")
    again = Dataset.load(dataset.root)
    assert again.class_map is not None and again.class_map.instances
