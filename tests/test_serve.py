"""The server's rerun settings: Keras' state is reset after each script run as Streamlit does, but without the
two full garbage collections (0.3 s per click with TensorFlow loaded)."""

from __future__ import annotations

import inspect

import keras
from streamlit import config
from streamlit.runtime.scriptrunner import script_runner
from streamlit.testing.v1 import AppTest

from unet.ui.serve import lighten_reruns


def test_streamlit_still_cleans_up_through_the_function_the_server_replaces():
    source = inspect.getsource(script_runner.ScriptRunner._run_script)
    assert "_clean_problem_modules" in source, "Streamlit changed its per-run clean-up: update unet/ui/serve.py"


def test_a_script_run_resets_keras_without_a_full_garbage_collection(monkeypatch):
    cleared: list[dict] = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: cleared.append(k))
    lighten_reruns()
    at = AppTest.from_string("import keras\nimport streamlit as st\nst.write('ran')").run()
    at.run()
    assert [m.value for m in at.markdown] == ["ran"]
    assert cleared == [{"free_memory": False}] * 2  # one reset per run, without gc.collect()
    assert config.get_option("runner.postScriptGC") is False
