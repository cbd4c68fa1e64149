"""Load: a training keeps its speed while ten sessions use the app, and no request fails.

What this measures, honestly: one trainer process (`python -m unet train`, as the Train page starts it) runs
throughout. Its speed (training images per second, from `history.jsonl`'s per-epoch seconds) is measured first
with the app idle, then while the app is busy:
- ten threads act as ten browser tabs at the HTTP level against a real server (`python -m unet.ui.serve` on a free
  localhost port): each loads the app page, a page URL and the health endpoint, with a short think time. This
  tests the web server's responsiveness, not script runs (those go over the websocket).
- one session in this process runs the real page scripts (Streamlit AppTest) one after another: Dataset, Model,
  and the Train page watching the very run that is training, two seconds apart (a person reading the page).
  This is the CPU cost a session's page runs put on the machine the trainer shares.
Both phases are measured in the same trainer process, so TensorFlow's start-up and first-epoch compilation are
outside both. The whole test takes about a minute and a half.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from unet import runs
from unet.config import Config
from unet.dataset import ingest
from unet.demo import write_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SESSIONS = 10
PHASE_SECONDS = 22
WARMUP_EPOCHS = 2
TOLERANCE = 0.20
READING_SECONDS = 2.0  # between two page views of the in-process session
LOAD = {"data": {"input_size": 64}, "augment": {"enabled": False}, "model": {"depth": 3, "base_filters": 8},
        "train": {"epochs": 10000, "batch_size": 4, "early_stopping_patience": 0, "reduce_lr_patience": 0,
                  "validation_split": 0.2}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()
        return response.status


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, int, Path]]:
    """The app as `make run` starts it (config.toml's address), on a free port with its own workspace."""
    workspace = tmp_path_factory.mktemp("load-workspace")
    port = free_port()
    env = {**os.environ, "UNET_WORKSPACE": str(workspace), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "unet.ui.serve", "--server.port", str(port), "--server.headless", "true",
         "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if get(f"{url}/_stcore/health", timeout=2) == 200:
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the app did not start within 60 s")
            time.sleep(0.3)
    yield url, port, workspace
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _outward_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_server_started_by_default_is_not_reachable_from_the_network(server):
    _, port, _ = server
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no network address besides localhost")
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(2)
        s.connect((address, port))


def _browse(url: str, stop: threading.Event, counts: dict, failures: list, lock: threading.Lock) -> None:
    paths = ["/", "/dataset", "/_stcore/health", "/model", "/train", "/_stcore/health"]
    i = 0
    while not stop.is_set():
        path = paths[i % len(paths)]
        i += 1
        try:
            status = get(url + path)
            with lock:
                counts[path] = counts.get(path, 0) + 1
            if status != 200:
                failures.append(f"{path}: HTTP {status}")
        except (OSError, urllib.error.URLError) as exc:
            failures.append(f"{path}: {exc}")
        stop.wait(0.2)


def _session_pages(run_id: str, workspace: Path, until: float, failures: list) -> int:
    """One person's session in this process: real page runs with READING_SECONDS of reading between them."""
    os.environ["UNET_WORKSPACE"] = str(workspace)
    views = 0
    while time.monotonic() < until:
        for path in ("pages/dataset.py", "pages/model.py", "pages/train.py"):
            at = AppTest.from_file(APP, default_timeout=60)
            at.query_params["dataset"] = "cells"
            at.query_params["run"] = run_id
            at.switch_page(path).run()
            views += 1
            if at.exception:
                failures.append(f"{path}: {at.exception[0].value}")
            time.sleep(READING_SECONDS)
            if time.monotonic() >= until:
                break
    return views


def _images_per_second(history: list[dict], epochs: range, train_images: int) -> float:
    rows = [h for h in history if h["epoch"] in epochs]
    assert len(rows) >= 3, f"only {len(rows)} epochs measured"
    return train_images * len(rows) / sum(h["seconds"] for h in rows)


def test_training_keeps_its_speed_while_ten_sessions_use_the_app(server, tmp_path, monkeypatch):
    url, _, workspace = server
    monkeypatch.setenv("UNET_WORKSPACE", str(workspace))
    raw = write_demo_dataset(tmp_path / "raw", kind="cells", count=30, size=64)
    dataset, _ = ingest(raw, "cells", workspace / "datasets")
    run = runs.create_run(workspace / "runs", "load", Config.from_dict(LOAD), dataset.root)
    train_images = len(dataset.stems) - round(0.2 * len(dataset.stems))

    # Warm the app's one-off costs (imports, the Model page's machine calibration) before measuring anything.
    _session_pages(run.id, workspace, time.monotonic(), [])
    proc = runs.start_training(run.path, dataset.root)
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while len(run.read_history()) < WARMUP_EPOCHS:
            assert proc.poll() is None and time.monotonic() < deadline, (run.path / runs.LOG).read_text()[-2000:]
            time.sleep(0.2)
        first_alone = len(run.read_history()) + 1
        time.sleep(PHASE_SECONDS)
        last_alone = len(run.read_history())

        stop, lock, counts = threading.Event(), threading.Lock(), {}
        tabs = [threading.Thread(target=_browse, args=(url, stop, counts, failures, lock), daemon=True)
                for _ in range(SESSIONS)]
        for tab in tabs:
            tab.start()
        time.sleep(1.0)
        first_busy = len(run.read_history()) + 2  # the epoch running now started before the load
        views = _session_pages(run.id, workspace, time.monotonic() + PHASE_SECONDS, failures)
        last_busy = len(run.read_history())
        stop.set()
        for tab in tabs:
            tab.join(timeout=15)
        assert proc.poll() is None, "the trainer died under load"
    finally:
        run.request_stop()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    history = run.read_history()
    alone = _images_per_second(history, range(first_alone, last_alone + 1), train_images)
    busy = _images_per_second(history, range(first_busy, last_busy + 1), train_images)
    requests = sum(counts.values())
    print(f"\nalone {alone:.1f} images/s, with {SESSIONS} HTTP sessions ({requests} requests) and {views} page runs: "
          f"{busy:.1f} images/s ({busy / alone - 1:+.0%})")
    assert failures == []
    assert requests >= SESSIONS * 20, counts
    assert busy >= (1 - TOLERANCE) * alone, f"training slowed from {alone:.1f} to {busy:.1f} images/s under load"
    assert run.read_status()["state"] == runs.STOPPED
