"""Faults injected while the app works: a killed trainer, a full disk, two starts at once, a browser gone mid-upload.

Training is tiny (8 demo images of 32x32, a depth-2 U-Net with 4 filters), so each trainer process spends most of
its few seconds importing TensorFlow. `FAULTS` counts the injected faults for the README.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from unet import metrics as _registers_the_losses  # noqa: F401  (compile=True loads need them)
from unet import runs, workspace
from unet.config import Config
from unet.dataset import ingest, list_datasets
from unet.demo import write_demo_dataset

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TINY = {"data": {"input_size": 32}, "augment": {"enabled": False}, "model": {"depth": 2, "base_filters": 4},
        "train": {"epochs": 1000, "batch_size": 2, "early_stopping_patience": 0, "reduce_lr_patience": 0}}
FAULTS = ["trainer killed with SIGKILL mid-training", "disk full while saving a checkpoint",
          "two trainings started at the same moment", "browser closed during an upload",
          "web server restarted during training"]


def tiny(epochs: int) -> Config:
    return Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": epochs}})


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    raw = write_demo_dataset(tmp_path_factory.mktemp("raw") / "cells", kind="cells", count=8, size=32)
    dataset, _ = ingest(raw, "cells", tmp_path_factory.mktemp("datasets"))
    return dataset


def wait_for(condition, timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def finish(proc: subprocess.Popen, timeout: float = 120) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def loads_safely(path: Path, compile: bool = False) -> keras.Model:
    model = keras.models.load_model(path, safe_mode=True, compile=compile)
    assert model.predict(np.zeros((1, 32, 32, 1), np.float32), verbose=0).shape == (1, 32, 32, 1)
    return model


def test_a_trainer_killed_with_sigkill_is_marked_interrupted_and_resumes_where_it_was(stored, tmp_path):
    run = runs.create_run(tmp_path, "killed", tiny(1000), stored.root)
    proc = runs.start_training(run.path, stored.root)
    try:
        wait_for(lambda: run.read_status().get("state") == runs.RUNNING and len(run.read_history()) >= 2
                 and (run.read_status().get("batch") or 0) >= 1, 120, "two epochs and a batch of the third")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert run.read_status()["state"] == runs.RUNNING, "nobody has looked yet: the file still says running"
    assert runs.mark_interrupted_runs(tmp_path) == [], "its status changed a moment ago: not called gone yet"
    assert [r.id for r in runs.mark_interrupted_runs(tmp_path, grace_seconds=0.0)] == [run.id]
    status = run.read_status()
    assert status["state"] == runs.INTERRUPTED and "resume" in status["message"] and run.can_resume
    assert runs.mark_interrupted_runs(tmp_path, grace_seconds=0.0) == [], "marking twice changes nothing"
    done = [h["epoch"] for h in run.read_history()]
    assert done == list(range(1, len(done) + 1))
    loads_safely(run.path / runs.LAST_MODEL, compile=True)  # with its optimizer state, as resume loads it
    loads_safely(run.path / runs.BEST_MODEL)

    resumed = runs.start_training(run.path, stored.root, resume=True, epochs=len(done) + 2)
    assert finish(resumed) == 0, (run.path / runs.LOG).read_text()[-2000:]
    assert [h["epoch"] for h in run.read_history()] == list(range(1, len(done) + 3))
    assert run.read_status()["state"] == runs.COMPLETED


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint_and_fails_plainly(stored, tmp_path, monkeypatch):
    from unet import training

    saves: list[Path] = []
    real_save = keras.Model.save
    run_dir = tmp_path / "runs" / "full-disk"
    before: dict[str, bytes] = {}

    def save_until_the_disk_fills(self, filepath, *args, **kwargs):
        """Epoch 1 saves normally; once its history line is written, the disk is full mid-save."""
        saves.append(Path(filepath))
        if not runs.Run(run_dir).read_history():
            return real_save(self, filepath, *args, **kwargs)
        before.setdefault("last", (run_dir / runs.LAST_MODEL).read_bytes())
        Path(filepath).write_bytes(b"PK\x03\x04 half a model, then the disk was full")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", save_until_the_disk_fills)
    code = training.train(run_dir, stored.root, tiny(5))
    monkeypatch.undo()

    run = runs.Run(run_dir)
    status = run.read_status()
    assert code == training.EXIT_FAILED
    assert status["state"] == runs.FAILED
    assert status["message"] == "the disk is full; free some space, then resume the run"
    assert len(saves) >= 2 and all(p.parent == run_dir and p.name.startswith(".") for p in saves), "temp files only"
    assert (run_dir / runs.LAST_MODEL).read_bytes() == before["last"], "the previous checkpoint is intact"
    assert [h["epoch"] for h in run.read_history()] == [1], "no history line for an epoch whose checkpoint was lost"
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name], "temp files are cleaned up"
    loads_safely(run_dir / runs.LAST_MODEL, compile=True)
    loads_safely(run_dir / runs.BEST_MODEL)
    assert run.can_resume

    resumed = runs.start_training(run_dir, stored.root, resume=True, epochs=2)  # space freed: resume continues
    assert finish(resumed) == 0, (run_dir / runs.LOG).read_text()[-2000:]
    assert [h["epoch"] for h in run.read_history()] == [1, 2]


def test_two_starts_at_the_same_moment_run_one_after_the_other(stored, tmp_path):
    first = runs.create_run(tmp_path, "first", tiny(3), stored.root)
    second = runs.create_run(tmp_path, "second", tiny(3), stored.root)
    procs = [runs.start_training(first.path, stored.root), runs.start_training(second.path, stored.root)]
    seen: list[tuple[str, str]] = []
    corrupt = 0
    waiting_message = ""
    try:
        while any(p.poll() is None for p in procs):
            states = []
            for run in (first, second):
                try:
                    status = json.loads((run.path / runs.STATUS).read_text(encoding="utf-8"))
                except FileNotFoundError:
                    status = {}
                except ValueError:
                    corrupt += 1
                    status = {}
                states.append(status.get("state", ""))
                if "waiting for run" in status.get("message", ""):
                    waiting_message = status["message"]
            seen.append((states[0], states[1]))
            time.sleep(0.05)
        codes = [finish(p) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert codes == [0, 0]
    assert corrupt == 0, "a reader saw a half-written status.json"
    assert (runs.RUNNING, runs.RUNNING) not in seen, "two trainings ran at once"
    assert (runs.RUNNING, runs.QUEUED) in seen or (runs.QUEUED, runs.RUNNING) in seen, "one waited in the queue"
    assert waiting_message in (f"waiting for run {first.id} to finish", f"waiting for run {second.id} to finish")
    for run in (first, second):
        assert run.read_status()["state"] == runs.COMPLETED
        assert [h["epoch"] for h in run.read_history()] == [1, 2, 3]
        loads_safely(run.path / runs.BEST_MODEL)
    assert runs.lock_holder(tmp_path) in (first.id, second.id)


def test_an_upload_abandoned_by_a_closed_browser_is_invisible_and_cleaned_later(tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path / "ws"))
    staged = workspace.root() / workspace.UPLOADS / "0123abcd"
    (staged / "files" / "images").mkdir(parents=True)
    (staged / "files" / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n half")
    (staged / "upload.zip").write_bytes(b"PK\x03\x04 the first megabyte of a zip")
    half_built = workspace.datasets_dir() / ".ingest-killed" / "dataset"
    (half_built / "images").mkdir(parents=True)
    (half_built / "dataset.json").write_text('{"name": "half"')

    assert list_datasets(workspace.datasets_dir()) == []
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/dataset.py").run()
    assert not at.exception and not at.error
    assert any("No saved datasets yet" in i.value for i in at.info)

    folder = write_demo_dataset(tmp_path / "demo", kind="cells", count=4, size=32)  # the page still takes uploads
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in folder.rglob("*.png"):
            zf.write(file, file.relative_to(folder).as_posix())
    at.file_uploader[0].upload("good.zip", archive.read_bytes(), "application/zip").run()
    next(b for b in at.button if b.key == "save_zip").click().run()
    assert not at.exception and "4 pairs ready" in at.success[0].value
    assert [d.name for d in list_datasets(workspace.datasets_dir())] == ["good"]

    assert workspace.remove_stale_uploads() == [], "fresh folders may belong to an upload in progress"
    old = time.time() - 2 * 3600
    for path in [*staged.rglob("*"), staged, *half_built.parent.rglob("*"), half_built.parent]:
        os.utime(path, (old, old))
    assert sorted(workspace.remove_stale_uploads()) == [".ingest-killed", "0123abcd"]
    assert not staged.exists() and not half_built.exists()
    assert [d.name for d in list_datasets(workspace.datasets_dir())] == ["good"]


def test_training_outlives_the_web_server_that_started_it_and_the_page_finds_it_again(stored, tmp_path, monkeypatch):
    """The server process that launched a trainer dies (a restart); the run goes on and a new page shows it."""
    workspace_dir = tmp_path / "workspace"
    run = runs.create_run(workspace_dir / "runs", "survivor", tiny(epochs=6), stored.root)
    launcher = (
        "import sys; from pathlib import Path; from unet import runs; "
        "p = runs.start_training(Path(sys.argv[1]), Path(sys.argv[2])); print(p.pid)"
    )
    server = subprocess.run(
        [sys.executable, "-c", launcher, str(run.path), str(stored.root)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1],
    )
    assert server.returncode == 0, server.stderr[-2000:]
    trainer_pid = int(server.stdout.split()[-1])
    # the launching process is gone; the trainer is not
    wait_for(lambda: len(run.read_history()) >= 1, 120, "a first epoch after the server died")
    assert runs.pid_is_trainer(trainer_pid)
    monkeypatch.setenv("UNET_WORKSPACE", str(workspace_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = run.id
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1, "the charts come back after the restart"
    wait_for(lambda: run.read_status().get("state") == "completed", 120, "the run to complete on its own")
    assert [row["epoch"] for row in run.read_history()] == [1, 2, 3, 4, 5, 6]
