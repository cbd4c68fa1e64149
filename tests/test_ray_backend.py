"""Trainings on a Ray cluster (issue #19): a real single-machine cluster (`ray start --head`, 2 CPUs, on
127.0.0.1) started here, trainings submitted with `python -m unet submit` as a user or the Train page would.

Marked `ray` (about a minute and a half): `pytest -m "not ray"` skips them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from unet import backend, runs
from unet.demo import write_demo_dataset

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
TINY = {"data": {"input_size": 32}, "augment": {"enabled": False}, "model": {"depth": 2, "base_filters": 4},
        "train": {"batch_size": 4, "early_stopping_patience": 0}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A Ray head with 2 CPUs on 127.0.0.1 for this module (`unet.backend.local_head`); yields its address."""
    with backend.local_head(cpus=2) as address:
        yield address


@pytest.fixture()
def on_cluster(cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace whose trainings go to the cluster; returns the demo data's folder."""
    monkeypatch.setenv(backend.RAY_ADDRESS_ENV, cluster)
    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path / "workspace"))
    return write_demo_dataset(tmp_path / "cells", kind="cells", count=8, size=48)


def _submit(run_dir: Path, data: Path, epochs: int, *extra: str) -> subprocess.CompletedProcess:
    config = run_dir.parent / f"{run_dir.name}.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(TINY))
    return subprocess.run([sys.executable, "-m", "unet", "submit", "--data", str(data), "--out", str(run_dir),
                           "--config", str(config), "--epochs", str(epochs), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ.copy())


def _wait(run: runs.Run, done, seconds: float = 180) -> dict:
    """Poll as the Train page does (check_runs, then status.json) until `done(status)`."""
    deadline = time.monotonic() + seconds
    while True:
        backend.check_runs(run.path.parent)
        status = run.read_status()
        if done(status):
            return status
        assert time.monotonic() < deadline, f"waited {seconds:g} s; status: {status}"
        time.sleep(0.5)


def _job_end(run: runs.Run, seconds: float = 60) -> str:
    """The state the run's Ray job ends in (the trainer process exits a little after its last status write)."""
    placed = backend.read_placement(run)
    deadline = time.monotonic() + seconds
    while (state := backend.connect(placed["address"]).job(placed["job_id"])[0]) not in ("SUCCEEDED", "FAILED",
                                                                                         "STOPPED"):
        assert time.monotonic() < deadline, f"the job is still {state} after {seconds:g} s"
        time.sleep(0.5)
    return state


def _when(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z")


def test_two_trainings_submitted_from_the_command_line_run_at_the_same_time(on_cluster, tmp_path):
    root = tmp_path / "workspace" / "runs"
    first, second = runs.Run(root / "first"), runs.Run(root / "second")
    for run in (first, second):
        done = _submit(run.path, on_cluster, epochs=6)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "as Ray job" in done.stdout
    statuses = [_wait(run, lambda s: s.get("state") not in runs.ACTIVE_STATES) for run in (first, second)]

    for run, status in zip((first, second), statuses, strict=True):
        assert status["state"] == runs.COMPLETED, status
        assert [h["epoch"] for h in run.read_history()] == list(range(1, 7))
        assert run.has_model and run.file(runs.HELD_BACK).exists() and run.training_data()["train"]
        assert _job_end(run) == "SUCCEEDED"
    jobs = {backend.read_placement(run)["job_id"] for run in (first, second)}
    assert len(jobs) == 2
    # They overlapped: the later start came before the earlier end (one at a time, it would come after).
    assert max(_when(s["started"]) for s in statuses) < min(_when(s["ended"]) for s in statuses), statuses


def test_stop_ends_a_cluster_run_after_its_batch_and_its_job_succeeds(on_cluster, tmp_path):
    run = runs.Run(tmp_path / "workspace" / "runs" / "long")
    assert _submit(run.path, on_cluster, epochs=1000).returncode == 0
    _wait(run, lambda s: s.get("epoch", 0) >= 1)
    assert run.is_active
    backend.stop(run)
    status = _wait(run, lambda s: s.get("state") not in runs.ACTIVE_STATES, seconds=90)
    assert status["state"] == runs.STOPPED and "stopped on request" in status["message"]
    assert run.file(runs.LAST_MODEL).exists()
    assert _job_end(run) == "SUCCEEDED"


def test_a_killed_trainer_leaves_the_run_interrupted_and_a_resume_finishes_it(on_cluster, tmp_path):
    run = runs.Run(tmp_path / "workspace" / "runs" / "killed")
    assert _submit(run.path, on_cluster, epochs=1000).returncode == 0
    status = _wait(run, lambda s: len(run.read_history()) >= 2)
    os.kill(status["pid"], signal.SIGKILL)  # as when the node it trains on goes away
    status = _wait(run, lambda s: s.get("state") not in runs.ACTIVE_STATES, seconds=60)
    assert status["state"] == runs.INTERRUPTED and "resume" in status["message"], status
    trained = len(run.read_history())

    resumed = _submit(run.path, on_cluster, trained + 2, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    status = _wait(run, lambda s: s.get("state") not in runs.ACTIVE_STATES)
    assert status["state"] == runs.COMPLETED, status
    assert [h["epoch"] for h in run.read_history()] == list(range(1, trained + 3))


def test_an_unreachable_cluster_starts_nothing_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(backend.RAY_ADDRESS_ENV, f"127.0.0.1:{_free_port()}")  # nobody listens there
    data = write_demo_dataset(tmp_path / "cells", kind="cells", count=4, size=32)
    run_dir = tmp_path / "runs" / "never"
    done = _submit(run_dir, data, epochs=2)
    assert done.returncode == 2
    assert "cannot reach the Ray cluster" in done.stderr and "UNET_RAY_ADDRESS" in done.stderr
    assert "Traceback" not in done.stderr
    assert not run_dir.exists()


def test_a_node_that_cannot_read_the_run_folder_fails_the_run_with_the_reason(on_cluster, tmp_path):
    run = runs.Run(tmp_path / "workspace" / "runs" / "unseen")
    run.path.mkdir(parents=True)
    run.file(runs.CONFIG).write_text("{ not what was written")  # what a node without the shared workspace reads
    backend.start(run.path, on_cluster)
    status = _wait(run, lambda s: s.get("state") not in runs.ACTIVE_STATES, seconds=90)
    assert status["state"] == runs.FAILED, status
    assert "before training started" in status["error"] and "every node mounts" in status["error"]


def test_a_trainer_that_ignores_stop_has_its_job_stopped_through_ray(on_cluster, tmp_path, monkeypatch):
    run = runs.Run(tmp_path / "workspace" / "runs" / "deaf")
    run.path.mkdir(parents=True)
    run.file(runs.CONFIG).write_text("{}")
    address = os.environ[backend.RAY_ADDRESS_ENV]
    job = backend.connect(address).submit(run.path, [sys.executable, "-c", "import time; time.sleep(600)"])
    runs.write_json_atomic(run.file(runs.BACKEND), {"backend": backend.RAY, "address": address, "job_id": job})
    runs.write_json_atomic(run.file(runs.STATUS), {"state": runs.RUNNING, "pid": 1, "started": runs.now_iso()})
    monkeypatch.setattr(backend, "STOP_GRACE_SECONDS", 0.0)
    backend.stop(run)
    status = _wait(run, lambda s: s.get("state") not in runs.ACTIVE_STATES, seconds=90)
    assert status["state"] == runs.STOPPED and "did not react" in status["message"], status
    assert _job_end(run) == "STOPPED"
