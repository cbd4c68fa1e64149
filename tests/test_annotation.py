"""Drawing masks in the browser, as the core keeps them: images without masks, versions that never overwrite what a
run trained on or what the user uploaded, counts that agree with the files, and the order to annotate in."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from unet import annotation
from unet.dataset import Dataset, ingest
from unet.demo import write_demo_dataset
from unet.errors import UserError
from unet.inference import Prediction


def _images(folder: Path, count: int = 6, size: int = 48, dtype=np.uint8) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        top = 255 if dtype == np.uint8 else 4095
        path = folder / f"cell{i}.{'png' if dtype == np.uint8 else 'tif'}"
        pixels = rng.integers(0, top, (size, size + 8)).astype(dtype)
        if dtype == np.uint8:
            cv2.imwrite(str(path), pixels)
        else:
            import tifffile
            tifffile.imwrite(path, pixels)
        files.append((path, path.name))
    return files


def _recount(dataset: Dataset) -> list[int]:
    """Class pixels counted from the mask files themselves (not from dataset.json)."""
    counts = np.zeros(dataset.num_classes, np.int64)
    for file in (dataset.root / "masks").glob("*.png"):
        counts += np.bincount(cv2.imread(str(file), cv2.IMREAD_UNCHANGED).ravel(),
                              minlength=dataset.num_classes)[: dataset.num_classes]  # 255, not labelled, left out
    return counts.tolist()


def test_images_without_masks_become_a_dataset_to_annotate(tmp_path):
    files = _images(tmp_path / "raw")
    (tmp_path / "raw" / "notes.png").write_text("not a picture")
    dataset, problems = annotation.new_image_dataset(
        files + [(tmp_path / "raw" / "notes.png", "notes.png")], "plates", tmp_path / "ws",
        classes=["background", "cell", "debris"])
    assert dataset.stems == [] and dataset.all_images == [f"cell{i}" for i in range(6)]
    assert [file for file, _ in problems] == ["notes.png"]
    assert [c.name for c in dataset.classes] == ["background", "cell", "debris"]
    assert annotation.annotation_progress(dataset).words().startswith("0 of 6 images have a mask")
    assert dataset.read_image("cell3").shape == (48, 56)


def test_16_bit_images_are_kept_16_bit_with_the_percentile_rule(tmp_path):
    dataset, _ = annotation.new_image_dataset(_images(tmp_path / "raw", 3, dtype=np.uint16), "deep", tmp_path / "ws")
    assert dataset.image_dtype == "uint16" and dataset.rule.kind == "percentile"
    assert dataset.read_image("cell0").max() > 255


def test_the_first_drawing_makes_a_new_version_and_keeps_the_upload(tmp_path):
    dataset, _ = annotation.new_image_dataset(_images(tmp_path / "raw"), "plates", tmp_path / "ws")
    drawing = np.zeros((48, 56), np.uint16)
    drawing[10:20, 5:30] = 2  # class 1 ('cell'): the canvas draws class k as k + 1, and 0 is not labelled
    saved = annotation.save_annotation(dataset, "cell2", drawing, tmp_path / "runs")
    assert saved.forked_from == "plates" and saved.dataset.name == "plates-v2" and saved.dataset.version == 2
    assert Dataset.load(dataset.root).stems == []  # the upload is untouched
    version = saved.dataset
    assert version.stems == ["cell2"] and "cell2" not in version.unlabelled
    stored = cv2.imread(str(version.root / "masks" / "cell2.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(stored, np.where(drawing == 0, 255, drawing.astype(np.int32) - 1))  # unpainted: 255
    assert np.array_equal(annotation.read_annotation(version, "cell2"), drawing)
    assert [c.pixels for c in version.classes] == _recount(version) == [0, 250]  # only what was painted
    again = annotation.save_annotation(version, "cell4", drawing, tmp_path / "runs")
    assert again.forked_from is None and again.dataset.root == version.root  # a draft takes the next drawings


def test_a_few_strokes_label_only_what_they_paint_and_filling_the_rest_is_explicit(tmp_path):
    dataset, _ = annotation.new_image_dataset(_images(tmp_path / "raw"), "plates", tmp_path / "ws",
                                              classes=["background", "cell", "membrane"])
    strokes = np.zeros((48, 56), np.uint16)
    strokes[5, 5:20], strokes[30, 10:40], strokes[40:42, 2:8] = 1, 2, 3  # background, cell, membrane
    version = annotation.save_annotation(dataset, "cell0", strokes, tmp_path / "runs").dataset
    stored = version.read_mask("cell0")
    assert (stored == 255).sum() == 48 * 56 - 15 - 30 - 12  # everything unpainted is "not labelled"
    assert [c.pixels for c in version.classes] == _recount(version) == [15, 30, 12]
    assert "labelled pixels: background 15" in annotation.annotation_progress(version).words()
    filled = annotation.fill_rest_as_background(version, annotation.read_annotation(version, "cell0"))
    version = annotation.save_annotation(version, "cell0", filled, tmp_path / "runs").dataset
    assert [c.pixels for c in version.classes] == [48 * 56 - 42, 30, 12] and (version.read_mask("cell0") < 3).all()
    sure = Prediction(np.eye(3, dtype=np.float32)[np.zeros((48, 56), int)], 3)  # the model says background
    assert (annotation.predicted_annotation(sure, version) == 1).all()  # painted as background, not unlabelled


def test_a_version_a_run_trained_on_is_kept_and_the_next_drawing_makes_another(tmp_path):
    dataset, _ = annotation.new_image_dataset(_images(tmp_path / "raw"), "plates", tmp_path / "ws")
    drawing = np.zeros((48, 56), np.uint16)
    drawing[:5] = 1
    v2 = annotation.save_annotation(dataset, "cell0", drawing, tmp_path / "runs").dataset
    run = tmp_path / "runs" / "20261127-plates"
    run.mkdir(parents=True)
    (run / "dataset.json").write_text(json.dumps({"path": str(v2.root), "hash": v2.hash}))
    assert annotation.used_by_runs(v2, tmp_path / "runs") == ["20261127-plates"]
    before = (v2.root / "masks" / "cell0.png").read_bytes()
    saved = annotation.save_annotation(v2, "cell0", drawing * 0 + 1, tmp_path / "runs")
    assert saved.dataset.name == "plates-v3" and saved.forked_from == "plates-v2"
    assert (v2.root / "masks" / "cell0.png").read_bytes() == before
    assert "a new version" in saved.words("cell0")


def test_a_drawing_undone_to_nothing_leaves_the_image_without_a_mask(tmp_path):
    dataset, _ = annotation.new_image_dataset(_images(tmp_path / "raw"), "plates", tmp_path / "ws")
    drawing = np.zeros((48, 56), np.uint16)
    drawing[3:9, 3:9] = 1
    v2 = annotation.save_annotation(dataset, "cell1", drawing, tmp_path / "runs").dataset
    cleared = annotation.save_annotation(v2, "cell1", drawing * 0, tmp_path / "runs")
    assert cleared.cleared and cleared.dataset.stems == [] and "cell1" in cleared.dataset.unlabelled
    assert not (v2.root / "masks" / "cell1.png").exists()
    assert [c.pixels for c in cleared.dataset.classes] == [0, 0]


def test_objects_keep_their_ids_and_their_union_is_the_class_mask(tmp_path):
    dataset, _ = annotation.new_image_dataset(_images(tmp_path / "raw"), "nuclei", tmp_path / "ws", instances=True)
    drawing = np.zeros((48, 56), np.uint16)
    drawing[5:15, 5:15], drawing[5:15, 15:25], drawing[30:40, 30:40] = 1, 2, 300
    version = annotation.save_annotation(dataset, "cell0", drawing, tmp_path / "runs").dataset
    assert version.instances and version.objects["cell0"] == 3
    ids = cv2.imread(str(version.root / "instances" / "cell0.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16 and np.array_equal(ids, drawing)
    assert np.array_equal(version.read_mask("cell0"), (drawing > 0).astype(np.uint8))
    assert annotation.annotation_progress(version).objects == 3


def test_a_labelled_dataset_is_corrected_in_a_new_version_with_counts_that_match_the_files(tmp_path):
    dataset, _ = ingest(write_demo_dataset(tmp_path / "raw", count=5, size=48), "cells", tmp_path / "ws")
    drawing = annotation.read_annotation(dataset, dataset.stems[0])
    drawing[:10, :10] = 1
    version = annotation.save_annotation(dataset, dataset.stems[0], drawing, tmp_path / "runs").dataset
    assert [c.pixels for c in version.classes] == _recount(version)
    assert version.stems == dataset.stems and version.hash != dataset.hash


def test_drawings_that_do_not_fit_are_refused(tmp_path):
    dataset, _ = annotation.new_image_dataset(_images(tmp_path / "raw"), "plates", tmp_path / "ws")
    with pytest.raises(UserError, match="class 5"):  # the canvas's 6 is class 5 (0 is not labelled)
        annotation.save_annotation(dataset, "cell0", np.full((48, 56), 6, np.uint16), tmp_path / "runs")
    with pytest.raises(UserError, match="56x48"):
        annotation.save_annotation(dataset, "cell0", np.zeros((10, 10), np.uint16), tmp_path / "runs")
    with pytest.raises(UserError, match="no image"):
        annotation.save_annotation(dataset, "../../etc", np.zeros((48, 56), np.uint16), tmp_path / "runs")


def test_uncertainty_is_zero_when_sure_and_one_for_a_coin_toss():
    sure = Prediction(np.zeros((8, 8, 1), np.float32), 2)
    toss = Prediction(np.full((8, 8, 1), 0.5, np.float32), 2)
    three = Prediction(np.full((8, 8, 3), 1 / 3, np.float32), 3)
    assert annotation.uncertainty(sure) < 1e-5
    assert annotation.uncertainty(toss) == pytest.approx(1.0, abs=1e-5)
    assert annotation.uncertainty(three) == pytest.approx(1.0, abs=1e-4)


# --- stacks and mixed uploads (issue #25) ---------------------------------------------------------------------


def _two_channel_stack(path: Path, layout: str) -> np.ndarray:
    """A 16-bit stack of 5 planes x 2 channels (64x64, [Z, Y, X, C]) as Fiji writes it ('imagej', axes ZCYX) or as
    `tifffile.imwrite` writes a NumPy array without axes ('plain': (5, 64, 64, 2)). Every plane and channel has
    its own level, so a plane read in the wrong place shows."""
    import tifffile

    rng = np.random.default_rng(5)
    levels = 1000 * np.arange(1, 6)[:, None, None, None] + 300 * np.arange(2)[None, None, None, :]
    planes = (levels + rng.integers(0, 200, (5, 64, 64, 2))).astype(np.uint16)
    if layout == "imagej":
        tifffile.imwrite(path, np.moveaxis(planes, -1, 1), imagej=True, metadata={"axes": "ZCYX"})
    else:
        tifffile.imwrite(path, planes)
    return planes


@pytest.mark.parametrize("layout", ["imagej", "plain"])
def test_a_16_bit_two_channel_stack_can_be_shown_drawn_and_read_back_plane_by_plane(tmp_path, layout):
    from unet.ui.annotate_view import cached_picture, contrast_picture

    (tmp_path / "raw").mkdir()
    path = tmp_path / "raw" / "stack_2ch_16bit.tif"
    planes = _two_channel_stack(path, layout)
    dataset, problems = annotation.new_image_dataset([(path, path.name)], "stack", tmp_path / "ws")
    assert problems == []
    assert (dataset.channels, dataset.image_dtype) == (2, "uint16")
    stems = [f"stack_2ch_16bit-p{i:03d}" for i in range(1, 6)]
    assert dataset.all_images == stems
    runs = tmp_path / "runs"
    for z, stem in enumerate(stems):
        np.testing.assert_array_equal(dataset.read_image(stem), planes[z])  # each plane where it belongs
        for picture in (contrast_picture(dataset, dataset.read_image(stem), 1.0, 99.8),
                        cached_picture(str(dataset.image_path(stem)), 0.0, 1.0, 99.8, dataset)):
            assert picture.dtype == np.uint8 and picture.shape == (64, 64, 3) and picture.std() > 0
        # the saved plane was "not an image" here: Pillow cannot open a 2-channel 16-bit TIFF
        assert annotation.read_annotation(dataset, stem).shape == (64, 64)
        drawing = np.zeros((64, 64), np.uint16)
        drawing[4 + 8 * z : 12 + 8 * z, 10:40] = 1
        dataset = annotation.save_annotation(dataset, stem, drawing, runs).dataset
        np.testing.assert_array_equal(annotation.read_annotation(dataset, stem), drawing)
        np.testing.assert_array_equal(dataset.read_image(stem), planes[z])  # moved to images/, unchanged
    assert dataset.name == "stack-v2" and dataset.stems == stems and dataset.unlabelled == []
    assert [c.pixels for c in dataset.classes] == _recount(dataset)
    image, mask = dataset.read_pair(stems[2])  # the stroke's class inside it, one other value around it
    assert image.shape == (64, 64, 2) and mask[20, 10] != mask[0, 0]
    assert (mask == mask[20, 10]).sum() == 240 and (mask[20:28, 10:40] == mask[20, 10]).all()


def test_an_upload_of_gray_images_and_a_two_channel_stack_keeps_both_as_two_datasets(tmp_path):
    gray = _images(tmp_path / "raw", 2, size=64)  # two 8-bit gray images, as ISBI's
    stack = tmp_path / "raw" / "stack_2ch_16bit.tif"
    planes = _two_channel_stack(stack, "imagej")
    made = annotation.new_image_datasets(gray + [(stack, stack.name)], "mixed", tmp_path / "ws",
                                         classes=["background", "cell"])
    assert made.problems == []
    stacked, grays = made.datasets  # the larger group (5 planes) under the given name
    assert (stacked.name, stacked.channels, stacked.image_dtype) == ("mixed", 2, "uint16")
    assert stacked.all_images == [f"stack_2ch_16bit-p{i:03d}" for i in range(1, 6)]
    assert (grays.name, grays.channels, grays.image_dtype) == ("mixed-1ch", 1, "uint8")
    assert grays.all_images == ["cell0", "cell1"]
    np.testing.assert_array_equal(grays.read_image("cell1"), cv2.imread(str(gray[1][0]), cv2.IMREAD_UNCHANGED))
    np.testing.assert_array_equal(stacked.read_image("stack_2ch_16bit-p004"), planes[3])
    assert [c.name for c in grays.classes] == [c.name for c in stacked.classes] == ["background", "cell"]
    words = made.words()
    assert "'mixed' (5 images, 2 channels)" in words and "'mixed-1ch' (2 images, 1 channel)" in words
    # a name in the way of the second dataset is kept: the next free one is taken
    again = annotation.new_image_datasets(gray + [(stack, stack.name)], "other", tmp_path / "ws")
    assert [d.name for d in again.datasets] == ["other", "other-1ch"]
    (tmp_path / "ws" / "third-1ch").mkdir()
    third = annotation.new_image_datasets(gray + [(stack, stack.name)], "third", tmp_path / "ws")
    assert [d.name for d in third.datasets] == ["third", "third-1ch-2"]
    # one channel count: one dataset, nothing to say
    alone = annotation.new_image_datasets(gray, "alone", tmp_path / "ws")
    assert [d.name for d in alone.datasets] == ["alone"] and alone.words() == ""
