"""The data microscopists bring (issue #14): TIFF stacks, 16-bit and float values, 2 or 4+ channels.

Every file is made here with tifffile, as an instrument or Fiji would write it. Each test states what a user
relies on: a stack is never reduced to its first page, 12-bit values reach the network in their order and with one
rule for the whole dataset, a 2-channel stain stays two channels from upload to prediction, and an image with
the wrong channel count is refused by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from unet import images as image_io
from unet.dataset import Dataset, ingest, inspect_source
from unet.errors import UserError
from unet.inference import Predictor, predict_folder, prepare_image
from unet.intensity import PERCENTILE, Intensity

ROOT = Path(__file__).resolve().parents[1]
SIDE, PLANES, CHANNELS = 32, 5, 2
TINY = {"data": {"input_size": 32}, "augment": {"enabled": False}, "model": {"depth": 2, "base_filters": 4},
        "train": {"epochs": 2, "batch_size": 4, "early_stopping_patience": 0}}


def _stack(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 16-bit 2-channel z-stack [Z, C, Y, X] of bright discs (12-bit camera values) and its per-slice masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    image = rng.integers(100, 300, (PLANES, CHANNELS, SIDE, SIDE)).astype(np.uint16)
    masks = np.zeros((PLANES, SIDE, SIDE), np.uint8)
    for z in range(PLANES):
        cy, cx, r = rng.integers(8, SIDE - 8), rng.integers(8, SIDE - 8), rng.integers(4, 7)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image[z, 0][disc] += 3000  # nuclei stain
        image[z, 1][disc] += 1200  # a second, dimmer stain
        masks[z][disc] = 255
    return image, masks


@pytest.fixture(scope="module")
def stacks_source(tmp_path_factory) -> Path:
    """Three ImageJ hyperstacks (ZCYX, 16-bit) with one mask stack each, as Fiji saves them."""
    root = tmp_path_factory.mktemp("stacks")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i in range(3):
        image, masks = _stack(i)
        tifffile.imwrite(root / "images" / f"embryo{i}.tif", image, imagej=True, metadata={"axes": "ZCYX"})
        tifffile.imwrite(root / "masks" / f"embryo{i}.tif", masks, imagej=True, metadata={"axes": "ZYX"})
    return root


@pytest.fixture(scope="module")
def stored_stacks(stacks_source, tmp_path_factory) -> Dataset:
    dataset, _ = ingest(stacks_source, "embryos", tmp_path_factory.mktemp("datasets"))
    return dataset


def test_the_check_says_what_the_stacks_are_and_keeps_every_slice(stacks_source):
    report = inspect_source(stacks_source)
    assert report.pairs == 3 * PLANES  # every slice is an image; nothing dropped to the first page
    assert "3 stacks of 5 planes" in report.found and "each slice an image" in report.found
    assert "2 channels" in report.found and "12-bit" in report.found
    assert report.channels == CHANNELS
    assert "percentile" in report.intensity


def test_a_stored_stack_keeps_its_16_bit_values_and_both_channels(stored_stacks, stacks_source):
    assert stored_stacks.channels == CHANNELS and stored_stacks.image_dtype == "uint16"
    assert len(stored_stacks.stems) == 3 * PLANES
    original = tifffile.imread(stacks_source / "images" / "embryo1.tif")  # Z, C, Y, X
    stored, mask = stored_stacks.read_pair("embryo1-p003")
    assert stored.dtype == np.uint16 and stored.shape == (SIDE, SIDE, CHANNELS)
    np.testing.assert_array_equal(stored, np.moveaxis(original[2], 0, -1))  # lossless, slice 3 of stack 1
    truth = tifffile.imread(stacks_source / "masks" / "embryo1.tif")[2]
    np.testing.assert_array_equal(mask, (truth > 0).astype(np.uint8))


def test_the_slices_of_one_stack_never_straddle_training_and_validation(stored_stacks):
    from unet.splits import split_stems

    for seed in range(5):
        split = split_stems(stored_stacks.stems, 0.34, seed, group_of=stored_stacks.group_of)
        train_stacks = {stored_stacks.group_of(s) for s in split.train}
        val_stacks = {stored_stacks.group_of(s) for s in split.val}
        assert train_stacks and val_stacks and not train_stacks & val_stacks


def test_a_projection_or_one_plane_is_the_users_choice(stacks_source, tmp_path):
    single_masks = tmp_path / "projected"
    (single_masks / "images").mkdir(parents=True)
    (single_masks / "masks").mkdir()
    for i in range(4):
        image, masks = _stack(i)
        tifffile.imwrite(single_masks / "images" / f"s{i}.tif", image, imagej=True, metadata={"axes": "ZCYX"})
        image_io.write_png(single_masks / "masks" / f"s{i}.png", masks.max(axis=0))
    report = inspect_source(single_masks)  # one mask per stack: the maximum projection, said so
    assert report.pairs == 4 and "maximum projection" in report.found
    dataset, _ = ingest(single_masks, "projected", tmp_path / "ds")
    image, _ = dataset.read_pair("s0")
    np.testing.assert_array_equal(image, np.moveaxis(_stack(0)[0].max(axis=0), 0, -1))

    third = inspect_source(stacks_source, stacks="plane 3")
    assert third.pairs == 3 and "plane 3" in third.found
    refused = inspect_source(single_masks, stacks="slices")  # slices need a mask per slice: said per file
    assert refused.pairs == 0
    assert any("s0.tif" in p.file and "one" in p.problem and "5 planes" in p.problem for p in refused.problems)


def test_a_mask_stack_with_another_plane_count_is_refused_by_name(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(4):
        image, masks = _stack(i)
        tifffile.imwrite(tmp_path / "images" / f"a{i}.tif", image, imagej=True, metadata={"axes": "ZCYX"})
        kept = masks[:3] if i == 0 else masks
        tifffile.imwrite(tmp_path / "masks" / f"a{i}.tif", kept, imagej=True, metadata={"axes": "ZYX"})
    report = inspect_source(tmp_path)
    assert report.pairs == 3 * PLANES
    problem = next(p for p in report.problems if "a0.tif" in p.file)
    assert "3 planes" in problem.problem and "has 5" in problem.problem


def test_twelve_bit_values_reach_the_network_in_order_with_one_rule_for_all_images(tmp_path):
    """A dim image stays dimmer than a bright one: no per-image stretch, and no clipping that would tie values."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    ramp = np.arange(SIDE * SIDE, dtype=np.uint16).reshape(SIDE, SIDE)
    for i, top in enumerate((400, 1000, 2500, 4095)):  # four exposures of one 12-bit camera
        image = (ramp * (top / ramp.max())).astype(np.uint16)
        tifffile.imwrite(tmp_path / "images" / f"e{i}.tif", image)
        image_io.write_png(tmp_path / "masks" / f"e{i}.png", ((ramp % 7) == 0).astype(np.uint8) * 255)
    dataset, _ = ingest(tmp_path, "exposures", tmp_path / "ds")
    rule = dataset.rule
    assert rule.kind == PERCENTILE and dataset.source_bits == 12
    raw = np.concatenate([dataset.read_pair(s)[0].ravel() for s in dataset.stems])
    unit = np.concatenate([rule.to_unit(dataset.read_pair(s)[0]).ravel() for s in dataset.stems])
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(unit[order]) >= 0)  # the same order as the camera's values, across all four images
    distinct = len(np.unique(raw))
    assert len(np.unique(unit)) == distinct  # nothing tied by clipping or 8-bit rounding
    expected_low, expected_high = np.percentile(raw.astype(np.float64), [1.0, 99.8])
    assert rule.low[0] == pytest.approx(expected_low) and rule.high[0] == pytest.approx(expected_high)
    bright = rule.to_unit(dataset.read_pair("e3")[0]).max()
    dim = rule.to_unit(dataset.read_pair("e0")[0]).max()
    assert bright > 1.0 > dim  # the brightest exposure goes past the 99.8th percentile, unclipped


