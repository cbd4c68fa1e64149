"""Prediction at any size, safe model loading, clean-up, overlays, measurements and the predict command.

Models are tiny (depth 2, 4 base filters) and untrained: these tests check shapes, plumbing and safety, not
quality.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from unet import metrics, postprocess, tiling
from unet.config import Config, DataConfig, ModelConfig
from unet.errors import UserError
from unet.images import write_png
from unet.inference import Prediction, Predictor, load_model_file, predict_folder
from unet.model import build_unet
from unet.overlay import class_colors, overlay

TILED_ATOL = 1e-4  # float32 convolutions of different shapes may round differently in the last bits

CLASSES = [
    {"index": 0, "name": "background", "color": [0, 0, 0]},
    {"index": 1, "name": "nucleus", "color": [255, 0, 0]},
    {"index": 2, "name": "=cell", "color": [0, 255, 0]},
]


def tiny_config(channels: int = 1, num_classes: int = 2, resize: str = "crop", normalisation: str = "unit") -> Config:
    return Config(
        data=DataConfig(input_size=32, channels=channels, resize=resize, normalisation=normalisation),
        model=ModelConfig(depth=2, base_filters=4, num_classes=num_classes),
    )


def make_run(root: Path, name: str, **kwargs) -> Path:
    """A run folder as the trainer leaves it: config.json, dataset.json, model.keras (untrained)."""
    config = tiny_config(**kwargs)
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(config.to_json())
    k = config.model.num_classes
    (run / "dataset.json").write_text(json.dumps({"classes": CLASSES[:k], "mean": 0.4, "std": 0.2,
                                                  "channels": config.data.channels}))
    keras.utils.set_random_seed(1)
    build_unet(config).save(run / "model.keras")
    return run


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def gray_run(runs_root) -> Path:
    return make_run(runs_root, "gray", channels=1)


@pytest.fixture(scope="module")
def gray(gray_run) -> Predictor:
    return Predictor.from_run(gray_run)


@pytest.fixture(scope="module")
def rgb(runs_root) -> Predictor:
    return Predictor.from_run(make_run(runs_root, "rgb", channels=3, num_classes=3, normalisation="standard"))


def noise(height: int, width: int, channels: int | None = None, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels is None else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(37, 513), (513, 37), (64, 64), (8, 9)])
def test_mask_has_the_image_size_for_odd_sizes(gray, height, width):
    prediction = gray.predict(noise(height, width))
    mask = prediction.mask()
    assert prediction.shape == (height, width) and mask.shape == (height, width) and mask.dtype == np.uint8


def test_large_image_is_tiled_and_keeps_its_size(rgb):
    prediction = rgb.predict(noise(1500, 2000, 3))
    assert prediction.probabilities.shape == (1500, 2000, 3)
    assert any("tiles" in note for note in prediction.notes)
    assert np.allclose(prediction.probabilities.astype(np.float32).sum(-1), 1.0, atol=1e-2)  # blended softmax


@pytest.mark.parametrize("shape, message", [((1, 1), "at least"), ((0, 0), "empty"), ((0, 40), "empty"),
                                            ((40, 40, 2), "2 channels but the model takes 1")])
def test_tiny_empty_and_odd_arrays_are_refused_clearly(gray, shape, message):
    with pytest.raises(UserError, match=message):
        gray.predict(np.zeros(shape, np.uint8))


def test_resize_runs_predict_at_the_training_scale_and_return_the_image_size(runs_root):
    predictor = Predictor.from_run(make_run(runs_root, "resized", resize="resize"))
    assert predictor.resize_to == 32
    prediction = predictor.predict(noise(300, 75))
    assert prediction.shape == (300, 75) and any("resized to 32x32," in n for n in prediction.notes)


def test_tiled_prediction_equals_whole_image_prediction_away_from_seams(gray):
    """Outside the overlap bands one tile gives a pixel its value, and that pixel is at least `overlap` (64 px)
    from the tile's inner edges, more than the receptive field's half (28 px for this model): the tile sees exactly
    what the whole image shows there, and its pooling grid lines up, so the values must agree."""
    image = noise(200, 300, 1, seed=3)
    whole = tiling.predict_whole(gray._predict_raw, image, gray.multiple)
    tiled = tiling.predict_tiles(gray._predict_raw, image, gray.multiple, tile=128, overlap=64, batch=3)
    grid = tiling.TileGrid(200, 300, gray.multiple, tile=128, overlap=64)
    assert len(grid) > 4
    single = np.zeros(grid.padded, int)
    for top, left in grid.corners():
        single[top : top + 128, left : left + 128] += 1
    away = single[:200, :300] == 1
    assert away.mean() > 0.1
    assert np.abs(tiled - whole)[away].max() < TILED_ATOL
    assert np.abs(tiled - whole).max() < 0.5  # seams are blended, not arbitrary


def test_blending_weights_sum_to_one_on_a_regular_grid_and_never_vanish():
    def coverage(side: int) -> np.ndarray:
        grid = tiling.TileGrid(side, side, 4, tile=128, overlap=32)
        total = np.zeros(grid.padded, np.float32)
        for top, left in grid.corners():
            total[top : top + 128, left : left + 128] += grid.weights(top, left)
        return total

    assert np.allclose(coverage(320), 1.0, atol=1e-6)  # tiles every 96 px: the ramps are a partition of unity
    assert coverage(301).min() > 0.5  # the last tile overlaps more: weights stay well above zero


# ----------------------------------------------------------------------------------------------------------------
# Channels
# ----------------------------------------------------------------------------------------------------------------


def test_grayscale_image_into_an_rgb_model_is_repeated_with_a_note(rgb):
    prediction = rgb.predict(noise(40, 50))
    assert prediction.shape == (40, 50)
    assert any("repeated into 3 channels" in n for n in prediction.notes)


def test_colour_image_into_a_grayscale_model_uses_luminance_with_a_note(gray):
    prediction = gray.predict(noise(40, 50, 3))
    assert prediction.shape == (40, 50)
    assert any("luminance" in n for n in prediction.notes)


def test_sixteen_bit_and_rgba_images_are_converted_with_notes(gray):
    prediction = gray.predict(np.full((40, 40, 4), 4095, np.uint16))
    assert any("alpha" in n for n in prediction.notes) and any("8 bits" in n for n in prediction.notes)


def test_run_settings_reach_the_predictor(rgb):
    assert (rgb.channels, rgb.num_classes, rgb.depth, rgb.normalisation) == (3, 3, 2, "standard")
    assert (rgb.mean, rgb.std) == (0.4, 0.2)
    assert rgb.class_names == ("background", "nucleus", "=cell")
    assert rgb.colors[1].tolist() == [255, 0, 0]


# ----------------------------------------------------------------------------------------------------------------
# Loading safely
# ----------------------------------------------------------------------------------------------------------------

MARKER = ""  # where the named function below writes


def _write_marker(x):
    Path(MARKER).write_text("code from the model file ran")
    return x


@pytest.mark.parametrize("kind", ["lambda", "named function"])
def test_model_with_a_lambda_layer_is_refused_and_its_code_never_runs(tmp_path, kind):
    global MARKER
    MARKER = marker = str(tmp_path / "marker.txt")
    function = (lambda x: (open(marker, "w").write("ran"), x)[1]) if kind == "lambda" else _write_marker  # noqa: SIM115
    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(keras.layers.Lambda(function)(inputs))
    path = tmp_path / "x.keras"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that a lambda is unsafe to save: that is the point
        keras.Model(inputs, outputs).save(path)
    assert Path(marker).exists()  # building the model ran the function once, symbolically
    Path(marker).unlink()
    with pytest.raises(UserError, match=r"'x.keras' contains custom code \(a Lambda layer\) and was not loaded"):
        Predictor.from_file(path)
    assert not Path(marker).exists()


@pytest.mark.parametrize("name, content", [
    ("random.keras", np.random.default_rng(0).bytes(5000)),
    ("notes.keras", b"this is a text file, not a model\n"),
    ("empty.keras", b""),
])
def test_files_that_are_not_models_are_refused_plainly(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"'{name}' is not a Keras model file"):
        load_model_file(path)


def test_zip_without_a_model_description_is_refused(tmp_path):
    path = tmp_path / "archive.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(UserError, match="no model description"):
        load_model_file(path)


@pytest.mark.parametrize("name", ["model.h5", "model.keras.zip", "model"])
def test_only_keras_files_are_accepted(tmp_path, gray_run, name):
    path = tmp_path / name
    path.write_bytes((gray_run / "model.keras").read_bytes())
    with pytest.raises(UserError, match="only the .keras format"):
        load_model_file(path)


def test_uploaded_model_infers_channels_classes_and_depth(gray_run):
    predictor = Predictor.from_file(gray_run / "model.keras", name="upload.keras")
    assert (predictor.channels, predictor.num_classes, predictor.multiple, predictor.normalisation) == (1, 2, 4, "unit")
    assert predictor.class_names == ("background", "class 1")
    assert predictor.predict(noise(37, 41)).shape == (37, 41)


# ----------------------------------------------------------------------------------------------------------------
# Masks, clean-up, overlays, measurements
# ----------------------------------------------------------------------------------------------------------------


def ramp_prediction() -> Prediction:
    probs = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (32, 1))[:, :, None]
    return Prediction(probs, num_classes=2)


def test_threshold_and_opacity_change_the_overlay():
    prediction, image, colors = ramp_prediction(), noise(32, 64), class_colors(2)
    low, high = prediction.mask(threshold=0.3), prediction.mask(threshold=0.7)
    assert low.sum() > high.sum() > 0
    assert not np.array_equal(overlay(image, low, colors), overlay(image, high, colors))
    faint = overlay(image, low, colors, opacity=0.2)
    strong = overlay(image, low, colors, opacity=0.8)
    assert not np.array_equal(faint, strong)
    picture = postprocess.side_by_side(image, low, colors, contours=True)
    assert picture.shape == (32, 192, 3)


def test_multi_class_masks_are_the_most_probable_class():
    probs = np.zeros((4, 4, 3), np.float16)
    probs[..., 0], probs[:2, :, 2], probs[2:, :, 1] = 0.2, 0.7, 0.5
    assert Prediction(probs, 3).mask(threshold=0.99).tolist() == [[2] * 4] * 2 + [[1] * 4] * 2


def test_min_size_removes_small_objects_per_class():
    mask = np.zeros((40, 40), np.uint8)
    mask[2:4, 2:4] = 1  # 4 pixels
    mask[10:20, 10:20] = 1  # 100 pixels
    mask[30:32, 30:33] = 2  # 6 pixels
    cleaned = postprocess.remove_small_objects(mask, min_size=5)
    assert cleaned[2:4, 2:4].sum() == 0 and (cleaned[10:20, 10:20] == 1).all() and (cleaned[30:32, 30:33] == 2).all()
    probs = (mask == 1).astype(np.float32)[:, :, None]
    assert Prediction(probs, 2).mask(min_size=50).sum() == 100


def test_fill_holes_fills_a_ring_but_not_an_open_shape_or_another_class():
    mask = np.zeros((40, 40), np.uint8)
    cv2.circle(mask, (12, 12), 8, 1, thickness=2)  # a closed ring
    mask[12, 12] = 2  # another class inside it
    mask[30:38, 30] = 1  # an open line touching nothing
    filled = postprocess.fill_holes(mask)
    assert filled[10, 12] == 1 and filled[12, 12] == 2
    assert filled[30:38, 31].sum() == 0
    assert (filled > 0).sum() > (mask > 0).sum() + 100


def test_measurements_count_objects_and_areas():
    mask = np.zeros((100, 100), np.uint8)
    mask[0:10, 0:10] = 1
    mask[20:30, 20:30] = 1
    mask[30:40, 30:40] = 1  # touches the previous square at a corner: one 8-connected object
    mask[50:60, 50:60] = 2
    rows = postprocess.measure(mask, ["background", "nucleus", "=cell"], image="a.png")
    assert [(r["class"], r["pixels"], r["percent"], r["objects"]) for r in rows] == [(1, 300, 3.0, 2), (2, 100, 1.0, 1)]
    text = postprocess.measurements_csv(rows)
    assert text.splitlines()[0] == "image,class,name,pixels,percent,objects"
    assert "a.png,2,'=cell,100,1.0,1" in text  # a spreadsheet formula is defused


def test_ground_truth_comparison_colours_and_scores():
    image = np.full((10, 10), 128, np.uint8)
    truth = np.zeros((10, 10), np.uint8)
    truth[:, :5] = 1
    mask = np.zeros((10, 10), np.uint8)
    mask[:, 2:7] = 1
    picture = postprocess.error_overlay(image, mask, truth, opacity=1.0)
    assert picture[0, 3].tolist() == list(postprocess.TRUE_POSITIVE)
    assert picture[0, 6].tolist() == list(postprocess.FALSE_POSITIVE)
    assert picture[0, 0].tolist() == list(postprocess.FALSE_NEGATIVE)
    assert picture[0, 9].tolist() == [128, 128, 128]
    row = postprocess.scores(mask, truth, ["background", "fg"])[0]
    counts = metrics.confusion_counts(truth, mask, 2)
    assert row["dice"] == pytest.approx(float(metrics.dice_from_counts(counts)[1]))
    assert row["iou"] == pytest.approx(float(metrics.iou_from_counts(counts)[1])) == pytest.approx(30 / 70)
    with pytest.raises(UserError, match="ground-truth mask is 5x10"):
        postprocess.scores(mask, truth[:, :5], ["background", "fg"])


def test_zip_results_packs_masks_overlays_and_csv():
    mask = np.zeros((8, 8), np.uint8)
    items = postprocess.result_items("a", noise(8, 8), mask, class_colors(2))
    items += [("masks/a.png", mask), ("../measurements.csv", "image\n")]
    with zipfile.ZipFile(io.BytesIO(postprocess.zip_results(items))) as z:
        assert sorted(z.namelist()) == ["masks/a-2.png", "masks/a.png", "measurements.csv", "overlays/a.png"]
        decoded = cv2.imdecode(np.frombuffer(z.read("masks/a.png"), np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded.shape == (8, 8)


# ----------------------------------------------------------------------------------------------------------------
# The predict command
# ----------------------------------------------------------------------------------------------------------------


def test_predict_folder_writes_masks_named_and_sized_like_the_images(tmp_path, gray_run):
    images = tmp_path / "images"
    images.mkdir()
    write_png(images / "first.png", noise(37, 51))
    ok, jpeg = cv2.imencode(".jpg", noise(70, 45, 3))
    (images / "second.jpg").write_bytes(jpeg.tobytes())
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (images / "notes.txt").write_text("not an image")
    problems = []
    written = predict_folder(gray_run, images, tmp_path / "out", threshold=0.5,
                             report=lambda name, problem: problems.append(name))
    assert [p.name for p in written] == ["first.png", "second.png"]
    sizes = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[:2] for p in written]
    assert sizes == [(37, 51), (70, 45)]
    assert sorted(problems) == ["broken.png", "notes.txt"]


def test_predict_folder_needs_a_model_and_a_separate_output(tmp_path, gray_run):
    images = tmp_path / "images"
    images.mkdir()
    write_png(images / "a.png", noise(16, 16))
    with pytest.raises(UserError, match="--run"):
        predict_folder(None, images, tmp_path / "out")
    with pytest.raises(UserError, match="another folder"):
        predict_folder(gray_run, images, images)


def _resize_run_with_scale(root: Path, name: str, train_size: int) -> Path:
    run = make_run(root, name, resize="resize")
    recorded = json.loads((run / "dataset.json").read_text())
    recorded.update(train_image_size=[train_size, train_size], resize_scale=[32 / train_size, 32 / train_size])
    (run / "dataset.json").write_text(json.dumps(recorded))
    return run


def test_a_resize_run_scales_new_images_by_its_training_factor_not_to_its_input_square(runs_root):
    """A 4x larger image is scaled by the training factor (128 -> 32 means x0.25), so a 512x512 image is seen at
    128x128, not squashed to 32x32 (issue #13)."""
    predictor = Predictor.from_run(_resize_run_with_scale(runs_root, "scaled", train_size=128))
    assert predictor.train_scale == (0.25, 0.25)
    big = predictor.predict(noise(512, 512))
    assert big.shape == (512, 512) and any("to 128x128" in n for n in big.notes)
    assert any("training images were 128x128" in n for n in big.notes)  # 4x their size: said
    same = predictor.predict(noise(128, 128))
    assert not any("training images were" in n for n in same.notes)


def test_an_image_of_the_training_size_is_predicted_exactly_as_training_saw_it(runs_root):
    """At the training size the factor gives the input square: the same probabilities as the stretch of old."""
    scaled = Predictor.from_run(_resize_run_with_scale(runs_root, "scaled-same", train_size=128))
    legacy = Predictor.from_run(make_run(runs_root, "legacy-same", resize="resize"))
    image = noise(128, 128)
    np.testing.assert_allclose(scaled.predict(image).probabilities, legacy.predict(image).probabilities, atol=2e-3)


def _local_threshold_run(root: Path, name: str) -> Path:
    """A resize run trained on 64x64 images at input 32 whose network only looks at each pixel's 3x3
    neighbourhood (bright = foreground), so a mosaic's quarters can be compared with the images alone."""
    run = _resize_run_with_scale(root, name, train_size=64)
    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", kernel_initializer="ones",
                                  bias_initializer=keras.initializers.Constant(-4.5))(inputs)
    keras.Model(inputs, outputs).save(run / "model.keras")
    return run


