"""Figures that say what their label says (issue #24): each reported number is recomputed here with plain NumPy
from what `predict` writes or from the files themselves, never with the product's own scorer.

Two tiny runs are trained by the command line once per module: a semantic run on 12-bit images (bright discs on a
dark background, 0/255 masks) and the instance run of `tests/test_instance_task.py` (touching squares, 16-bit ids).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.test_instance_task import SIDE, instance_source, instance_workspace  # noqa: F401 (fixtures)
from unet import images as image_io
from unet import metrics
from unet.dataset import ingest, inspect_source
from unet.evaluation import SWEEP, evaluate, evaluate_detailed
from unet.inference import Predictor, predict_folder
from unet.instances import boundary_targets

ROOT = Path(__file__).resolve().parents[1]
DISC_SIDE = 64
INSTANCE_RUN = "20260101-000000-nuclei"


def _discs(seed: int, background: int, foreground: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Three bright discs on a dark background with 5% noise, and their 0/255 mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:DISC_SIDE, :DISC_SIDE]
    mask = np.zeros((DISC_SIDE, DISC_SIDE), bool)
    for _ in range(3):
        cy, cx, r = rng.integers(12, 52), rng.integers(12, 52), rng.integers(6, 10)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    image = np.where(mask, foreground, background) + rng.normal(0, (foreground - background) * 0.05, mask.shape)
    image = np.clip(np.rint(image), 0, np.iinfo(dtype).max).astype(dtype)
    return image, np.where(mask, 255, 0).astype(np.uint8)


def _dice(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    total = truth.sum() + predicted.sum()
    return float(2 * (truth & predicted).sum() / total) if total else None


def _png_values(path: Path) -> np.ndarray:
    """A PNG's stored numbers (palette indices for a palette PNG), read by Pillow, not by the product."""
    return np.array(Image.open(path))


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory) -> Path:
    """A run trained on eight 12-bit images (discs at 3000 on 300, up to 4095), 0/255 masks."""
    root = tmp_path_factory.mktemp("deep")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i in range(8):
        image, mask = _discs(i, 300, 3000, np.uint16)
        image_io.write_png(root / "images" / f"d{i}.png", image)
        image_io.write_png(root / "masks" / f"d{i}.png", mask)
    config = root / "tiny.json"
    config.write_text(json.dumps({
        "data": {"input_size": DISC_SIDE}, "augment": {"enabled": False}, "model": {"depth": 2, "base_filters": 4},
        "train": {"epochs": 30, "batch_size": 4, "learning_rate": 0.01, "early_stopping_patience": 0,
                  "class_weights": True}}))  # once, unweighted, it never left "all background" in 30 epochs
    run = tmp_path_factory.mktemp("runs") / "deep"
    done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(root), "--out", str(run),
                           "--config", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    recorded = json.loads((run / "training_data.json").read_text())
    assert recorded["source_bits"] == 12 and recorded["intensity"]["kind"] == "percentile"
    return run


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """Data of another depth than the run's: an 8-bit image (discs at 188 on 19: the run's 3000 on 300 at 8 bits)
    and a 16-bit one with a hot spot at 20000, so the folder on its own is 15-bit."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    eight, eight_mask = _discs(100, 19, 188, np.uint8)
    deep, deep_mask = _discs(101, 300, 3000, np.uint16)
    deep[2:6, 2:6] = 20000
    for stem, image, mask in (("a", eight, eight_mask), ("b", deep, deep_mask)):
        image_io.write_png(root / "images" / f"{stem}.png", image)
        image_io.write_png(root / "masks" / f"{stem}.png", mask)
    return root


@pytest.fixture(scope="module")
def instance_run(instance_workspace) -> Path:  # noqa: F811 (the imported fixture)
    return instance_workspace / "runs" / INSTANCE_RUN


# ----------------------------------------------------------------------------------------------------------------
# 1. Evaluation data is read with the run's intensity rule, as `predict` reads it
# ----------------------------------------------------------------------------------------------------------------


def test_evaluate_scores_other_data_as_predict_segments_it(deep_run, mixed_folder, tmp_path):
    predicted = tmp_path / "predicted"
    predict_folder(deep_run, mixed_folder / "images", predicted, class_indices=True)
    expected = {}
    for stem in ("a", "b"):
        truth = _png_values(mixed_folder / "masks" / f"{stem}.png") == 255
        expected[stem] = (truth, _png_values(predicted / f"{stem}.png") == 1)
    result = evaluate(deep_run, mixed_folder)
    by_image = {row["image"]: row["dice"] for row in result["per_image"]}
    print({stem: (by_image[stem], _dice(*pair)) for stem, pair in expected.items()})
    for stem, (truth, mask) in expected.items():
        assert by_image[stem] == pytest.approx(_dice(truth, mask), abs=1e-12), stem
    pooled = _dice(np.concatenate([t.ravel() for t, _ in expected.values()]),
                   np.concatenate([m.ravel() for _, m in expected.values()]))
    assert result["dice"] == pytest.approx(pooled, abs=1e-12)
    assert by_image["a"] > 0.4  # the 8-bit image is segmented, not drowned in light


# ----------------------------------------------------------------------------------------------------------------
# 2. predict --class-indices / --classes write class numbers on a separate-objects run
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apart_images(tmp_path_factory) -> Path:
    """One image of three squares well apart (as the instance run's training squares look): three regions."""
    labels = np.zeros((SIDE, SIDE), np.uint16)
    labels[4:16, 4:16], labels[4:16, 30:42], labels[30:42, 16:28] = 1, 2, 3
    shades = np.array([30, 200, 110], np.uint8)
    image = shades[boundary_targets(labels)] + np.random.default_rng(9).integers(0, 10, labels.shape).astype(np.uint8)
    folder = tmp_path_factory.mktemp("apart")
    image_io.write_png(folder / "apart.png", image)
    return folder


@pytest.mark.parametrize("flag", ["--class-indices", "--classes"])
def test_predict_writes_the_class_mask_of_an_instance_run_when_asked(instance_run, apart_images, tmp_path, flag):
    from unet.cli import main

    out = tmp_path / "out"
    assert main(["predict", "--run", str(instance_run), "--images", str(apart_images), "--out", str(out), flag]) == 0
    written = _png_values(out / "apart.png")
    probability = Predictor.from_run(instance_run).predict(image_io.read_image(apart_images / "apart.png"))
    expected = (probability.probabilities[..., 0] > 0.5).astype(np.uint8)  # foreground over the threshold: class 1
    print(flag, "values written:", np.unique(written).tolist())
    assert set(np.unique(written).tolist()) <= {0, 1}
    assert np.array_equal(written, expected)


def test_predict_without_a_flag_still_writes_object_ids_on_an_instance_run(instance_run, apart_images, tmp_path):
    from unet.cli import main

    assert main(["predict", "--run", str(instance_run), "--images", str(apart_images), "--out", str(tmp_path)]) == 0
    ids = _png_values(tmp_path / "apart.png")
    assert np.unique(ids[ids > 0]).size >= 1  # one id per object (how many depends on the tiny model)
    with pytest.raises(SystemExit):
        main(["predict", "--run", str(instance_run), "--images", str(apart_images), "--out", str(tmp_path),
              "--labels", "--classes"])


# ----------------------------------------------------------------------------------------------------------------
# 3. One mask scored and written: the round trip of an instance run is exactly 1
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def handmade_instance_run(instance_run, tmp_path_factory) -> Path:
    """The instance run with a hand-made network in place of its trained one, so the answer is known: a pixel
    is background below gray 76, object interior above 178, object boundary in between (as the training squares
    are drawn: 30 outside, 200 inside, 110 at their edges). A smudge of 110 away from any square is then
    foreground without an interior: no object."""
    import keras

    from unet import preprocess

    run = tmp_path_factory.mktemp("handmade") / INSTANCE_RUN
    shutil.copytree(instance_run, run)
    predictor = Predictor.from_run(run)
    low, high = (float(np.asarray(preprocess.normalise(np.float32(v / 255), predictor.normalisation, predictor.mean,
                                                       predictor.std))) for v in (76, 178))
    k = 40.0 / (high - low)  # steep: nearly 0 or 1 away from the two cuts
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(3, 1, activation="softmax")])
    kernel = np.array([-k, k, 0.0], np.float32).reshape(1, 1, 1, 3)  # background, interior, boundary
    model.layers[-1].set_weights([kernel, np.array([k * low, -k * high, 0.0], np.float32)])
    model.save(run / "model.keras")
    return run


