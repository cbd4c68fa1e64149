"""The Train page in AppTest, over a real (tiny) run trained by the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import TINY_RUN, open_page


def _page(workspace: Path, monkeypatch: pytest.MonkeyPatch, run: str | None = None) -> AppTest:
    return open_page("pages/train.py", workspace, monkeypatch, **({"run": run} if run else {}))


def test_a_finished_run_shows_its_charts_state_and_best_dice(trained_workspace, monkeypatch):
    at = _page(trained_workspace, monkeypatch, run=TINY_RUN)
    assert any("Completed" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 1
    best = next(m for m in at.metric if m.label.startswith("Best val Dice ("))
    assert 0.0 <= float(best.value) <= 1.0


def test_a_finished_run_shows_every_class_on_its_held_back_images_beside_the_baseline(trained_workspace, monkeypatch):
    import json

    held_back = json.loads((trained_workspace / "runs" / TINY_RUN / "held_back.json").read_text())
    at = _page(trained_workspace, monkeypatch, run=TINY_RUN)
    assert any("Held-back images" in m.value for m in at.markdown)
    baseline = next(m for m in at.metric if m.label == "Baseline Dice")
    expected = held_back["baseline"]["dice"]
    assert baseline.value == ("not scored" if expected is None else f"{expected:.3f}")
    table = next(d.value for d in at.dataframe if "Baseline Dice" in d.value.columns and "Class" in d.value.columns)
    assert list(table["Class"]) == [row["name"] for row in held_back["per_class"]] and len(table) == 2
    assert any("barely better" in w.value.lower() for w in at.warning) == held_back["near_baseline"]
    assert not any(b.label == "Stop" for b in at.button), "a finished run has nothing to stop"


def test_the_run_list_shows_every_run(trained_workspace, monkeypatch):
    at = _page(trained_workspace, monkeypatch)
    table = next(d.value for d in at.dataframe if "state" in d.value.columns)
    assert any(state == "Completed" for state in table["state"])  # the words of the run's badge


def test_without_a_dataset_the_page_says_where_to_get_one(trained_workspace, monkeypatch):
    at = _page(trained_workspace, monkeypatch)
    assert any("Dataset" in i.value for i in at.info)


def test_the_schedule_choice_reaches_the_config_and_unlocks_its_patience(tmp_path, monkeypatch):
    from unet.dataset import ingest
    from unet.demo import write_demo_dataset

    raw = write_demo_dataset(tmp_path / "raw" / "cells", kind="cells", count=6, size=48)
    ingest(raw, "cells", tmp_path / "workspace" / "datasets")
    at = open_page("pages/train.py", tmp_path / "workspace", monkeypatch, dataset="cells")
    schedule = next(s for s in at.selectbox if s.label == "Learning-rate schedule")
    patience = next(n for n in at.number_input if n.label.startswith("Lower the learning rate"))
    assert schedule.value == "cosine" and patience.disabled  # the plateau patience means nothing for cosine
    schedule.set_value("plateau").run()
    assert not at.exception
    assert at.session_state["config"].train.lr_schedule == "plateau"
    assert not next(n for n in at.number_input if n.label.startswith("Lower the learning rate")).disabled


@pytest.mark.parametrize("label, typed, named", [("Epochs", 99999999, "Epochs"),
                                                 ("Time limit (minutes, 0 = none)", -5.0, "Time limit")])
def test_start_refuses_a_value_out_of_range_and_names_the_field(tmp_path, monkeypatch, label, typed, named):
    """The config that starts is exactly what the page shows: an out-of-range value blocks Start (issue #13)."""
    from unet.dataset import ingest
    from unet.demo import write_demo_dataset

    raw = write_demo_dataset(tmp_path / "raw" / "cells", kind="cells", count=6, size=48)
    ingest(raw, "cells", tmp_path / "workspace" / "datasets")
    at = open_page("pages/train.py", tmp_path / "workspace", monkeypatch, dataset="cells")
    start = next(b for b in at.button if b.label == "Start training")
    assert not start.disabled
    next(n for n in at.number_input if n.label == label).set_value(typed).run()
    assert not at.exception
    assert any(named in e.value and f"{typed:g}" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Start training").disabled
    assert at.session_state["config"].train.epochs == 30 and at.session_state["config"].train.max_minutes == 0
    next(n for n in at.number_input if n.label == label).set_value(20 if label == "Epochs" else 3.0).run()
    assert not at.error and not next(b for b in at.button if b.label == "Start training").disabled


def test_starting_from_a_trained_run_fine_tunes_with_its_network_and_a_tenth_of_its_learning_rate(
        trained_workspace, monkeypatch, tmp_path):
    """Issue #16: the Train page offers an earlier run's model; the config then names it and takes its network,
    and going back to a new network restores what the user had."""
    import shutil

    from unet.config import Config
    from unet.dataset import ingest
    from unet.demo import write_demo_dataset

    workspace = tmp_path / "workspace"
    shutil.copytree(trained_workspace / "runs", workspace / "runs")
    ingest(write_demo_dataset(tmp_path / "raw" / "cells", kind="cells", count=6, size=48), "cells",
           workspace / "datasets")
    source = Config.load(workspace / "runs" / TINY_RUN / "config.json")
    at = open_page("pages/train.py", workspace, monkeypatch, dataset="cells")
    start_from = next(s for s in at.selectbox if s.label == "Start from")
    assert start_from.value == "scratch"
    mine = at.session_state["config"].train
    start_from.set_value(TINY_RUN).run()
    assert not at.exception and not at.error
    config = at.session_state["config"]
    assert config.train.init_from == str((workspace / "runs" / TINY_RUN).resolve())
    assert config.train.learning_rate == pytest.approx(source.train.learning_rate / 10)
    assert (config.model.depth, config.model.base_filters, config.data.input_size) == (2, 4, 32)
    assert any("Fine-tuning from run" in c.value for c in at.caption)
    assert next(s for s in at.select_slider if s.label == "Learning rate").value == pytest.approx(
        source.train.learning_rate / 10)

    next(s for s in at.selectbox if s.label == "Start from").set_value("scratch").run()
    back = at.session_state["config"].train
    assert back.init_from is None and (back.learning_rate, back.epochs) == (mine.learning_rate, mine.epochs)


def test_a_run_trained_on_other_channels_cannot_be_fine_tuned_and_start_says_why(trained_workspace, monkeypatch,
                                                                                  tmp_path):
    import shutil

    from unet.dataset import ingest
    from unet.demo import write_demo_dataset

    workspace = tmp_path / "workspace"
    shutil.copytree(trained_workspace / "runs", workspace / "runs")
    ingest(write_demo_dataset(tmp_path / "raw" / "shapes", kind="shapes", count=6, size=48), "shapes",
           workspace / "datasets")  # RGB, while the run learned from grey cells
    at = open_page("pages/train.py", workspace, monkeypatch, dataset="shapes")
    next(s for s in at.selectbox if s.label == "Start from").set_value(TINY_RUN).run()
    assert any("1-channel" in e.value and "has 3" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Start training").disabled


def test_time_left_never_passes_the_time_limit(tmp_path, monkeypatch):
    """A run of 1000 epochs at 1 s each with a 2.5-minute limit, 60 s in: 90 s are left, not 16 minutes."""
    import json
    import subprocess
    import sys
    from datetime import datetime, timedelta

    from unet import runs
    from unet.config import Config, TrainConfig

    config = Config(train=TrainConfig(epochs=1000, max_minutes=2.5))
    run = runs.create_run(tmp_path / "workspace" / "runs", "limited", config)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # unet train"])
    try:
        started = (datetime.now().astimezone() - timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%S%z")
        runs.write_json_atomic(run.path / runs.STATUS, {"state": runs.RUNNING, "pid": alive.pid, "started": started,
                                                        "epochs": 1000, "batch": 1, "batches": 2})
        (run.path / runs.HISTORY).write_text("".join(json.dumps({"epoch": i, "seconds": 1.0}) + "\n"
                                                     for i in range(1, 61)))
        at = _page(tmp_path / "workspace", monkeypatch, run=run.id)
        left = next(m for m in at.metric if m.label == "Time left").value
        minutes, seconds = (int(part) for part in left.split(":")[-2:])
        # 150 s limit - 60 s spent before the page opened (and the seconds the page took): at most 90 s, where the
        # epochs alone would say 939 s
        assert 0 < 60 * minutes + seconds <= 90, left
    finally:
        alive.kill()
        alive.wait()


def _cells(tmp_path: Path, count: int = 6, size: int = 48) -> Path:
    from unet.dataset import ingest
    from unet.demo import write_demo_dataset

    workspace = tmp_path / "workspace"
    ingest(write_demo_dataset(tmp_path / "raw" / "cells", kind="cells", count=count, size=size), "cells",
           workspace / "datasets")
    return workspace


def _epochs_box(at: AppTest):
    return next(n for n in at.number_input if n.label == "Epochs")


def test_applying_the_suggestion_after_a_fine_tuning_choice_trains_a_new_network_with_its_epochs(
        trained_workspace, monkeypatch, tmp_path):
    """Issue #25: the user had 1000 epochs, chose to fine-tune an earlier run, then applied the Model page's
    suggestion; the Train page kept fine-tuning (with the suggestion's network, which the run's weights do not
    fit) and going back to a new network brought the 1000 epochs back."""
    import shutil

    workspace = _cells(tmp_path)
    shutil.copytree(trained_workspace / "runs", workspace / "runs")
    at = open_page("pages/train.py", workspace, monkeypatch, dataset="cells")
    _epochs_box(at).set_value(1000).run()
    next(s for s in at.selectbox if s.label == "Start from").set_value(TINY_RUN).run()
    assert at.session_state["config"].train.init_from

    at.switch_page("pages/model.py").run()
    next(s for s in at.select_slider if s.label == "Time for training").set_value(1).run()
    next(b for b in at.button if b.label == "Apply the suggestion").click().run()
    assert not at.exception
    suggested = at.session_state["config"].train.epochs
    assert suggested != 1000 and at.session_state["config"].train.init_from is None

    at.switch_page("pages/train.py").run()
    assert not at.exception and not at.error
    assert next(s for s in at.selectbox if s.label == "Start from").value == "scratch"
    assert _epochs_box(at).value == suggested and at.session_state["config"].train.epochs == suggested
    assert at.session_state["config"].train.init_from is None


@pytest.fixture()
def fast_machine(monkeypatch: pytest.MonkeyPatch):
    """A machine on which an epoch of the small demo data takes a fraction of a second (about 0.15 s), so that
    1000 epochs take minutes: the walk of issue #25."""
    from unet import calibration
    from unet.ui.model_facts_view import machine_gflops

    monkeypatch.setattr(calibration, "achieved_gflops", lambda *args, **kwargs: 20.0)
    machine_gflops.clear()
    yield
    machine_gflops.clear()


def test_the_model_and_train_pages_show_one_time_estimate_in_the_same_words(tmp_path, monkeypatch, fast_machine):
    """Issue #25: the Model page said 'about 0 s per epoch' and '1000 epochs fit in about 5 minutes' while the
    Train page said 1 min 30 s for the same 1000 epochs."""
    workspace = _cells(tmp_path)
    at = open_page("pages/model.py", workspace, monkeypatch, dataset="cells")
    next(b for b in at.button if b.label == "Apply the suggestion").click().run()
    assert not at.exception
    epochs = at.session_state["config"].train.epochs
    metrics = {m.label: m.value for m in at.metric}
    per_epoch, total = metrics["Time per epoch"], metrics[f"{epochs} epochs"]
    assert per_epoch == "under a second" and "0 s" not in per_epoch
    reason = next(c.value for c in at.caption if "per epoch" in c.value)
    assert reason.startswith("· Because under a second per epoch") and f"{epochs} epochs" in reason
    assert f"take about {total}" in reason and "fit in about 5 minutes" not in reason

    at.switch_page("pages/train.py").run()
    assert not at.exception
    line = next(m.value for m in at.markdown if "**Estimate**" in m.value)
    assert f"**Estimate** under a second per epoch, about {total} for {epochs} epochs" in line


def _running_run(workspace: Path, epochs_done: int, planned: int):
    """A run whose trainer (a sleeping stand-in named like one) is alive and has finished `epochs_done` epochs."""
    import json
    import subprocess
    import sys

    from unet import runs
    from unet.config import Config, TrainConfig

    run = runs.create_run(workspace / "runs", "busy", Config(train=TrainConfig(epochs=planned)))
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # unet train"])
    runs.write_json_atomic(run.path / runs.STATUS, {"state": runs.RUNNING, "pid": alive.pid,
                                                    "started": runs.now_iso(), "epochs": planned, "batch": 1,
                                                    "batches": 4})
    (run.path / runs.HISTORY).write_text("".join(json.dumps({"epoch": i, "seconds": 1.0, "val_dice": 0.5}) + "\n"
                                                 for i in range(1, epochs_done + 1)))
    return run, alive


def test_the_run_table_says_what_the_badge_says_and_counts_epochs_done_of_planned(tmp_path, monkeypatch):
    """Issue #25: a minute into a run the table said 'queued', 'None' and 0 epochs."""
    run, alive = _running_run(tmp_path / "workspace", epochs_done=3, planned=50)
    try:
        at = _page(tmp_path / "workspace", monkeypatch, run=run.id)
        assert any("Training" in m.value for m in at.markdown)  # the badge
        table = next(d for d in at.dataframe if "state" in d.value.columns)
        row = table.value.iloc[0]
        assert row["state"] == "Training" and row["epochs"] == "3 of 50 (epoch 4 running)"
        assert table.proto.placeholder == "–", "an empty cell (no held-back Dice yet) shows a dash, not 'None'"
    finally:
        alive.kill()
        alive.wait()


def test_one_held_back_image_is_one_image(trained_workspace, monkeypatch, tmp_path):
    import json
    import shutil

    from unet import runs

    workspace = tmp_path / "workspace"
    shutil.copytree(trained_workspace / "runs" / TINY_RUN, workspace / "runs" / TINY_RUN)
    held_back = workspace / "runs" / TINY_RUN / runs.HELD_BACK
    held_back.write_text(json.dumps({**json.loads(held_back.read_text()), "images": 1}))
    at = _page(workspace, monkeypatch, run=TINY_RUN)
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert any("1 held-back image:" in t for t in texts) and any("1 whole validation image," in t for t in texts)
    assert not any("1 held-back images" in t or "1 whole validation images" in t for t in texts)
