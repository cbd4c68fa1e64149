"""With the app pointed at a Ray cluster (a real one-machine head started here), a user starts two trainings
from the Train page: both train at the same time, each with its own live chart, and both complete (issue #19)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot, start_training, streamlit_server, wait_for_app
from unet import backend, runs

pytestmark = pytest.mark.ray
EPOCHS = 3  # a trainer spends longer starting (TensorFlow, the data) than 3 demo epochs: both are running at once


@pytest.fixture(scope="module")
def cluster_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app as `UNET_RAY_ADDRESS=... make run` starts it, with its own workspace, and the cluster's address."""
    workspace = tmp_path_factory.mktemp("cluster-workspace")
    with backend.local_head(cpus=2) as address:
        env = {**os.environ, "UNET_WORKSPACE": str(workspace), backend.RAY_ADDRESS_ENV: address,
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        with streamlit_server(["unet.ui.serve"], env, tmp_path_factory.mktemp("server") / "streamlit.log") as url:
            yield url, workspace


def _states(workspace: Path) -> list[str]:
    return [run.read_status().get("state", "") for run in runs.list_runs(workspace / "runs")]


def test_two_trainings_started_from_the_train_page_run_at_once_on_the_cluster(page, cluster_app):
    url, workspace = cluster_app
    page.goto(url)
    wait_for_app(page)
    page.get_by_role("button", name="Load demo data").click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="2. Check: demo-cells")).to_be_visible(timeout=60_000)
    page.get_by_role("link", name="Train").first.click()
    wait_for_app(page)
    where = page.get_by_test_id("stCaptionContainer").filter(has_text="Trainings run on the Ray cluster at 127.0.0.1:")
    expect(where).to_contain_text("(2 of 2 CPUs free)", timeout=30_000)

    start_training(page, EPOCHS)
    expect(page.get_by_text(re.compile(r"Ray job unet-"))).to_be_visible(timeout=60_000)
    page.get_by_text("New training").click()  # folded while the shown run trains
    wait_for_app(page)
    start_training(page, EPOCHS)

    # Both train at the same moment (one at a time, the second would wait as queued until the first ended).
    deadline = time.monotonic() + 120
    while _states(workspace).count(runs.RUNNING) < 2:
        assert time.monotonic() < deadline, f"never both training: {_states(workspace)}"
        assert runs.COMPLETED not in _states(workspace), "the first finished before the second started"
        time.sleep(0.3)
    screenshot(page, "cluster-train-page")
    page.goto(url)  # the user leaves while both train (the Train page's polling would share their 2 cores)
    wait_for_app(page)

    deadline = time.monotonic() + 300  # two trainings share 2 cores with the app and the browser
    while set(_states(workspace)) != {runs.COMPLETED}:
        assert time.monotonic() < deadline, f"not both completed: {_states(workspace)}"
        time.sleep(1)
    for run in runs.list_runs(workspace / "runs"):
        assert [h["epoch"] for h in run.read_history()] == list(range(1, EPOCHS + 1))
        page.goto(f"{url}/train?run={run.id}")
        wait_for_app(page)
        expect(page.get_by_text("Completed").first).to_be_visible(timeout=30_000)
        expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible()
        expect(page.get_by_text(re.compile(rf"Ray job {backend.read_placement(run)['job_id']} on"))).to_be_visible()
