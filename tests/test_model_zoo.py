"""BioImage Model Zoo packages: a tiny real run becomes a zip that bioimageio.spec validates and bioimageio.core's
model test passes (both called here on the zip, not only through the result), with the app's preprocessing in the
spec's terms, documentation that says what the model is and how good, and plain refusals of what a user can fix."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")

from ruyaml import YAML  # noqa: E402  (a dependency of bioimageio.spec)

from tests.conftest import TINY_RUN  # noqa: E402
from unet import export, model_zoo, preprocess, runs  # noqa: E402
from unet.config import Config  # noqa: E402
from unet.errors import UserError  # noqa: E402
from unet.intensity import Intensity  # noqa: E402

RUN_FILES = (runs.CONFIG, runs.TRAINING_DATA, runs.BEST_MODEL, runs.HELD_BACK, runs.STATUS, runs.HISTORY)


@pytest.fixture(scope="module")
def run_dir(trained_workspace: Path) -> Path:
    return trained_workspace / "runs" / TINY_RUN


@pytest.fixture(scope="module")
def package(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> model_zoo.PackageResult:
    out = tmp_path_factory.mktemp("zoo")
    return model_zoo.export_package(run_dir, out, ["Ada Lovelace", "Alan Turing"], license="MIT")


def _member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)


def _rdf(path: Path) -> dict:
    return YAML(typ="safe", pure=True).load(_member(path, "rdf.yaml").decode("utf-8"))


def _copy_run(run_dir: Path, target: Path, config_changes: dict | None = None, dataset_changes: dict | None = None
              ) -> Path:
    """A copy of the run's files (not its data), with some config and dataset.json keys changed."""
    target.mkdir(parents=True)
    for name in RUN_FILES:
        shutil.copy(run_dir / name, target / name)
    config = json.loads((target / runs.CONFIG).read_text())
    for section, values in (config_changes or {}).items():
        config[section].update(values)
    (target / runs.CONFIG).write_text(json.dumps(config))
    recorded = json.loads((target / runs.TRAINING_DATA).read_text())
    recorded.update(dataset_changes or {})
    (target / runs.TRAINING_DATA).write_text(json.dumps(recorded))
    return target


def _apps_rule(values: np.ndarray, config: Config, recorded: dict) -> np.ndarray:
    """What the app feeds the network for stored values [..., C]: the intensity rule, then the normalisation."""
    rule = Intensity.from_record(recorded.get("intensity"), config.data.channels, recorded.get("source_bits"))
    unit = rule.to_unit(values.reshape(-1, config.data.channels)[None])[0]
    normalised = preprocess.normalise(unit, config.data.normalisation, recorded.get("mean", 0.0),
                                      recorded.get("std", 1.0))
    return np.asarray(normalised, np.float64)


def _rdf_scaling(rdf: dict, values: np.ndarray) -> np.ndarray:
    """The rdf's preprocessing applied to values [N, C] as a bioimage.io consumer applies it."""
    (step,) = rdf["inputs"][0]["preprocessing"]
    assert step["id"] == "scale_linear" and step["kwargs"]["axis"] == "channel"
    return values * np.asarray(step["kwargs"]["gain"]) + np.asarray(step["kwargs"]["offset"])


# ----------------------------------------------------------------------------------------------------------------


def test_the_package_passes_the_spec_and_the_model_test(package, run_dir, tmp_path, monkeypatch):
    from bioimageio.core import test_model
    from bioimageio.spec import InvalidDescr, load_description

    assert package.validated and package.test_passed is True and package.ok, package.messages
    assert package.path.name == f"{TINY_RUN}.bioimageio.zip" and package.size_bytes == package.path.stat().st_size
    assert [p.name for p in package.path.parent.iterdir()] == [package.path.name]  # no scratch left behind
    assert "passes" in package.summary() and "NOT" not in package.summary()

    descr = load_description(str(package.path), perform_io_checks=True)
    assert not isinstance(descr, InvalidDescr), descr.validation_summary.format()
    assert descr.validation_summary.status != "failed"
    assert descr.format_version == "0.5.12" and descr.type == "model"
    assert test_model(str(package.path), weight_format="onnx").status == "passed"
    monkeypatch.chdir(tmp_path)  # bioimageio.core unpacks TensorFlow weights into the working directory
    assert test_model(str(package.path), weight_format="tensorflow_saved_model_bundle").status == "passed"

    names = set(zipfile.ZipFile(package.path).namelist())
    assert names == {"rdf.yaml", *model_zoo.FILES.values()}
    rdf = _rdf(package.path)
    size = rdf["inputs"][0]["axes"][1]["size"]
    assert [a["type"] for a in rdf["inputs"][0]["axes"]] == ["batch", "space", "space", "channel"]
    assert size == {"min": 4, "step": 4}  # depth 2: any multiple of 4 (core's test ran it at three sizes)
    assert model_zoo.onnx_is_dynamic(_member(package.path, "model.onnx")) and "multiples of 4" in package.usage
    assert rdf["weights"]["onnx"]["opset_version"] == export.ONNX_OPSET == 17
    assert rdf["weights"]["tensorflow_saved_model_bundle"]["tensorflow_version"] == "2.21"
    assert rdf["outputs"][0]["axes"][3]["channel_names"] == ["foreground"]
    assert "postprocessing" not in rdf["outputs"][0]
    x = np.load(io.BytesIO(_member(package.path, "test_input.npy")))
    y = np.load(io.BytesIO(_member(package.path, "test_output.npy")))
    assert x.dtype == y.dtype == np.float32 and x.shape[0] == 1 and x.shape[3] == 1 and x.max() > 1  # raw 8-bit
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


