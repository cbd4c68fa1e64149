"""Ten sessions use the app while a real trainer trains: the one implementation of that load.

Why it exists: training must keep its speed while people use the app, but a timed test of that is flaky on a
busy machine and costs the suite a minute and a half. So the speed figure is measured by `python -m unet bench`,
which runs `python -m unet.ui.load_probe --json` in its own process (the benchmark never imports Streamlit), and
`tests/test_load.py` runs the same pieces for a few seconds to check that nothing fails under the load.

The load, as it was measured before:
- one trainer process (`python -m unet train`, as the Train page starts it) runs throughout; its speed (training
  images per second, from `history.jsonl`'s per-epoch seconds) is measured first with the app idle, then busy;
- ten threads act as ten browser tabs at the HTTP level against a real server (`python -m unet.ui.serve` on a
  free localhost port): each loads the app page, the page URLs and the health endpoint, with a short think time.
  This tests the web server's responsiveness, not script runs (those go over the websocket);
- one session in this process runs the real page scripts (Streamlit AppTest) one after another: Dataset, Model,
  and the Train page watching the very run that is training, two seconds apart (a person reading the page).
  This is the CPU cost a session's page runs put on the machine the trainer shares.
Both phases are measured in the same trainer process, so TensorFlow's start-up and first-epoch compilation are
outside both.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from unet import runs  # noqa: E402
from unet.config import Config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
SESSIONS = 10  # browser tabs at the HTTP level
PATHS = ("/", "/dataset", "/_stcore/health", "/model", "/train", "/_stcore/health")  # what each tab loads, in turn
PAGES = ("pages/dataset.py", "pages/model.py", "pages/train.py")  # what the in-process session views, in turn
THINK_SECONDS = 0.2  # between two requests of one tab
READING_SECONDS = 2.0  # between two page views of the in-process session
PHASE_SECONDS = 22.0  # each of the idle and the busy phase, in the benchmark
WARMUP_EPOCHS = 2  # epochs the trainer finishes before anything is measured
START_SECONDS = 60.0  # for the server to answer, or the trainer to finish its warm-up epochs
DATASET = "cells"
DEMO_IMAGES = 30
TRAINING = {"data": {"input_size": 64}, "augment": {"enabled": False}, "model": {"depth": 3, "base_filters": 8},
            "train": {"epochs": 10000, "batch_size": 4, "early_stopping_patience": 0, "reduce_lr_patience": 0,
                      "validation_split": 0.2}}  # a small model that trains until it is told to stop


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def free_port() -> int:
    """A localhost port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> int:
    """GET `url` and read the whole answer; returns the HTTP status."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        response.read()
        return response.status


# ---------------------------------------------------------------------------------------------------------------
# The app server and the sessions.
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Server:
    """A running app server: its address and its process."""

    url: str
    port: int
    process: subprocess.Popen


@contextlib.contextmanager
def app_server(workspace: Path | None, port: int | None = None, start_seconds: float = START_SECONDS, *,
               command: tuple[str, ...] = ("unet.ui.serve",), env: dict[str, str] | None = None,
               log_path: Path | None = None) -> Iterator[Server]:
    """The app as `make run` starts it (config.toml's address) on a free port, serving `workspace`.

    `command` is what follows `python -m` (the browser tests also serve a component harness with
    `("streamlit", "run", HARNESS)`); `env` replaces the environment (default: this one); the server's output goes
    to `log_path` (default: a temporary file, quoted when it does not start). Yields once `/_stcore/health`
    answers; the server is terminated on the way out, whatever happened.
    """
    port = port or free_port()
    env = dict(os.environ if env is None else env)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if workspace is not None:
        env["UNET_WORKSPACE"] = str(Path(workspace).resolve())
    with (open(log_path, "w+b") if log_path else tempfile.TemporaryFile()) as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", *command, "--server.port", str(port), "--server.headless", "true",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        try:
            url = f"http://localhost:{port}"
            deadline = time.monotonic() + start_seconds
            while True:
                try:
                    if get(f"{url}/_stcore/health", timeout=2) == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"{' '.join(command)} did not start within {start_seconds:g} s:\n{tail}")
                time.sleep(0.3)
            yield Server(url, port, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclasses.dataclass
class Load:
    """What the sessions did: requests answered per path, page views per page, and every failure."""

    requests: dict[str, int] = dataclasses.field(default_factory=dict)
    page_views: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, counts: dict[str, int], key: str, failure: str | None = None) -> None:
        with self.lock:
            counts[key] = counts.get(key, 0) + 1
            if failure:
                self.failures.append(failure)

    def fail(self, failure: str) -> None:
        with self.lock:
            self.failures.append(failure)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_page_views(self) -> int:
        return sum(self.page_views.values())


def browse(url: str, stop: threading.Event, load: Load) -> None:
    """One browser tab at the HTTP level: PATHS in turn, THINK_SECONDS apart, until `stop` is set."""
    i = 0
    while not stop.is_set():
        path = PATHS[i % len(PATHS)]
        i += 1
        try:
            status = get(url + path)
            load.count(load.requests, path, None if status == 200 else f"{path}: HTTP {status}")
        except (OSError, urllib.error.URLError) as exc:
            load.fail(f"{path}: {exc}")
        stop.wait(THINK_SECONDS)


@contextlib.contextmanager
def browsing(url: str, load: Load, sessions: int = SESSIONS) -> Iterator[None]:
    """`sessions` tabs browse `url` (threads running `browse`) for as long as the block runs."""
    stop = threading.Event()
    tabs = [threading.Thread(target=browse, args=(url, stop, load), daemon=True, name=f"tab-{i}")
            for i in range(sessions)]
    for tab in tabs:
        tab.start()
    try:
        yield
    finally:
        stop.set()
        for tab in tabs:
            tab.join(timeout=15)


def prepare_in_process_sessions() -> None:
    """Run pages in this process as `unet.ui.serve` serves them, and scan the installed components only once (a
    served app scans them once, AppTest on every new app: 0.3 s of CPU a view that no real session costs)."""
    from streamlit.components.v2 import manifest_scanner

    from unet.ui.serve import lighten_reruns

    lighten_reruns()
    if not hasattr(manifest_scanner.scan_component_manifests, "cache_info"):
        manifest_scanner.scan_component_manifests = functools.cache(manifest_scanner.scan_component_manifests)


@contextlib.contextmanager
def in_workspace(workspace: Path) -> Iterator[None]:
    """UNET_WORKSPACE is `workspace` inside the block (pages in this process read it); restored after it."""
    before = os.environ.get("UNET_WORKSPACE")
    os.environ["UNET_WORKSPACE"] = str(Path(workspace).resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("UNET_WORKSPACE", None)
        else:
            os.environ["UNET_WORKSPACE"] = before


def view_page(page: str, run_id: str, load: Load) -> None:
    """One real run of `page` (e.g. "pages/train.py") through app.py, on the demo dataset and run `run_id`."""
    from streamlit.testing.v1 import AppTest

    try:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params["dataset"] = DATASET
        at.query_params["run"] = run_id
        at.switch_page(page).run()
    except Exception as exc:  # a page that times out or cannot start is a failure to report, not a crash
        load.count(load.page_views, page, f"{page}: {type(exc).__name__}: {exc}")
        return
    load.count(load.page_views, page, f"{page}: {at.exception[0].value}" if at.exception else None)


def session_pages(run_id: str, workspace: Path, until: float, load: Load,
                  reading_seconds: float = READING_SECONDS) -> None:
    """One person's session in this process: PAGES in turn, `reading_seconds` of reading after each, until the
    monotonic clock reaches `until`, but never before every page was viewed once."""
    with in_workspace(workspace):
        i = 0
        while True:
            view_page(PAGES[i % len(PAGES)], run_id, load)
            i += 1
            time.sleep(reading_seconds)
            if time.monotonic() >= until and i >= len(PAGES):
                return


def warm_pages(run_id: str, workspace: Path) -> None:
    """View each page once, unmeasured: the app's one-off costs (imports, the Model page's machine calibration)."""
    session_pages(run_id, workspace, 0.0, Load(), reading_seconds=0.0)


# ---------------------------------------------------------------------------------------------------------------
# The trainer.
# ---------------------------------------------------------------------------------------------------------------


def prepare_run(workspace: Path, name: str = "load") -> tuple[runs.Run, Path, int]:
    """The cells demo data stored in `workspace` and a run of TRAINING on it, not started.

    Returns the run, the stored dataset's folder and the training images per epoch.
    """
    from unet.dataset import ingest
    from unet.demo import write_demo_dataset
    from unet.splits import training_count

    config = Config.from_dict(TRAINING)
    with tempfile.TemporaryDirectory(prefix="load-raw-") as raw:
        source = write_demo_dataset(Path(raw), kind=DATASET, count=DEMO_IMAGES, size=config.data.input_size)
        dataset, _ = ingest(source, DATASET, Path(workspace) / "datasets")
    run = runs.create_run(Path(workspace) / "runs", name, config, dataset.root)
    return run, dataset.root, training_count(len(dataset.stems), config.train.validation_split)


def trainer_log_tail(run: runs.Run, chars: int = 2000) -> str:
    try:
        return (run.path / runs.LOG).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_for_epochs(run: runs.Run, proc: subprocess.Popen, epochs: int, seconds: float = START_SECONDS) -> None:
    """Wait until the run's history holds `epochs` epochs; RuntimeError if the trainer ends or time runs out."""
    deadline = time.monotonic() + seconds
    while len(run.read_history()) < epochs:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the trainer did not finish {epochs} epochs within {seconds:g} s:\n"
                               f"{trainer_log_tail(run)}")
        time.sleep(0.2)


