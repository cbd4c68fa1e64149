"""Reports and the Runs page in the user's words (issue #25): a separate-objects run's report headlines its
held-back figure and names the classes it learned; settings, object scores and curves speak the pages' language."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY_RUN, open_page
from unet import images as image_io
from unet import runs

RUN = "20260101-000000-nuclei"
SIDE = 48


def _touching_pair(offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 12x12 squares side by side (touching), bright with darker edges, and their instance labels."""
    labels = np.zeros((SIDE, SIDE), np.uint16)
    top, left = 8 + offset % 12, 6 + offset % 9
    labels[top: top + 12, left: left + 12] = 1
    labels[top: top + 12, left + 12: left + 24] = 2
    image = np.full((SIDE, SIDE), 30, np.uint8)
    image[labels > 0] = 200
    for k in (1, 2):
        ys, xs = np.nonzero(labels == k)
        image[ys.min(), xs.min(): xs.max() + 1] = image[ys.max(), xs.min(): xs.max() + 1] = 110
        image[ys.min(): ys.max() + 1, xs.min()] = image[ys.min(): ys.max() + 1, xs.max()] = 110
    return image, labels


@pytest.fixture(scope="module")
def objects_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with one separate-objects run (instance masks), trained by `python -m unet train`."""
    source = tmp_path_factory.mktemp("nuclei")
    (source / "images").mkdir()
    (source / "masks").mkdir()
    for i in range(6):
        image, labels = _touching_pair(i)
        image_io.write_png(source / "images" / f"n{i}.png", image)
        image_io.write_png(source / "masks" / f"n{i}.png", labels)
    workspace = tmp_path_factory.mktemp("workspace")
    config = workspace / "tiny.json"
    config.write_text(json.dumps({"data": {"input_size": 48, "resize": "crop"}, "augment": {"enabled": False},
                                  "model": {"depth": 2, "base_filters": 4},
                                  "train": {"epochs": 2, "batch_size": 4, "early_stopping_patience": 0}}))
    done = subprocess.run([sys.executable, "-m", "unet", "train", "--data", str(source), "--out",
                           str(workspace / "runs" / RUN), "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return workspace


def _text(html: str) -> str:
    """What a reader sees: no scripts, no diagram, no code blocks (config.json and the command are code)."""
    for pattern in (r"<script.*?</script>", r"<svg.*?</svg>", r"<pre>.*?</pre>"):
        html = re.sub(pattern, " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _cards(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<div class="card"><b>(.*?)</b><span>(.*?)</span></div>', html)


def test_a_separate_objects_report_headlines_the_held_back_figure_and_names_what_it_learned(objects_workspace):
    """It listed the classes as 'object' and 'class 2' and headlined the crop figure (0.398) above the held-back
    one (0.585)."""
    from unet.html_report import build_report

    run = objects_workspace / "runs" / RUN
    html = build_report(run)
    held_back = json.loads((run / runs.HELD_BACK).read_text())
    history = [json.loads(line) for line in (run / runs.HISTORY).read_text().splitlines()]
    best_crop = max(r["val_dice"] for r in history)
    cards = _cards(html)
    assert cards[0][0] == f"{held_back['dice']:.3f}" and "held-back image" in cards[0][1]
    proxy = next(label for value, label in cards if value == f"{best_crop:.3f}" and "training-time" in label)
    assert "crops" in proxy
    assert any(label.startswith("objects: AP@0.5") for _, label in cards)
    text = _text(html)
    assert "class 2" not in text
    for name in ("background", "object interior", "object boundary"):
        assert name in text
    assert "separate touching objects" in text


def test_the_report_says_its_settings_and_object_scores_in_words(objects_workspace):
    from unet.html_report import build_report

    text = _text(build_report(objects_workspace / "runs" / RUN))
    for raw in ("fill_mode", "dice_ce", "'unit'", "(crop)", "by_image", "per_image_mean", "mean_ap",
                "matching_dataset", "1 held-back images"):
        assert raw not in text, raw
    assert "Dice + cross-entropy" in text and "random crops" in text


def test_the_runs_page_explains_object_scores_without_developer_words(objects_workspace, monkeypatch):
    at = open_page("pages/runs.py", objects_workspace, monkeypatch)
    next(b for b in at.button if b.label == "Evaluate").click().run()
    assert not at.exception
    words = " ".join([c.value for c in at.caption] + [m.value for m in at.markdown])
    for raw in ("by_image", "per_image_mean", "mean_ap", "matching_dataset", "1 held-back images"):
        assert raw not in words, raw
    assert "found / (found + extra + missed)" in words
    columns = {column for frame in at.dataframe for column in frame.value.columns}
    assert {"Found (IoU 0.5)", "Missed", "AP@0.5"} <= columns and not {"tp50", "fn50", "per_class"} & columns


def test_the_dice_curves_of_each_class_are_drawn_in_its_colour(objects_workspace, trained_workspace):
    """The per-class lines took Plotly's own colours, not the classes' colours of the masks and overlays."""
    from unet.charts import history_figure
    from unet.html_report import build_report
    from unet.run_summary import network_classes

    figure = history_figure([{"epoch": 1, "val_dice_0": 0.5, "val_dice_1": 0.4, "val_dice_2": 0.3}],
                            ["background", "cell", "edge"], [(0, 0, 0), (230, 25, 75), (64, 220, 120)])
    lines = {t.name: t.line.color for t in figure.data if t.name.startswith("val Dice: ")}
    assert lines == {"val Dice: background": "rgb(0, 0, 0)", "val Dice: cell": "rgb(230, 25, 75)",
                     "val Dice: edge": "rgb(64, 220, 120)"}

    for run in (objects_workspace / "runs" / RUN, trained_workspace / "runs" / TINY_RUN):
        names, colors = network_classes(runs.Run(run))
        html = build_report(run)
        shown = names if len(names) > 2 else names[:1]
        for name, color in zip(shown, colors, strict=False):
            assert f'"color":"rgb({color[0]}, {color[1]}, {color[2]})"' in html.replace(": ", ":"), name
    recorded = json.loads((trained_workspace / "runs" / TINY_RUN / runs.TRAINING_DATA).read_text())
    assert network_classes(runs.Run(trained_workspace / "runs" / TINY_RUN))[1][0] == tuple(
        recorded["classes"][0]["color"])
