"""One class map per dataset, kept by every run (issue #12): each figure against an independent NumPy computation
written here, from the raw truth masks and the files `predict` writes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_CONFIG
from unet import runs, splits
from unet.classmap import ClassMap
from unet.config import Config
from unet.dataset import ingest
from unet.errors import UserError
from unet.evaluation import evaluate
from unet.inference import Predictor, predict_folder
from unet.model import build_unet
from unet.training import record_dataset

SIZE = 32
GRAY_VALUES = (0, 80, 160, 240)  # a 4-class index dataset whose values are not 0..3
COLOURS = ((0, 0, 0), (255, 0, 0), (0, 200, 0), (0, 0, 255))  # black, red, green, blue


def _picture(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 255, (SIZE, SIZE), dtype=np.uint8)


def _classes(i: int, without: int | None = None) -> np.ndarray:
    """Class numbers 0..3 in blocks that move with i; `without` paints that class as background."""
    index = np.zeros((SIZE, SIZE), np.uint8)
    index[2 + i % 3 : 14, 2:14] = 1
    index[18:30, 3 + i % 4 : 15] = 2
    index[4:28, 20 : 28 - i % 2] = 3
    if without is not None:
        index[index == without] = 0
    return index


def _write_pairs(root: Path, masks: list[np.ndarray], offset: int = 0) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, mask in enumerate(masks):
        cv2.imwrite(str(root / "images" / f"img{i + offset}.png"), _picture(i + offset))
        Image.fromarray(mask).save(root / "masks" / f"img{i + offset}.png")
    return root


def _gray(index: np.ndarray) -> np.ndarray:
    return np.array(GRAY_VALUES, np.uint8)[index]


def _colour(index: np.ndarray) -> np.ndarray:
    return np.array(COLOURS, np.uint8)[index]


def _make_run(tmp: Path, masks: list[np.ndarray]) -> Path:
    """A run folder holding an untrained (seeded) model on a dataset stored from `masks`, as `train` records it."""
    dataset, _ = ingest(_write_pairs(tmp / "raw", masks), "train", tmp / "datasets")
    raw = json.loads(json.dumps(TINY_CONFIG))
    raw["data"]["channels"], raw["model"]["num_classes"] = dataset.channels, dataset.num_classes
    config = Config.from_dict(raw)
    run = tmp / "run"
    run.mkdir()
    (run / runs.CONFIG).write_text(config.to_json())
    record_dataset(run, dataset, splits.split_stems(dataset.stems, 0.25, 0), config)
    import keras

    keras.utils.set_random_seed(3)
    build_unet(config).save(run / runs.BEST_MODEL)
    return run


def _read(path: Path) -> np.ndarray:
    """A mask file as its stored numbers, as any tool would read it: palette PNGs give their indices."""
    return np.array(Image.open(path))


def _keys(mask: np.ndarray) -> np.ndarray:
    if mask.ndim == 2:
        return mask.astype(np.int64)
    return mask[..., 0].astype(np.int64) << 16 | mask[..., 1].astype(np.int64) << 8 | mask[..., 2]


def _independent_scores(truths: list[np.ndarray], predictions: list[np.ndarray], key: int) -> tuple:
    """Pooled Dice, IoU and support of the class painted `key`, straight from the definitions."""
    t = np.concatenate([_keys(m).ravel() == key for m in truths])
    p = np.concatenate([_keys(m).ravel() == key for m in predictions])
    both, total, union = (t & p).sum(), t.sum() + p.sum(), (t | p).sum()
    return (2 * both / total if total else None), (both / union if union else None), int(t.sum())


def _key_of(value) -> int:
    return int(value[1:], 16) if isinstance(value, str) else int(value)


@pytest.mark.parametrize("kind", ["gray", "colour"])
def test_a_test_set_without_one_class_is_scored_with_the_run_s_classes(tmp_path, kind):
    paint = _gray if kind == "gray" else _colour
    run = _make_run(tmp_path, [paint(_classes(i)) for i in range(4)])
    test = _write_pairs(tmp_path / "test", [paint(_classes(i, without=2)) for i in range(3)], offset=10)
    written = predict_folder(run, test / "images", tmp_path / "predicted")
    predictions = [_read(p) for p in written]
    truths = [_read(test / "masks" / p.name) for p in written]
    assert len({int(k) for m in predictions for k in np.unique(_keys(m))}) >= 2  # the model paints several classes

    result = evaluate(run, test)
    json.dumps(result, allow_nan=False)
    assert result["split"] == "all" and result["images"] == 3
    by_value = {_key_of(row["value"]): row for row in result["per_class"]}
    assert len(by_value) == 4
    for key, row in by_value.items():
        dice, iou, support = _independent_scores(truths, predictions, key)
        assert row["support_pixels"] == support
        assert row["dice"] == (pytest.approx(dice, abs=1e-12) if dice is not None else None)
        assert row["iou"] == (pytest.approx(iou, abs=1e-12) if iou is not None else None)
    missing = by_value[_key_of(result["per_class"][2]["value"])]
    assert missing["support_pixels"] == 0  # the class the test set lacks keeps its number and scores no support
    scored = [row for row in result["per_class"][1:] if row["dice"] is not None]
    assert result["averaged_over"] == [row["name"] for row in scored]
    assert result["dice"] == pytest.approx(np.mean([row["dice"] for row in scored]), abs=1e-12)


def test_predictions_fed_back_as_masks_score_1_and_keep_their_numbers_when_a_class_is_removed(tmp_path):
    run = _make_run(tmp_path, [_gray(_classes(i)) for i in range(4)])
    folder = tmp_path / "again"
    _write_pairs(folder, [_gray(_classes(i)) for i in range(3)], offset=20)
    for path in predict_folder(run, folder / "images", tmp_path / "predicted"):
        (folder / "masks" / path.name).write_bytes(path.read_bytes())  # the predictions become the truth
    result = evaluate(run, folder)
    present = [row for row in result["per_class"] if row["support_pixels"]]
    assert len(present) >= 2 and all(row["dice"] == 1.0 for row in present)

    removed = next(row for row in present if row["class"] > 0)
    for path in (folder / "masks").iterdir():
        values = _read(path)
        values[values == removed["value"]] = 0
        Image.fromarray(values).save(path)
    again = evaluate(run, folder)
    for row in again["per_class"]:
        if row["support_pixels"] and row["class"] not in (0, removed["class"]):
            assert row["dice"] == 1.0, row  # the other classes keep their numbers


def test_a_mask_value_the_run_does_not_know_is_named_with_its_file(tmp_path):
    run = _make_run(tmp_path, [_gray(_classes(i)) for i in range(4)])
    masks = [_gray(_classes(i)) for i in range(3)]
    masks[1][0:3, 0:3] = 7
    test = _write_pairs(tmp_path / "test", masks, offset=30)
    result = evaluate(run, test)
    assert result["images"] == 2
    named = [p for p in result["problems"] if p["file"] == "masks/img31.png"]
    assert len(named) == 1 and "value 7," in named[0]["problem"] and "240" in named[0]["problem"]


def test_soft_edges_are_snapped_to_the_classes_with_a_warning(tmp_path):
    masks = []
    for i in range(4):
        big = np.zeros((2 * SIZE, 2 * SIZE), np.uint8)
        cv2.circle(big, (SIZE + i, SIZE), SIZE // 2 + 3, 255, -1)
        masks.append(cv2.resize(big, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    values = np.unique(np.concatenate([m.ravel() for m in masks]))
    assert len(values) > 3  # the shrink made in-between values
    dataset, report = ingest(_write_pairs(tmp_path / "raw", masks), "soft", tmp_path / "ws")
    assert dataset.num_classes == 2
    assert any("soft edges" in p.problem for p in report.problems)
    for stem, mask in zip(dataset.stems, masks, strict=True):
        stored = dataset.read_pair(stem)[1]
        assert np.array_equal(stored, (mask >= 128).astype(np.uint8))  # nearest of 0 and 255


def test_a_thin_real_class_is_not_taken_for_a_soft_edge(tmp_path):
    masks = []
    for i in range(4):
        index = np.zeros((SIZE, SIZE), np.uint8)
        index[4:28, 4:28] = 2
        index[4:28, 15 + i % 2] = 1  # a one-pixel boundary class between two others
        masks.append(index * 100)
    dataset, report = ingest(_write_pairs(tmp_path / "raw", masks), "thin", tmp_path / "ws")
    assert dataset.num_classes == 3 and not any("soft edges" in p.problem for p in report.problems)


def test_masks_mixing_0_1_and_0_255_are_one_foreground_class(tmp_path):
    binary = [(_classes(i) > 0).astype(np.uint8) for i in range(4)]
    masks = [b if i % 2 else b * 255 for i, b in enumerate(binary)]
    dataset, report = ingest(_write_pairs(tmp_path / "raw", masks), "mixed", tmp_path / "ws")
    assert dataset.num_classes == 2
    assert any("0/1 and 0/255" in p.problem for p in report.problems)
    for stem, want in zip(dataset.stems, binary, strict=True):
        assert np.array_equal(dataset.read_pair(stem)[1], want)


def test_palette_png_indices_stay_the_user_s_class_numbers(tmp_path):
    root = tmp_path / "raw"
    _write_pairs(root, [np.zeros((SIZE, SIZE), np.uint8)] * 4)
    for i, path in enumerate(sorted((root / "masks").iterdir())):
        picture = Image.fromarray(_classes(i).clip(0, 2), "P")
        picture.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])  # 1 is red, 2 is blue: blue sorts first by RGB
        picture.save(path)
    dataset, _ = ingest(root, "palette", tmp_path / "ws")
    assert [c.value for c in dataset.classes] == [0, 1, 2]
    assert [c.color for c in dataset.classes][1:] == [(255, 0, 0), (0, 0, 255)]
    for i, stem in enumerate(dataset.stems):
        assert np.array_equal(dataset.read_pair(stem)[1], _classes(i).clip(0, 2))


def _upload(path: Path, name: str) -> SimpleNamespace:
    data = path.read_bytes()
    return SimpleNamespace(name=name, getvalue=lambda: data)


@pytest.mark.parametrize("kind", ["gray 0/80/160/240", "colour", "binary all 255"])
def test_a_true_mask_on_the_inference_page_is_read_with_the_run_s_classes(tmp_path, monkeypatch, kind):
    from unet.ui.inference_view import truth_for

    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path / "ws"))
    if kind == "binary all 255":
        run = _make_run(tmp_path, [(_classes(i) > 0).astype(np.uint8) * 255 for i in range(4)])
        upload, want = np.full((SIZE, SIZE), 255, np.uint8), np.ones((SIZE, SIZE), np.uint8)
    elif kind == "colour":
        run = _make_run(tmp_path, [_colour(_classes(i)) for i in range(4)])
        want = _classes(5, without=1)  # no red in this mask
        upload = _colour(want)
    else:
        run = _make_run(tmp_path, [_gray(_classes(i)) for i in range(4)])
        want = _classes(5, without=2)  # values {0, 80, 240}: 240 must stay class 3
        upload = _gray(want)
    Image.fromarray(upload).save(tmp_path / "truth.png")
    predictor = Predictor.from_run(run)
    truth = truth_for("img.png", [_upload(tmp_path / "truth.png", "img_mask.png")], (SIZE, SIZE), predictor)
    assert np.array_equal(predictor.class_map.encode(truth), upload)  # every pixel read as the class it paints
    if kind != "colour":  # gray classes are numbered in the order of their values
        assert np.array_equal(truth, want)
    odd = upload.copy() if upload.ndim == 2 else np.zeros((SIZE, SIZE), np.uint8)
    odd[:4, :4] = 99  # with the run's own values beside it, 99 is no class (alone, 0/99 would be a binary mask)
    Image.fromarray(odd).save(tmp_path / "odd.png")
    if kind != "colour":
        with pytest.raises(UserError, match="'img_mask.png' has the value 99"):
            truth_for("img.png", [_upload(tmp_path / "odd.png", "img_mask.png")], (SIZE, SIZE), predictor)


def test_the_class_map_round_trips_through_its_record():
    records = [{"index": 0, "name": "membrane", "color": [0, 0, 0], "value": 0},
               {"index": 1, "name": "cell", "color": [255, 255, 255], "value": 255}]
    class_map = ClassMap.from_records(records)
    assert class_map is not None and class_map.records() == records
    assert class_map.describe() == "membrane = 0, cell = 255"
    assert ClassMap.from_records([{"index": 0, "name": "x", "color": [0, 0, 0]}]) is None  # recorded before values


def test_16_bit_images_are_scaled_with_one_rule_for_the_dataset_and_for_new_images(tmp_path):
    """A 12-bit value must mean the same in every image, including one with a hot pixel, and at inference."""
    from unet.inference import prepare_image

    root = tmp_path / "raw"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(4):
        image = np.full((SIZE, SIZE), 2000, np.uint16)
        image[0, 0] = 4000 if i else 4096  # image 0 has a 13-bit hot pixel
        cv2.imwrite(str(root / "images" / f"img{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"img{i}.png"), (_classes(i) > 0).astype(np.uint8) * 255)
    dataset, report = ingest(root, "deep", tmp_path / "ws")
    assert dataset.source_bits == 13
    assert any("13-bit" in p.problem for p in report.problems)
    stored = {int(dataset.read_pair(stem)[0][5, 5]) for stem in dataset.stems}
    assert stored == {2000}  # kept as the camera wrote it
    network = {float(dataset.rule.to_unit(dataset.read_pair(stem)[0])[5, 5, 0]) for stem in dataset.stems}
    assert len(network) == 1  # one rule: the hot pixel of image 0 does not dim its other pixels
    pixels, notes = prepare_image(np.full((SIZE, SIZE), 2000, np.uint16), 1, dataset.rule, dataset.source_bits)
    assert float(pixels[5, 5, 0]) == network.pop() and not notes


def test_a_test_set_is_left_out_of_training_and_scored_first(tmp_path):
    """Test images are never trained on nor used to choose the model, and evaluation scores them by default."""
    from unet.training import train

    root = _write_pairs(tmp_path / "raw", [(_classes(i) > 0).astype(np.uint8) * 255 for i in range(8)])
    dataset, _ = ingest(root, "with-test", tmp_path / "datasets")
    test = dataset.set_test_split(0.25)
    assert len(test) == 2 and set(test) <= set(dataset.stems)
    reloaded = type(dataset).load(dataset.root)
    assert reloaded.test_stems == test and not set(reloaded.training_stems) & set(test)

    raw = json.loads(json.dumps(TINY_CONFIG))
    raw["train"]["epochs"] = 1
    run = tmp_path / "run"
    assert train(run, dataset.root, Config.from_dict(raw)) == 0
    recorded = json.loads((run / runs.TRAINING_DATA).read_text())
    assert recorded["test"] == test and not set(recorded["train"] + recorded["val"]) & set(test)
    result = evaluate(run)
    assert result["split"] == "test" and sorted(r["image"] for r in result["per_image"]) == sorted(test)
    assert evaluate(run, split="val")["images"] == len(recorded["val"])
    held_back = json.loads((run / runs.HELD_BACK).read_text())
    assert held_back["split"] == "val" and held_back["images"] == len(recorded["val"])


def _voc_masks() -> list[np.ndarray]:
    """Index masks 0..2 with a VOC-style 255 border (two pixels wide) around every object."""
    masks = []
    for i in range(6):
        index = _classes(i).clip(0, 2)
        border = cv2.dilate((index > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) - cv2.erode(
            (index > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
        index[border > 0] = 255
        masks.append(index)
    return masks


def test_a_voc_style_255_border_is_not_labelled_and_left_out_of_scores_and_training(tmp_path):
    from unet.training import train

    masks = _voc_masks()
    dataset, report = ingest(_write_pairs(tmp_path / "raw", masks), "voc", tmp_path / "datasets")
    assert dataset.num_classes == 3 and dataset.ignore_value == 255
    assert any("not labelled" in p.problem for p in report.problems)
    for stem, mask in zip(dataset.stems, masks, strict=True):
        assert np.array_equal(dataset.read_mask(stem), mask)  # 255 kept as "not labelled" in the stored mask
    assert dataset.classes[0].pixels == sum(int((m == 0).sum()) for m in masks)

    raw = json.loads(json.dumps(TINY_CONFIG))
    raw["train"]["epochs"] = 1
    run = tmp_path / "run"
    assert train(run, dataset.root, Config.from_dict(raw)) == 0
    history = runs.Run(run).read_history()
    assert np.isfinite(history[0]["loss"]) and np.isfinite(history[0]["val_loss"])
    result = evaluate(run, split="all")
    labelled = sum(int((m != 255).sum()) for m in masks)
    assert sum(row["support_pixels"] for row in result["per_class"]) == labelled
    assert "255 = not labelled" in ClassMap.from_records(
        json.loads((run / runs.TRAINING_DATA).read_text())["classes"], ignore=255).describe()


def test_unlabelled_pixels_count_for_no_class_in_the_loss_and_the_epoch_metrics():
    import tensorflow as tf

    from unet.metrics import confusion_counts, make_loss

    truth = np.array([[0, 1, 2, 255]], np.int32).reshape(1, 1, 4, 1)
    labelled_only = truth[:, :, :3]
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05]], np.float32)
    output = probs.reshape(1, 1, 4, 3)
    counts = confusion_counts(truth, np.argmax(output, -1)[..., None], 3).numpy()
    assert counts[:, :3].sum() == np.array(confusion_counts(labelled_only, np.argmax(output[:, :, :3], -1)[..., None],
                                                            3))[:, :3].sum()
    for kind in ("ce", "dice", "dice_ce", "focal"):
        loss = make_loss(kind, 3)
        with_void = float(loss(tf.constant(truth), tf.constant(output)))
        without = float(loss(tf.constant(labelled_only), tf.constant(output[:, :, :3])))
        assert with_void == pytest.approx(without, rel=1e-5), kind


def test_the_results_zip_holds_masks_in_the_users_values_and_as_class_numbers():
    import io as _io
    import zipfile

    from unet.postprocess import ImageResult, results_zip

    class_map = ClassMap.from_records([{"index": 0, "name": "membrane", "color": [0, 0, 0], "value": 0},
                                       {"index": 1, "name": "cell", "color": [255, 255, 255], "value": 255}])
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 1
    image = np.zeros((8, 8), np.uint8)
    data = results_zip([ImageResult("a.png", image, mask)], lambda m: (class_map.encode(m), class_map.palette()),
                       np.array([[0, 0, 0], [255, 0, 0]], np.uint8), ["membrane", "cell"])
    with zipfile.ZipFile(_io.BytesIO(data)) as archive:
        names = sorted(archive.namelist())
        values = np.array(Image.open(_io.BytesIO(archive.read("masks/a.png"))))
        indices = np.array(Image.open(_io.BytesIO(archive.read("class_indices/a.png"))))
    assert names == ["class_indices/a.png", "masks/a.png", "measurements.csv", "objects.csv", "overlays/a.png"]
    assert np.array_equal(values, mask * 255) and np.array_equal(indices, mask)
