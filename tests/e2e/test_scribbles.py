"""A few strokes are enough (issue #25): a user paints two short strokes per image, one of background and one of
cells, on four images on the Annotate page; a model trained on those strokes alone predicts both classes, where
the old rule (unpainted = background) taught it that nearly everything is background."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import cv2
import numpy as np
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, wait_for_app
from tests.e2e.test_annotate_page import _ready, _upload

WIDTH, HEIGHT = 120, 90  # as the Annotate page test's images: its stroke helper maps through the canvas box
CELLS = [(30, 30), (85, 55), (40, 65)]  # bright discs of radius 12 on a dark, noisy field


def _plates(folder) -> list[str]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(4):
        image = rng.normal(50, 12, (HEIGHT, WIDTH))
        for x, y in CELLS:
            cv2.circle(image, (x + 2 * i, y), 12, 190, -1)
        path = folder / f"plate{i}.png"
        cv2.imwrite(str(path), np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8))
        paths.append(str(path))
    return paths


def _stroke(page, points) -> None:
    from tests.e2e.test_annotate_page import _drag

    _drag(page, points)


def _both_saved(path, timeout: float = 30.0) -> None:
    """Wait until the saved mask has both strokes (a save follows the mouse by a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.exists() else None
        if mask is not None and {0, 1} <= set(np.unique(mask).tolist()):
            return
        time.sleep(0.3)
    raise AssertionError(f"{path.name} was not saved with both strokes within {timeout:.0f} s")


def test_a_few_strokes_of_two_classes_train_a_model_that_finds_both(page, app_url, workspace, tmp_path):
    images = _plates(tmp_path / "plates")
    _upload(page, app_url, images, "strokes-e2e", "background, cell")
    wait_for_app(page)
    expect(page.get_by_text("0 of 4 images have a mask")).to_be_visible(timeout=30_000)
    for i in range(4):
        if i:
            page.get_by_role("button", name="Next image without a mask").click()
            wait_for_app(page)
        _ready(page, f"plate{i}")
        page.get_by_role("button", name="cell", exact=True).click()
        x, y = CELLS[0]
        _stroke(page, [(x + 2 * i - 6, y), (x + 2 * i + 6, y)])  # across the first cell
        expect(page.get_by_text(f"{i + 1} of 4 images have a mask")).to_be_visible(timeout=30_000)
        _ready(page, f"plate{i}")
        page.get_by_role("button", name="background", exact=True).click()
        _stroke(page, [(60, 10), (110, 10)])  # along the top, away from the cells
        _both_saved(workspace / "datasets" / "strokes-e2e-v2" / "masks" / f"plate{i}.png")
    version = workspace / "datasets" / "strokes-e2e-v2"
    expect(page.get_by_text("4 of 4 images have a mask")).to_be_visible(timeout=30_000)
    masks = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((version / "masks").glob("*.png"))]
    assert len(masks) == 4
    labelled = sum(int((m != 255).sum()) for m in masks) / sum(m.size for m in masks)
    assert 0.005 < labelled < 0.15, labelled  # strokes, not whole masks
    assert all({0, 1} <= set(np.unique(m).tolist()) for m in masks)

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"data": {"input_size": 64}, "augment": {"enabled": False},
                                  "model": {"depth": 2, "base_filters": 8},
                                  "train": {"epochs": 40, "batch_size": 2, "learning_rate": 0.003,
                                            "validation_split": 0.25, "early_stopping_patience": 0}}))
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(version), "--out", str(run),
                              "--config", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path / "predicted"
    predicted = subprocess.run([sys.executable, "-m", "unet", "predict", "--run", str(run), "--images",
                                str(tmp_path / "plates"), "--out", str(out), "--class-indices"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    from PIL import Image

    for path in sorted(out.glob("*.png")):
        mask = np.asarray(Image.open(path))
        share = float((mask == 1).mean())
        assert 0.02 < share < 0.9, f"{path.name}: cells predicted on {share:.0%} of the image (all one class?)"
