"""A stakeholder opens the one-file report offline in a browser and sees the charts."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TINY_RUN
from unet.html_report import write_report


def test_a_browser_renders_the_report_offline(page, trained_workspace: Path, tmp_path: Path):
    path = write_report(trained_workspace / "runs" / TINY_RUN, tmp_path / "report.html")
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto(path.as_uri())
    page.locator(".plotly-graph-div .main-svg").first.wait_for(timeout=20_000)
    assert page.locator(".plotly-graph-div .main-svg").count() >= 1, "the training curves are drawn"
    assert fetched == [], "the report must not need the network"
    assert page.get_by_text("How to reproduce it").is_visible()
