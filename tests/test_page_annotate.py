"""The Annotate page in AppTest: a trained run fills a mask to correct, keeping it saves it into a new version,
and "Next uncertain image" goes to the image the model is least sure about (entropy computed here, not by the
app). The painting itself is tested in Chromium (tests/e2e/test_annotate_page.py, test_mask_canvas.py)."""

from __future__ import annotations

import shutil

import cv2
import numpy as np

from tests.conftest import TINY_RUN, open_page
from unet import annotation
from unet.demo import write_demo_dataset
from unet.inference import Predictor


def _workspace(trained_workspace, tmp_path):
    workspace = tmp_path / "workspace"
    shutil.copytree(trained_workspace / "runs", workspace / "runs")
    raw = write_demo_dataset(tmp_path / "raw", kind="cells", count=4, size=48, seed=9)
    files = [(p, p.name) for p in sorted((raw / "images").glob("*.png"))]
    annotation.new_image_dataset(files, "plates", workspace / "datasets", classes=["background", "cell"])
    return workspace, raw


def _entropy(probability: np.ndarray) -> float:
    p = np.clip(probability.astype(np.float64), 1e-7, 1 - 1e-7)
    return float((-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean())


def test_predict_fills_the_mask_and_keeping_it_saves_a_new_version(trained_workspace, monkeypatch, tmp_path):
    workspace, _ = _workspace(trained_workspace, tmp_path)
    at = open_page("pages/annotate.py", workspace, monkeypatch, dataset="plates")
    assert next(s for s in at.selectbox if s.label == "Model to help").value == TINY_RUN
    shown = next(s for s in at.selectbox if s.label == "Image").value
    image = cv2.imread(str(workspace / "datasets" / "plates" / "unlabelled" / f"{shown}.png"), cv2.IMREAD_UNCHANGED)
    probability = Predictor.from_run(workspace / "runs" / TINY_RUN).predict(image).probabilities[..., 0]
    # A threshold the tiny model's probabilities cross somewhere, so the filled mask is not empty
    threshold = float(np.clip(np.floor(np.quantile(probability, 0.8) / 0.05) * 0.05, 0.05, 0.95))
    expected = probability >= threshold
    assert expected.any()
    next(s for s in at.slider if s.label == "Threshold").set_value(threshold).run()
    next(b for b in at.button if b.label == "Predict").click().run()
    assert not at.exception and not at.error
    assert any("Filled with" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Keep the prediction as it is").click().run()
    assert not at.exception and not at.error
    version = workspace / "datasets" / "plates-v2"
    saved = cv2.imread(str(version / "masks" / f"{shown}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(saved, expected.astype(np.uint8))
    assert (version / "images" / f"{shown}.png").exists()  # the image now has a mask
    assert (workspace / "datasets" / "plates" / "unlabelled" / f"{shown}.png").exists()  # the upload is kept


def test_next_uncertain_goes_to_the_image_the_model_is_least_sure_about(trained_workspace, monkeypatch, tmp_path):
    workspace, raw = _workspace(trained_workspace, tmp_path)
    predictor = Predictor.from_run(workspace / "runs" / TINY_RUN)
    scores = {p.stem: _entropy(predictor.predict(cv2.imread(str(p), cv2.IMREAD_UNCHANGED)).probabilities[..., 0])
              for p in (raw / "images").glob("*.png")}
    at = open_page("pages/annotate.py", workspace, monkeypatch, dataset="plates")
    next(b for b in at.button if b.label == "Next uncertain image").click().run()
    assert not at.exception
    assert next(s for s in at.selectbox if s.label == "Image").value == max(scores, key=scores.get)
    assert any("least certain" in c.value for c in at.caption)
