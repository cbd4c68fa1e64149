"""The run store on disk: create, list, start, stop and read runs; find runs whose trainer died.

A run is a folder `runs/YYYYmmdd-HHMMSS-name/` that the trainer process fills (see unet.training) and everybody
else only reads. Files are written whole (temp file + `os.replace`), so a reader never sees half a JSON object;
`history.jsonl` is append-only and its last line may be half-written while the trainer works.

Only this module and the trainer know file names inside a run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from unet import atomic, workspace
from unet.config import Config
from unet.errors import UserError

# Run folder files.
CONFIG = "config.json"
RUN_INFO = "run.json"
TRAINING_DATA = "training_data.json"  # what the run trained on: dataset, hash, split, class map, intensity rule
EARLIER_TRAINING_DATA = "dataset.json"  # its name in runs made before stop 14 (it clashed with a dataset's file)
HELD_BACK = "held_back.json"  # the best model scored on the whole validation images at the end of training
INIT_FROM = "init_from.json"  # a fine-tuned run: where its first weights came from (unet.finetune)
VERSIONS = "versions.json"
STATUS = "status.json"
HISTORY = "history.jsonl"
BEST_MODEL = "model.keras"
LAST_MODEL = "last.keras"
SAMPLES = "samples"
LOG = "trainer.log"
STOP = "STOP"
TENSORBOARD = "tensorboard"
DATA = "data"  # a raw (unstored) dataset given to `train` is ingested here, inside the run
LOCK = ".training.lock"  # in the runs root: one training at a time on this machine
LOCK_ENV = "UNET_TRAINING_LOCK"  # "off": the trainer skips that lock (a Ray cluster schedules trainings itself)
BACKEND = "backend.json"  # where the trainer was started: this machine or a Ray job (`unet.backend`)
RAY_BACKEND = "ray"  # backend.json's "backend" for a Ray job



class RunState(StrEnum):
    """A run's `state` in status.json: its process starting, waiting for the training lock, training, or one of
    four ends."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"  # on request or at the time limit; resumable
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the trainer died without a word (killed, machine restarted); resumable
    STARTING = "starting"  # the process was started and has not written its own status yet


QUEUED, RUNNING, COMPLETED, STOPPED, FAILED, INTERRUPTED, STARTING = tuple(RunState)
ACTIVE_STATES = (STARTING, QUEUED, RUNNING)
HEARTBEAT_GRACE_SECONDS = 15.0  # a run whose status.json changed this recently is never called interrupted
RESUMABLE_STATES = (STOPPED, INTERRUPTED, FAILED)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON whole (`unet.atomic`): readers see the old or the new file."""
    atomic.write_json(path, data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text whole (`unet.atomic`): readers see the old or the new file."""
    atomic.write_text(path, text)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def pid_is_trainer(pid: int | None) -> bool:
    """Whether `pid` is a live unet process; a reused pid of another program, or a zombie, counts as gone."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (macOS): trust kill(0)
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        return b"unet" in (proc / "cmdline").read_bytes()
    except OSError:
        return False


@dataclass(frozen=True)
class Run:
    """One run folder. Every read goes to disk, so a `Run` never goes stale."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def name(self) -> str:
        """The display name (renamable); the folder name never changes."""
        return read_json(self.path / RUN_INFO, {}).get("name") or self.id

    @property
    def info(self) -> dict[str, Any]:
        return read_json(self.path / RUN_INFO, {})

    def file(self, name: str) -> Path:
        return self.path / name

    def training_data(self) -> dict[str, Any]:
        """The run's record of the data it trained on ({} before training has read it)."""
        for name in (TRAINING_DATA, EARLIER_TRAINING_DATA):
            if (self.path / name).exists():
                return read_json(self.path / name, {}) or {}
        return {}

    def config(self) -> Config:
        return Config.load(self.path / CONFIG)

    def read_status(self) -> dict[str, Any]:
        """status.json, or a 'queued' placeholder when the trainer has not written one yet."""
        status = read_json(self.path / STATUS)
        return status if isinstance(status, dict) else {"state": QUEUED, "message": "not started"}

    def read_history(self) -> list[dict[str, Any]]:
        """One dict per finished epoch; a half-written or damaged line is skipped."""
        try:
            lines = (self.path / HISTORY).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        rows = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def request_stop(self) -> None:
        """Ask the trainer to stop after the current batch; it keeps the best model and a resumable checkpoint."""
        (self.path / STOP).write_text(now_iso())

    @property
    def stop_requested(self) -> bool:
        return (self.path / STOP).exists()

    @property
    def is_active(self) -> bool:
        """Queued or training, with a trainer alive: its process here, or a Ray job (`unet.backend.check_runs`
        ends the state of a job that ended, since its pid is on another machine)."""
        status = self.read_status()
        if status.get("state") not in ACTIVE_STATES:
            return False
        return self.on_ray or pid_is_trainer(status.get("pid"))

    @property
    def on_ray(self) -> bool:
        """Started as a Ray job (`unet.backend`), not as a process of this machine."""
        return (read_json(self.path / BACKEND, {}) or {}).get("backend") == RAY_BACKEND

    @property
    def has_model(self) -> bool:
        return (self.path / BEST_MODEL).exists()

    @property
    def can_resume(self) -> bool:
        return (self.path / LAST_MODEL).exists() and self.read_status().get("state") in RESUMABLE_STATES