def test_an_instance_run_scores_its_own_label_files_as_perfect(handmade_instance_run, instance_source,  # noqa: F811
                                                               tmp_path):
    instance_run = handmade_instance_run
    truth = tmp_path / "truth"
    (truth / "images").mkdir(parents=True)
    for path in sorted((instance_source / "images").glob("*.png")):
        image = image_io.read_image(path).copy()
        image[40:44, 2:20] = 110  # an edge-coloured smudge below every square (they end by row 31)
        image_io.write_png(truth / "images" / path.name, image)
    written = predict_folder(instance_run, truth / "images", truth / "masks")
    (truth / "masks" / "objects.csv").unlink()
    ids = [_png_values(path) for path in written]
    assert all(len(np.unique(i[i > 0])) == 2 for i in ids)  # the two squares of every image, and nothing else
    predictor = Predictor.from_run(instance_run)
    unseeded = sum(int(((predictor.predict(image_io.read_image(truth / "images" / w.name)).probabilities[..., 0] > 0.5)
                        & (i == 0)).sum()) for w, i in zip(written, ids, strict=True))
    print("foreground pixels without an object:", unseeded)
    assert unseeded == 4 * 18 * len(written)  # the smudges: foreground that `predict` never writes
    result = evaluate(instance_run, truth)
    print("round trip: Dice", result["dice"], "AP@0.5", result["objects"]["ap50"])
    foreground = np.concatenate([(i > 0).ravel() for i in ids])
    assert result["per_class"][1]["support_pixels"] == int(foreground.sum())  # truth: predict's label files > 0
    assert result["per_class"][1]["predicted_pixels"] == int(foreground.sum())
    assert result["dice"] == 1.0 and result["iou"] == 1.0 and result["pixel_accuracy"] == 1.0
    assert result["objects"]["ap50"] == 1.0
    assert next(row for row in result["sweep"] if row["threshold"] == 0.5)["dice"] == 1.0