def _blobs(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size), np.uint8)
    for _ in range(6):
        cv2.circle(image, tuple(int(v) for v in rng.integers(6, size - 6, 2)), int(rng.integers(3, 9)), 255, -1)
    return image


def test_a_mosaic_of_four_images_is_segmented_like_each_image_alone(runs_root):
    """Issue #13: a 2x2 mosaic (4x the pixels of a training image) gives on each quarter the mask of that image
    predicted alone, because both are seen at the training scale; squashing the mosaic into the input square,
    as before, does not."""
    predictor = Predictor.from_run(_local_threshold_run(runs_root, "mosaic"))
    tiles = [_blobs(i) for i in range(4)]
    mosaic = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]])

    def quarter_dice(pred: Predictor) -> list[float]:
        whole = pred.predict(mosaic).mask(0.5)
        scores = []
        for tile, (y, x) in zip(tiles, [(0, 0), (0, 64), (64, 0), (64, 64)], strict=True):
            own, part = pred.predict(tile).mask(0.5) > 0, whole[y : y + 64, x : x + 64] > 0
            scores.append(2 * (own & part).sum() / (own.sum() + part.sum()))
        return scores

    scaled = quarter_dice(predictor)
    assert min(scaled) >= 0.95, scaled
    predictor.train_scale = None  # the old behaviour: every image stretched to the 32x32 input
    assert max(quarter_dice(predictor)) < 0.95  # measured 0.72-0.86: the quarters lose detail


