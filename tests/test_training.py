"""The trainer end to end, as the browser and the command line start it: `python -m unet train` in its own process.

Tiny data (32x32 inputs, 4-filter U-Net of depth 2) keeps each trainer to a few seconds, most of it importing
TensorFlow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from unet import runs
from unet.config import Config
from unet.dataset import ingest
from unet.demo import write_demo_dataset
from unet.evaluation import evaluate

ROOT = Path(__file__).resolve().parent.parent
TINY = {"data": {"input_size": 32}, "model": {"depth": 2, "base_filters": 4},
        "train": {"epochs": 2, "batch_size": 4, "early_stopping_patience": 0}}
LONG = {**TINY, "train": {**TINY["train"], "epochs": 1000}}
HISTORY_KEYS = {"epoch", "seconds", "lr", "loss", "dice", "iou", "val_loss", "val_dice", "val_iou", "pixel_accuracy",
                "val_pixel_accuracy", "dice_1", "val_dice_1", "iou_1", "val_iou_1"}
RUN_FILES = (runs.CONFIG, runs.TRAINING_DATA, runs.VERSIONS, runs.STATUS, runs.HISTORY, runs.BEST_MODEL,
             runs.LAST_MODEL,
             "samples/epoch_001.png", "samples/latest.png", runs.LOG)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("raw") / "cells", size=64, count=10)


@pytest.fixture(scope="module")
def stored(raw, tmp_path_factory):
    dataset, _ = ingest(raw, "cells", tmp_path_factory.mktemp("datasets"))
    return dataset


def _cli_train(run_dir: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / runs.CONFIG).exists():
        (run_dir / runs.CONFIG).write_text(json.dumps(TINY))
    cmd = [sys.executable, "-m", "unet", "train", "--data", str(data), "--out", str(run_dir),
           "--config", str(run_dir / runs.CONFIG), *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _start(root: Path, name: str, data: Path, config: dict = LONG) -> tuple[runs.Run, subprocess.Popen]:
    run = runs.create_run(root, name, Config.from_dict(config), data)
    return run, runs.start_training(run.path, data)


def _wait(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _training(run: runs.Run) -> bool:
    status = run.read_status()
    return status.get("state") == runs.RUNNING and (status.get("epoch") or 0) >= 1 and (status.get("batch") or 0) >= 1


def _assert_model_predicts(path: Path) -> None:
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    assert model.predict(np.zeros((2, 32, 32, 1), np.float32), verbose=0).shape == (2, 32, 32, 1)


@pytest.fixture(scope="module")
def trained(raw, tmp_path_factory) -> Path:
    """A two-epoch run from a raw folder through the command line."""
    run_dir = tmp_path_factory.mktemp("runs") / "two-epochs"
    result = _cli_train(run_dir, raw)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def test_a_two_epoch_run_leaves_every_file_with_sane_values(trained):
    for name in RUN_FILES:
        assert (trained / name).exists(), name
    run = runs.Run(trained)
    history = run.read_history()
    assert [h["epoch"] for h in history] == [1, 2]
    for row in history:
        assert set(row) >= HISTORY_KEYS, HISTORY_KEYS - set(row)
        for key in ("dice", "iou", "val_dice", "val_iou", "pixel_accuracy", "val_pixel_accuracy"):
            assert 0.0 <= row[key] <= 1.0, key
        assert row["seconds"] > 0 and 0 < row["lr"] <= 1e-3  # the cosine schedule never goes above the rate
    status = run.read_status()
    assert status["state"] == runs.COMPLETED and status["epoch"] == 2 and status["epochs"] == 2
    assert status["best_epoch"] in (1, 2) and status["ended"] and not status["error"]
    recorded = json.loads((trained / runs.TRAINING_DATA).read_text())
    assert len(recorded["train"]) == 8 and len(recorded["val"]) == 2 and recorded["hash"]
    assert (trained / runs.DATA / "dataset.json").exists()  # the raw folder was stored inside the run
    versions = json.loads((trained / runs.VERSIONS).read_text())
    assert set(versions) >= {"tensorflow", "keras", "python", "numpy", "platform"}
    _assert_model_predicts(trained / runs.BEST_MODEL)


def test_evaluate_matches_an_independent_numpy_dice(trained, stored):
    from unet.inference import Predictor

    result = evaluate(trained, stored.root, split="all")
    assert set(result) >= {"dice", "iou", "pixel_accuracy", "per_class", "images"}
    assert result["images"] == 10 and [c["class"] for c in result["per_class"]] == [0, 1]
    predictor = Predictor.from_run(trained)  # evaluation predicts as the Inference page does, at full size
    pairs = [stored.read_pair(stem) for stem in stored.stems]
    truth = np.concatenate([mask.ravel() == 1 for _, mask in pairs])
    predicted = np.concatenate([predictor.predict(image).probabilities[..., 0].ravel() > 0.5 for image, _ in pairs])
    both = np.logical_and(truth, predicted).sum()
    dice = 2 * both / (truth.sum() + predicted.sum()) if truth.sum() + predicted.sum() else None
    iou = both / np.logical_or(truth, predicted).sum() if np.logical_or(truth, predicted).any() else None
    assert result["dice"] == pytest.approx(dice, abs=1e-6) and result["iou"] == pytest.approx(iou, abs=1e-6)
    assert result["pixel_accuracy"] == pytest.approx((truth == predicted).mean(), abs=1e-6)


def test_resume_continues_the_epoch_count(trained, raw):
    result = _cli_train(trained, raw, "--resume", "--epochs", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    history = runs.Run(trained).read_history()
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert runs.Run(trained).read_status()["state"] == runs.COMPLETED


def test_the_cosine_schedule_warms_up_then_lowers_the_rate(raw, tmp_path):
    run_dir = tmp_path / "cosine"
    run_dir.mkdir()
    (run_dir / runs.CONFIG).write_text(json.dumps({**TINY, "train": {**TINY["train"], "epochs": 3,
                                                                     "lr_schedule": "cosine"}}))
    result = _cli_train(run_dir, raw)
    assert result.returncode == 0, result.stderr[-2000:]
    rates = [h["lr"] for h in runs.Run(run_dir).read_history()]
    assert rates[0] < rates[1] > rates[2] and max(rates) < 1e-3  # each epoch's rate as it began
    assert rates[0] == pytest.approx(1e-3 * 0.1, rel=1e-3)


def test_a_bad_dataset_fails_with_a_plain_message(tmp_path):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    result = _cli_train(tmp_path / "run", tmp_path / "empty")
    status = runs.Run(tmp_path / "run").read_status()
    assert result.returncode == 2 and status["state"] == runs.FAILED
    assert "Traceback" not in status["message"] and status["error"]


def test_a_second_start_queues_and_stop_leaves_a_loadable_model(stored, tmp_path):
    first, first_proc = _start(tmp_path, "first", stored.root)
    second = second_proc = None
    try:
        _wait(lambda: _training(first), what="the first run to train")
        second, second_proc = _start(tmp_path, "second", stored.root)
        _wait(lambda: "waiting for run" in second.read_status().get("message", ""), what="the second run to queue")
        assert second.read_status()["state"] == runs.QUEUED and first.id in second.read_status()["message"]
        first.request_stop()
        assert first_proc.wait(timeout=60) == 0
        status = first.read_status()
        assert status["state"] == runs.STOPPED and "resume" in status["message"]
        assert first.read_history()[-1].get("partial") is True
        _assert_model_predicts(first.path / runs.BEST_MODEL)
        _assert_model_predicts(first.path / runs.LAST_MODEL)
        second.request_stop()
        assert second_proc.wait(timeout=60) == 0
        assert second.read_status()["state"] == runs.STOPPED
    finally:
        for proc in (first_proc, second_proc):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_killed_trainer_is_marked_interrupted_and_its_checkpoint_stays(stored, tmp_path):
    run, proc = _start(tmp_path, "killed", stored.root)
    try:
        _wait(lambda: _training(run) and (run.path / runs.LAST_MODEL).exists(), what="a first checkpoint")
        assert runs.mark_interrupted_runs(tmp_path) == []
        os.kill(proc.pid, signal.SIGKILL)
        _wait(lambda: runs.mark_interrupted_runs(tmp_path) != [], timeout=40, what="the run to be marked")
    finally:
        proc.kill()
        proc.wait()
    assert run.read_status()["state"] == runs.INTERRUPTED and not run.is_active
    _assert_model_predicts(run.path / runs.LAST_MODEL)


def _epochs(*dice: float) -> list[dict]:
    return [{"epoch": i + 1, "val_dice": d} for i, d in enumerate(dice)]


def _feed(stopper, first_epoch: int, *dice: float) -> int | None:
    """Feed validation Dice values epoch by epoch; the 1-based epoch after which training stopped, or None."""
    for offset, value in enumerate(dice):
        stopper.on_epoch_end(first_epoch - 1 + offset, {"val_dice": value})
        if stopper.model.stop_training:
            return first_epoch + offset
    return None


def test_early_stopping_remembers_the_best_epoch_across_a_resume():
    from types import SimpleNamespace

    from unet.callbacks import ResumableEarlyStopping

    # Best Dice 0.8 at epoch 2, then one epoch without improvement before the run was stopped and resumed.
    stopper = ResumableEarlyStopping(patience=3, history=_epochs(0.5, 0.8, 0.7))
    stopper.set_model(SimpleNamespace(stop_training=False))
    stopper.on_train_begin()
    assert _feed(stopper, 4, 0.79, 0.79, 0.79) == 5  # 3 epochs after epoch 2, not 3 epochs after the resume

    improving = ResumableEarlyStopping(patience=3, history=_epochs(0.5, 0.8, 0.7))
    improving.set_model(SimpleNamespace(stop_training=False))
    improving.on_train_begin()
    assert _feed(improving, 4, 0.81, 0.7, 0.7) is None  # beating the old best starts the count again

    # A run that early stopping already ended gets a fresh window when the user asks for more epochs.
    ended = ResumableEarlyStopping(patience=2, history=_epochs(0.8, 0.7, 0.7))
    ended.set_model(SimpleNamespace(stop_training=False))
    ended.on_train_begin()
    assert _feed(ended, 4, 0.7) is None and _feed(ended, 5, 0.7) == 5
