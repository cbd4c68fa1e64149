"""The mask canvas in a real browser: mouse strokes land on the right image pixels with the right values.

The harness page (canvas_harness.py) is served by `streamlit run`; Chromium drives it with `page.mouse`, and each
test reads the 16-bit PNG the harness wrote from the edit the browser sent, so what is checked is the whole
path: pointer events -> JS mask -> PNG -> Python -> file. Expected pixels are computed from the painting
canvas's on-screen box (which includes the zoom), with 2 px of slack only at stroke edges.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, screenshot, streamlit_server, wait_for_app

HARNESS = Path(__file__).with_name("canvas_harness.py")
BRUSH = 12  # the default brush size: radius 6 image pixels
CELL, MEMBRANE = 1, 2


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The harness on a free port; yields its URL and the PNG path its edits go to (a tag is added per test)."""
    folder = tmp_path_factory.mktemp("canvas")
    out = folder / "mask.png"
    env = {**os.environ, "HARNESS_SIZE": "200x150", "HARNESS_MODE": "semantic", "HARNESS_OUT": str(out),
           "PYTHONPATH": str(ROOT)}
    with streamlit_server(["streamlit", "run", str(HARNESS)], env, folder / "streamlit.log") as url:
        yield url, out


@pytest.fixture(autouse=True)
def no_page_errors(page) -> Iterator[None]:
    """The component must never throw: any uncaught error in the page fails the test."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    yield
    assert not errors, errors


class Canvas:
    """The canvas on one harness page, with image <-> screen coordinates taken from the painting canvas's box."""

    def __init__(self, page, harness: tuple[str, Path], tag: str, size: str = "200x150", mode: str = "semantic"):
        url, out = harness
        self.page = page
        self.out = out.with_name(f"{out.stem}-{tag}{out.suffix}")
        self.width, self.height = (int(v) for v in size.split("x"))
        page.goto(f"{url}/?size={size}&mode={mode}&tag={tag}")
        wait_for_app(page)
        expect(page.locator("[data-testid='mask-canvas-viewport'][data-ready='true']")).to_be_attached()
        self.canvas = page.get_by_test_id("mask-canvas")
        expect(self.canvas).to_be_visible()

    def box(self) -> dict[str, float]:
        return self.canvas.bounding_box()

    def scale(self) -> float:
        """Screen pixels per image pixel."""
        return self.box()["width"] / self.width

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Image coordinates (pixel i spans [i, i + 1)) to page coordinates."""
        box = self.box()
        return box["x"] + x * box["width"] / self.width, box["y"] + y * box["height"] / self.height

    def to_image(self, sx: float, sy: float) -> tuple[float, float]:
        box = self.box()
        return (sx - box["x"]) * self.width / box["width"], (sy - box["y"]) * self.height / box["height"]

    def drag(self, points: list[tuple[float, float]], steps: int = 8) -> None:
        """Press the left button at the first image point, move through the others, release at the last."""
        mouse = self.page.mouse
        screen = [self.to_screen(x, y) for x, y in points]
        mouse.move(*screen[0])
        mouse.down()
        for point in screen[1:]:
            mouse.move(*point, steps=steps)
        mouse.up()

    def click(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).click()

    def picture_pixel(self, x: int, y: int) -> list[int]:
        """The RGBA of the picture canvas at image pixel (x, y)."""
        script = "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)"
        return self.page.get_by_test_id("mask-canvas-image").evaluate(script, [x, y])

    def overlay(self) -> np.ndarray:
        """The painted overlay as drawn on screen now: [H, W, 4] RGBA of the mask canvas at native size."""
        script = "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
        rgba = np.array(self.canvas.evaluate(script), np.uint8)
        return rgba.reshape(self.height, self.width, 4)

    def saved(self, revision: int) -> np.ndarray:
        """The mask the harness saved for `revision` (waits for it)."""
        expect(self.page.get_by_text(f"saved revision {revision}", exact=True)).to_be_visible()
        mask = cv2.imread(str(self.out), cv2.IMREAD_UNCHANGED)
        assert mask is not None and mask.dtype == np.uint16, "the harness did not write a 16-bit PNG"
        assert mask.shape == (self.height, self.width)
        return mask


def distance_to_segment(shape: tuple[int, int], a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance of every pixel centre to the segment a-b, in image pixels."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    return np.hypot(x - ax - t * dx, y - ay - t * dy)


def assert_stroke(mask: np.ndarray, value: int, a: tuple[float, float], b: tuple[float, float], radius: float):
    """Pixels well inside the stroke hold `value`; pixels holding it are at most 2 px beyond its edge."""
    distance = distance_to_segment(mask.shape, a, b)
    inside = distance <= radius - 2
    assert inside.any()
    assert (mask[inside] == value).all(), f"{int((mask[inside] != value).sum())} pixels inside the stroke missed"
    painted = mask == value
    assert (distance[painted] <= radius + 2).all(), "paint landed outside the stroke"
    # exact at the centre line
    for t in np.linspace(0, 1, 9):
        cx, cy = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
        assert mask[int(cy), int(cx)] == value, (cx, cy)


def test_strokes_of_two_classes_land_on_their_pixels_and_undo_redo_the_last(page, harness) -> None:
    canvas = Canvas(page, harness, "classes")
    assert canvas.scale() > 1  # the small picture is fitted (enlarged) into the view
    cell = ((30.5, 40.5), (170.5, 40.5))
    membrane = ((100.5, 70.5), (100.5, 135.5))

    canvas.click("cell")
    expect(page.get_by_role("button", name="cell", exact=True)).to_have_attribute("aria-pressed", "true")
    canvas.drag(list(cell))
    canvas.click("membrane")
    canvas.drag(list(membrane))
    mask = canvas.saved(2)
    assert_stroke(mask, CELL, *cell, radius=BRUSH / 2)
    assert_stroke(mask, MEMBRANE, *membrane, radius=BRUSH / 2)
    assert set(np.unique(mask)) == {0, CELL, MEMBRANE}
    assert mask[:25].max() == 0 and mask[:, :20].max() == 0 and mask[:, 180:].max() == 0  # far away: nothing
    status = page.get_by_test_id("mask-canvas-status")
    expect(status).to_contain_text("zoom ")
    expect(status).to_contain_text("class membrane")
    screenshot(page, "mask_canvas_strokes")

    canvas.click("Undo")
    undone = canvas.saved(3)
    assert not (undone == MEMBRANE).any()
    np.testing.assert_array_equal(undone == CELL, mask == CELL)  # the first stroke is intact
    assert set(np.unique(undone)) == {0, CELL}

    canvas.click("Redo")
    np.testing.assert_array_equal(canvas.saved(4), mask)


def test_zoomed_in_painting_hits_native_pixels_of_a_large_image(page, harness) -> None:
    canvas = Canvas(page, harness, "large", size="2000x1500")
    fitted = canvas.scale()
    assert fitted < 1  # the whole 2000x1500 picture fits the view at first
    for _ in range(6):
        canvas.click("Zoom in")
    scale = canvas.scale()
    assert scale == pytest.approx(fitted * 1.5**6, rel=1e-3)
    expect(page.get_by_test_id("mask-canvas-status")).to_contain_text(f"zoom {round(scale * 100)}%")
    page.get_by_label("Brush size").fill("2")

    # a horizontal stroke through the middle of the view, 160 screen pixels (~40 image pixels) long
    view = page.get_by_test_id("mask-canvas-viewport").bounding_box()
    sy = view["y"] + view["height"] / 2
    sx0, sx1 = view["x"] + view["width"] / 2 - 80, view["x"] + view["width"] / 2 + 80
    (x0, y), (x1, _) = canvas.to_image(sx0, sy), canvas.to_image(sx1, sy)
    page.mouse.move(sx0, sy)
    page.mouse.down()
    page.mouse.move(sx1, sy, steps=10)
    page.mouse.up()

    mask = canvas.saved(1)
    assert mask.shape == (1500, 2000)
    rows, cols = np.nonzero(mask)
    assert set(np.unique(mask[rows, cols])) == {CELL}
    assert abs(rows - y).max() <= 2.5, "the line is off its row"
    assert cols.min() >= x0 - 3 and cols.max() <= x1 + 3
    assert cols.max() - cols.min() >= (x1 - x0) - 3, "the line is shorter than the stroke"
    per_column = np.bincount(cols)
    assert per_column[per_column > 0].max() <= 5, "the line is not thin: painting did not hit native pixels"
    assert mask[int(y), int((x0 + x1) / 2)] == CELL


def test_new_object_gives_each_stroke_its_own_id(page, harness) -> None:
    canvas = Canvas(page, harness, "objects", mode="instances")
    first, second = ((30.5, 40.5), (90.5, 40.5)), ((110.5, 110.5), (170.5, 110.5))
    canvas.click("New object")
    canvas.drag(list(first))
    canvas.click("New object")
    canvas.drag(list(second))
    mask = canvas.saved(2)
    assert set(np.unique(mask)) == {0, 1, 2}
    assert_stroke(mask, 1, *first, radius=BRUSH / 2)
    assert_stroke(mask, 2, *second, radius=BRUSH / 2)
    expect(page.get_by_test_id("mask-canvas-status")).to_contain_text("object 2")


def test_lasso_fills_the_inside_of_a_closed_path_and_shows_it_at_once(page, harness) -> None:
    canvas = Canvas(page, harness, "lasso")
    canvas.click("Lasso fill")
    expect(page.get_by_role("button", name="Lasso fill", exact=True)).to_have_attribute("aria-pressed", "true")
    corners = [(40.5, 30.5), (120.5, 30.5), (120.5, 110.5), (40.5, 110.5), (40.5, 30.5)]
    canvas.drag(corners, steps=6)
    # On screen before anything comes back from Python (issue #25: the fill stayed invisible until a reload)
    overlay = canvas.overlay()
    assert (overlay[33:108, 43:118] == [0, 200, 80, 255]).all(), "the fill is not drawn on the canvas"
    assert overlay[:25, :, 3].max() == 0 and overlay[:, :35, 3].max() == 0, "the overlay shows paint outside"
    mask = canvas.saved(1)
    np.testing.assert_array_equal(overlay[..., 3] > 0, mask > 0)  # what is shown is what was saved
    assert (mask[33:108, 43:118] == CELL).all(), "the inside is not filled"
    outside = np.ones(mask.shape, bool)
    outside[28:113, 38:123] = False  # the square with 2 px of slack at its edges
    assert (mask[outside] == 0).all(), "the fill leaked outside the path"
    assert set(np.unique(mask)) == {0, CELL}


def test_caller_replacing_the_mask_or_picture_or_image(page, harness) -> None:
    """mask_version loads one undoable change; a new picture keeps mask, zoom and history; a new image resets."""
    canvas = Canvas(page, harness, "caller")
    stroke = ((30.5, 30.5), (170.5, 30.5))
    model = np.zeros((150, 200), np.uint16)
    model[100:125, 20:60] = MEMBRANE  # what the harness's "Fill from model" gives
    canvas.drag(list(stroke))
    painted = canvas.saved(1)
    assert_stroke(painted, CELL, *stroke, radius=BRUSH / 2)

    canvas.click("Fill from model")
    expect(page.get_by_test_id("mask-canvas-viewport")).to_have_attribute("data-mask-version", "1")
    canvas.click("Undo")  # undoes the load, not the stroke
    np.testing.assert_array_equal(canvas.saved(2), painted)
    canvas.click("Redo")
    np.testing.assert_array_equal(canvas.saved(3), model)

    box, before = canvas.box(), canvas.picture_pixel(5, 5)
    canvas.click("Brighter")
    wait_for_app(page)
    for _ in range(100):
        if canvas.picture_pixel(5, 5) != before:
            break
        time.sleep(0.05)
    assert canvas.picture_pixel(5, 5)[0] == before[0] + 60, "the picture was not swapped"
    assert canvas.box() == box  # zoom and position kept
    canvas.click("Undo")  # the history survived the new picture
    np.testing.assert_array_equal(canvas.saved(4), painted)

    canvas.click("Next image")
    expect(page.get_by_role("button", name="Undo", exact=True)).to_be_disabled()  # history reset
    second = ((100.5, 60.5), (160.5, 60.5))
    canvas.drag(list(second))
    mask = canvas.saved(5)
    assert not (mask == CELL)[20:42].any(), "the first image's stroke leaked into the next image"
    assert_stroke(mask, CELL, *second, radius=BRUSH / 2)
    np.testing.assert_array_equal(mask[mask != CELL], model[mask != CELL])  # the new image starts from `mask`


def test_keyboard_wheel_and_pan(page, harness) -> None:
    canvas = Canvas(page, harness, "keys")
    status = page.get_by_test_id("mask-canvas-status")
    canvas.click("Pan")  # focuses the component
    for key, tool in (("l", "Lasso fill"), ("e", "Eraser"), ("b", "Brush")):
        page.keyboard.press(key)
        expect(page.get_by_role("button", name=tool, exact=True)).to_have_attribute("aria-pressed", "true")

    stroke = ((40.5, 75.5), (160.5, 75.5))
    canvas.drag(list(stroke))
    painted = canvas.saved(1)
    page.keyboard.press("Control+z")
    assert not canvas.saved(2).any()
    page.keyboard.press("Control+y")
    np.testing.assert_array_equal(canvas.saved(3), painted)
    page.keyboard.press("Control+z")
    canvas.saved(4)
    page.keyboard.press("Control+Shift+Z")
    np.testing.assert_array_equal(canvas.saved(5), painted)
    page.keyboard.press("e")
    eraser = ((100.5, 60.5), (100.5, 90.5))
    canvas.drag(list(eraser))
    erased = canvas.saved(6)
    distance = distance_to_segment(erased.shape, *eraser)
    assert not erased[distance <= BRUSH / 2 - 2].any(), "the eraser left paint"
    np.testing.assert_array_equal(erased[distance > BRUSH / 2 + 2], painted[distance > BRUSH / 2 + 2])
    page.keyboard.press("b")

    # the wheel zooms around the cursor: the image point under it stays put
    sx, sy = canvas.to_screen(60.5, 100.5)
    page.mouse.move(sx, sy)
    expect(status).to_contain_text("x 60, y 100 · class cell")
    scale = canvas.scale()
    page.mouse.wheel(0, -400)
    expect(status).not_to_contain_text(f"zoom {round(scale * 100)}%")
    assert canvas.scale() > scale * 1.5
    assert canvas.to_image(sx, sy) == pytest.approx((60.5, 100.5), abs=0.3)

    # pan: the Pan tool, the middle button and Space + drag all move the picture and paint nothing
    def drag_moves_picture(button: str = "left") -> None:
        box = canvas.box()
        page.mouse.move(sx, sy)
        page.mouse.down(button=button)
        page.mouse.move(sx + 40, sy + 25, steps=4)
        page.mouse.up(button=button)
        moved = canvas.box()
        assert (moved["x"] - box["x"], moved["y"] - box["y"]) == pytest.approx((40, 25), abs=0.5)

    canvas.click("Pan")
    drag_moves_picture()
    canvas.click("Brush")
    drag_moves_picture("middle")
    page.keyboard.down("Space")
    drag_moves_picture()
    page.keyboard.up("Space")
    canvas.click("Fit")
    assert canvas.scale() == pytest.approx(scale, rel=1e-3)
    page.wait_for_timeout(300)  # a paint would be sent by now
    wait_for_app(page)
    np.testing.assert_array_equal(canvas.saved(6), erased)  # panning painted and sent nothing
