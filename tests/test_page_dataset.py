"""The Dataset page in Streamlit's AppTest: loading data, reading the check, changing augmentation."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from unet.demo import write_demo_dataset

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path / "workspace"))
    return tmp_path / "workspace"


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/dataset.py").run()
    assert not at.exception
    return at


def test_first_visit_offers_the_demo_data(workspace: Path):
    at = _page()
    assert any(b.label == "Load demo data" for b in at.button)
    assert any("Demo data" in i.value for i in at.info)  # the hint names the tab that makes some


def test_demo_data_loads_in_one_click_with_report_and_preview(workspace: Path):
    at = _page()
    next(b for b in at.button if b.label == "Load demo data").click().run()
    assert not at.exception
    assert not at.error
    assert "pairs ready" in at.success[0].value
    assert at.query_params["dataset"] in ("demo-cells", ["demo-cells"])
    assert (workspace / "datasets" / "demo-cells" / "dataset.json").exists()
    pairs = next(m for m in at.metric if m.label == "Image/mask pairs")
    assert int(pairs.value) == 48
    assert len(at.image) == 8


def test_turning_augmentation_off_changes_the_config_training_will_use(workspace: Path):
    at = _page()
    next(b for b in at.button if b.label == "Load demo data").click().run()
    assert at.session_state["config"].augment.enabled
    at.toggle(key="aug_enabled").set_value(False).run()
    assert not at.exception
    assert not at.session_state["config"].augment.enabled
    at.toggle(key="aug_enabled").set_value(True).run()
    assert at.session_state["config"].augment.rotate == 0.0  # free rotation resamples pixels: off by default
    at.checkbox(key="aug_on_rotate").check().run()
    assert at.session_state["config"].augment.rotate > 0
    at.slider(key="aug_rotate").set_value(90.0).run()
    assert at.session_state["config"].augment.rotate == 90.0
    at.checkbox(key="aug_on_rotate").uncheck().run()
    assert at.session_state["config"].augment.rotate == 0.0


def test_zip_with_a_broken_file_keeps_the_good_pairs_and_names_the_bad_one(workspace: Path, tmp_path: Path):
    data = write_demo_dataset(tmp_path / "mine", kind="cells", count=6, size=64)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for file in data.rglob("*.png"):
            zf.write(file, file.relative_to(tmp_path))
        zf.writestr("mine/images/broken.png", b"not an image at all")
    at = _page()
    at.file_uploader[0].upload("mine.zip", buffer.getvalue(), "application/zip").run()
    next(b for b in at.button if b.key == "save_zip").click().run()
    assert not at.exception
    assert "6 pairs ready" in at.success[0].value
    problems = at.table[0].value
    assert "broken.png" in " ".join(problems["File"].astype(str))


def test_a_zip_without_pairs_gets_a_plain_error_and_no_dataset(workspace: Path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("readme.txt", "hello")
    at = _page()
    at.file_uploader[0].upload("empty.zip", buffer.getvalue(), "application/zip").run()
    next(b for b in at.button if b.key == "save_zip").click().run()
    assert not at.exception
    assert at.error, "the user must be told why nothing was stored"
    assert "Traceback" not in at.error[0].value
    assert not list((workspace / "datasets").glob("*/dataset.json"))


def test_a_zip_of_16_bit_two_channel_stacks_shows_what_was_found_and_reads_stacks_as_chosen(workspace: Path):
    """Issue #14: the check names the stacks, channels and bit depth; the user's stack choice is applied."""
    import numpy as np
    import tifffile

    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(4):
            stack = rng.integers(0, 4095, (3, 2, 32, 32)).astype(np.uint16)  # Z, C, Y, X
            mask = np.zeros((32, 32), np.uint8)
            mask[8:20, 8:20] = 255
            image_bytes, mask_bytes = io.BytesIO(), io.BytesIO()
            tifffile.imwrite(image_bytes, stack, imagej=True, metadata={"axes": "ZCYX"})
            tifffile.imwrite(mask_bytes, mask)
            zf.writestr(f"stacks/images/s{i}.tif", image_bytes.getvalue())
            zf.writestr(f"stacks/masks/s{i}.tif", mask_bytes.getvalue())
    at = _page()
    at.file_uploader[0].upload("stacks.zip", buffer.getvalue(), "application/zip").run()
    at.selectbox(key="zip_stacks").set_value("mean").run()
    next(b for b in at.button if b.key == "save_zip").click().run()
    assert not at.exception and not at.error
    assert "4 pairs ready" in at.success[0].value
    assert next(m for m in at.metric if m.label == "Channels").value == "2 channels"
    shown = " ".join(m.value for m in at.markdown)
    assert "4 stacks of 3 planes (mean projection)" in shown and "12-bit" in shown
    assert "percentile" in shown and "channel 1 in green, channel 2 in magenta" in shown
    assert len(at.image) == 8  # the augmentation preview draws the two channels as a composite
