"""Classes as the user means them (issue #25): value 0 is not background unless the data or the user says so, and
values that mean "not labelled" are left out of the classes, the loss and every score.

The data is street-like: value 0 ("sky") is a real class covering the top of each image, 1 and 2 are two more
classes, and 7 marks pixels nobody labelled. Scores are recomputed in the test with plain NumPy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from unet.dataset import Dataset, ValueChoices, ingest, inspect_source
from unet.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
VOID = 7


def _street(folder: Path, count: int = 8, size: int = 64) -> Path:
    rng = np.random.default_rng(5)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(count):
        mask = np.full((size, size), 1, np.uint8)  # "road", the most common value
        mask[: size // 4] = 0  # "sky": a real class at the top
        top = int(rng.integers(size // 2, size - 12))
        mask[top : top + 10, 10:40] = 2  # "car"
        mask[size // 4 : size // 4 + 3] = VOID  # nobody labelled this band
        image = np.choose(np.minimum(mask, 3), [200, 90, 30, 128]).astype(np.uint8)
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / "images" / f"s{i}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"s{i}.png"), mask)
    return folder


def test_value_0_is_a_class_when_it_is_not_the_most_common_and_the_void_value_is_not_a_class(tmp_path):
    raw = _street(tmp_path / "raw")
    dataset, report = ingest(raw, "street", tmp_path / "ds", values=ValueChoices.parse("auto", [VOID]))
    assert dataset.background is None and dataset.class_map.first_scored == 0
    assert [c.value for c in dataset.classes] == [0, 1, 2]  # 7 is not a class
    assert dataset.ignore_values == (VOID,)
    words = " ".join(p["problem"] for p in dataset.problems) + report.summary()
    assert "no value is the background" in words and "not labelled" in words
    stored = dataset.read_mask("s0")
    raw_mask = cv2.imread(str(raw / "masks" / "s0.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(stored == 255, raw_mask == VOID)  # "not labelled" kept as such
    assert [c.pixels for c in dataset.classes] == [
        sum(int((cv2.imread(str(f), cv2.IMREAD_UNCHANGED) == v).sum()) for f in (raw / "masks").glob("*.png"))
        for v in (0, 1, 2)]


def test_the_user_names_the_background_and_it_becomes_class_0(tmp_path):
    raw = _street(tmp_path / "raw")
    dataset, _ = ingest(raw, "street", tmp_path / "ds", values=ValueChoices.parse("1", [VOID]))
    assert dataset.background == 0 and [c.value for c in dataset.classes] == [1, 0, 2]
    assert dataset.classes[0].name == "background"
    with pytest.raises(UserError, match="background value 9 is not one of the mask values"):
        ingest(raw, "street-9", tmp_path / "ds", values=ValueChoices.parse("9", [VOID]))
    with pytest.raises(UserError, match="whole number"):
        ValueChoices.parse("sky")


def test_a_dark_field_keeps_0_as_background(tmp_path):
    from unet.demo import write_demo_dataset

    dataset, _ = ingest(write_demo_dataset(tmp_path / "cells", "cells", count=4, size=48), "cells", tmp_path / "ds")
    assert dataset.background == 0 and dataset.class_map.first_scored == 1


def test_inspect_says_it_on_the_command_line(tmp_path):
    raw = _street(tmp_path / "raw")
    done = subprocess.run([sys.executable, "-m", "unet", "inspect", str(raw), "--ignore-value", str(VOID),
                           "--background", "none"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 classes" in done.stdout and "not labelled" in done.stdout
    report = inspect_source(raw, values=ValueChoices.parse("none", [VOID]))
    assert [c["value"] for c in report.classes] == [0, 1, 2]


def _independent_scores(truth: np.ndarray, predicted: np.ndarray, classes: int) -> tuple[list[float], float]:
    """Per-class IoU over the labelled pixels (truth < classes) and their mean over every class."""
    keep = truth < classes
    t, p = truth[keep], predicted[keep]
    ious = []
    for k in range(classes):
        union = np.logical_or(t == k, p == k).sum()
        ious.append(float(np.logical_and(t == k, p == k).sum() / union) if union else float("nan"))
    scored = [v for v in ious if v == v]
    return ious, float(np.mean(scored))


def test_training_and_evaluation_average_every_class_and_leave_void_out(tmp_path, monkeypatch):
    raw = _street(tmp_path / "raw", count=6)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"data": {"input_size": 64}, "augment": {"enabled": False},
                                  "model": {"depth": 2, "base_filters": 4}, "train": {"epochs": 3, "batch_size": 2}}))
    run = tmp_path / "workspace" / "runs" / "20260101-000000-street"
    done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(raw), "--out", str(run), "--config",
                           str(config), "--ignore-value", str(VOID)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = json.loads((run / "training_data.json").read_text())
    assert recorded["background"] is None and recorded["ignore_values"] == [VOID]
    scored = subprocess.run([sys.executable, "-m", "unet", "evaluate", "--run", str(run), "--data", str(raw),
                             "--split", "all", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-3000:]
    result = json.loads(scored.stdout)
    names = [row["name"] for row in result["per_class"]]
    assert len(names) == 3 and result["averaged_over"] == [n for n, row in zip(names, result["per_class"],
                                                                                strict=True) if row["iou"] is not None]
    # The same figures from the masks predict writes and the raw truth, in NumPy.
    out = tmp_path / "predicted"
    predicted = subprocess.run([sys.executable, "-m", "unet", "predict", "--run", str(run), "--images",
                                str(raw / "images"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                               timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    truth = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in sorted((raw / "masks").glob("*.png"))])
    from PIL import Image  # predict writes palette PNGs: their values are the indices, not the display colours

    guess = np.stack([np.asarray(Image.open(out / f.name)) for f in sorted((raw / "masks").glob("*.png"))])
    truth = np.where(truth == VOID, 255, truth)  # values 0, 1, 2 are the class indices here
    assert not np.isin(guess, [VOID]).any(), "a prediction never paints 'not labelled'"
    ious, mean = _independent_scores(truth, guess, 3)
    assert result["iou"] == pytest.approx(mean, abs=1e-9)
    assert [row["iou"] for row in result["per_class"]] == pytest.approx(
        [None if v != v else v for v in ious], abs=1e-9)

    # The Inference page can show class 0 ("sky"): with no background it is a class like any other.
    from tests.conftest import open_page

    at = open_page("pages/inference.py", tmp_path / "workspace", monkeypatch, run=run.name)
    uploader = next(u for u in at.file_uploader if u.label.startswith("Images"))
    uploader.upload("s0.png", (raw / "images" / "s0.png").read_bytes(), "image/png").run()
    assert not at.exception
    shown = next(m for m in at.multiselect if m.label == "Classes shown")
    assert shown.value == [0, 1, 2]


def test_a_stored_dataset_is_read_again_as_a_new_version_with_void_left_out(tmp_path):
    from unet import annotation

    raw = _street(tmp_path / "raw", count=3)
    dataset, _ = ingest(raw, "street", tmp_path / "ds")  # read as it came: 4 classes, 7 among them
    assert [c.value for c in dataset.classes] == [0, 1, 2, VOID] and dataset.background is None
    void = next(c.index for c in dataset.classes if c.value == VOID)
    before = {p.name: p.read_bytes() for p in (dataset.root / "masks").glob("*.png")}
    version = annotation.reread_values(dataset, None, [void])  # one click: "7 is not labelled"
    assert version.name == "street-v2" and [c.value for c in version.classes] == [0, 1, 2]
    assert version.ignore_values == (VOID,) and version.background is None
    for stem in version.stems:
        truth = cv2.imread(str(raw / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(version.read_mask(stem), np.where(truth == VOID, 255, truth))
    assert {p.name: p.read_bytes() for p in (dataset.root / "masks").glob("*.png")} == before  # untouched
    road = annotation.reread_values(version, 1, [])  # "road is the background"
    assert [c.value for c in road.classes] == [1, 0, 2] and road.background == 0
    assert road.class_map.first_scored == 1 and road.ignore_values == (VOID,)


def test_on_the_dataset_page_void_is_one_choice_away(tmp_path, monkeypatch):
    from tests.conftest import open_page

    raw = _street(tmp_path / "raw", count=3)
    workspace = tmp_path / "workspace"
    dataset, _ = ingest(raw, "street", workspace / "datasets")
    dataset.save_classes(["sky", "road", "car", "void"], [c.color for c in dataset.classes])
    at = open_page("pages/dataset.py", workspace, monkeypatch, dataset="street")
    dropped = next(m for m in at.multiselect if m.label == "Not labelled (left out)")
    assert dropped.value == ["void"]  # proposed from its name: one click saves it
    background = next(s for s in at.selectbox if s.label == "Background")
    assert background.value == "(none)"  # road is the most common value, so 0 (sky) is not the background
    next(b for b in at.button if b.label == "Save as a new version").click().run()
    assert not at.exception
    version = Dataset.load(workspace / "datasets" / "street-v2")
    assert [c.name for c in version.classes] == ["sky", "road", "car"] and version.ignore_values == (VOID,)
    assert any("street-v2" in s.value for s in at.success)