def test_the_preprocessing_is_the_apps_rule_on_the_real_package(package, run_dir):
    recorded = json.loads((run_dir / runs.TRAINING_DATA).read_text())
    config = runs.Run(run_dir).config()
    values = np.random.default_rng(1).uniform(0, 255, (1000, 1))
    got = _rdf_scaling(_rdf(package.path), values)
    assert np.max(np.abs(got - _apps_rule(values, config, recorded))) < 1e-5


SIXTEEN_BIT = {"intensity": {"kind": "percentile", "low": [112.0, 390.5, 2000.0], "high": [3075.0, 41000.0, 2600.0],
                             "percentiles": [1.0, 99.8]},
               "source_bits": 16, "image_dtype": "uint16", "mean": 0.23, "std": 0.17}
EIGHT_BIT = {"intensity": {"kind": "fixed", "low": [0.0, 0.0, 0.0], "high": [255.0, 255.0, 255.0]},
             "source_bits": 8, "image_dtype": "uint8", "mean": 0.41, "std": 0.26}


@pytest.mark.parametrize("recorded", [SIXTEEN_BIT, EIGHT_BIT], ids=["16-bit percentile", "8-bit"])
@pytest.mark.parametrize("normalisation", ["unit", "standard"])
def test_gain_and_offset_equal_the_apps_rule(recorded, normalisation):
    config = Config.from_dict({"data": {"channels": 3, "normalisation": normalisation}})
    gain, offset = model_zoo.scale_linear(config, recorded)
    rule = recorded["intensity"]
    low, high = np.asarray(rule["low"]), np.asarray(rule["high"])
    values = np.random.default_rng(2).uniform(low - 0.1 * (high - low), high + 0.1 * (high - low), (5000, 3))
    got = values * np.asarray(gain) + np.asarray(offset)
    assert np.max(np.abs(got - _apps_rule(values, config, recorded))) < 1e-5
    names = model_zoo.input_channel_names(config, recorded)
    assert names == (["red", "green", "blue"] if recorded is EIGHT_BIT else ["channel0", "channel1", "channel2"])


def test_a_16_bit_standard_run_packages_with_its_own_numbers(run_dir, tmp_path):
    """The real path for a 16-bit percentile rule with 'standard' normalisation (the tiny run's files, its rule
    and normalisation changed), written without an author."""
    rule = {"kind": "percentile", "low": [412.0], "high": [9876.5], "percentiles": [1.0, 99.8]}
    copy = _copy_run(run_dir, tmp_path / "run16", {"data": {"normalisation": "standard"}},
                     {"intensity": rule, "source_bits": 16, "image_dtype": "uint16"})
    result = model_zoo.export_package(copy, tmp_path / "out", [], license="cc-by-4.0")
    assert result.validated and result.test_passed is True, result.messages
    assert any("U-Net Studio user" in m for m in result.messages)
    rdf = _rdf(result.path)
    assert rdf["authors"] == [{"name": "U-Net Studio user"}] and rdf["license"] == "CC-BY-4.0"
    assert rdf["inputs"][0]["axes"][3]["channel_names"] == ["channel0"]
    recorded = json.loads((copy / runs.TRAINING_DATA).read_text())
    values = np.random.default_rng(3).uniform(0, 12000, (1000, 1))
    got = _rdf_scaling(rdf, values)
    assert np.max(np.abs(got - _apps_rule(values, runs.Run(copy).config(), recorded))) < 1e-5
    assert "9876" in result.usage and "minus" in result.usage  # the numbers, in words


