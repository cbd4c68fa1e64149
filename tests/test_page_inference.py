"""The Inference page in AppTest: a real tiny run's model over uploaded images, with bad files named."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_page


def _png(height: int, width: int, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (height, width), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture()
def at(trained_workspace: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    return open_page("pages/inference.py", trained_workspace, monkeypatch)


def _images_uploader(at: AppTest):
    return next(u for u in at.file_uploader if u.label.startswith("Images"))


def test_the_trained_run_is_offered_and_images_are_asked_for(at: AppTest):
    assert at.selectbox[0].value is not None
    assert any("Upload one or more images" in i.value for i in at.info)


def test_an_odd_sized_image_gets_a_mask_of_its_own_size_and_downloads(at: AppTest):
    _images_uploader(at).upload("odd.png", _png(37, 113), "image/png").run()
    assert not at.exception
    assert not at.error
    assert len(at.image) >= 1
    table = at.dataframe[0].value
    row = table.iloc[0]
    share = row["Share of the image"]
    assert share == pytest.approx(100 * row["Pixels"] / (37 * 113), abs=1e-3), "area is of the whole image"
    labels = [b.label for b in at.get("download_button")]
    assert "All 1 as zip" in labels


def test_a_broken_upload_is_named_and_the_good_image_still_predicted(at: AppTest):
    uploader = _images_uploader(at)
    uploader.upload("good.png", _png(40, 40), "image/png")
    uploader.upload("broken.png", b"this is not a png", "image/png").run()
    assert not at.exception
    assert any("broken.png" in w.value for w in at.warning)
    assert at.dataframe, "the good image must still be measured"


def test_a_file_that_is_not_a_model_is_refused_plainly(at: AppTest):
    at.radio[0].set_value("file").run()
    at.file_uploader[0].upload("fake.keras", io.BytesIO(b"not a model").getvalue(), "application/octet-stream").run()
    assert not at.exception
    assert any("fake.keras" in e.value for e in at.error)


def test_an_image_with_the_wrong_channel_count_is_named_and_the_others_still_predicted(at: AppTest):
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((40, 40, 2), np.uint16), photometric="minisblack", planarconfig="contig")
    uploader = _images_uploader(at)
    uploader.upload("stain.tif", buffer.getvalue(), "image/tiff")
    uploader.upload("good.png", _png(40, 40), "image/png").run()
    assert not at.exception and not at.error
    assert any("stain.tif" in w.value and "2 channels but the model takes 1" in w.value for w in at.warning)
    assert at.dataframe, "the good image must still be measured"
