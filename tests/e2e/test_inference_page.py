"""A user uploads an image to a trained model, sees the overlay, changes the opacity and downloads the zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import expect

from tests.e2e.conftest import download, screenshot, wait_for_app


def _overlay_source(page) -> str:
    return page.get_by_test_id("stImage").first.locator("img").get_attribute("src")


def test_upload_see_overlay_change_opacity_download_zip(page, app_url, trained_run, tmp_path: Path):
    image = np.random.default_rng(0).integers(0, 255, (150, 230), dtype=np.uint8)
    path = tmp_path / "my sample.png"
    cv2.imwrite(str(path), image)

    page.goto(f"{app_url}/inference?run={trained_run.name}")  # other browser tests add runs to the workspace
    wait_for_app(page)
    expect(page.get_by_text("tiny-cells").first).to_be_visible()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Images (or a zip")
    uploader.locator("input[type='file']").set_input_files(str(path))
    wait_for_app(page)
    expect(page.get_by_text("my sample.png: image · overlay · mask")).to_be_visible(timeout=60_000)

    # The lowest threshold, so the tiny model's mask covers pixels whatever it learned in its two epochs (opacity
    # has nothing to show on an empty mask); then the overlay must follow the opacity slider.
    threshold = page.get_by_test_id("stSlider").filter(has_text="Threshold").get_by_role("slider")
    threshold.focus()
    threshold.press("Home")
    wait_for_app(page)
    expect(threshold).to_have_attribute("aria-valuetext", "0.05")
    wait_for_app(page)
    before = _overlay_source(page)
    slider = page.get_by_test_id("stSlider").filter(has_text="Opacity").get_by_role("slider")
    slider.focus()
    for _ in range(4):
        slider.press("ArrowRight")
    expect(slider).to_have_attribute("aria-valuetext", "0.70")
    wait_for_app(page)
    expect(page.get_by_test_id("stImage").first.locator("img")).not_to_have_attribute("src", before, timeout=30_000)

    archive = download(page, "All 1 as zip", tmp_path / "predictions.zip")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert "measurements.csv" in names
    assert any(n.startswith("masks/") for n in names) and any(n.startswith("overlays/") for n in names)
    screenshot(page, "inference-page")
