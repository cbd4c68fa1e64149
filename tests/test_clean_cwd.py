"""Every command of `python -m unet` leaves the directory it is run from as it found it (issue #24).

Each command runs as a user would, in its own process, from an empty temporary directory, with every input and
output given as an absolute path elsewhere; afterwards that directory must still be empty. The environment has
no UNET_WORKSPACE (a command that fell back on the default `./workspace` would show here) and no Ray address
(`submit` starts its trainer on this machine). One tiny dataset and run serve the whole module.

`submit`'s trainer runs beside the other commands and its directory is checked last, once it ended. `bench --tiny`
is run from an empty directory by tests/test_bench.py (once for both checks: it is the slowest command).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from unet import runs
from unet.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
TINY = {"data": {"input_size": 64}, "augment": {"enabled": False}, "model": {"depth": 2, "base_filters": 4},
        "train": {"epochs": 2, "batch_size": 4}}
ENDED = (runs.COMPLETED, runs.STOPPED, runs.FAILED, runs.INTERRUPTED)
TIMEOUT_S = 300
# Every command is run below; a new one must be added (test_every_command_is_run_here).
COMMANDS = ("demo-data", "inspect", "suggest", "train", "submit", "evaluate", "predict", "export", "report", "bench")


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("UNET_WORKSPACE", "UNET_RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "unet", *args]


def unet(cwd: Path, *args: str, timeout: float = TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m unet ARGS` run from `cwd`; it must succeed (when `check`)."""
    done = subprocess.run(_command(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check:
        assert_succeeded(done)
    return done


def assert_succeeded(done: subprocess.CompletedProcess) -> None:
    said = f"{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"`{' '.join(map(str, done.args[2:]))}` failed (exit {done.returncode}):\n{said}"


def assert_left_empty(cwd: Path, command: str) -> None:
    left = sorted(str(path.relative_to(cwd)) + ("/" if path.is_dir() else "") for path in cwd.rglob("*"))
    assert not left, f"`python -m unet {command}` left {len(left)} entries in the directory it ran from: {left[:20]}"


def empty_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    return tmp_path_factory.mktemp(f"cwd-{name}")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """demo-data and train, each run from its own empty directory (checked by test_demo_data_and_train), then
    `submit` of a one-epoch run (checked by test_submit_on_this_machine)."""
    out = tmp_path_factory.mktemp("outputs")
    data, run, config = out / "cells", out / "run", out / "tiny.json"
    config.write_text(json.dumps(TINY))
    demo_cwd = empty_dir(tmp_path_factory, "demo-data")
    unet(demo_cwd, "demo-data", str(data), "--kind", "cells", "--count", "8", "--size", "64")
    train_cwd = empty_dir(tmp_path_factory, "train")
    unet(train_cwd, "train", "--data", str(data), "--out", str(run), "--config", str(config))
    submit_cwd, submitted = empty_dir(tmp_path_factory, "submit"), out / "submitted"
    submit = unet(submit_cwd, "submit", "--data", str(data), "--out", str(submitted), "--config", str(config),
                  "--epochs", "1", check=False)
    yield {"data": data, "run": run, "config": config, "out": out, "demo_cwd": demo_cwd, "train_cwd": train_cwd,
           "submit": submit, "submit_cwd": submit_cwd, "submitted": submitted}
    if submitted.is_dir():
        (submitted / runs.STOP).touch()  # a trainer nobody waited for (a test deselected) stops at its next batch


def _subcommands() -> list[str]:
    parser = build_parser()
    [sub] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return list(sub.choices)


def test_every_command_is_run_here():
    assert sorted(_subcommands()) == sorted(COMMANDS), "a command of `python -m unet` this file does not run"


def test_help(tmp_path: Path):
    """`--help` of the whole command (each subcommand's help is argparse's, built by the same parser)."""
    assert "usage:" in unet(tmp_path, "--help", timeout=120).stdout
    assert_left_empty(tmp_path, "--help")


def test_demo_data_and_train(made: dict):
    assert (made["data"] / "images").is_dir() and (made["run"] / runs.BEST_MODEL).is_file()
    assert_left_empty(made["demo_cwd"], "demo-data")
    assert_left_empty(made["train_cwd"], "train")


CASES = [
    pytest.param(["inspect", "{data}", "--json"], id="inspect"),
    pytest.param(["suggest", "{data}", "--minutes", "1"], id="suggest"),
    pytest.param(["evaluate", "--run", "{run}", "--json"], id="evaluate"),
    pytest.param(["predict", "--run", "{run}", "--images", "{data}/images", "--out", "{out}/masks"], id="predict"),
    pytest.param(["report", "--run", "{run}", "--data", "{data}", "--out", "{out}/report.html"], id="report"),
    pytest.param(["export", "--run", "{run}", "--format", "keras", "--out", "{out}/keras"], id="export-keras"),
    pytest.param(["export", "--run", "{run}", "--format", "bioimageio", "--author", "Test", "--out", "{out}/zoo"],
                 id="export-bioimageio"),
]


@pytest.mark.parametrize("command", CASES)
def test_command(command: list[str], made: dict, tmp_path_factory: pytest.TempPathFactory):
    args = [word.format(**{key: str(value) for key, value in made.items()}) for word in command]
    cwd = empty_dir(tmp_path_factory, command[0])
    unet(cwd, *args)
    assert_left_empty(cwd, " ".join(command))


def test_submit_on_this_machine(made: dict):
    """`submit` returns at once and its trainer goes on alone: the directory is checked once the trainer is done."""
    assert_succeeded(made["submit"])
    run: Path = made["submitted"]
    deadline = time.monotonic() + TIMEOUT_S
    status: dict = {}
    while time.monotonic() < deadline:
        status = json.loads((run / runs.STATUS).read_text()) if (run / runs.STATUS).exists() else {}
        if status.get("state") in ENDED:
            break
        time.sleep(1)
    assert status.get("state") == runs.COMPLETED, f"{status}\n{(run / runs.LOG).read_text()[-2000:]}"
    pid = status.get("pid")
    while pid and time.monotonic() < deadline and _alive(pid):
        time.sleep(0.5)
    assert_left_empty(made["submit_cwd"], "submit (and the trainer it started)")


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
