"""The Train page's run table follows a training as its badge does (issue #25): a minute into a run it said
'queued', 'None' and 0 epochs, because it was drawn once when the page opened."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.conftest import screenshot, wait_for_app
from unet import runs
from unet.config import Config, TrainConfig


def _write_epochs(run: runs.Run, done: int) -> None:
    (run.path / runs.HISTORY).write_text("".join(json.dumps({"epoch": i, "seconds": 1.0, "val_dice": 0.5}) + "\n"
                                                 for i in range(1, done + 1)))


def _cell(page, text: str):
    """A cell of the run table (the grid is drawn on a canvas; its accessible table holds the same text)."""
    return page.get_by_test_id("stDataFrame").locator("td").filter(has_text=re.compile(rf"^{re.escape(text)}$")).first


def test_the_run_table_follows_a_training_without_a_reload(page, app_url, workspace: Path):
    run = runs.create_run(workspace / "runs", "followed", Config(train=TrainConfig(epochs=50)))
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # unet train"])
    try:
        status = {"state": runs.RUNNING, "pid": trainer.pid, "started": runs.now_iso(), "epochs": 50, "batch": 1,
                  "batches": 4}
        runs.write_json_atomic(run.path / runs.STATUS, status)
        _write_epochs(run, 3)
        page.goto(f"{app_url}/train?run={run.id}")
        wait_for_app(page)
        expect(_cell(page, "3 of 50 (epoch 4 running)")).to_be_attached(timeout=30_000)
        expect(_cell(page, "Training")).to_be_attached(timeout=30_000)

        _write_epochs(run, 5)
        runs.write_json_atomic(run.path / runs.STATUS, {**status, "epoch": 5})
        expect(_cell(page, "5 of 50 (epoch 6 running)")).to_be_attached(timeout=15_000)
        screenshot(page, "train-page-run-table-live")

        runs.write_json_atomic(run.path / runs.STATUS, {**status, "state": runs.COMPLETED, "ended": runs.now_iso()})
        expect(_cell(page, "Completed")).to_be_attached(timeout=15_000)
        expect(_cell(page, "5 of 50")).to_be_attached(timeout=15_000)
    finally:
        trainer.kill()
        trainer.wait()
        runs.delete_run(run)