def _reference_tiles(predict, image: np.ndarray, multiple: int, tile: int, overlap: int) -> np.ndarray:
    """Blended tiles as predict_tiles computed them before issue #24: the image padded whole, a weight image."""
    grid = tiling.TileGrid(image.shape[0], image.shape[1], multiple, tile, overlap)
    pad = [(0, grid.padded[0] - image.shape[0]), (0, grid.padded[1] - image.shape[1])] + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image, pad, mode="symmetric")
    th, tw = grid.tile
    total, weight = None, np.zeros(grid.padded, np.float32)
    for top, left in grid.corners():
        p = predict(padded[None, top : top + th, left : left + tw])[0]
        total = np.zeros((*grid.padded, p.shape[-1]), np.float32) if total is None else total
        total[top : top + th, left : left + tw] += p * grid.weights(top, left)[:, :, None]
        weight[top : top + th, left : left + tw] += grid.weights(top, left)
    return total[: image.shape[0], : image.shape[1]] / weight[: image.shape[0], : image.shape[1], None]


@pytest.mark.parametrize("shape", [(200, 300, 1), (131, 517, 2), (64, 64, 1)])
def test_tiles_blend_as_before_without_a_padded_copy_or_a_weight_image(shape):
    def predict(tiles: np.ndarray) -> np.ndarray:  # position-dependent, so a misplaced tile shows
        rows = np.arange(tiles.shape[1])[None, :, None, None]
        return np.concatenate([tiles * 0.5 + rows / 1000, tiles[..., :1] ** 2], axis=-1).astype(np.float32)

    image = noise(*shape, seed=4).astype(np.float32) / 255
    calls = []
    found = tiling.predict_tiles(predict, image, 4, tile=96, overlap=32, batch=3,
                                 progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(found, _reference_tiles(predict, image, 4, 96, 32), rtol=1e-5, atol=1e-6)
    grid = tiling.TileGrid(shape[0], shape[1], 4, 96, 32)
    assert calls[-1] == (len(grid), len(grid)) and len(calls) == -(-len(grid) // 3)


def test_mirrored_tiles_match_numpys_symmetric_padding_for_any_width():
    image = np.arange(5 * 3).reshape(5, 3)
    padded = np.pad(image, [(0, 14), (0, 9)], mode="symmetric")
    assert np.array_equal(tiling.window(image, 0, 0, 19, 12), padded)
    assert np.array_equal(tiling.window(image, 2, 1, 10, 7), padded[2:12, 1:8])


def test_an_instance_prediction_reports_its_progress_and_keeps_two_maps(runs_root, monkeypatch):
    from dataclasses import replace

    three = Predictor.from_run(make_run(runs_root, "three-classes", channels=1, num_classes=3))
    objects = replace(three, task="instances", num_classes=2, tile=64, overlap=16)
    monkeypatch.setattr(tiling, "WHOLE_IMAGE_PIXELS", 10_000)
    seen = []
    prediction = objects.predict(noise(300, 200), progress=lambda done, total: seen.append((done, total)))
    assert prediction.separates_objects and prediction.probabilities.shape == (300, 200, 1)
    assert prediction.interior.shape == (300, 200)
    assert seen[-1] == (1, 1) and len(seen) > 2, "every batch of tiles, then done"