def stop_training(run: runs.Run, proc: subprocess.Popen, seconds: float = 60.0) -> int:
    """Ask the trainer to stop (as the Train page's button does) and wait for it; killed after `seconds`."""
    run.request_stop()
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def busy_phase(url: str, run: runs.Run, workspace: Path, seconds: float,
               sessions: int = SESSIONS) -> tuple[Load, range]:
    """`sessions` tabs browse the app at `url` and one in-process session views the pages for `seconds`.

    Returns what they did and the epochs (1-based) that ran wholly under that load.
    """
    load = Load()
    with browsing(url, load, sessions):
        time.sleep(1.0)  # every tab has started
        first = len(run.read_history()) + 2  # the epoch running now started before the load
        session_pages(run.id, workspace, time.monotonic() + seconds, load)
        last = len(run.read_history())
    return load, range(first, last + 1)


def images_per_second(history: list[dict[str, Any]], epochs: range, train_images: int) -> float | None:
    """Training images per second over `epochs` of `history`, or None when none of them has finished."""
    rows = [h for h in history if h.get("epoch") in epochs]
    seconds = sum(h["seconds"] for h in rows)
    return train_images * len(rows) / seconds if rows and seconds > 0 else None


# ---------------------------------------------------------------------------------------------------------------
# The measurement.
# ---------------------------------------------------------------------------------------------------------------


