"""The Model page in AppTest: sliders change the real network's numbers; presets and config files fill them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture()
def at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path / "workspace"))
    app = AppTest.from_file(APP, default_timeout=90)
    app.switch_page("pages/model.py").run()
    assert not app.exception
    return app


def _params(at: AppTest) -> int:
    return int(next(m for m in at.metric if m.label == "Parameters").value.replace(",", ""))


def test_moving_the_filters_slider_changes_the_parameter_count(at: AppTest):
    before = _params(at)
    at.select_slider(key="m_base_filters").set_value(32).run()
    assert not at.exception
    after = _params(at)
    assert after > 3 * before, "doubling the filters should roughly quadruple the parameters"
    assert at.session_state["config"].model.base_filters == 32


def test_depth_changes_the_network_and_the_diagram_is_shown(at: AppTest):
    before = _params(at)
    at.slider(key="m_depth").set_value(4).run()
    assert _params(at) > before
    assert len(at.image) == 1


def test_an_impossible_combination_is_explained_and_the_last_good_config_kept(at: AppTest):
    at.slider(key="m_depth").set_value(6).run()
    at.select_slider(key="m_input_size").set_value(96).run()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    assert "not a multiple of 64" in message
    assert at.session_state["config"].data.input_size != 96


def test_classic_preset_fills_the_sliders_and_warns_it_is_slow(at: AppTest):
    at.selectbox[0].set_value("Classic U-Net (2015)").run()
    next(b for b in at.button if b.label == "Apply preset").click().run()
    assert not at.exception
    assert at.select_slider(key="m_base_filters").value == 64
    assert at.slider(key="m_depth").value == 4
    assert at.session_state["config"].model.base_filters == 64
    assert any("Slow on a CPU" in c.value for c in at.caption)


def test_a_config_file_with_an_unknown_key_is_refused_by_name(at: AppTest):
    bad = json.dumps({"model": {"depht": 3}}).encode()
    at.file_uploader[0].upload("mine.json", bad, "application/json").run()
    assert not at.exception
    assert any("model.depht" in e.value for e in at.error)


def test_a_good_config_file_fills_the_controls(at: AppTest):
    good = json.dumps({"model": {"depth": 2, "base_filters": 8, "activation": "elu"}}).encode()
    at.file_uploader[0].upload("mine.json", good, "application/json").run()
    assert not at.exception
    assert at.slider(key="m_depth").value == 2
    assert at.session_state["config"].model.activation == "elu"


@pytest.mark.parametrize("size", [144, 208])
def test_an_input_size_between_the_usual_steps_is_shown_as_the_config_has_it(tmp_path, monkeypatch, size):
    """Issue #25: a suggestion's 144 (a multiple of 16, not one of the slider's steps) put the slider at 32 with a
    red 'too deep' error while the sidebar said 144."""
    from unet import workspace
    from unet.config import Config, DataConfig, ModelConfig

    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path / "workspace"))
    workspace.write_last_used(config=Config(data=DataConfig(input_size=size), model=ModelConfig(depth=4)).to_dict())
    at = AppTest.from_file(APP, default_timeout=90)
    at.switch_page("pages/model.py").run()
    assert not at.exception and not at.error
    assert at.select_slider(key="m_input_size").value == size
    assert at.session_state["config"].data.input_size == size  # what the sidebar shows
    at.slider(key="m_depth").set_value(3).run()  # another control moved: the size stays
    assert not at.error and at.select_slider(key="m_input_size").value == size


def test_switching_to_a_dataset_whose_suggestion_has_its_own_input_size_keeps_slider_and_sidebar_agreeing(
        tmp_path, monkeypatch):
    from unet.dataset import ingest
    from unet.demo import write_demo_dataset

    datasets = tmp_path / "workspace" / "datasets"
    ingest(write_demo_dataset(tmp_path / "raw" / "a", kind="cells", count=6, size=48), "a", datasets)
    ingest(write_demo_dataset(tmp_path / "raw" / "b", kind="cells", count=6, size=140), "b", datasets)
    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path / "workspace"))
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["dataset"] = "b"
    at.switch_page("pages/model.py").run()
    next(b for b in at.button if b.label == "Apply the suggestion").click().run()
    size = at.session_state["config"].data.input_size
    assert size == 144 and at.select_slider(key="m_input_size").value == size and not at.error
    at.session_state["dataset"] = "a"
    at.query_params["dataset"] = "a"
    at.run()
    assert not at.exception and not at.error
    assert at.select_slider(key="m_input_size").value == at.session_state["config"].data.input_size == size
