"""The folder layouts of the tools users come from are found and named (issue #14): ZeroCostDL4Mic, BiaPy with a
train/test tree, Cellpose's one folder; a test part becomes the dataset's test set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from unet.dataset import ingest, inspect_source
from unet.errors import UserError
from unet.pairing import find_layout


def _pair(i: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(i).integers(0, 255, (32, 32), dtype=np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[4 + i % 5 : 20, 6:22] = 255
    return image, mask


def _write(images: Path, masks: Path, names: list[str], mask_name=lambda n: n) -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        image, mask = _pair(i)
        cv2.imwrite(str(images / f"{name}.tif"), image)
        cv2.imwrite(str(masks / f"{mask_name(name)}.tif"), mask)


def test_a_zerocostdl4mic_folder_is_recognised_and_named(tmp_path):
    _write(tmp_path / "Training_source", tmp_path / "Training_target", [f"img_{i}" for i in range(5)])
    report = inspect_source(tmp_path)
    assert report.pairs == 5 and report.layout == "ZeroCostDL4Mic (Training_source / Training_target)"
    assert "layout: ZeroCostDL4Mic" in report.summary()


def test_a_biapy_train_test_tree_gives_a_dataset_with_its_test_set(tmp_path):
    root = tmp_path / "data"
    _write(root / "train" / "x", root / "train" / "y", [f"s{i}" for i in range(6)])
    _write(root / "test" / "x", root / "test" / "y", ["s0", "t1"])  # "s0" also names a training image
    dataset, report = ingest(root, "biapy", tmp_path / "ws")
    assert report.layout == "BiaPy (x / y), in train/ and test/" and report.test_pairs == 2
    assert len(dataset.stems) == 8 and sorted(dataset.test_stems) == ["t1", "test-s0"]
    assert set(dataset.training_stems) == {f"s{i}" for i in range(6)}


@pytest.mark.parametrize("suffix", ["_masks", "_cp_masks"])
def test_a_cellpose_folder_pairs_images_with_their_masks_files(tmp_path, suffix):
    folder = tmp_path / "cellpose"
    _write(folder, folder, [f"cells{i}" for i in range(4)], mask_name=lambda n: f"{n}{suffix}")
    layout = find_layout(tmp_path)
    assert layout.one_folder and layout.name.startswith("Cellpose")
    report = inspect_source(tmp_path)
    assert report.pairs == 4 and not report.problems


def test_an_unknown_layout_says_what_is_expected(tmp_path):
    (tmp_path / "pictures").mkdir()
    cv2.imwrite(str(tmp_path / "pictures" / "a.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(UserError, match="Training_source / Training_target; BiaPy's x / y"):
        find_layout(tmp_path)