def session_seconds(status: dict[str, Any], now: float | None = None) -> float:
    """Seconds of the current (or last) training session: started -> ended, or -> now while it runs."""
    try:
        start = datetime.fromisoformat(status["started"]).timestamp()
        end = status.get("ended")
        stop = datetime.fromisoformat(end).timestamp() if end else (time.time() if now is None else now)
    except (KeyError, TypeError, ValueError):
        return 0.0
    return max(0.0, stop - start)


def earlier_seconds(previous: dict[str, Any]) -> float:
    """Seconds spent in the sessions before a resume: the ones they had carried plus the last one's."""
    if not previous:
        return 0.0
    return float(previous.get("previous_seconds") or 0.0) + session_seconds(previous)


def elapsed_seconds(status: dict[str, Any], now: float | None = None) -> float:
    """A run's training time over every session, so a resumed run does not restart its clock at 0:00."""
    return float(status.get("previous_seconds") or 0.0) + session_seconds(status, now)


def unique_name(root: Path, name: str) -> str:
    """`name`, or `name (2)`, `name (3)`… when a run of that name exists already: runs are told apart by name."""
    taken = {run.name for run in list_runs(root)}
    if name not in taken:
        return name
    return next(f"{name} ({i})" for i in range(2, len(taken) + 3) if f"{name} ({i})" not in taken)


