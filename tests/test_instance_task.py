"""Separating touching objects (issue #15): the task choice, its targets, the labels a prediction becomes, the
object scores of an evaluation and the label files of `predict`.

Tiny models train for two epochs, so the end-to-end tests check what reaches the user (files, keys, types); the
separation itself is checked on hand-made probabilities whose right answer is known.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unet import images as image_io
from unet import task
from unet.config import Config
from unet.dataset import ingest
from unet.errors import UserError
from unet.inference import Prediction, Predictor, predict_folder
from unet.instances import BOUNDARY, INTERIOR, boundary_targets, label_file_pixels

ROOT = Path(__file__).resolve().parents[1]
SIDE = 48
TINY = {"data": {"input_size": 48}, "augment": {"enabled": False}, "model": {"depth": 2, "base_filters": 4},
        "train": {"epochs": 2, "batch_size": 4, "early_stopping_patience": 0}}


def _touching_pair(offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 12x12 squares side by side (touching), bright on dark with darker edges (as pressed nuclei look), and
    their 16-bit instance labels. The edges make the task learnable in seconds by a tiny network."""
    labels = np.zeros((SIDE, SIDE), np.uint16)
    top, left = 8 + offset % 12, 6 + offset % 9
    labels[top : top + 12, left : left + 12] = 7
    labels[top : top + 12, left + 12 : left + 24] = 300 + offset  # ids need not be small or consecutive
    shades = np.array([30, 200, 110], np.uint8)  # background, interior, edge
    noise = np.random.default_rng(offset).integers(0, 10, (SIDE, SIDE)).astype(np.uint8)
    return shades[boundary_targets(labels)] + noise, labels


@pytest.fixture(scope="module")
def instance_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nuclei")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i in range(6):
        image, labels = _touching_pair(i)
        image_io.write_png(root / "images" / f"n{i}.png", image)
        image_io.write_png(root / "masks" / f"n{i}.png", labels)
    return root


def test_the_task_is_offered_for_objects_and_defaults_to_separating_instance_masks(instance_source, tmp_path):
    dataset, _ = ingest(instance_source, "nuclei", tmp_path / "ds")
    assert dataset.instances and task.available(dataset) and task.default_task(dataset) == task.INSTANCES
    fitted = task.fit_to_dataset(Config.from_dict({"data": {"task": "instances"}}), dataset)
    assert fitted.model.num_classes == 3  # background, interior, boundary
    view = task.training_view(dataset, task.INSTANCES)
    targets = view.read_mask("n0")
    truth = task.true_objects(dataset, "n0")
    assert set(np.unique(targets)) == {0, INTERIOR, BOUNDARY}
    assert np.array_equal(targets > 0, truth > 0)  # every object pixel is interior or boundary
    seam = truth[:, :-1] != truth[:, 1:]
    between = seam & (truth[:, :-1] > 0) & (truth[:, 1:] > 0)
    rows, cols = np.nonzero(between)
    assert (targets[rows, cols] == BOUNDARY).all() and (targets[rows, cols + 1] == BOUNDARY).all()


def test_a_mask_of_several_classes_cannot_be_split_into_objects(tmp_path):
    from unet.demo import write_demo_dataset

    dataset, _ = ingest(write_demo_dataset(tmp_path / "shapes", kind="shapes", count=4, size=48), "s", tmp_path / "d")
    assert dataset.num_classes > 2 and not task.available(dataset)
    with pytest.raises(UserError, match="Separate touching objects"):
        task.fit_to_dataset(Config.from_dict({"data": {"task": "instances"}}), dataset)


def test_touching_objects_get_two_ids_from_the_interiors_and_one_from_connected_regions():
    """Hand-made probabilities of two touching squares, as a trained instance model gives them."""
    foreground = np.zeros((20, 30), np.float32)
    foreground[4:16, 3:27] = 0.95
    interior = np.zeros_like(foreground)
    interior[5:15, 4:14] = 0.9  # left object's interior
    interior[5:15, 16:26] = 0.9  # right object's interior; columns 14 and 15 are the shared boundary
    separated = Prediction(foreground[..., None], 2, interior=interior.astype(np.float16))
    labels = separated.labels()
    assert len(np.unique(labels[labels > 0])) == 2
    assert labels[10, 5] != labels[10, 25] and labels[10, 5] > 0 and labels[10, 25] > 0
    assert (labels > 0).sum() == (foreground >= 0.5).sum()  # the boundary is shared out, not lost
    merged = Prediction(foreground[..., None], 2)  # a semantic run: connected regions
    assert len(np.unique(merged.labels()[merged.labels() > 0])) == 1
    assert separated.labels(min_size=200).max() == 0  # each object is 120 px: both dropped


def test_label_files_are_8_bit_up_to_255_objects_and_16_bit_past():
    few = np.arange(256, dtype=np.int32).reshape(16, 16)
    many = np.arange(400, dtype=np.int32).reshape(20, 20)
    assert label_file_pixels(few).dtype == np.uint8 and label_file_pixels(many).dtype == np.uint16
    assert label_file_pixels(many).max() == 399


