"""A user starts training on the demo data, watches the charts grow, leaves and comes back, and stops it."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import screenshot, start_training, wait_for_app

EPOCH = re.compile(r"Epoch (\d+) of (\d+)")


def _badge(page, state: str):
    """The run's state badge (an icon ligature followed by the state's name)."""
    return page.get_by_test_id("stMarkdown").locator("p").filter(has_text=re.compile(rf"{state}$")).first


def _epoch_shown(page) -> int:
    text = page.get_by_test_id("stProgress").first.inner_text(timeout=60_000)
    match = EPOCH.search(text)
    return int(match.group(1)) if match else 0


def test_training_runs_on_while_the_user_navigates_and_stops_cleanly(page, app_url):
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_role("button", name="Load demo data").click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="2. Check: demo-cells")).to_be_visible()

    page.get_by_role("link", name="Train").first.click()
    wait_for_app(page)
    start_training(page, 60)

    expect(_badge(page, "Training")).to_be_visible(timeout=60_000)
    chart = page.get_by_test_id("stPlotlyChart")
    expect(chart).to_be_visible(timeout=120_000)
    first = _epoch_shown(page)
    expect(page.get_by_test_id("stProgress").first).not_to_contain_text(f"Epoch {first} of", timeout=60_000)
    assert _epoch_shown(page) > first, "the page must follow the training by itself"

    # The page stays responsive while the run goes on: another page opens and the run is still there on return.
    page.get_by_role("link", name="Model").first.click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Model").first).to_be_visible()
    page.get_by_role("link", name="Train").first.click()
    wait_for_app(page)
    expect(_badge(page, "Training")).to_be_visible()
    expect(chart).to_be_visible()
    screenshot(page, "train-page")

    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    expect(_badge(page, "Stopped")).to_be_visible(timeout=90_000)
    wait_for_app(page)
    screenshot(page, "train-page-stopped")
    expect(page.get_by_role("button", name="Resume")).to_be_visible(timeout=20_000)