def test_the_sweep_of_an_instance_run_uses_the_foreground_of_its_object_ids_at_every_threshold():
    """The sweep labels seeded regions instead of running the watershed 19 times: the same pixels, checked on
    blurred random probabilities where many regions have no seed."""
    from scipy.ndimage import gaussian_filter

    from unet.evaluation import seeded_foreground
    from unet.inference import Prediction

    rng = np.random.default_rng(1)
    for _ in range(3):
        foreground, interior = (gaussian_filter(rng.random((128, 128)), 3) for _ in range(2))
        foreground = ((foreground - foreground.min()) / np.ptp(foreground)).astype(np.float32)
        interior = ((interior - interior.min()) / np.ptp(interior)).astype(np.float16)
        prediction = Prediction(foreground[..., None], 2, interior=interior)
        for t in SWEEP:
            assert np.array_equal(seeded_foreground(prediction, float(t)), prediction.labels(float(t)) > 0), t


# ----------------------------------------------------------------------------------------------------------------
# 4. The plain text of `evaluate`: notes as notes, no "= None", the object scores
# ----------------------------------------------------------------------------------------------------------------


def test_plain_text_evaluate_says_notes_and_object_scores(deep_run, mixed_folder, instance_run, instance_source,  # noqa: F811
                                                          capsys):
    from unet.cli import main

    assert main(["evaluate", "--run", str(deep_run), "--data", str(mixed_folder), "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--run", str(deep_run), "--data", str(mixed_folder)]) == 0
    text = capsys.readouterr().out
    with capsys.disabled():
        print(text)
    assert as_json["images"] == 2 and as_json["problems"]  # every image scored, and notes about the data
    assert all(p["skipped"] is False for p in as_json["problems"])
    assert "skipped" not in text and text.count("note on") == len(as_json["problems"])

    assert main(["evaluate", "--run", str(instance_run), "--data", str(instance_source), "--json"]) == 0
    objects = json.loads(capsys.readouterr().out)["objects"]
    assert main(["evaluate", "--run", str(instance_run), "--data", str(instance_source)]) == 0
    text = capsys.readouterr().out
    with capsys.disabled():
        print(text)
    assert "None" not in text and "class 1 (object)" in text
    at50 = next(row for row in objects["pooled"] if row["threshold"] == 0.5)
    tp, fp, fn = at50["tp"], at50["fp"], at50["fn"]
    figures = {"AP@0.5": tp / (tp + fp + fn), "F1": 2 * tp / (2 * tp + fp + fn), "precision": tp / (tp + fp),
               "recall": tp / (tp + fn)} if tp else {}
    line = next(line for line in text.splitlines() if line.startswith("objects"))
    assert "AP@0.5" in line and "precision" in line and "recall" in line
    for name, value in figures.items():
        assert f"{name} {value:.4f}" in line, (name, value, line)
    assert f"{objects['true_objects']} true, {objects['predicted_objects']} predicted" in line


# ----------------------------------------------------------------------------------------------------------------
# 5. A 0/128 truth mask for a 0/255 run is read as foreground with a note
# ----------------------------------------------------------------------------------------------------------------


