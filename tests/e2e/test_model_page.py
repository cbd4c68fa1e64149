"""A user applies a preset on the Model page and sees the network's numbers change."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.conftest import screenshot, wait_for_app


def _parameters(page) -> str:
    metric = page.get_by_test_id("stMetric").filter(has_text="Parameters")
    return metric.get_by_test_id("stMetricValue").inner_text()


def test_applying_a_preset_changes_the_model(page, app_url):
    page.goto(f"{app_url}/model")
    wait_for_app(page)
    expect(page.get_by_text("Parameters")).to_be_visible(timeout=90_000)
    before = _parameters(page)

    page.get_by_test_id("stSelectbox").filter(has_text="Preset").click()
    page.get_by_role("option", name="Classic U-Net (2015)").click()
    wait_for_app(page)
    page.get_by_role("button", name="Apply preset").click()
    wait_for_app(page)

    expect(page.get_by_text("Slow on a CPU")).to_be_visible()
    expect(page.get_by_test_id("stMetric").filter(has_text="Parameters").get_by_test_id("stMetricValue")).not_to_have_text(before)
    screenshot(page, "model-page")
