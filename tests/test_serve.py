"""The server's rerun settings: no full garbage collection after each script run (0.3 s per click with TF loaded)."""

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


def test_a_script_run_neither_clears_keras_nor_collects_garbage(monkeypatch):
    cleared: list[bool] = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: cleared.append(True))
    lighten_reruns()
    at = AppTest.from_string("import keras\nimport streamlit as st\nst.write('ran')").run()
    at.run()
    assert [m.value for m in at.markdown] == ["ran"]
    assert cleared == []
    assert config.get_option("runner.postScriptGC") is False
