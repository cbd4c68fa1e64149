"""Settings that fit the data (issue #13): thin structures in large images get crops at native resolution, large
blobs may be shrunk, small images are trained whole; the epochs fit the time budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT
from unet.dataset import ingest
from unet.suggest import suggest, thinnest_structure

GFLOPS = 100.0  # a fixed machine speed, so no calibration runs in the test


def _write(root: Path, masks: list[np.ndarray]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, mask in enumerate(masks):
        cv2.imwrite(str(root / "images" / f"{i}.png"),
                    np.random.default_rng(i).integers(0, 255, mask.shape, dtype=np.uint8))
        cv2.imwrite(str(root / "masks" / f"{i}.png"), mask)
    return root


def _membranes(i: int, size: int = 512) -> np.ndarray:
    """Cells (255) separated by membranes (0) about 4 px wide, like ISBI."""
    mask = np.full((size, size), 255, np.uint8)
    for x in range(20 + i, size, 60):
        cv2.line(mask, (x, 0), (x + 30, size), 0, 4)
    for y in range(10 + i, size, 45):
        cv2.line(mask, (0, y), (size, y + 20), 0, 4)
    return mask


def _blobs(i: int, size: int = 512) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for j in range(4):
        cv2.circle(mask, (100 + 100 * j, 150 + 40 * (i % 3)), 45, 255, -1)
    return mask


def test_thin_membranes_in_large_images_get_crops_at_native_resolution(tmp_path):
    dataset, _ = ingest(_write(tmp_path / "raw", [_membranes(i) for i in range(6)]), "em", tmp_path / "ws")
    name, width = thinnest_structure(dataset)
    assert name == dataset.classes[0].name and 2 <= width <= 6
    suggestion = suggest(dataset, minutes=5, gflops_per_second=GFLOPS)
    assert (suggestion.config.data.resize, suggestion.config.data.input_size) == ("crop", 256)
    assert "vanish" in suggestion.reasons[0] and f"{width:.0f} px" in suggestion.reasons[0]


def test_large_blobs_may_be_shrunk_and_small_images_are_trained_whole(tmp_path):
    blobs, _ = ingest(_write(tmp_path / "blobs", [_blobs(i) for i in range(6)]), "blobs", tmp_path / "ws")
    config = suggest(blobs, minutes=5, gflops_per_second=GFLOPS).config
    assert config.data.resize == "resize" and 128 <= config.data.input_size <= 256
    small, _ = ingest(_write(tmp_path / "small", [_blobs(i, 64) for i in range(6)]), "small", tmp_path / "ws")
    config = suggest(small, minutes=5, gflops_per_second=GFLOPS).config
    assert (config.data.resize, config.data.input_size) == ("resize", 64)


def test_the_epochs_fit_the_time_budget(tmp_path):
    dataset, _ = ingest(_write(tmp_path / "raw", [_membranes(i) for i in range(6)]), "em", tmp_path / "ws")
    short = suggest(dataset, minutes=1, gflops_per_second=GFLOPS)
    long = suggest(dataset, minutes=10, gflops_per_second=GFLOPS)
    assert short.config.train.epochs < long.config.train.epochs
    assert "1 minute allowed" in short.reasons[2] and str(short.config.train.epochs) in short.reasons[2]


def test_the_command_line_prints_the_suggestion_and_trains_from_a_preset_with_a_test_set(tmp_path, monkeypatch):
    data = _write(tmp_path / "raw", [_blobs(i, 64) for i in range(6)])
    env = {"UNET_WORKSPACE": str(tmp_path / "ws"), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "unet", "suggest", str(data), "--minutes", "2", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout)
    assert set(printed) == {"data", "augment", "model", "train", "reasons"} and len(printed["reasons"]) == 3
    assert printed["data"]["input_size"] == 64

    config = tmp_path / "short.json"
    config.write_text(json.dumps({"train": {"epochs": 1}, "data": {"input_size": 32}}))
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(data), "--out", str(run),
                           "--preset", "Quick demo", "--config", str(config), "--test-split", "0.34"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    used = json.loads((run / "config.json").read_text())
    assert used["model"]["base_filters"] == 16 and used["model"]["depth"] == 3  # the preset's
    assert used["train"]["epochs"] == 1 and used["data"]["input_size"] == 32  # the file's keys on top
    recorded = json.loads((run / "training_data.json").read_text())
    assert len(recorded["test"]) == 2 and not set(recorded["test"]) & set(recorded["train"] + recorded["val"])


@pytest.mark.parametrize("args, message", [(["--preset", "Nope"], "invalid choice"),
                                           (["--preset", "Balanced", "--suggest"], "not allowed with")])
def test_train_refuses_an_unknown_preset_or_both_starts(tmp_path, args, message):
    done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", "x", "--out", str(tmp_path / "r"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr


def test_images_of_very_different_sizes_get_crops_so_objects_keep_one_scale(tmp_path):
    """DSB2018-like: 256-px and 640-px images. Shrinking each to one square would show nuclei at two scales."""
    masks = [_blobs(i, size=256 if i % 2 else 640) for i in range(6)]
    dataset, _ = ingest(_write(tmp_path / "raw", masks), "mixed", tmp_path / "ws")
    suggestion = suggest(dataset, 5.0, gflops_per_second=GFLOPS)
    assert (suggestion.config.data.resize, suggestion.config.data.input_size) == ("crop", 256)
    assert "2 sizes (256 to 640 px)" in suggestion.reasons[0]


def test_separating_touching_objects_weights_the_thin_boundary_class(tmp_path):
    from unet.config import Config, DataConfig

    masks = [_blobs(i, size=256) for i in range(6)]
    dataset, _ = ingest(_write(tmp_path / "raw", masks), "blobs", tmp_path / "ws")
    plain = suggest(dataset, 5.0, gflops_per_second=GFLOPS)
    separating = suggest(dataset, 5.0, base=Config(data=DataConfig(task="instances")), gflops_per_second=GFLOPS)
    assert not plain.config.train.class_weights
    assert separating.config.train.class_weights and separating.config.model.num_classes == 3
    assert any("boundaries" in reason for reason in separating.reasons)


def _strokes(i: int, size: int = 512) -> np.ndarray:
    """A few 12-px brush strokes over ISBI-like membranes (class 0) and cells (class 1), the rest not labelled:
    what a user paints on the Annotate page, stored with IGNORE_INDEX for the unpainted pixels."""
    from unet.classmap import IGNORE_INDEX

    mask = np.full((size, size), IGNORE_INDEX, np.uint8)
    for x in range(20 + i, size, 120):
        cv2.line(mask, (x, 0), (x + 30, size), 0, 12)
    for x in range(50 + i, size, 120):
        cv2.line(mask, (x, 40), (x + 10, size - 40), 1, 12)
    return mask


def _paint_strokes_over(dataset, stems) -> None:
    for i, stem in enumerate(stems):
        cv2.imwrite(str(dataset.mask_path(stem)), _strokes(i))


def test_strokes_are_not_measured_as_structures_and_unmeasured_large_images_are_not_shrunk(tmp_path):
    """Issue #25: a few 12-px strokes measured the membranes at 12 px, so the suggestion shrank the images 4x,
    where 4-px membranes vanish. Strokes say nothing about widths: crops at the images' own resolution."""
    dataset, _ = ingest(_write(tmp_path / "raw", [_membranes(i) for i in range(6)]), "em", tmp_path / "ws")
    _paint_strokes_over(dataset, dataset.stems)
    assert thinnest_structure(dataset) is None
    suggestion = suggest(dataset, minutes=5, gflops_per_second=GFLOPS)
    assert (suggestion.config.data.resize, suggestion.config.data.input_size) == ("crop", 256)
    assert "cannot be measured" in suggestion.reasons[0] and "not labelled" in suggestion.reasons[0]
    assert "12 px" not in suggestion.reasons[0]


