"""The run store on disk: folders, status, history, stop requests, and runs whose trainer died (no TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from unet import runs
from unet.config import Config
from unet.errors import UserError


def test_create_run_sanitises_the_name_and_never_reuses_a_folder(tmp_path):
    first = runs.create_run(tmp_path, "Zellkerne Ä/../x", Config())
    second = runs.create_run(tmp_path, "Zellkerne Ä/../x", Config())
    assert first.path.parent == tmp_path and second.path.parent == tmp_path
    assert first.id != second.id
    assert first.id.endswith("Zellkerne_A_.._x") and "/" not in first.id
    assert first.name == "Zellkerne Ä/../x"  # the display name is kept as typed
    assert Config.load(first.path / runs.CONFIG) == Config()


def test_list_runs_puts_the_newest_first_and_ignores_other_folders(tmp_path):
    for name in ("20240101-000000-old", "20250101-000000-new", "20240601-000000-mid"):
        (tmp_path / name).mkdir()
        (tmp_path / name / runs.CONFIG).write_text(Config().to_json())
    (tmp_path / "not-a-run").mkdir()
    assert [r.id for r in runs.list_runs(tmp_path)] == ["20250101-000000-new", "20240601-000000-mid",
                                                        "20240101-000000-old"]
    assert runs.list_runs(tmp_path / "missing") == []


def test_read_history_skips_a_half_written_last_line(tmp_path):
    run = runs.create_run(tmp_path, "h", Config())
    (run.path / runs.HISTORY).write_text('{"epoch": 1, "loss": 0.5}\n{"epoch": 2, "loss": 0.4}\n{"epoch": 3, "lo')
    assert [h["epoch"] for h in run.read_history()] == [1, 2]


def test_status_before_the_trainer_writes_is_a_placeholder(tmp_path):
    run = runs.create_run(tmp_path, "s", Config())
    assert run.read_status()["state"] == runs.QUEUED
    assert not run.is_active


def test_request_stop_writes_the_stop_file(tmp_path):
    run = runs.create_run(tmp_path, "s", Config())
    run.request_stop()
    assert (run.path / runs.STOP).exists() and run.stop_requested


def test_status_writer_throttles_progress_but_not_state_changes(tmp_path):
    writer = runs.StatusWriter(tmp_path, {"state": runs.RUNNING, "batch": 0}, min_interval=60)
    writer.write(batch=1, force=False)  # within the interval: kept in memory only
    assert json.loads((tmp_path / runs.STATUS).read_text())["batch"] == 0
    writer.write(state=runs.COMPLETED)
    saved = json.loads((tmp_path / runs.STATUS).read_text())
    assert saved["state"] == runs.COMPLETED and saved["batch"] == 1
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind


def _set_status(run: runs.Run, **status) -> None:
    runs.write_json_atomic(run.path / runs.STATUS, status)


def test_runs_whose_process_is_gone_or_not_a_trainer_are_marked_interrupted(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # alive, but not a trainer
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)  # unet train"])
    try:
        gone = runs.create_run(tmp_path, "gone", Config())
        reused = runs.create_run(tmp_path, "reused", Config())
        alive = runs.create_run(tmp_path, "alive", Config())
        never = runs.create_run(tmp_path, "never-started", Config())
        done = runs.create_run(tmp_path, "done", Config())
        _set_status(gone, state=runs.RUNNING, pid=dead.pid)
        _set_status(reused, state=runs.QUEUED, pid=other.pid)
        _set_status(alive, state=runs.RUNNING, pid=trainer.pid)
        _set_status(done, state=runs.COMPLETED, pid=dead.pid)
        assert runs.mark_interrupted_runs(tmp_path) == [], "status.json just written: a heartbeat, not yet gone"
        marked = runs.mark_interrupted_runs(tmp_path, grace_seconds=0.0)
        assert sorted(r.id for r in marked) == sorted([gone.id, reused.id])
        assert gone.read_status()["state"] == runs.INTERRUPTED and "resume" in gone.read_status()["message"]
        assert alive.read_status()["state"] == runs.RUNNING and alive.is_active
        assert never.read_status()["state"] == runs.QUEUED
        assert done.read_status()["state"] == runs.COMPLETED
    finally:
        other.kill()
        trainer.kill()
        other.wait()
        trainer.wait()


def test_rename_keeps_the_folder_and_delete_refuses_an_active_run(tmp_path):
    run = runs.create_run(tmp_path, "first", Config())
    runs.rename_run(run, "second")
    assert run.name == "second" and run.path.exists()
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)  # unet"])
    try:
        _set_status(run, state=runs.RUNNING, pid=busy.pid)
        with pytest.raises(UserError, match="still training"):
            runs.delete_run(run)
    finally:
        busy.kill()
        busy.wait()
    runs.delete_run(run)
    assert not run.path.exists()


def test_a_run_folder_name_never_leaves_the_store(tmp_path):
    from unet import workspace

    (tmp_path / "runs").mkdir()
    for name in ("../../etc", "/etc/passwd", ".."):
        assert workspace.child(tmp_path / "runs", name).parent == (tmp_path / "runs").resolve()


def test_write_json_atomic_replaces_the_whole_file(tmp_path):
    path = tmp_path / "x.json"
    runs.write_json_atomic(path, {"a": 1})
    runs.write_json_atomic(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert time.time() - path.stat().st_mtime < 60


def test_two_runs_never_share_a_name(tmp_path):
    first = runs.create_run(tmp_path, "isbi", Config())
    second = runs.create_run(tmp_path, "isbi", Config())
    third = runs.create_run(tmp_path, "isbi", Config())
    assert [first.name, second.name, third.name] == ["isbi", "isbi (2)", "isbi (3)"]


def test_elapsed_time_adds_up_across_resumes():
    """45 s, then a resume of 62 s: 107 s, not 62 (issue #13)."""
    first = {"started": "2026-01-01T10:00:00", "ended": "2026-01-01T10:00:45"}
    resumed = {"started": "2026-01-01T11:00:00", "ended": "2026-01-01T11:01:02",
               "previous_seconds": runs.earlier_seconds(first)}
    assert runs.elapsed_seconds(first) == 45 and runs.elapsed_seconds(resumed) == 107
    again = {"started": "2026-01-01T12:00:00", "ended": None, "previous_seconds": runs.earlier_seconds(resumed)}
    now = runs.session_seconds({"started": "2026-01-01T12:00:00", "ended": "2026-01-01T12:00:10"})
    assert now == 10 and runs.elapsed_seconds(again, now=runs.datetime.fromisoformat(
        "2026-01-01T12:00:10").timestamp()) == 117