def _unique_folder(root: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{workspace.safe_name(name, fallback='run', max_length=48)}"
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise UserError(f"cannot create a run folder for '{name}'")


def create_run(root: Path, name: str, config: Config, dataset_dir: Path | None = None) -> Run:
    """A new run folder `root/YYYYmmdd-HHMMSS-name` holding config.json and run.json, not yet started."""
    name = unique_name(Path(root), name)
    path = _unique_folder(Path(root), name)
    write_text_atomic(path / CONFIG, config.to_json())
    info = {"name": name, "created": now_iso(), "dataset": str(dataset_dir) if dataset_dir else None}
    write_json_atomic(path / RUN_INFO, info)
    return Run(path)


def list_runs(root: Path) -> list[Run]:
    """Every run folder under `root`, newest first (folder names start with their creation time)."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if p.is_dir() and (p / CONFIG).exists()]
    return sorted(runs, key=lambda r: r.id, reverse=True)


def rename_run(run: Run, name: str) -> None:
    info = run.info
    info["name"] = name.strip() or run.id
    write_json_atomic(run.path / RUN_INFO, info)


def delete_run(run: Run) -> None:
    """Remove a run folder; refused while its trainer is alive."""
    import shutil

    if run.is_active:
        raise UserError(f"run '{run.name}' is still training; stop it first")
    shutil.rmtree(run.path)


def heartbeat_age(run: Run, now: float | None = None) -> float:
    """Seconds since the run's status.json last changed (the trainer rewrites it at least every epoch, and every
    half second while batches run); infinite when it has none."""
    try:
        changed = (run.path / STATUS).stat().st_mtime
    except OSError:
        return float("inf")
    return max(0.0, (time.time() if now is None else now) - changed)


def mark_interrupted_runs(root: Path, grace_seconds: float = HEARTBEAT_GRACE_SECONDS) -> list[Run]:
    """Runs that say `starting`/`queued`/`running` but whose trainer is gone become `interrupted` (their
    checkpoints stay).

    Gone means both: no live trainer under the recorded pid, and no change to status.json for `grace_seconds`.
    One reading of the process table is not trusted alone to call a run dead, since the word reaches the user
    (and a run shown as interrupted while it trains is a false alarm about their work). A run with no pid yet
    (created, never started) is left alone.
    """
    marked = []
    for run in list_runs(root):
        if run.on_ray:
            continue  # its pid is on a cluster node: `unet.backend.check_runs` asks the cluster instead
        status = run.read_status()
        if (status.get("state") in ACTIVE_STATES and status.get("pid") and not pid_is_trainer(status["pid"])
                and heartbeat_age(run) >= grace_seconds):
            status.update(state=INTERRUPTED, ended=status.get("ended") or now_iso(),
                          message="the training process ended unexpectedly; resume continues from the last epoch")
            write_json_atomic(run.path / STATUS, status)
            marked.append(run)
    return marked


def lock_holder(root: Path) -> str | None:
    """The id of the run that holds the training lock, as it wrote it (may be stale if nobody holds it)."""
    try:
        return (Path(root) / LOCK).read_text().strip() or None
    except OSError:
        return None


def trainer_command(run_dir: Path, data: Path, resume: bool = False, epochs: int | None = None,
                    max_minutes: float | None = None, python: str = sys.executable) -> list[str]:
    """`python -m unet train` for a run, as this machine and a Ray job alike start it."""
    cmd = [python, "-m", "unet", "train", "--data", str(Path(data).resolve()), "--out", str(Path(run_dir).resolve()),
           "--config", str(Path(run_dir).resolve() / CONFIG)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if max_minutes is not None:
        cmd += ["--max-minutes", str(max_minutes)]
    if resume:
        cmd.append("--resume")
    return cmd


def start_training(
    run_dir: Path,
    data: Path,
    resume: bool = False,
    epochs: int | None = None,
    max_minutes: float | None = None,
) -> subprocess.Popen:
    """Start `python -m unet train` for a run in its own session, as the command line would.

    The trainer outlives a page rerun or a web-server restart; its output goes to trainer.log. A pid is written
    to status.json at once, so the run counts as active before TensorFlow has even been imported.
    """
    run_dir = Path(run_dir).resolve()
    cmd = trainer_command(run_dir, data, resume, epochs, max_minutes)
    (run_dir / STOP).unlink(missing_ok=True)
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"  # trainer.log shows each epoch as it ends
    with open(run_dir / LOG, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    status = Run(run_dir).read_status()
    if status.get("pid") != proc.pid:  # the trainer has not written its own status yet
        previous = earlier_seconds(status) if resume else 0.0
        status.update(state=STARTING, pid=proc.pid, message="starting the training process", ended=None, error=None,
                      started=now_iso(), previous_seconds=previous)
        write_json_atomic(run_dir / STATUS, status)
    return proc


class StatusWriter:
    """The trainer's side of status.json: keeps the whole status in memory and rewrites it atomically.

    Progress writes (`force=False`) are throttled to at most `1 / min_interval` per second, so a fast batch loop
    does not spend its time on the disk; state changes are written at once.
    """

    def __init__(self, run_dir: Path, initial: dict[str, Any], min_interval: float = 0.5) -> None:
        self.run_dir = Path(run_dir)
        self.data = dict(initial)
        self.min_interval = min_interval
        self._last_write = 0.0
        self._stop = False
        self.write(force=True)

    def write(self, force: bool = True, **changes: Any) -> None:
        self.data.update(changes)
        now = time.monotonic()
        if force or now - self._last_write >= self.min_interval:
            self.data["updated"] = now_iso()
            write_json_atomic(self.run_dir / STATUS, self.data)
            self._last_write = now

    def request_stop(self) -> None:
        """Called from a signal handler (SIGTERM): stop as if a STOP file had appeared."""
        self._stop = True

    def stop_requested(self) -> bool:
        return self._stop or (self.run_dir / STOP).exists()
