"""The Runs page in AppTest over a real tiny run: table, compare, train again, evaluate, export, report."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import TINY_RUN, open_page


@pytest.fixture()
def at(trained_workspace: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    return open_page("pages/runs.py", trained_workspace, monkeypatch)


def test_the_table_lists_the_run_with_its_best_dice(at: AppTest):
    table = at.dataframe[0].value
    assert list(table["name"]) == [TINY_RUN]
    assert 0 <= float(table["best_val_dice"].iloc[0]) <= 1
    assert table["state"].iloc[0] == "Completed"  # the words of the run's badge on the Train page


def test_show_the_command_prints_a_train_line(at: AppTest):
    toggle = next(t for t in at.toggle if t.label == "Show the command")
    toggle.set_value(True).run()
    assert not at.exception
    assert "python -m unet train" in at.code[0].value and "--config config.json" in at.code[0].value


def test_train_again_loads_the_runs_config(at: AppTest):
    next(b for b in at.button if b.label == "Train again with this config").click().run()
    assert not at.exception
    assert at.session_state["config"].model.base_filters == 4
    assert at.session_state["config"].data.input_size == 32


def test_export_to_tflite_is_checked_and_offered(at: AppTest):
    at.selectbox(key=f"export_format_{TINY_RUN}").set_value("tflite").run()
    next(b for b in at.button if b.label == "Export and check").click().run()
    assert not at.exception
    assert any("predictions match" in s.value for s in at.success)
    assert "/" not in at.success[0].value.split("MB")[0], "no server path in the message"


def test_the_report_is_built_for_download(at: AppTest):
    next(b for b in at.button if b.label == "Build the report").click().run()
    assert not at.exception
    assert any(b.label == "Download report.html" for b in at.get("download_button"))


@pytest.fixture()
def two_runs(trained_workspace: Path, tmp_path: Path) -> Path:
    """A workspace of its own with two copies of the tiny run, the second with other settings."""
    import json
    import shutil

    workspace = tmp_path / "workspace"
    first = workspace / "runs" / "20260101-000000-first"
    second = workspace / "runs" / "20260102-000000-second"
    shutil.copytree(trained_workspace / "runs" / TINY_RUN, first)
    shutil.copytree(first, second)
    config = json.loads((second / "config.json").read_text())
    config["train"]["learning_rate"] = 0.003
    (second / "config.json").write_text(json.dumps(config))
    return workspace


def test_compare_overlays_curves_and_highlights_the_differing_setting(two_runs: Path, monkeypatch):
    at = open_page("pages/runs.py", two_runs, monkeypatch)
    assert len(at.multiselect[0].value) == 2
    assert len(at.get("plotly_chart")) >= 1
    frame = at.dataframe[1].value
    assert list(frame.index) == ["Learning rate"], "only the differing setting is listed, in plain words"


def test_delete_needs_confirmation_and_removes_the_folder(two_runs: Path, monkeypatch):
    at = open_page("pages/runs.py", two_runs, monkeypatch)
    chosen = at.selectbox(key="runs_selected").value
    delete = next(b for b in at.button if b.label == "Delete run")
    assert delete.disabled, "deleting must be confirmed first"
    at.checkbox(key=f"sure_{chosen}").check().run()
    next(b for b in at.button if b.label == "Delete run").click().run()
    assert not at.exception
    assert not (two_runs / "runs" / chosen).exists()
    assert len(at.dataframe[0].value) == 1


def test_a_bioimage_model_zoo_package_is_built_checked_and_offered(at: AppTest):
    """Issue #17: authors and licence asked on export; the package passes the zoo's own validation and test."""
    pytest.importorskip("bioimageio.core")
    at.selectbox(key=f"export_format_{TINY_RUN}").set_value("bioimageio").run()
    at.text_input(key=f"zoo_authors_{TINY_RUN}").set_value("Ada Lovelace, Alan Turing").run()
    at.selectbox(key=f"zoo_license_{TINY_RUN}").set_value("MIT").run()
    next(b for b in at.button if b.label == "Build the package and check it").click().run()
    assert not at.exception and not at.error
    message = next(s.value for s in at.success if "bioimageio.spec" in s.value)
    assert "valid by bioimageio.spec and passes bioimageio.core's model test" in message
    assert "/" not in message, "no server path in the message"
    labels = [b.label for b in at.get("download_button")]
    assert any(label.startswith("Download") and label.endswith(".bioimageio.zip") for label in labels)


def test_compare_names_the_run_a_fine_tuning_started_from_never_its_server_path(two_runs: Path, monkeypatch):
    """Issue #25: the Compare table showed the fine-tuned run's `init_from`, a path on the server."""
    import json

    first, second = sorted((two_runs / "runs").iterdir())
    config = json.loads((second / "config.json").read_text())
    config["train"]["init_from"] = str(first.resolve())
    (second / "config.json").write_text(json.dumps(config))
    at = open_page("pages/runs.py", two_runs, monkeypatch)
    frame = at.dataframe[1].value
    assert "Started from" in frame.index
    assert sorted(frame.loc["Started from"]) == ["a new network", f"the model of run {first.name}"]
    assert not any(str(two_runs) in str(value) or "/" in str(value) for value in frame.to_numpy().ravel())


def test_compare_shows_every_setting_in_the_words_of_the_pages():
    """Issue #25: raw keys and values (fill_mode, dice_ce, 'unit') in the Compare table and the report."""
    from unet.config import AugmentConfig, Config, DataConfig, TrainConfig
    from unet.run_summary import config_table

    plain = Config()
    other = Config(data=DataConfig(normalisation="standard", resize="crop"),
                   augment=AugmentConfig(fill_mode="constant"), train=TrainConfig(lr_schedule="constant", loss="ce"))
    rows, differing = config_table({"a": plain, "b": other})
    table = {row["setting"]: (row["a"], row["b"]) for row in rows}
    assert table["Fill corners with"] == ("Mirrored image", "Black")
    assert table["Learning-rate schedule"] == ("Warm up, then lower smoothly", "Keep it fixed")
    assert table["Loss"] == ("Dice + cross-entropy", "Cross-entropy")
    assert table["Brightness scaling"] == ("0 to 1", "Dataset mean/std")
    assert table["Bring images to the input size by"] == ("Resizing", "Random crops")
    for setting, values in table.items():
        assert "_" not in setting and not any("_" in v for v in values), (setting, values)
    assert set(differing) == {"Fill corners with", "Learning-rate schedule", "Loss", "Brightness scaling",
                              "Bring images to the input size by"}