def measure(workspace: Path, phase_seconds: float = PHASE_SECONDS, sessions: int = SESSIONS,
            warmup_epochs: int = WARMUP_EPOCHS, progress: Callable[[str], None] = _log) -> dict[str, Any]:
    """Training speed alone, then while `sessions` tabs and one page session use the app, in one trainer process.

    `workspace` (created if missing) receives the demo dataset and the run. Returns a JSON-ready dict.
    """
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    prepare_in_process_sessions()
    failures: list[str] = []
    with in_workspace(workspace):
        progress("load probe: starting the app server")
        with app_server(workspace) as server:
            run, dataset_root, train_images = prepare_run(workspace)
            progress("load probe: starting the trainer and warming the pages")
            proc = runs.start_training(run.path, dataset_root)
            try:
                warm_pages(run.id, workspace)  # while the trainer starts: both are before anything is measured
                wait_for_epochs(run, proc, warmup_epochs)
                progress(f"load probe: training alone for {phase_seconds:g} s")
                first_alone = len(run.read_history()) + 1
                time.sleep(phase_seconds)
                alone_epochs = range(first_alone, len(run.read_history()) + 1)
                progress(f"load probe: training while {sessions} tabs and a page session use the app "
                         f"for {phase_seconds:g} s")
                load, busy_epochs = busy_phase(server.url, run, workspace, phase_seconds, sessions)
                if proc.poll() is not None:
                    failures.append(f"the trainer died under load:\n{trainer_log_tail(run)}")
            finally:
                code = stop_training(run, proc)
    history = run.read_history()
    alone = images_per_second(history, alone_epochs, train_images)
    busy = images_per_second(history, busy_epochs, train_images)
    state = run.read_status().get("state")
    if state != runs.STOPPED:
        failures.append(f"the trainer ended {state} (exit code {code}) after the stop request")
    return {
        "alone_images_per_s": alone,
        "busy_images_per_s": busy,
        "ratio": busy / alone if alone and busy else None,
        "requests": load.total_requests,
        "page_views": load.total_page_views,
        "failures": failures + load.failures,
        "alone_epochs": len([h for h in history if h.get("epoch") in alone_epochs]),
        "busy_epochs": len([h for h in history if h.get("epoch") in busy_epochs]),
        "requests_by_path": dict(sorted(load.requests.items())),
        "page_views_by_page": dict(sorted(load.page_views.items())),
        "sessions": sessions,
        "phase_seconds": phase_seconds,
        "train_images_per_epoch": train_images,
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m unet.ui.load_probe --workspace DIR [--seconds S] [--json]`: the measurement on stdout."""
    parser = argparse.ArgumentParser(prog="python -m unet.ui.load_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="folder for the demo dataset and the run "
                        "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--seconds", type=float, default=PHASE_SECONDS,
                        help=f"length of the idle and of the busy phase (default {PHASE_SECONDS:g})")
    parser.add_argument("--sessions", type=int, default=SESSIONS, help=f"browser tabs (default {SESSIONS})")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.sessions < 1:
        parser.error("--seconds must be above 0 and --sessions at least 1")
    with contextlib.ExitStack() as stack:
        workspace = args.workspace or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="load-probe-")))
        with contextlib.redirect_stdout(sys.stderr):  # only the result goes to stdout
            result = measure(workspace, args.seconds, args.sessions)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        alone, busy = result["alone_images_per_s"], result["busy_images_per_s"]
        print(f"alone {alone or float('nan'):.1f} images/s; with {result['sessions']} tabs ({result['requests']} "
              f"requests) and {result['page_views']} page views: {busy or float('nan'):.1f} images/s; "
              f"{len(result['failures'])} failures")
        for failure in result["failures"]:
            print(f"  {failure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