def test_a_4_channel_image_trains_into_a_4_channel_network(tmp_path):
    from unet.config import Config
    from unet.training import train

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        image = rng.integers(0, 255, (SIDE, SIDE, 4), dtype=np.uint8)
        image[8:20, 8:20, 2] = 255
        mask = np.zeros((SIDE, SIDE), np.uint8)
        mask[8:20, 8:20] = 1
        tifffile.imwrite(tmp_path / "images" / f"q{i}.tif", image, photometric="minisblack", planarconfig="contig")
        image_io.write_png(tmp_path / "masks" / f"q{i}.png", mask)
    dataset, report = ingest(tmp_path, "four", tmp_path / "ds")
    assert dataset.channels == 4 and dataset.image_format == "tif" and "4 channels" in report.found
    assert dataset.rule.is_eight_bit  # 8-bit data keeps the plain value / 255
    run = tmp_path / "run"
    assert train(run, dataset.root, Config.from_dict(TINY)) == 0
    predictor = Predictor.from_run(run)
    assert predictor.channels == 4
    assert predictor.predict(dataset.read_pair("q0")[0]).mask().shape == (SIDE, SIDE)


def test_the_2_channel_16_bit_stack_trains_and_predicts_every_plane(stored_stacks, stacks_source, tmp_path):
    run = tmp_path / "run"
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(stacks_source), "--out", str(run),
                           "--config", str(tmp_path / "tiny.json")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    recorded = json.loads((run / "training_data.json").read_text())
    assert recorded["channels"] == CHANNELS and recorded["intensity"]["kind"] == PERCENTILE
    predictor = Predictor.from_run(run)
    assert predictor.channels == CHANNELS
    assert predictor.rule == Intensity.from_record(recorded["intensity"], CHANNELS)

    written = predict_folder(run, stacks_source / "images", tmp_path / "predicted")
    assert sorted(p.name for p in written) == ["embryo0.tif", "embryo1.tif", "embryo2.tif"]
    masks = tifffile.imread(written[0])
    assert masks.shape == (PLANES, SIDE, SIDE)  # one mask plane per image plane
    assert set(np.unique(masks)) <= {0, 255}  # in the user's own mask values


