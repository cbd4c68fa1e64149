"""Browser tests: the real app served by `streamlit run`, driven in Chromium through Playwright.

Playwright cannot download its own browser here, so a system Chromium (Debian's `chromium`) is used when
Playwright's is absent. The app gets its own empty workspace per test session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from unet.ui import load_probe

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _chromium_path(playwright) -> str | None:
    """Playwright's own Chromium if installed, else the system one; None when neither exists."""
    own = playwright.chromium.executable_path
    if own and Path(own).exists():
        return None  # Playwright finds it itself
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "No Chromium for the browser tests. Install one with `sudo apt-get install -y chromium` "
        "(Debian/Ubuntu), or `python -m playwright install chromium` where downloads are allowed."
    )


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


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=_chromium_path(playwright), headless=True, args=CHROMIUM_FLAGS
        )
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
