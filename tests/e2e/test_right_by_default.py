"""Issue #13's path, as a new user walks it: upload 512x512 images, apply the suggested settings, start training,
reload (settings and run still there), stop, predict a 4x larger image, download its mask: a viewable PNG of the
image's size."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import download, screenshot, start_training, wait_for_app


def _membrane_pair(i: int, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Cells (255) between membranes (0) about 4 px wide, and a picture where the membranes are dark."""
    mask = np.full((size, size), 255, np.uint8)
    for x in range(15 + 7 * i, size, 70):
        cv2.line(mask, (x, 0), (x + 40, size), 0, 4)
    for y in range(10 + 5 * i, size, 55):
        cv2.line(mask, (0, y), (size, y + 25), 0, 4)
    noise = np.random.default_rng(i).normal(0, 12, (size, size))
    image = np.clip(np.where(mask > 0, 170, 60) + noise, 0, 255).astype(np.uint8)
    return image, mask


def _dataset_zip(path: Path, count: int = 6) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(count):
            image, mask = _membrane_pair(i)
            archive.writestr(f"images/em{i}.png", cv2.imencode(".png", image)[1].tobytes())
            archive.writestr(f"masks/em{i}.png", cv2.imencode(".png", mask)[1].tobytes())
    return path


def _badge(page, state: str):
    return page.get_by_test_id("stMarkdown").locator("p").filter(has_text=re.compile(rf"{state}$")).first


def test_suggested_settings_survive_a_reload_and_a_larger_image_gets_a_viewable_mask(page, app_url, tmp_path):
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_role("tab", name="Upload a zip").click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="A zip with")
    uploader.locator("input[type='file']").set_input_files(str(_dataset_zip(tmp_path / "em-sections.zip")))
    wait_for_app(page)
    page.get_by_role("button", name="Check and save").first.click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="2. Check: em-sections")).to_be_visible(timeout=60_000)

    # The Model page proposes crops at native resolution for thin membranes, and applies them in one click.
    page.get_by_role("link", name="Model").first.click()
    wait_for_app(page)
    expect(page.get_by_text("Suggested for “em-sections”")).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile("256×256 crops at the images' own resolution"))).to_be_visible()
    expect(page.get_by_text(re.compile("would vanish")).first).to_be_visible()
    page.get_by_role("button", name="Apply the suggestion").click()
    wait_for_app(page)
    expect(page.get_by_text("depth 4 · 8 filters · 256×256 input").first).to_be_visible()

    page.get_by_role("link", name="Train").first.click()
    wait_for_app(page)
    start_training(page, 300)
    expect(_badge(page, "Training")).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stPlotlyChart")).to_be_visible(timeout=180_000)  # an epoch done: a model saved

    # A reload keeps the run on screen, the dataset and the settings.
    page.reload()
    wait_for_app(page)
    expect(_badge(page, "Training")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("em-sections").first).to_be_visible()
    expect(page.get_by_text("depth 4 · 8 filters · 256×256 input").first).to_be_visible()
    screenshot(page, "right-by-default-train")
    second = page.context.new_page()  # a new tab starts from the same dataset and settings
    second.goto(f"{page.url.split('/train')[0]}/model")
    wait_for_app(second)
    expect(second.get_by_text("em-sections").first).to_be_visible()
    expect(second.get_by_text("depth 4 · 8 filters · 256×256 input").first).to_be_visible()
    second.close()
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    expect(_badge(page, "Stopped")).to_be_visible(timeout=120_000)
    wait_for_app(page)

    # A 1024x1024 image (4x the pixels of the training images) is predicted at the training scale.
    big, _ = _membrane_pair(9, size=1024)
    path = tmp_path / "big section.png"
    cv2.imwrite(str(path), big)
    run_id = parse_qs(urlparse(page.url).query)["run"][0]  # the run on screen, which the Inference page then uses
    page.goto(f"{app_url}/inference?run={run_id}")
    wait_for_app(page)
    page.get_by_test_id("stFileUploader").filter(has_text="Images (or a zip").locator(
        "input[type='file']").set_input_files(str(path))
    wait_for_app(page)
    expect(page.get_by_text("big section.png: image · overlay · mask")).to_be_visible(timeout=120_000)
    screenshot(page, "right-by-default-inference")
    target = download(page, "Mask (PNG)", tmp_path / "mask.png")
    picture = Image.open(io.BytesIO(target.read_bytes()))
    assert picture.size == (1024, 1024)
    values = set(np.unique(np.array(picture)).tolist())
    assert values <= {0, 255}  # the training masks' own values: an image viewer shows black and white (or colours)
    shown = np.array(picture.convert("RGB"))
    assert shown.max() > 0, "a viewer must not show a black square"
