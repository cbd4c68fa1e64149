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


def test_moving_a_slider_does_not_run_the_model_again(at: AppTest, monkeypatch: pytest.MonkeyPatch):
    from unet.inference import Predictor

    calls = []
    real = Predictor.predict
    monkeypatch.setattr(Predictor, "predict", lambda self, image, progress=None: calls.append(image.shape)
                        or real(self, image, progress))
    _images_uploader(at).upload("cells.png", _png(300, 200), "image/png").run()
    assert calls == [(300, 200)]
    next(s for s in at.slider if s.label == "Opacity").set_value(0.8).run()
    next(s for s in at.slider if s.label == "Threshold").set_value(0.3).run()
    assert not at.exception and calls == [(300, 200)], "the prediction is kept for the tab"


def test_a_long_object_table_lists_the_first_rows_and_says_the_csv_has_all(at: AppTest, monkeypatch):
    from unet.ui import inference_view

    squares = np.zeros((60, 60), np.uint8)
    for k in range(5):
        squares[2 + 11 * k : 9 + 11 * k, 5:15] = 1  # five patches of the foreground class
    monkeypatch.setattr(inference_view, "SHOWN_ROWS", 2)
    monkeypatch.setattr(inference_view, "predicted_mask",  # three of the squares at a lower threshold
                        lambda prediction, key, threshold, *_: squares if threshold >= 0.5 else
                        np.where(np.arange(60)[:, None] < 33, squares, 0).astype(np.uint8))
    _images_uploader(at).upload("squares.png", _png(60, 60), "image/png").run()
    assert not at.exception and not at.error
    assert int(at.dataframe[0].value["Objects"].sum()) == 5
    assert any("The first 2 of 5 objects" in c.value and "the CSV has all 5" in c.value for c in at.caption)
    assert len(at.dataframe[-1].value) == 2, "two rows listed"
    summary = at.dataframe[-2].value
    assert list(summary["Measurement"])[:3] == ["area", "perimeter", "eccentricity"]
    assert summary["Median"].iloc[0] == 70
    next(s for s in at.slider if s.label == "Threshold").set_value(0.3).run()
    assert any("The first 2 of 3 objects" in c.value for c in at.caption), "the table follows the threshold"


def test_an_image_beyond_the_free_memory_is_refused_with_its_size_and_what_to_do(at: AppTest, monkeypatch):
    from unet import inference

    monkeypatch.setattr(inference, "memory_available", lambda: inference.MEMORY_RESERVE + 1_000_000)
    _images_uploader(at).upload("wide.png", _png(400, 3000), "image/png").run()
    assert not at.exception and not at.error
    warning = next(w.value for w in at.warning if "wide.png" in w.value)
    assert "3000x400 pixels (1 megapixels)" in warning and "Crop it into parts or scale it down" in warning
    assert "enough for about 0 megapixels" in warning
