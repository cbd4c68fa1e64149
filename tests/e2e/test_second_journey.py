"""The second journey: a user who comes back, reuses a name, switches datasets or watches a run start.

Each test walks a path that worked the first time and broke the second (issue #24): nothing a user made is lost,
mixed up with another dataset's, or shown in a state it is not in.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, screenshot, start_training, wait_for_app


def _demo_zip(folder: Path, name: str, count: int, seed: int) -> Path:
    from unet.demo import write_demo_dataset

    data = write_demo_dataset(folder / name, kind="cells", count=count, size=64, seed=seed)
    target = folder / f"{name}.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(data.rglob("*.png")):
            archive.write(path, path.relative_to(data).as_posix())
    return target


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def _zip_input(page):
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="A zip with")
    return uploader.locator("input[type='file']")


def _name_box(page):
    return page.get_by_role("textbox", name="Dataset name").filter(visible=True).first


def _dataset_page(page, app_url: str) -> None:
    page.goto(app_url)
    wait_for_app(page)


def test_the_same_name_saved_twice_from_the_dataset_page_keeps_both(page, app_url, workspace, tmp_path):
    first_zip = _demo_zip(tmp_path, "first", 4, seed=1)
    second_zip = _demo_zip(tmp_path, "second", 3, seed=2)
    _dataset_page(page, app_url)
    page.get_by_role("tab", name="Upload a zip").click()
    _zip_input(page).set_input_files(str(first_zip))
    _name_box(page).fill("plates")
    page.get_by_role("button", name="Check and save").filter(visible=True).first.click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="2. Check: plates")).to_be_visible()
    stored = workspace / "datasets" / "plates"
    before = _tree(stored)

    # A run trains on it, from the command line as a user would.
    run_dir = workspace / "runs" / "20260102-000000-plates-run"
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"data": {"input_size": 64}, "augment": {"enabled": False},
                                  "model": {"depth": 2, "base_filters": 4}, "train": {"epochs": 1}}))
    trained = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(stored), "--out", str(run_dir),
                              "--config", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]

    # The second zip under the same name: the page asks, and "add as a new version" keeps the first as it is.
    _zip_input(page).set_input_files(str(second_zip))
    _name_box(page).fill("plates")
    page.get_by_role("button", name="Check and save").filter(visible=True).first.click()
    wait_for_app(page)
    expect(page.get_by_text("A dataset named plates exists already")).to_be_visible()
    screenshot(page, "second-journey-name-taken")
    page.get_by_role("button", name=re.compile("Add them to .plates. as a new version")).click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="2. Check: plates-v2")).to_be_visible()
    assert _tree(stored) == before, "the dataset a run trained on must not change"
    joined = json.loads((workspace / "datasets" / "plates-v2" / "dataset.json").read_text())
    assert joined["pairs"] == 7

    # Once more, choosing a new name this time.
    _zip_input(page).set_input_files(str(second_zip))
    _name_box(page).fill("plates")
    page.get_by_role("button", name="Check and save").filter(visible=True).first.click()
    wait_for_app(page)
    page.get_by_role("button", name="Save them as “plates-2”").click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="2. Check: plates-2")).to_be_visible()
    assert _tree(stored) == before

    # The run that used the first still evaluates on its own data.
    scored = subprocess.run([sys.executable, "-m", "unet", "evaluate", "--run", str(run_dir), "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert "dice" in json.loads(scored.stdout)


def _open_upload(page, app_url: str) -> None:
    """The Annotate page with its upload section open (it starts closed once any dataset exists)."""
    page.goto(f"{app_url}/annotate")
    wait_for_app(page)
    if not _name_box(page).is_visible():
        page.get_by_text("Start from images without masks").click()
    expect(_name_box(page)).to_be_visible()


def _png(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (48, 64)).astype(np.uint8))
    return path


def test_the_same_name_saved_twice_from_the_annotate_page_keeps_every_drawn_mask(page, app_url, workspace,
                                                                                 tmp_path):
    from unet import annotation
    from unet.dataset import Dataset

    images = [_png(tmp_path / f"img{i}.png", i) for i in range(3)]
    _open_upload(page, app_url)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files([str(p) for p in images])
    _name_box(page).fill("draw")
    page.get_by_role("button", name="Save the images to annotate").click()
    wait_for_app(page)
    # Strokes saved as the page saves them (the canvas's own test draws in the browser): a version that holds them.
    upload = Dataset.load(workspace / "datasets" / "draw")
    drawing = np.zeros((48, 64), np.uint16)
    drawing[10:30, 10:40] = 1
    version = annotation.save_annotation(upload, "img0", drawing, workspace / "runs").dataset
    version = annotation.save_annotation(version, "img1", drawing, workspace / "runs").dataset
    assert version.name == "draw-v2" and version.stems == ["img0", "img1"]
    masks = _tree(version.root / "masks")

    # One more image saved under the version's name, as the user did with isbi-draw-v2.
    _open_upload(page, app_url)
    page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(_png(tmp_path / "img9.png", 9)))
    _name_box(page).fill("draw-v2")
    page.get_by_role("button", name="Save the images to annotate").click()
    wait_for_app(page)
    expect(page.get_by_text("A dataset named draw-v2 exists already")).to_be_visible()
    page.get_by_role("button", name=re.compile("Add them to .draw-v2. as a new version")).click()
    # The page follows what was just saved (and only then is the new version surely on disk).
    expect(page.get_by_role("combobox", name="Dataset")).to_match_aria_snapshot('- combobox "Dataset": draw-v3',
                                                                               timeout=60_000)
    assert _tree(version.root / "masks") == masks, "the drawn masks must stay"
    joined = Dataset.load(workspace / "datasets" / "draw-v3")
    assert joined.stems == ["img0", "img1"] and "img9" in joined.unlabelled
    assert _tree(joined.root / "masks") == masks
    screenshot(page, "second-journey-annotate-added")


def _badge_texts(page) -> str:
    return " ".join(page.get_by_test_id("stMainBlockContainer").locator("h3").all_inner_texts()) + " " + \
        " ".join(page.get_by_test_id("stMarkdown").locator("p").all_inner_texts())


def test_a_started_run_is_never_called_interrupted(page, app_url):
    _dataset_page(page, app_url)
    page.get_by_role("button", name="Load demo data").click()
    wait_for_app(page)
    page.get_by_role("link", name="Train").first.click()
    wait_for_app(page)
    start_training(page, 400)
    seen = []
    end, training_since = time.monotonic() + 90, None  # through the start, then 20 s of training
    while time.monotonic() < end and (training_since is None or time.monotonic() - training_since < 20):
        text = page.get_by_test_id("stMainBlockContainer").inner_text()
        seen.append(text)
        assert "Interrupted" not in text, text[:600]
        if training_since is None and "Training" in text:
            training_since = time.monotonic()
        time.sleep(1.0)
    assert any("Training" in t for t in seen)
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped", exact=False).first).to_be_visible(timeout=90_000)


def _class_boxes(page) -> list[str]:
    boxes = page.get_by_role("textbox", name=re.compile(r"^Class \d+$"))
    return [boxes.nth(i).input_value() for i in range(boxes.count())]


def _use_saved(page, name: str) -> None:
    page.get_by_role("tab", name="Saved datasets").click()
    page.get_by_role("combobox", name="Saved datasets").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.get_by_role("button", name="Use this dataset").click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name=f"2. Check: {name}")).to_be_visible()
    _open_classes(page)


def _open_classes(page) -> None:
    if not page.get_by_role("textbox", name="Class 0").is_visible():
        page.get_by_text("Classes: names and colours").click()
    expect(page.get_by_role("textbox", name="Class 0")).to_be_visible()


def test_switching_datasets_shows_each_ones_classes_task_and_settings(page, app_url, workspace, tmp_path):
    from unet.dataset import Dataset, ingest
    from unet.demo import write_demo_dataset

    root = workspace / "datasets"
    em, _ = ingest(write_demo_dataset(tmp_path / "em", "cells", count=4, size=64), "em-a", root)
    em.save_classes(["cell", "membrane"], [[10, 20, 30], [200, 100, 50]])
    street, _ = ingest(write_demo_dataset(tmp_path / "street", "shapes", count=4, size=64), "street-b", root)
    street.save_classes(["sky", "building", "road", "tree"], [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]])

    _dataset_page(page, app_url)
    _use_saved(page, "em-a")
    assert _class_boxes(page) == ["cell", "membrane"]
    _use_saved(page, "street-b")
    assert _class_boxes(page) == ["sky", "building", "road", "tree"]
    # Saving names on B writes into B only.
    page.get_by_role("textbox", name="Class 3").fill("vegetation")
    page.get_by_role("button", name="Save names and colours").click()
    expect(page.get_by_test_id("stSidebar")).to_contain_text("vegetation")
    assert [c.name for c in Dataset.load(root / "street-b").classes] == ["sky", "building", "road", "vegetation"]
    assert [c.name for c in Dataset.load(root / "em-a").classes] == ["cell", "membrane"]
    assert [list(c.color) for c in Dataset.load(root / "em-a").classes] == [[10, 20, 30], [200, 100, 50]]

    page.get_by_role("tab", name="Demo data").click()
    page.get_by_role("button", name="Load demo data").click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name=re.compile(r"2\. Check: demo-cells"))).to_be_visible()
    _open_classes(page)
    assert _class_boxes(page) == ["background", "cell"]
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar).to_contain_text("2 classes (background, cell)")

    # The Model page follows: the demo's one object class offers the task choice; B (four classes) does not, and
    # the sliders show what the config holds.
    page.get_by_role("link", name="Model").first.click()
    wait_for_app(page)
    expect(page.get_by_text("What to learn")).to_be_visible()
    depth = page.get_by_test_id("stSlider").filter(has_text="Depth (levels)").get_by_test_id("stSliderThumbValue")
    expect(sidebar).to_contain_text(f"depth {depth.inner_text()}")
    page.get_by_role("link", name="Dataset").first.click()
    wait_for_app(page)
    _use_saved(page, "street-b")
    assert _class_boxes(page) == ["sky", "building", "road", "vegetation"]
    page.get_by_role("link", name="Model").first.click()
    wait_for_app(page)
    expect(page.get_by_text("What to learn")).to_have_count(0)
    expect(sidebar).to_contain_text("4 classes (sky, building, road, vegetation)")
    expect(sidebar).to_contain_text(f"depth {depth.inner_text()}")
    screenshot(page, "second-journey-switch-datasets")
