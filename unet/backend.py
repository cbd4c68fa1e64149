"""Where trainings run: on this machine (the default) or on a Ray cluster named by `UNET_RAY_ADDRESS`.

The run folder stays the contract. Whatever the backend, the trainer is `python -m unet train`, it writes
status.json, history.jsonl and the models into the run folder, and the pages and the command line read them.
What this module adds is how a trainer gets started, stopped and checked on:

- **local**: a process of this machine (`runs.start_training`); one trains at a time, the others wait as
  `queued` behind the training lock.
- **ray**: a Ray job (Ray's Jobs API) running the same command on whichever node has the resources. Several
  trainings run at once; queued ones wait in Ray's scheduler, so the trainer skips this machine's lock
  (`UNET_TRAINING_LOCK=off` in the job's environment). The workspace must be on storage every node mounts at
  the same path, and the nodes run the same Python environment: a node that cannot see the run folder fails
  the job at once, and the run says so.

`backend.json` in the run folder records where it runs (backend, address, job id, node, dashboard). Ray is
imported only when an address is set, so the app needs no Ray to run locally.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from unet import runs
from unet.errors import UserError

RAY_ADDRESS_ENV = "UNET_RAY_ADDRESS"  # e.g. 127.0.0.1:6379, ray://host:10001 or http://host:8265
RAY_CPUS_ENV = "UNET_RAY_CPUS"  # CPUs reserved per training (default 1)
RAY_GPUS_ENV = "UNET_RAY_GPUS"  # GPUs per training (default: 1 when the cluster has any, else 0)
RAY_PYTHON_ENV = "UNET_RAY_PYTHON"  # the Python the nodes run (default: this one, same path on every node)
LOCAL, RAY = "local", runs.RAY_BACKEND
STOP_GRACE_SECONDS = 30.0  # after a Stop, how long the trainer has to finish its batch before Ray stops the job
CONNECT_SECONDS = 3.0
ROOT = Path(__file__).resolve().parents[1]
_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class Placement:
    """Where one run's trainer was started."""

    backend: str  # LOCAL or RAY
    node: str  # this machine's name, or the Ray address until the job reports its node
    job_id: str | None = None
    pid: int | None = None
    dashboard: str | None = None

    def describe(self) -> str:
        if self.backend == LOCAL:
            return f"on this machine ({self.node}), process {self.pid}"
        return f"as Ray job {self.job_id} on {self.node}"


def ray_address() -> str | None:
    """The cluster trainings go to, or None for this machine."""
    return os.environ.get(RAY_ADDRESS_ENV, "").strip() or None


def read_placement(run: runs.Run) -> dict[str, Any]:
    """The run's backend.json ({} for runs started before it existed: they ran on this machine)."""
    return runs.read_json(run.file(runs.BACKEND), {}) or {}


# --- the cluster -------------------------------------------------------------------------------------------------


def _host_port(address: str) -> tuple[str, int]:
    if "://" not in address:
        address = f"tcp://{address}"
    parsed = urlparse(address)
    default = {"ray": 10001, "http": 8265, "https": 443}.get(parsed.scheme, 6379)
    return parsed.hostname or "127.0.0.1", parsed.port or default


