"""Browser tests: the real app served by `streamlit run`, driven in Chromium through Playwright.

The Chromium is Playwright's own when it starts, else the system one (`tests/e2e/browser.py`, which `make test`
runs first to install one when none is found); with none, every browser test is skipped with one line saying what
to install (failed instead where UNET_REQUIRE_BROWSER=1, as in CI). The app gets its own empty workspace per test
session.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import browser as browser_finder
from unet.ui import load_probe

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Browser tests skipped for want of a Chromium are reported at one place, so `-ra` folds them into one line."""
    report = yield
    reason = report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else ""
    if browser_finder.NO_BROWSER in reason:
        report.longrepr = (browser_finder.__file__, browser_finder.no_browser.__code__.co_firstlineno, reason)
    return report


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's workspace for this test session (starts empty)."""
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
def trained_run(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run in the app's workspace, trained by the command line as a user would."""
    from unet.demo import write_demo_dataset

    data = write_demo_dataset(tmp_path_factory.mktemp("data") / "cells", kind="cells", count=8, size=64)
    config = tmp_path_factory.mktemp("config") / "tiny.json"
    config.write_text(
        '{"data": {"input_size": 64}, "augment": {"enabled": false}, "model": {"depth": 2, "base_filters": 4},'
        ' "train": {"epochs": 2, "batch_size": 4}}'
    )
    run_dir = workspace / "runs" / "20260101-000000-tiny-cells"
    done = subprocess.run(
        [sys.executable, "-m", "unet", "train", "--data", str(data), "--out", str(run_dir), "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


@contextlib.contextmanager
def streamlit_server(script: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`python -m <script...>` serving on a free port (`unet.ui.load_probe.app_server`); yields its URL once
    healthy, and stops it afterwards. Used for the app itself and for the component harness."""
    with load_probe.app_server(None, command=tuple(script), env=env, log_path=log_path) as server:
        yield server.url


@pytest.fixture(scope="session")
def app_url(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the app like `make run` does, on a free port with an empty workspace; stop it afterwards."""
    env = {**os.environ, "UNET_WORKSPACE": str(workspace), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with streamlit_server(["unet.ui.serve"], env, tmp_path_factory.mktemp("server") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def browser() -> Iterator[object]:
    """The Chromium of every browser test; set up first (autouse), so that without one each test is skipped
    before a server starts or a model trains."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium, _ = browser_finder.launch(playwright)
        if chromium is None:
            (pytest.fail if browser_finder.required() else pytest.skip)(browser_finder.no_browser())
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


def wait_for_app(page) -> None:
    """Wait until Streamlit has finished running the script for what is on screen."""
    from playwright.sync_api import expect

    expect(page.locator("[data-test-script-state='notRunning']")).to_be_attached(timeout=60_000)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=60_000)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def download(page, button: str, target: Path, attempts: int = 3) -> Path:
    """Click a download button and save the file; retried, since a late rerun can replace the file under the click."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(attempts):
        wait_for_app(page)
        try:
            with page.expect_download() as info:
                page.get_by_role("button", name=button).click()
            info.value.save_as(target)
            return target
        except PlaywrightError:
            if attempt == attempts - 1:
                raise
    return target


def start_training(page, epochs: int) -> None:
    """On the Train page: type the epochs and press Start."""
    box = page.get_by_role("spinbutton", name="Epochs", exact=True)
    box.fill(str(epochs))
    box.press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name="Start training").click()
    wait_for_app(page)