def test_a_0_128_mask_for_a_0_255_run_is_read_as_foreground_with_a_note(deep_run, mixed_folder, tmp_path):
    half = tmp_path / "half"
    shutil.copytree(mixed_folder / "images", half / "images")
    (half / "masks").mkdir()
    truth = []
    for stem in ("a", "b"):
        mask = _png_values(mixed_folder / "masks" / f"{stem}.png")
        image_io.write_png(half / "masks" / f"{stem}.png", np.where(mask == 255, 128, 0).astype(np.uint8))
        truth.append(mask == 255)
    result = evaluate(deep_run, half)
    notes = [p for p in result["problems"] if "128" in p["problem"]]
    print(notes)
    assert len(notes) == 2 and all(not p["skipped"] for p in notes)  # one per mask, each scored
    assert all("read as 'foreground' (255)" in p["problem"] for p in notes)
    assert result["per_class"][1]["support_pixels"] == int(sum(t.sum() for t in truth))

    stored, _ = ingest(half, "half", tmp_path / "datasets")  # a stored 0/128 dataset: the same reading and note
    again = evaluate(deep_run, stored.root)
    assert again["per_class"][1]["support_pixels"] == int(sum(t.sum() for t in truth))
    assert any("128" in p["problem"] and not p["skipped"] for p in again["problems"])


# ----------------------------------------------------------------------------------------------------------------
# 6. The threshold sweep is scored by unet.metrics
# ----------------------------------------------------------------------------------------------------------------


def test_the_threshold_sweep_is_scored_by_unet_metrics(deep_run, mixed_folder, monkeypatch):
    calls = []
    real = metrics.dice_iou

    def spy(counts):
        calls.append(np.asarray(counts).shape)
        return real(counts)

    monkeypatch.setattr(metrics, "dice_iou", spy)
    result = evaluate_detailed(deep_run, mixed_folder, gallery=0)
    assert (len(SWEEP), 4) in calls  # the sweep's Dice and IoU come from the one formula

    predictor = Predictor.from_run(deep_run)
    probabilities = np.concatenate([predictor.predict(image_io.read_image(mixed_folder / "images" / f"{s}.png"))
                                    .probabilities[..., 0].ravel() for s in ("a", "b")])
    truth = np.concatenate([(_png_values(mixed_folder / "masks" / f"{s}.png") == 255).ravel() for s in ("a", "b")])
    for row in result.sweep:
        assert row["dice"] == pytest.approx(_dice(truth, probabilities > row["threshold"]), abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# 7. NaN and infinite values of a float TIFF are named, left out of the rule, and made finite
# ----------------------------------------------------------------------------------------------------------------


def _float_folder(root: Path) -> tuple[Path, list[np.ndarray]]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    images = []
    for i in range(4):
        rng = np.random.default_rng(i)
        image = rng.normal(100.0 * (i + 1), 20.0, (32, 32)).astype(np.float32)
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8:20] = 255
        if i == 1:  # a saturated and a masked-out corner, as instruments write them
            image[0, :3] = np.nan
            image[1, :2] = np.inf
            image[2, 0] = -np.inf
        tifffile.imwrite(root / "images" / f"f{i}.tif", image)
        image_io.write_png(root / "masks" / f"f{i}.png", mask)
        images.append(image)
    return root, images


def test_non_finite_pixels_are_named_left_out_of_the_rule_and_made_finite(tmp_path):
    source, images = _float_folder(tmp_path / "float")
    report = inspect_source(source)
    print(report.intensity, [p.to_dict() for p in report.problems])
    assert report.pairs == 4 and "nan" not in report.intensity.lower()
    note = next(p for p in report.problems if "f1.tif" in p.file)
    assert not note.skipped and "3 NaN and 3 infinite pixels (of 1024)" in note.problem

    finite = np.concatenate([image[np.isfinite(image)] for image in images]).astype(np.float64)
    low, high = np.percentile(finite, [1.0, 99.8])
    dataset, _ = ingest(source, "float", tmp_path / "datasets")
    assert dataset.rule.low[0] == pytest.approx(low, rel=1e-9) and dataset.rule.high[0] == pytest.approx(high, rel=1e-9)
    stored = dataset.read_image("f1")
    kept = images[1][np.isfinite(images[1])]
    assert np.isfinite(stored).all()
    assert (stored[0, :3] == kept.min()).all() and stored[2, 0] == kept.min()  # NaN and -inf: the lowest value
    assert (stored[1, :2] == kept.max()).all()  # +inf: the highest
    assert f"{kept.min():.6g}" in note.problem and f"{kept.max():.6g}" in note.problem
    assert np.isfinite(dataset.mean) and np.isfinite(dataset.std)