class Cluster:
    """A connection to a Ray cluster's job server. Connecting fails fast, in words, when nobody answers."""

    def __init__(self, address: str) -> None:
        self.address = address
        host, port = _host_port(address)
        try:
            with socket.create_connection((host, port), timeout=CONNECT_SECONDS):
                pass
        except OSError as exc:
            raise UserError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it "
                            f"(`ray start --head`) or unset {RAY_ADDRESS_ENV} to train on this machine") from None
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise UserError(f"{RAY_ADDRESS_ENV} is set but Ray is not installed here: pip install 'ray[default]'"
                            ) from None
        try:
            self.client = JobSubmissionClient(address)
        except Exception as exc:  # Ray raises several kinds; the user needs the sentence, not the class
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UserError(f"the Ray cluster at {address} did not accept a connection ({first})") from None
        self.dashboard = self.client.get_address()

    def resources(self) -> dict[str, tuple[float, float]]:
        """Free and total CPUs and GPUs, from the dashboard's cluster status: {"CPU": (free, total), ...}."""
        try:
            with urllib.request.urlopen(f"{self.dashboard}/api/cluster_status", timeout=CONNECT_SECONDS) as answer:
                usage = json.loads(answer.read())["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {kind: (usage[kind][1] - usage[kind][0], usage[kind][1]) for kind in ("CPU", "GPU") if kind in usage}

    def submit(self, run_dir: Path, command: list[str]) -> str:
        """Submit `command` as a job with this training's resources; returns the job id."""
        gpus = os.environ.get(RAY_GPUS_ENV)
        wanted_gpus = float(gpus) if gpus else (1.0 if self.resources().get("GPU", (0, 0))[1] > 0 else 0.0)
        env = {runs.LOCK_ENV: "off", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
               "UNET_WORKSPACE": os.environ.get("UNET_WORKSPACE", "")}
        job_id = f"unet-{run_dir.name}-{int(time.time())}"
        return self.client.submit_job(
            entrypoint=shlex.join(command), submission_id=job_id,
            runtime_env={"env_vars": {k: v for k, v in env.items() if v}},
            entrypoint_num_cpus=float(os.environ.get(RAY_CPUS_ENV) or 1), entrypoint_num_gpus=wanted_gpus,
            metadata={"run": run_dir.name},
        )

    def job(self, job_id: str) -> tuple[str, str | None, str | None]:
        """(status, node id, Ray's message) of a job."""
        info = self.client.get_job_info(job_id)
        return str(getattr(info.status, "value", info.status)), info.driver_node_id, info.message

    def stop(self, job_id: str) -> None:
        self.client.stop_job(job_id)


_connected: dict[str, Cluster] = {}


def connect(address: str) -> Cluster:
    """A connection to the cluster at `address`, made once per process and reused (a page rerun asks often)."""
    if address not in _connected:
        _connected[address] = Cluster(address)
    return _connected[address]


def describe() -> str:
    """One sentence for the Train page: where trainings run, and what is free there."""
    address = ray_address()
    if address is None:
        return "Trainings run on this machine, one at a time: a second one waits as queued until the first ends."
    try:
        cluster = connect(address)
    except UserError as exc:
        return f"Trainings go to a Ray cluster that does not answer now: {exc}"
    free = cluster.resources()
    parts = [f"{free[k][0]:g} of {free[k][1]:g} {k}s free" for k in ("CPU", "GPU") if k in free]
    return (f"Trainings run on the Ray cluster at {address} ({', '.join(parts) or 'resources unknown'}); several "
            "can train at once, the others wait in the cluster's queue.")


# --- starting, stopping, checking ----------------------------------------------------------------------------------


def start(run_dir: Path, data: Path, resume: bool = False, epochs: int | None = None,
          max_minutes: float | None = None, cluster: Cluster | None = None) -> Placement:
    """Start the run's trainer through the configured backend and return at once.

    With a Ray address the cluster is reached first (pass `cluster` to reuse a connection made before the run
    folder was created, so an unreachable cluster starts nothing).
    """
    run_dir = Path(run_dir).resolve()
    address = ray_address()
    if address is None:
        process = runs.start_training(run_dir, data, resume=resume, epochs=epochs, max_minutes=max_minutes)
        threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends: no zombie
        placement = Placement(LOCAL, platform.node(), pid=process.pid)
        runs.write_json_atomic(run_dir / runs.BACKEND, {"backend": LOCAL, "node": placement.node,
                                                         "pid": process.pid, "submitted": runs.now_iso()})
        return placement
    cluster = cluster or connect(address)
    python = os.environ.get(RAY_PYTHON_ENV) or sys.executable
    command = runs.trainer_command(run_dir, data, resume, epochs, max_minutes, python=python)
    (run_dir / runs.STOP).unlink(missing_ok=True)
    job_id = cluster.submit(run_dir, command)
    placement = Placement(RAY, address, job_id=job_id, dashboard=cluster.dashboard)
    runs.write_json_atomic(run_dir / runs.BACKEND, {
        "backend": RAY, "address": address, "job_id": job_id, "node": None, "dashboard": cluster.dashboard,
        "submitted": runs.now_iso()})
    status = runs.Run(run_dir).read_status()
    status.update(state=runs.QUEUED, pid=None, message="submitted to the Ray cluster; waiting for its resources",
                  ended=None, error=None)
    runs.write_json_atomic(run_dir / runs.STATUS, status)
    return placement


def stop(run: runs.Run) -> None:
    """Ask the trainer to stop after its batch (the STOP file); `check_runs` stops a Ray job that has not
    reacted within STOP_GRACE_SECONDS."""
    run.request_stop()


def check_runs(root: Path) -> list[str]:
    """Bring the runs of Ray jobs up to date with the cluster; returns problems worth a line on the page.

    A job that ended while its run still says running or queued leaves the run `interrupted` (resumable from
    last.keras), or `failed` when the trainer never started (typically: the node cannot see the workspace).
    A job whose trainer ignores a Stop for STOP_GRACE_SECONDS is stopped through Ray. The node a job runs on
    is recorded once Ray reports it. Local runs are checked by `runs.mark_interrupted_runs`.
    """
    problems: list[str] = []
    clusters: dict[str, Cluster | None] = {}
    for run in runs.list_runs(root):
        placed = read_placement(run)
        status = run.read_status()
        if placed.get("backend") != RAY or status.get("state") not in runs.ACTIVE_STATES:
            continue
        address = placed.get("address", "")
        if address not in clusters:
            try:
                clusters[address] = connect(address)
            except UserError as exc:
                clusters[address] = None
                problems.append(str(exc))
        cluster = clusters[address]
        if cluster is None:
            continue
        try:
            state, node, message = cluster.job(placed["job_id"])
        except Exception as exc:  # an unknown job id, a cluster restarted without it, a lost connection
            _connected.pop(address, None)
            try:
                state, node, message = connect(address).job(placed["job_id"])
            except UserError as unreachable:
                problems.append(str(unreachable))
                continue
            except Exception:
                state, node, message = "FAILED", None, f"the cluster no longer knows the job ({exc})"
        if node and placed.get("node") != node:
            runs.write_json_atomic(run.file(runs.BACKEND), {**placed, "node": node})
        if state not in _TERMINAL:
            stop_file = run.file(runs.STOP)
            if stop_file.exists() and time.time() - stop_file.stat().st_mtime > STOP_GRACE_SECONDS:
                cluster.stop(placed["job_id"])
            continue
        status = run.read_status()  # the trainer may have finished writing it since
        if status.get("state") not in runs.ACTIVE_STATES:
            continue
        if run.file(runs.STOP).exists():
            status.update(state=runs.STOPPED, ended=status.get("ended") or runs.now_iso(), message=(
                f"stopped through the cluster: the trainer did not react to Stop within {STOP_GRACE_SECONDS:g} s "
                "(the epoch under way was not finished); resume continues from the last finished epoch"))
        elif not status.get("started") or status.get("pid") is None:
            status.update(state=runs.FAILED, ended=runs.now_iso(), error=(
                f"the Ray job ended ({state}) before training started: {message or 'no message'}. Is the workspace "
                f"on storage every node mounts at the same path ({run.path.parent})?"), message="failed")
        else:
            status.update(state=runs.INTERRUPTED, ended=status.get("ended") or runs.now_iso(),
                          message=f"the Ray job ended ({state}) while training; resume continues from the last epoch")
        runs.write_json_atomic(run.file(runs.STATUS), status)
    return problems


# --- a cluster on this machine, for the tests and the benchmark ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_head(cpus: int = 2, start_seconds: float = 120.0) -> Iterator[str]:
    """A one-machine Ray cluster on 127.0.0.1 (`ray start --head --block`) for as long as the block runs; yields
    its address. Only this head's processes are ended afterwards (`ray stop` would end every Ray on the machine).
    """
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        raise UserError("Ray is not installed here: pip install 'ray[default]'")
    port, dashboard = _free_port(), _free_port()
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
         "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--include-dashboard", "true", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            try:  # up once the dashboard reports the head's CPUs
                url = f"http://127.0.0.1:{dashboard}/api/cluster_status"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if "CPU" in json.loads(answer.read())["data"]["clusterStatus"]["loadMetricsReport"]["usage"]:
                        break
            except (OSError, ValueError, KeyError, TypeError):
                pass
            if head.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"the Ray head did not start within {start_seconds:g} s")
            time.sleep(0.5)
        yield address
    finally:
        _connected.pop(address, None)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)  # `--block` ends the head's processes when it is told to stop
        try:
            head.wait(timeout=8)  # a graceful stop takes 30 s and more; the head's work is done by then
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait()