def test_the_readme_and_the_rdf_say_what_and_how_good(package, run_dir):
    held_back = json.loads((run_dir / runs.HELD_BACK).read_text())
    text = _member(package.path, "README.md").decode("utf-8")
    assert "'foreground'" in text and "'background'" in text
    assert f"Dice {held_back['dice']:.3f}" in text and f"scores {held_back['baseline']['dice']:.3f}" in text
    assert "## Validation" in text and "diagnosis" in text and "deepImageJ" in text and "napari" in text
    assert "divided by 255" in text and "epochs" in text.lower() and "Augmentation: off" in text
    rdf = _rdf(package.path)
    assert rdf["license"] == "MIT"
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace", "Alan Turing"]
    assert rdf["cite"][0]["doi"] == "10.1007/978-3-319-24574-4_28"
    assert {"segmentation", "unet", "2d", "semantic-segmentation"} <= set(rdf["tags"])
    assert f"{held_back['dice']:.3f}" in rdf["description"] and rdf["name"] == TINY_RUN  # letters, digits, -
    import cv2

    cover = cv2.imdecode(np.frombuffer(_member(package.path, "cover.png"), np.uint8), cv2.IMREAD_COLOR)
    assert cover is not None and cover.shape[1] <= 600 and cover.shape[2] == 3


def test_unknown_licence_and_a_folder_that_is_not_a_run_are_refused(run_dir, tmp_path):
    with pytest.raises(UserError, match="not an SPDX licence") as caught:
        model_zoo.export_package(run_dir, tmp_path / "out", ["A"], license="Free-For-All-1.0")
    assert "CC-BY-4.0" in str(caught.value) and "MIT" in str(caught.value)
    with pytest.raises(UserError, match="not a run folder"):
        model_zoo.export_package(tmp_path, tmp_path / "out", ["A"])
    empty = tmp_path / "untrained"
    empty.mkdir()
    shutil.copy(run_dir / runs.CONFIG, empty / runs.CONFIG)
    with pytest.raises(UserError, match="no model yet"):
        model_zoo.export_package(empty, tmp_path / "out", ["A"])
    assert not (tmp_path / "out").exists()


def test_the_size_rule_follows_the_weights():
    config = Config.from_dict({"data": {"input_size": 64}, "model": {"depth": 3}})
    assert model_zoo.spatial_size(config, dynamic=False) == 64
    size = model_zoo.spatial_size(config, dynamic=True)
    assert (size.min, size.step) == (8, 8)
    assert model_zoo.test_side(500, config, dynamic=True) == 256 and model_zoo.test_side(100, config, True) == 96
    assert model_zoo.test_side(5, config, dynamic=True) == 8 and model_zoo.test_side(500, config, False) == 64


def test_instance_runs_say_how_objects_are_made(tmp_path):
    config = Config.from_dict({"data": {"task": "instances"}, "model": {"num_classes": 3}})
    recorded = {"classes": [{"index": 0, "name": "background"}, {"index": 1, "name": "nucleus"}],
                "intensity": {"kind": "fixed", "low": [0.0], "high": [255.0]}, "source_bits": 8, "name": "dsb"}
    assert model_zoo.output_channel_names(config, recorded) == ["background", "interior", "boundary"]
    gain, offset = model_zoo.scale_linear(config, recorded)
    usage = model_zoo.usage_parts(config, recorded, False, gain, offset)
    text = model_zoo.readme(runs.Run(tmp_path), config, recorded, {}, "U-Net nuclei", "d", usage, False, 17, "2.21",
                            "validation image 'x'")
    assert "watershed" in text and "nucleus" in text and "interior" in text
    assert "No held-back scores" in text
    assert "watershed" in model_zoo.default_description(config, recorded, {})


def test_a_name_the_spec_accepts():
    assert model_zoo.model_name("Zellkerne: Lauf #3 / 2026") == "Zellkerne Lauf 3 2026"
    assert model_zoo.model_name("ab") == "U-Net ab" and len(model_zoo.model_name("x" * 200)) == 64
    assert dataclasses.is_dataclass(model_zoo.PackageResult)


def test_the_command_line_writes_a_checked_package(run_dir, tmp_path, capsys):
    from unet.cli import main

    code = main(["export", "--run", str(run_dir), "--format", "bioimageio", "--out", str(tmp_path),
                 "--author", "Ada Lovelace", "--license", "MIT"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "passes bioimageio.core's model test" in printed and "multiples of 4" in printed
    (written,) = tmp_path.glob("*.bioimageio.zip")
    assert _rdf(written)["authors"] == [{"name": "Ada Lovelace"}] and _rdf(written)["license"] == "MIT"