def test_widths_come_from_the_dense_masks_only(tmp_path):
    dataset, _ = ingest(_write(tmp_path / "raw", [_membranes(i) for i in range(6)]), "em", tmp_path / "ws")
    _paint_strokes_over(dataset, dataset.stems[::2])  # half of the masks are strokes
    name, width = thinnest_structure(dataset)
    assert name == dataset.classes[0].name and 2 <= width <= 6
    assert suggest(dataset, minutes=5, gflops_per_second=GFLOPS).config.data.resize == "crop"


@pytest.mark.parametrize("make", [_membranes, _blobs])
def test_a_suggestion_never_shrinks_its_thinnest_structure_below_what_it_says_stays_visible(tmp_path, make):
    from unet.suggest import MIN_STRUCTURE_PIXELS

    dataset, _ = ingest(_write(tmp_path / "raw", [make(i) for i in range(6)]), "data", tmp_path / "ws")
    config = suggest(dataset, minutes=5, gflops_per_second=GFLOPS).config
    _, width = thinnest_structure(dataset)
    if config.data.resize == "resize":
        assert width * config.data.input_size / 512 >= MIN_STRUCTURE_PIXELS


def test_the_epochs_reason_says_the_time_they_take_in_the_pages_words(tmp_path):
    """Issue #25: '1000 epochs fit in about 5 minutes' when they took 1.5 min, and 'about 0 s per epoch'."""
    from unet.model import model_facts
    from unet.splits import training_count
    from unet.units import estimate_text

    dataset, _ = ingest(_write(tmp_path / "small", [_blobs(i, 64) for i in range(6)]), "small", tmp_path / "ws")
    suggestion = suggest(dataset, minutes=5, gflops_per_second=1000.0)  # a fast machine: the most epochs
    config = suggestion.config
    facts = model_facts(config, training_count(len(dataset.training_stems), config.train.validation_split),
                        gflops_per_second=1000.0)
    assert config.train.epochs == 1000 and facts.seconds_per_epoch * 1000 < 5 * 60
    reason = suggestion.reasons[2]
    assert reason.startswith("under a second per epoch") and "0 s" not in reason.split(" take ")[0]
    assert f"take about {estimate_text(facts.seconds_per_epoch * 1000)}" in reason and "fit in" not in reason


