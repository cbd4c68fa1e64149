"""A user uploads a zip of their images and masks, reads the check and sees the augmented preview."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, screenshot, wait_for_app
from unet.demo import write_demo_dataset


def _zip_with_one_broken_file(tmp_path: Path) -> Path:
    data = write_demo_dataset(tmp_path / "lab-cells", kind="cells", count=8, size=96)
    (data / "images" / "notes.png").write_text("this is not a picture")
    archive = tmp_path / "lab-cells.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(data.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(tmp_path))
    return archive


def test_uploaded_zip_is_checked_previewed_and_survives_refresh(page, app_url, tmp_path):
    archive = _zip_with_one_broken_file(tmp_path)
    page.goto(app_url)
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Dataset").first).to_be_visible()

    page.get_by_role("tab", name="Upload a zip").click()
    # Scoped to the zip uploader: the "Upload files" tab has file inputs too, and which comes first in the DOM
    # is not fixed (CI once set the file on the hidden tab's input).
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="A zip with")
    uploader.locator("input[type='file']").set_input_files(str(archive))
    expect(page.get_by_text("lab-cells.zip")).to_be_visible()
    page.get_by_role("button", name="Check and save").first.click()
    wait_for_app(page)

    expect(page.get_by_text("8 pairs ready")).to_be_visible()
    expect(page.get_by_text("notes.png").first).to_be_visible()
    expect(page.get_by_role("heading", name="3. Augmentation")).to_be_visible()
    preview = page.get_by_test_id("stImage")
    expect(preview).to_have_count(8)

    expect(page.get_by_text("current dataset", exact=False).first).to_be_visible()
    expect(page.get_by_test_id("stSidebar").get_by_text("lab-cells")).to_be_visible()
    page.set_viewport_size({"width": 1400, "height": 2300})
    path = screenshot(page, "dataset-page")
    page.set_viewport_size({"width": 1400, "height": 1000})
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copy(path, docs / "dataset-page.png")

    page.reload()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="2. Check: lab-cells")).to_be_visible()