def test_a_float_image_without_any_finite_value_is_left_out_with_the_reason(tmp_path):
    source, _ = _float_folder(tmp_path / "float")
    tifffile.imwrite(source / "images" / "f3.tif", np.full((32, 32), np.nan, np.float32))
    report = inspect_source(source)
    assert report.pairs == 3
    refused = next(p for p in report.problems if "f3.tif" in p.file)
    assert refused.skipped and "NaN or infinite" in refused.problem


# ----------------------------------------------------------------------------------------------------------------
# 8. Object ids or classes: decided over the whole dataset, or as the user says
# ----------------------------------------------------------------------------------------------------------------


def _biapy(root: Path, split_image: int = 2) -> tuple[Path, list[np.ndarray]]:
    """A BiaPy layout (x/, y/): 16-bit labels of 10 discs per image; in one image every disc is cut in two by a
    one-pixel gap, so each of its ids is two separate regions."""
    (root / "x").mkdir(parents=True)
    (root / "y").mkdir()
    yy, xx = np.mgrid[:96, :96]
    labels_of = []
    for i in range(4):
        labels = np.zeros((96, 96), np.uint16)
        for n in range(10):
            cy, cx = 14 + 22 * (n // 4), 12 + 23 * (n % 4)
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 64] = n + 1  # ids 1..10 in every image, as tools write them
        if i == split_image:
            labels[:, 12::23] = 0  # a gap through the middle of every disc
        image = np.where(labels > 0, 180, 40).astype(np.uint8)
        image_io.write_png(root / "x" / f"img{i}.png", image)
        image_io.write_png(root / "y" / f"img{i}.png", labels)
        labels_of.append(labels)
    return root, labels_of


def test_instance_masks_with_split_ids_are_decided_over_the_whole_dataset(tmp_path):
    from skimage.measure import label

    source, labels_of = _biapy(tmp_path / "biapy")
    split = labels_of[2]
    assert label(split, connectivity=1).max() == 20 and np.unique(split[split > 0]).size == 10
    report = inspect_source(source)
    print(report.summary())
    assert report.layout == "BiaPy (x / y)" and report.mask_kind == "instances"
    assert [c["name"] for c in report.classes] == ["background", "object"]
    expected = {f"y/img{i}.png": int(np.unique(labels[labels > 0]).size) for i, labels in enumerate(labels_of)}
    assert report.objects == expected  # 10 ids each, the split image included
    assert any("several separate places" in p.problem and not p.skipped for p in report.problems)


def test_the_user_says_whether_masks_are_object_ids_or_classes(tmp_path, capsys):
    from unet.cli import main

    source, labels_of = _biapy(tmp_path / "biapy")
    as_classes = inspect_source(source, masks="classes")
    values = np.unique(np.concatenate([labels.ravel() for labels in labels_of]))
    assert as_classes.mask_kind == "index" and len(as_classes.classes) == len(values) == 11  # 0 and the ids 1..10
    assert [c["value"] for c in as_classes.classes] == values.tolist()
    assert inspect_source(source, masks="ids").mask_kind == "instances"

    assert main(["inspect", str(source), "--masks", "classes", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["classes"]) == len(values)
    dataset, _ = ingest(source, "ids", tmp_path / "datasets", masks="ids")
    assert dataset.instances and dataset.objects == {f"img{i}": 10 for i in range(4)}

    semantic, _ = _biapy(tmp_path / "few", split_image=-1)  # a dataset the check reads as ids can be classes
    assert inspect_source(semantic).mask_kind == "instances"
    assert inspect_source(semantic, masks="classes").mask_kind == "index"
    with pytest.raises(SystemExit):
        main(["inspect", str(source), "--masks", "objects"])
    from unet.cli import MASK_READINGS
    from unet.masks import MASK_READINGS as CORE_READINGS

    assert MASK_READINGS == CORE_READINGS  # the parser's choices are the core's
    assert main(["train", "--data", str(dataset.root), "--out", str(tmp_path / "run"), "--masks", "classes"]) == 2
    assert "stored dataset" in capsys.readouterr().err
    from unet.training import load_data  # what `train --masks classes` stores from raw data before training

    stored = load_data(source, tmp_path / "run", reuse=False, masks="classes")
    assert stored.num_classes == 11 and not stored.instances