def test_train_suggest_on_instance_masks_plans_for_separating_objects_on_the_runs_own_stored_data(tmp_path):
    """Issue #26: `train --suggest` on instance label masks used to plan before the task (separate objects) was
    decided, so the boundary class trained unweighted and the watershed had no boundaries to follow."""
    from tests.test_instance_task import TINY, _touching_pair
    from unet import images as image_io

    raw = tmp_path / "nuclei"
    for sub in ("images", "masks"):
        (raw / sub).mkdir(parents=True)
    for i in range(6):
        image, labels = _touching_pair(i)
        image_io.write_png(raw / "images" / f"n{i}.png", image)
        image_io.write_png(raw / "masks" / f"n{i}.png", labels)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model": TINY["model"], "train": {"epochs": 1, "batch_size": 4}}))
    run = tmp_path / "run"
    env = {"UNET_WORKSPACE": str(tmp_path / "ws"), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(raw), "--out", str(run), "--suggest",
                           "--minutes", "1", "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    used = json.loads((run / "config.json").read_text())
    assert used["data"]["task"] == "instances" and used["model"]["num_classes"] == 3
    assert used["train"]["class_weights"] is True  # the suggestion's, for the task the run has
    assert used["model"]["depth"] == 2 and used["train"]["epochs"] == 1  # the file's keys on top
    assert "class weights from training pixel counts" in (run / "trainer.log").read_text()
    assert sorted(p.name for p in (run / "data" / "masks").iterdir()) == [f"n{i}.png" for i in range(6)]


def test_a_resume_from_the_command_line_keeps_the_runs_own_settings(tmp_path):
    """`train --resume --epochs N` used to rebuild the config from the defaults and write it over the run's: the
    resumed network had the run's depth, the recorded config another, and scoring the held-back images crashed."""
    data = _write(tmp_path / "raw", [_blobs(i, 64) for i in range(6)])
    config = tmp_path / "shallow.json"
    config.write_text(json.dumps({"data": {"input_size": 64}, "augment": {"enabled": False},
                                  "model": {"depth": 2, "base_filters": 4}, "train": {"epochs": 1, "batch_size": 4}}))
    run = tmp_path / "run"
    env = {"UNET_WORKSPACE": str(tmp_path / "ws"), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    for extra in (["--config", str(config)], ["--resume", "--epochs", "2"]):
        done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(data), "--out", str(run), *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    used = json.loads((run / "config.json").read_text())
    assert used["model"]["depth"] == 2 and used["model"]["base_filters"] == 4 and used["train"]["epochs"] == 2
    assert [json.loads(line)["epoch"] for line in (run / "history.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
