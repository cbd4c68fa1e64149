"""Fine-tuning (`unet.finetune`, `train.init_from`, `train --init-from`): real tiny trainings on demo data.

One source run (cells: 1 channel, 2 classes) is trained once for the module; the other trainings start from it.
Trainings run in this process (TensorFlow is imported once), with fixed seeds; each takes a few seconds.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from unet import runs
from unet.config import Config
from unet.demo import write_demo_dataset
from unet.errors import UserError
from unet.finetune import INIT_FROM, fine_tune_config, initialise, resolve_source
from unet.images import read_image, write_png
from unet.model import build_unet
from unet.training import EXIT_OK, EXIT_USER_ERROR, train

ROOT = Path(__file__).resolve().parent.parent
SEED = 7
TINY = {"data": {"input_size": 64}, "augment": {"enabled": False}, "model": {"depth": 2, "base_filters": 4},
        "train": {"epochs": 8, "batch_size": 2, "learning_rate": 1e-2, "early_stopping_patience": 0, "seed": SEED}}


def _train(run_dir: Path, data: Path, config: Config) -> int:
    keras.utils.set_random_seed(SEED)
    return train(run_dir, data, config)


def _first_loss(run_dir: Path) -> float:
    return runs.Run(run_dir).read_history()[0]["loss"]


def _tuned(source: Path, epochs: int = 1) -> Config:
    """The tiny config fine-tuned from `source`, for `epochs` epochs (as `--epochs` would)."""
    config = fine_tune_config(Config.from_dict(TINY), resolve_source(source))
    return config.replace(train=dataclasses.replace(config.train, epochs=epochs))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def source_run(data, tmp_path_factory) -> Path:
    """Run A: 5 epochs on 10 demo cells (64x64, grayscale, binary)."""
    cells = write_demo_dataset(data / "cells", size=64, count=10, seed=0)
    run_dir = tmp_path_factory.mktemp("runs") / "20260101-000000-cells"
    assert _train(run_dir, cells, Config.from_dict(TINY)) == EXIT_OK
    return run_dir


def _three_classes(data: Path) -> Path:
    """Demo cells whose masks have 3 values: cells on the right half are class 2."""
    folder = write_demo_dataset(data / "three", size=64, count=8, seed=2)
    for path in sorted((folder / "masks").glob("*.png")):
        mask = read_image(path)
        mask[:, 32:][mask[:, 32:] == 1] = 2
        write_png(path, mask)
    return folder


def test_a_source_with_other_input_channels_is_refused_naming_both(source_run, data, tmp_path):
    shapes = write_demo_dataset(data / "shapes", kind="shapes", size=64, count=6, seed=0)  # RGB
    run_dir = tmp_path / "runs" / "rgb"
    assert _train(run_dir, shapes, _tuned(source_run)) == EXIT_USER_ERROR
    status = runs.Run(run_dir).read_status()
    wanted = "takes 1 input channel but this dataset's images have 3"
    assert status["state"] == runs.FAILED and wanted in status["message"] and "Traceback" not in status["message"]

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    result = subprocess.run(
        [sys.executable, "-m", "unet", "train", "--data", str(shapes), "--out", str(tmp_path / "runs" / "cli"),
         "--config", str(config), "--init-from", str(source_run), "--epochs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and wanted in result.stderr, result.stderr[-2000:]
    assert "fine-tuning from run 20260101-000000-cells with its model settings: learning rate 0.001 (a tenth of its " \
           "0.01), 1 epoch;" in result.stdout


def test_other_classes_replace_the_output_layer_and_copy_the_rest(source_run, data, tmp_path):
    run_dir = tmp_path / "runs" / "three"
    assert _train(run_dir, _three_classes(data), _tuned(source_run)) == EXIT_OK
    record = json.loads((run_dir / INIT_FROM).read_text())
    fresh = build_unet(Config.from_dict(TINY).fitted(1, 3))
    weighted = [layer for layer in fresh.layers if layer.weights]
    assert record["head_replaced"] and (record["classes_before"], record["classes_after"]) == (2, 3)
    assert record["copied_layers"] == len(weighted) - 1
    assert "output layer replaced: 2 classes there, 3 here" in record["message"]
    assert runs.Run(run_dir).read_status()["state"] == runs.COMPLETED


def test_initialise_copies_every_layer_by_name_and_keeps_a_fresh_head(source_run):
    source = resolve_source(source_run / runs.BEST_MODEL)  # the file itself, not its run
    assert source.kind == "file" and source.run_dir is None and source.label == runs.BEST_MODEL
    model = build_unet(Config.from_dict(TINY).fitted(1, 4))
    head_before = model.get_layer("output").get_weights()[0].copy()
    report = initialise(model, source, channels=1)
    trained = keras.models.load_model(source_run / runs.BEST_MODEL, safe_mode=True, compile=False)
    for name in ("enc1_conv1", "enc2_bn2", "bottleneck_conv2", "dec1_upconv"):
        for mine, theirs in zip(model.get_layer(name).get_weights(), trained.get_layer(name).get_weights(),
                                strict=True):
            np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(model.get_layer("output").get_weights()[0], head_before)
    assert report.head_replaced and (report.classes_before, report.classes_after) == (2, 4)


def test_a_file_built_with_another_architecture_is_refused_naming_the_layer(tmp_path):
    deeper = Config.from_dict({**TINY, "model": {"depth": 3, "base_filters": 4}})
    path = tmp_path / "deeper.keras"
    build_unet(deeper).save(path)
    with pytest.raises(UserError) as info:
        initialise(build_unet(Config.from_dict(TINY)), resolve_source(path), channels=1)
    assert "layer 'bottleneck_conv1' has 3x3x16x32 weights there and 3x3x8x16 here" in str(info.value)
    assert "start from its run so the architecture is copied" in str(info.value)


def test_the_command_line_names_a_wrong_source_before_training(source_run, tmp_path, capsys):
    from unet.cli import main

    out = tmp_path / "runs" / "never"
    assert main(["train", "--data", str(tmp_path), "--out", str(out), "--init-from", str(tmp_path / "nope")]) == 2
    assert "cannot fine-tune from" in capsys.readouterr().err and not out.exists()
    assert main(["train", "--data", str(tmp_path), "--out", str(out), "--init-from", str(source_run),
                 "--resume"]) == 2
    assert "use one or the other" in capsys.readouterr().err


def test_a_file_that_is_not_a_keras_model_is_refused_naming_it(tmp_path):
    fake = tmp_path / "model.keras"
    fake.write_text("not a model")
    with pytest.raises(UserError, match="'model.keras' is not a Keras model file"):
        initialise(build_unet(Config.from_dict(TINY)), resolve_source(fake), channels=1)


def test_resolve_source_falls_back_to_last_and_refuses_what_is_not_a_run(source_run, tmp_path):
    only_last = tmp_path / "only-last"
    only_last.mkdir()
    for name in (runs.CONFIG, runs.LAST_MODEL):
        shutil.copy(source_run / name, only_last / name)
    source = resolve_source(only_last)
    assert (source.kind, source.model_path, source.run_dir) == ("run", only_last / runs.LAST_MODEL, only_last)
    assert source.label == "run only-last"
    assert resolve_source(source_run).model_path == source_run / runs.BEST_MODEL

    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="not a run"):
        resolve_source(tmp_path / "plain")
    (only_last / runs.LAST_MODEL).unlink()
    with pytest.raises(UserError, match="run only-last: it has no trained model yet"):
        resolve_source(only_last)
    with pytest.raises(UserError, match="no such run folder or model file"):
        resolve_source(tmp_path / "missing")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF")
    with pytest.raises(UserError, match="'weights.h5': it is not a .keras model file"):
        resolve_source(tmp_path / "weights.h5")


def test_fine_tune_config_takes_the_runs_architecture_a_tenth_of_its_rate_and_a_short_schedule(source_run, tmp_path):
    given = Config.from_dict({"model": {"depth": 3, "base_filters": 16, "num_classes": 3},
                              "data": {"input_size": 128, "normalisation": "standard"},
                              "train": {"epochs": 50, "learning_rate": 2e-2}})
    tuned = fine_tune_config(given, resolve_source(source_run))
    assert (tuned.model.depth, tuned.model.base_filters, tuned.model.num_classes) == (2, 4, 3)
    assert (tuned.data.input_size, tuned.data.normalisation) == (64, "unit")
    assert tuned.train.learning_rate == pytest.approx(1e-3) and tuned.train.epochs == 20
    assert tuned.train.init_from == str(source_run)

    path = tmp_path / "model.keras"
    shutil.copy(source_run / runs.BEST_MODEL, path)
    from_file = fine_tune_config(given.replace(train=dataclasses.replace(given.train, epochs=8)), resolve_source(path))
    assert from_file.model == given.model and from_file.train.epochs == 8
    assert from_file.train.learning_rate == pytest.approx(2e-3) and from_file.train.init_from == str(path)


def test_init_from_round_trips_and_old_configs_still_load():
    config = Config.from_dict({"train": {"init_from": "runs/a"}})
    assert Config.from_json(config.to_json()) == config and config.train.init_from == "runs/a"
    assert Config.from_dict({"train": {"epochs": 3}}).train.init_from is None
    assert Config.from_dict({"train": {"init_from": None}}).train.init_from is None
    for bad in (3, "", ["a"]):
        with pytest.raises(UserError, match=r"train\.init_from"):
            Config.from_dict({"train": {"init_from": bad}})
