"""Export: each format round-trips with predictions within its tolerance, or says plainly that it cannot."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_RUN
from unet import runs
from unet.errors import UserError
from unet.export import FORMATS, TOLERANCES, export_model, sample_inputs, unsupported_reason


@pytest.fixture(scope="module")
def run_dir(trained_workspace: Path) -> Path:
    return trained_workspace / "runs" / TINY_RUN


def _tree(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under `folder`, with size and modification time for files (a folder's mtime moves with a temp)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
            for p in folder.rglob("*")}


def test_the_stated_tolerances():
    assert TOLERANCES["keras"] == TOLERANCES["savedmodel"] == 1e-4 and TOLERANCES["tflite"] == 1e-3


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_round_trips_within_tolerance_and_writes_only_into_out(fmt, run_dir, tmp_path):
    out = tmp_path / "exports"
    workspace = run_dir.parents[1]
    before = _tree(workspace)
    reason = unsupported_reason(fmt)
    if reason:
        with pytest.raises(UserError, match="not available") as caught:
            export_model(run_dir, fmt, out)
        assert str(caught.value) == reason and "pip install" in reason
        assert not out.exists()
        return
    result = export_model(run_dir, fmt, out)
    assert result.ok and result.max_abs_diff <= result.tolerance == TOLERANCES[fmt]
    assert 2 <= result.samples <= 4 and result.checked_on == "validation images"
    assert "divided by 255" in result.usage and "1 channel" in result.usage  # what a user must feed the file
    assert result.path.parent == out and result.path.exists() and result.size_bytes > 0 and result.seconds > 0
    assert _tree(workspace) == before  # nothing left in the run folder (its temp folder is gone)
    assert [p.name for p in tmp_path.iterdir()] == ["exports"] and [p.name for p in out.iterdir()] == [result.path.name]
    payload = result.download_bytes()
    if result.path.is_dir():
        names = zipfile.ZipFile(io.BytesIO(payload)).namelist()
        assert result.download_name == "saved_model.zip" and "saved_model/saved_model.pb" in names
    else:
        assert payload == result.path.read_bytes()


def test_a_second_export_replaces_the_first(run_dir, tmp_path):
    first = export_model(run_dir, "savedmodel", tmp_path)
    second = export_model(run_dir, "savedmodel", tmp_path)
    assert first.path == second.path and second.ok and sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]


def test_unknown_format_and_missing_model_are_refused(run_dir, tmp_path):
    with pytest.raises(UserError, match="not an export format"):
        export_model(run_dir, "pickle", tmp_path)
    empty = tmp_path / "run"
    empty.mkdir()
    shutil.copy(run_dir / runs.CONFIG, empty / runs.CONFIG)
    with pytest.raises(UserError, match="no model yet"):
        export_model(empty, "keras", tmp_path / "out")


def test_the_check_uses_random_inputs_when_the_dataset_is_gone(run_dir, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    recorded = json.loads((run_dir / runs.TRAINING_DATA).read_text())
    recorded["path"] = str(tmp_path / "gone")
    (copy / runs.TRAINING_DATA).write_text(json.dumps(recorded))
    config = runs.Run(run_dir).config()
    x, what = sample_inputs(copy, config)
    size, channels = config.data.input_size, config.data.channels
    assert x.shape == (3, size, size, channels) and x.dtype == np.float32 and "random" in what
    real, what = sample_inputs(run_dir, config)
    assert real.shape == x.shape and what == "validation images"


@pytest.mark.parametrize("fmt", ["onnx", "savedmodel"])
def test_onnx_and_savedmodel_take_a_non_square_image_larger_than_training_and_match_keras(fmt, run_dir, tmp_path):
    """Issue #17: exports are not tied to the training size; 96x160 gives what the Keras model gives (1e-4)."""
    if unsupported_reason(fmt):
        pytest.skip(unsupported_reason(fmt))
    import keras

    from unet.export import _READERS

    result = export_model(run_dir, fmt, tmp_path)
    assert result.ok and result.input_shape[1:3] == (None, None)
    assert len(result.sizes_checked) == 2 and result.sizes_checked[1][0] != result.sizes_checked[1][1]
    assert "multiples of 4" in result.usage  # depth 2
    x = np.random.default_rng(5).random((1, 96, 160, 1), dtype=np.float32)
    keras_model = keras.models.load_model(run_dir / runs.BEST_MODEL, compile=False)
    expected = np.asarray(keras_model(x, training=False))
    got = _READERS[fmt](result.path, x)
    assert got.shape == (1, 96, 160, 1)
    assert float(np.max(np.abs(got - expected))) <= 1e-4


def test_tflite_says_it_keeps_the_training_size(run_dir, tmp_path):
    result = export_model(run_dir, "tflite", tmp_path)
    assert result.input_shape == (None, 32, 32, 1) and len(result.sizes_checked) == 1
    assert "fixed size" in result.usage
