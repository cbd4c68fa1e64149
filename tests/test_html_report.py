"""The stakeholder report: one self-contained HTML file, user strings escaped, charts and pictures embedded."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_RUN
from unet import runs
from unet.html_report import write_report

EVIL = "<script>alert(1)</script>"
RUN_NAME = "Q3 <b>cells</b> & friends"


@pytest.fixture(scope="module")
def report(trained_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report of a copy of the tiny run whose run name and class name are hostile, evaluated on its data."""
    source = trained_workspace / "runs" / TINY_RUN
    run = tmp_path_factory.mktemp("report") / TINY_RUN
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("tensorboard", runs.DATA))
    runs.write_json_atomic(run / runs.RUN_INFO, {"name": RUN_NAME})
    recorded = json.loads((run / runs.TRAINING_DATA).read_text())
    recorded["classes"][1]["name"] = EVIL
    runs.write_json_atomic(run / runs.TRAINING_DATA, recorded)
    path = write_report(run, run.parent / "out" / "report.html", data=source / runs.DATA)
    return path, path.read_text(encoding="utf-8")


def test_the_report_needs_no_network(report):
    _, html = report
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.I)
    assert not re.search(r"<link[^>]*href\s*=", html, re.I)
    assert not re.search(r"""<(img|iframe|source|embed)[^>]*\ssrc\s*=\s*["']?(https?:)?//""", html, re.I)
    assert html.count("window.PlotlyConfig") == 1  # plotly.js inline, once


def test_the_report_holds_charts_pictures_and_the_recipe(report):
    path, html = report
    assert path.name == "report.html" and html.startswith("<!DOCTYPE html>")
    assert html.count('class="plotly-graph-div"') >= 2  # training curves and the threshold sweep
    assert html.count('src="data:image/png;base64,') >= 8  # samples, hardest images, predictions
    assert "<svg" in html and "python -m unet train" in html and "2.21" in html and "&quot;input_size&quot;" in html


def test_user_strings_are_escaped(report):
    _, html = report
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>cells</b>" not in html and "Q3 &lt;b&gt;cells&lt;/b&gt; &amp; friends" in html
