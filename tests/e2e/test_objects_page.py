"""A user of a run trained to separate touching objects uploads an image of touching cells: the Inference page
shows each in its own colour, counts them right and offers the object table (issue #15).

The run is trained here by the command line, as a user would, on generated images whose objects touch and whose
edges are a little darker (as between two pressed nuclei). That is easy enough for a tiny U-Net to learn in
seconds, so the count on the page is the watershed's, not luck.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, download, screenshot, wait_for_app
from unet import images as image_io
from unet.instances import boundary_targets

SIDE = 64
SHADES = np.array([25, 210, 110], np.uint8)  # background, object interior, object edge


def _touching_cells(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An image of 2 to 4 touching squares (a row, each against the next) and their instance labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((SIDE, SIDE), np.uint16)
    count, side = 2 + seed % 3, 14
    top, left = int(rng.integers(4, SIDE - side - 4)), int(rng.integers(2, 6))
    for k in range(count):
        labels[top : top + side, left + k * side : left + (k + 1) * side] = k + 1
    image = SHADES[boundary_targets(labels)] + rng.integers(0, 12, (SIDE, SIDE)).astype(np.uint8)
    return image, labels


@pytest.fixture(scope="module")
def objects_run(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("touching")
    (data / "images").mkdir()
    (data / "masks").mkdir()
    for i in range(12):
        image, labels = _touching_cells(i)
        image_io.write_png(data / "images" / f"t{i}.png", image)
        image_io.write_png(data / "masks" / f"t{i}.png", labels)
    run_dir = workspace / "runs" / "20260101-000000-touching-cells"
    # A tiny network trained for seconds is not deterministic on a multi-core CPU: once in about ten runs it found
    # no confident interior at all. The page is what this test checks, so a model that separates the held-back
    # objects (AP@0.5 of at least 0.5, from its own held_back.json) is trained first, with a new seed if need be.
    ap50 = None
    for seed in (0, 1, 2):
        config = data / f"config-{seed}.json"
        config.write_text(json.dumps({"data": {"input_size": SIDE}, "augment": {"enabled": False},
                                      "model": {"depth": 2, "base_filters": 8},
                                      "train": {"epochs": 60, "batch_size": 4, "learning_rate": 0.01, "seed": seed,
                                                "early_stopping_patience": 0}}))
        shutil.rmtree(run_dir, ignore_errors=True)
        done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(data), "--out", str(run_dir),
                               "--config", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        ap50 = (json.loads((run_dir / "held_back.json").read_text()).get("objects") or {}).get("ap50")
        if ap50 is not None and ap50 >= 0.5:
            break
    assert ap50 is not None and ap50 >= 0.5, f"three tiny trainings separated too few objects (AP@0.5 {ap50})"
    return run_dir


def test_touching_cells_get_separate_colours_a_right_count_and_a_table(page, app_url, objects_run, tmp_path):
    image, labels = _touching_cells(101)  # 4 touching squares, never seen in training
    assert labels.max() == 4
    path = tmp_path / "four cells.png"
    image_io.write_png(path, image)

    page.goto(f"{app_url}/inference")
    wait_for_app(page)
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option").filter(has_text="touching-cells").first.click()
    wait_for_app(page)
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Images (or a zip")
    uploader.locator("input[type='file']").set_input_files(str(path))
    wait_for_app(page)
    expect(page.get_by_text("four cells.png: image · 4 objects, each in its own colour")).to_be_visible(
        timeout=60_000)
    found = page.get_by_test_id("stMetric").filter(has_text="Objects found")
    expect(found).to_contain_text("4")

    table = download(page, "Objects (CSV)", tmp_path / "objects.csv")
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert len(rows) == 4 and {r["image"] for r in rows} == {"four cells.png"}
    areas = sorted(int(r["area"]) for r in rows)
    assert areas[0] > 0.6 * 14 * 14 and areas[-1] < 1.4 * 14 * 14  # each a whole square, none two merged
    screenshot(page, "inference-objects")
