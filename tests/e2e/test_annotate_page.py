"""A user with images and no masks: uploads them on the Annotate page, paints two classes with the mouse, reloads
and finds the strokes saved, then undoes one. The saved mask file is read from the workspace, so the whole path
(mouse -> browser mask -> PNG -> Python -> dataset version on disk) is checked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot, wait_for_app

WIDTH, HEIGHT = 120, 90  # not square, so a swapped axis would show


def _images(folder) -> list[str]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(3):
        path = folder / f"plate{i}.png"
        cv2.imwrite(str(path), rng.integers(40, 200, (HEIGHT, WIDTH), dtype=np.uint8))
        paths.append(str(path))
    return paths


def _ready(page, stem: str | None = None) -> None:
    """The canvas takes strokes (for `stem`'s image, when given: after "Next image" the previous one may still
    be on screen for a moment, and a stroke on it would go to that image)."""
    image = f"[data-image-id$='/{stem}']" if stem else ""
    expect(page.locator(f"[data-testid='mask-canvas-viewport'][data-ready='true']{image}")).to_be_attached(
        timeout=30_000)


def _drag(page, points: list[tuple[float, float]]) -> None:
    """A stroke through image points (x, y), mapped to the screen through the painting canvas's box."""
    canvas = page.get_by_test_id("mask-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    screen = [(box["x"] + x * box["width"] / WIDTH, box["y"] + y * box["height"] / HEIGHT) for x, y in points]
    page.mouse.move(*screen[0])
    page.mouse.down()
    for point in screen[1:]:
        page.mouse.move(*point, steps=8)
    page.mouse.up()


def _saved(workspace, revision_text: str, page) -> np.ndarray:
    """The mask of plate0 in the version the page saved into, once the page says it saved."""
    expect(page.get_by_text(revision_text).first).to_be_visible(timeout=30_000)
    info = json.loads((workspace / "datasets" / "plates-e2e-v2" / "dataset.json").read_text())
    assert info["version"] == 2 and info["parent"] == "plates-e2e"
    return cv2.imread(str(workspace / "datasets" / "plates-e2e-v2" / "masks" / "plate0.png"), cv2.IMREAD_UNCHANGED)


def _file_shows(workspace, condition, timeout: float = 30.0) -> np.ndarray:
    """The saved mask of plate0 once `condition` holds for it (saves happen a moment after the mouse is up)."""
    path = workspace / "datasets" / "plates-e2e-v2" / "masks" / "plate0.png"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.exists() else None
        if mask is not None and condition(mask):
            return mask
        time.sleep(0.3)
    raise AssertionError(f"the saved mask did not change as expected within {timeout:.0f} s")


def _upload(page, app_url, files: list[str], name: str, classes: str) -> None:
    """On the Annotate page: upload images without masks under `name`, with `classes`, and save them."""
    page.goto(f"{app_url}/annotate")
    wait_for_app(page)
    expander = page.get_by_test_id("stExpander").filter(has_text="Start from images without masks")
    expect(expander).to_be_visible()
    if expander.locator("details").get_attribute("open") is None:  # open already when the workspace has no dataset
        expander.get_by_text("Start from images without masks").click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Images")
    uploader.locator("input[type='file']").set_input_files(files)
    for path in files:  # every upload finished before the form is used (a click during one was lost on CI)
        expect(uploader.get_by_text(Path(path).name).first).to_be_visible(timeout=60_000)
    wait_for_app(page)
    for box, value in (("Dataset name", name), ("Classes", classes)):
        page.get_by_role("textbox", name=box).fill(value)
        page.get_by_role("textbox", name=box).press("Enter")  # committed, and its rerun over, before the click
        wait_for_app(page)
    page.get_by_role("button", name="Save the images to annotate").click()


def test_two_classes_painted_with_the_mouse_are_saved_survive_a_reload_and_undo(page, app_url, workspace, tmp_path):
    _upload(page, app_url, _images(tmp_path / "plates"), "plates-e2e", "background, cell, membrane")
    wait_for_app(page)
    expect(page.get_by_text("0 of 3 images have a mask")).to_be_visible(timeout=30_000)
    _ready(page)

    page.get_by_role("button", name="cell", exact=True).click()
    _drag(page, [(20, 30), (60, 30)])  # horizontal, class 1
    mask = _saved(workspace, "saved 'plate0' in 'plates-e2e-v2'", page)
    assert mask.shape == (HEIGHT, WIDTH)
    _ready(page)
    page.get_by_role("button", name="membrane", exact=True).click()
    _drag(page, [(90, 20), (90, 70)])  # vertical, class 2
    _file_shows(workspace, lambda m: (m == 2).any())

    page.reload()
    wait_for_app(page)
    _ready(page)
    expect(page.get_by_text("1 of 3 images have a mask")).to_be_visible()
    mask = cv2.imread(str(workspace / "datasets" / "plates-e2e-v2" / "masks" / "plate0.png"), cv2.IMREAD_UNCHANGED)
    assert mask[30, 25:56].tolist() == [1] * 31  # the cell stroke's centre line
    assert mask[25:66, 90].tolist() == [2] * 41  # the membrane stroke's centre line
    assert (mask[75:, :60] == 255).all() and (mask[:10, :80] == 255).all()  # unpainted: not labelled
    assert set(np.unique(mask).tolist()) == {1, 2, 255}
    screenshot(page, "annotate-page")

    # Undo in the reloaded page has no history of the strokes made before the reload; paint one more and undo it.
    page.get_by_role("button", name="membrane", exact=True).click()
    before = (mask == 2).sum()
    _drag(page, [(10, 80), (50, 80)])
    _file_shows(workspace, lambda m: (m == 2).sum() > before)
    page.get_by_role("button", name="Undo").click()
    mask = _file_shows(workspace, lambda m: (m == 2).sum() == before)
    assert (mask == 2).sum() == before and (mask[80, 15:46] == 255).all()  # the last stroke is gone
    assert mask[30, 25:56].tolist() == [1] * 31  # the earlier ones stay


def _overlay(page, width: int, height: int) -> np.ndarray:
    """The painted overlay as the canvas shows it now: [H, W, 4] RGBA at the image's native size."""
    script = "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
    return np.array(page.get_by_test_id("mask-canvas").evaluate(script), np.uint8).reshape(height, width, 4)


def test_a_two_channel_16_bit_stack_uploaded_with_gray_images_is_drawn_with_a_lasso_seen_at_once(
        page, app_url, workspace, tmp_path):
    """Issue #25: the stack's planes open (no "is not an image"), the gray images are kept as a dataset of their
    own named on the page, and a lasso fill is on the canvas at once and in the saved mask."""
    import tifffile

    folder = tmp_path / "mixed"
    gray = _images(folder)[:2]  # two 8-bit gray images (ISBI-like)
    stack = folder / "stack_2ch_16bit.tif"
    rng = np.random.default_rng(3)
    tifffile.imwrite(stack, rng.integers(500, 4000, (5, 2, 64, 64), dtype=np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    _upload(page, app_url, [*gray, str(stack)], "stack-e2e", "background, cell")
    wait_for_app(page)
    expect(page.get_by_text("were saved as 2 datasets")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("'stack-e2e' (5 images, 2 channels)", exact=False)).to_be_visible()
    expect(page.get_by_text("'stack-e2e-1ch' (2 images, 1 channel)", exact=False)).to_be_visible()
    expect(page.get_by_text("0 of 5 images have a mask")).to_be_visible(timeout=30_000)
    assert sorted(p.name for p in (workspace / "datasets" / "stack-e2e-1ch" / "unlabelled").iterdir()) == [
        "plate0.png", "plate1.png"]
    _ready(page)
    expect(page.get_by_text("is not an image")).to_have_count(0)

    info = json.loads((workspace / "datasets" / "stack-e2e" / "dataset.json").read_text())
    colour = [*info["classes"][1]["color"], 255]
    page.get_by_role("button", name="Lasso fill", exact=True).click()
    page.get_by_role("button", name="cell", exact=True).click()
    corners = [(10, 12), (50, 12), (50, 40), (10, 40), (10, 12)]
    canvas = page.get_by_test_id("mask-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    screen = [(box["x"] + x * box["width"] / 64, box["y"] + y * box["height"] / 64) for x, y in corners]
    page.mouse.move(*screen[0])
    page.mouse.down()
    for point in screen[1:]:
        page.mouse.move(*point, steps=6)
    page.mouse.up()
    shown = _overlay(page, 64, 64)  # no reload, no rerun waited for
    assert (shown[14:38, 12:48] == colour).all(), "the lasso fill is not on the canvas"
    assert shown[:10, :, 3].max() == 0 and shown[42:, :, 3].max() == 0

    expect(page.get_by_text("saved 'stack_2ch_16bit-p001' in 'stack-e2e-v2'")).to_be_visible(timeout=30_000)
    path = workspace / "datasets" / "stack-e2e-v2" / "masks" / "stack_2ch_16bit-p001.png"
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (64, 64) and (mask[14:38, 12:48] == 1).all()  # class 1, 'cell'
    around = np.concatenate([mask[:10].ravel(), mask[42:].ravel(), mask[:, :8].ravel(), mask[:, 52:].ravel()])
    assert len(set(around.tolist())) == 1 and around[0] != 1  # unpainted, whatever it is stored as
    expect(page.get_by_text("1 of 5 images have a mask")).to_be_visible()
    wait_for_app(page)
    _ready(page)
    np.testing.assert_array_equal(_overlay(page, 64, 64)[..., 3] > 0, mask == 1)  # the page's rerun kept it
    screenshot(page, "annotate-stack-lasso")