def test_inference_applies_the_runs_rule_to_the_raw_values(stored_stacks):
    """The network sees the same numbers at inference as in training: the recorded percentiles, per channel."""
    image, _ = stored_stacks.read_pair(stored_stacks.stems[0])
    unit, notes = prepare_image(image, CHANNELS, stored_stacks.rule, stored_stacks.source_bits)
    low, high = np.array(stored_stacks.rule.low), np.array(stored_stacks.rule.high)
    np.testing.assert_allclose(unit, (image.astype(np.float64) - low) / (high - low), rtol=1e-5, atol=1e-6)
    assert not notes


def test_an_image_with_the_wrong_channel_count_is_refused_naming_both(stored_stacks):
    rgb = np.zeros((SIDE, SIDE, 3), np.uint16)
    rgb[..., 0] = 5
    with pytest.raises(UserError, match="3 channels but the model takes 2"):
        prepare_image(rgb, CHANNELS, stored_stacks.rule, stored_stacks.source_bits)
    with pytest.raises(UserError, match="2 channels but the model takes 1"):
        prepare_image(np.zeros((SIDE, SIDE, 2), np.uint8), 1)


def test_a_float_image_is_stored_as_float_and_scaled_by_percentiles(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        image = rng.normal(0.0, 5.0, (SIDE, SIDE)).astype(np.float32)  # e.g. a deconvolved or ratio image
        mask = (image > 4).astype(np.uint8)
        tifffile.imwrite(tmp_path / "images" / f"f{i}.tif", image)
        image_io.write_png(tmp_path / "masks" / f"f{i}.png", mask)
    dataset, report = ingest(tmp_path, "float", tmp_path / "ds")
    assert dataset.image_dtype == "float32" and "32-bit float" in report.found
    stored, _ = dataset.read_pair("f2")
    np.testing.assert_array_equal(stored, tifffile.imread(tmp_path / "images" / "f2.tif"))
    assert dataset.rule.kind == PERCENTILE and dataset.rule.low[0] < 0 < dataset.rule.high[0]