@pytest.fixture(scope="module")
def instance_workspace(instance_source, tmp_path_factory) -> Path:
    """A workspace with one instance-task run, trained by `python -m unet train` as the Train page starts it."""
    workspace = tmp_path_factory.mktemp("workspace")
    run = workspace / "runs" / "20260101-000000-nuclei"
    config = workspace / "tiny.json"
    learnable = {**TINY, "model": {"depth": 2, "base_filters": 8},
                 "train": {**TINY["train"], "epochs": 40, "learning_rate": 0.01}}
    config.write_text(json.dumps(learnable))  # no task in the config: the instance masks choose it
    done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(instance_source), "--out", str(run),
                           "--config", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return workspace


def test_an_instance_run_trains_predicts_labels_and_scores_objects(instance_source, instance_workspace, tmp_path):
    run = instance_workspace / "runs" / "20260101-000000-nuclei"
    assert json.loads((run / "config.json").read_text())["data"]["task"] == "instances"
    recorded = json.loads((run / "training_data.json").read_text())
    assert recorded["task"] == "instances" and recorded["objects_from"] == "instance masks"

    predictor = Predictor.from_run(run)
    assert predictor.task == task.INSTANCES and predictor.num_classes == 2
    image, _ = _touching_pair(0)
    prediction = predictor.predict(image)
    assert prediction.separates_objects and prediction.labels().shape == (SIDE, SIDE)

    held_back = json.loads((run / "held_back.json").read_text())
    objects = held_back["objects"]
    assert objects["thresholds"][0] == 0.5 and len(objects["pooled"]) == 10
    assert objects["true_objects"] == 2 * objects["images"]  # two objects per image, counted from the masks
    assert "watershed" in objects["predicted_by"] and "AP@0.5" in objects["summary"]

    written = predict_folder(run, instance_source / "images", tmp_path / "labels")
    assert len(written) == 6
    table = (tmp_path / "labels" / "objects.csv").read_text().splitlines()
    assert table[0].startswith("image,id,area,centroid_y")  # one row per object, every image
    counted = sum(len(np.unique(image_io.read_image(w))) - 1 for w in written)
    assert len(table) - 1 == counted
    ids = image_io.read_image(written[0])
    assert ids.dtype in (np.uint8, np.uint16) and ids.shape == (SIDE, SIDE)  # ids, not 0/255 classes
    classes = predict_folder(run, instance_source / "images", tmp_path / "classes", labels=False)
    assert set(np.unique(image_io.read_mask_raw(classes[0]))) <= {0, 1}  # the class mask (a palette PNG)

    # The object settings were chosen on the held-back images (issue #26), and predict uses what the run holds.
    chosen = json.loads((run / "objects.json").read_text())
    assert chosen["measured"]["images"] == len(recorded["val"]) and 0 <= chosen["measured"]["ap50"] <= 1
    assert chosen["measured"]["ap50"] >= chosen["measured"]["default_ap50"]  # the defaults are a candidate
    assert "object settings:" in (run / "trainer.log").read_text()
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "objects.json").write_text(json.dumps({**chosen, "min_size": SIDE * SIDE + 1}))
    none = predict_folder(copy, instance_source / "images", tmp_path / "none")
    assert all(image_io.read_image(w).max() == 0 for w in none)  # every object is under that size: dropped


def test_the_inference_page_colours_counts_and_lists_each_object(instance_workspace, monkeypatch):
    from tests.conftest import open_page

    at = open_page("pages/inference.py", instance_workspace, monkeypatch)
    image, _ = _touching_pair(3)
    uploader = next(u for u in at.file_uploader if u.label.startswith("Images"))
    uploader.upload("pair.png", image_io.encode_png(image), "image/png").run()
    assert not at.exception and not at.error
    found = next(m for m in at.metric if m.label == "Objects found")
    table = at.dataframe[-1].value  # the object table: one row per object
    assert int(found.value) == len(table) == 2  # the two touching squares, apart
    assert int(at.dataframe[0].value["Objects"].iloc[0]) == int(found.value)  # the class table agrees with it
    assert {"id", "area", "centroid_x", "mean_intensity_0"} <= set(table.columns)
    labels = [b.label for b in at.get("download_button")]
    assert "Object ids (PNG)" in labels and "Objects (CSV)" in labels

    # The sliders start from the settings chosen for this run (issue #26); moving "Object centres" above every
    # interior probability leaves no object.
    chosen = json.loads((instance_workspace / "runs" / "20260101-000000-nuclei" / "objects.json").read_text())
    assert at.slider(key="inference_threshold").value == chosen["threshold"]
    assert at.number_input(key="inference_min_size").value == chosen["min_size"]
    assert at.slider(key="inference_seed").value == chosen["seed_probability"]
    assert any("object settings chosen for this model" in c.value for c in at.caption)
    at.slider(key="inference_seed").set_value(0.95).run()
    assert not at.exception
    interior = Predictor.from_run(instance_workspace / "runs" / "20260101-000000-nuclei").predict(image).interior
    expected = 0 if float(np.max(interior)) < 0.95 else None
    if expected is not None:
        assert int(next(m for m in at.metric if m.label == "Objects found").value) == expected


def test_the_report_shows_the_object_scores_of_the_held_back_images(instance_workspace, tmp_path):
    from unet.html_report import write_report

    run = instance_workspace / "runs" / "20260101-000000-nuclei"
    out = tmp_path / "report.html"
    write_report(run, out)
    html = out.read_text(encoding="utf-8")
    held_back = json.loads((run / "held_back.json").read_text())
    assert "separate touching objects" in html and "<h4>Objects</h4>" in html
    assert held_back["objects"]["summary"].split(";")[0] in html  # the same sentence as evaluate --json
