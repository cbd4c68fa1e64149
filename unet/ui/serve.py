"""Start the web app: `python -m unet.ui.serve [streamlit options]` (what `make run` and the browser tests do).

Streamlit decides once per server process whether an app uses its legacy `pages/` folder navigation, and keeps
that mode until some session runs `st.navigation`. A first visit straight to `/train` after a restart would then
run `pages/train.py` alone, without app.py's navigation and sidebar. Starting the server in navigation mode
means every request goes through app.py from the first one.

Streamlit also runs two full garbage collections after every script run: `runner.postScriptGC` and, once Keras
is imported, `keras.backend.clear_session()` (which ends in `gc.collect()`). With TensorFlow loaded (about
300,000 Python objects) each takes 0.15 s on the 2-core development machine, so every click, slider move and
brush stroke waited 0.3 s for them. `lighten_reruns` turns the first off and keeps the second's reset of
Keras' global state (`clear_session(free_memory=False)`, 0.1 ms), which predictions rely on: without it, a
prediction after other page runs in the same process came out wrong (found in the suite: 0 objects instead of
2, an ONNX export of another shape). Python's own generational collector still runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import script_runner
from streamlit.web import cli

APP = Path(__file__).resolve().parents[2] / "app.py"


def _reset_keras_state() -> None:
    """Streamlit's per-run clean-up of Keras, without its full garbage collection (the app draws no matplotlib)."""
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.backend.clear_session(free_memory=False)


def lighten_reruns() -> None:
    """Skip Streamlit's two full garbage collections after every script run, keeping its reset of Keras' state
    (see the module's docstring).

    The server calls this before it starts; the page tests call it too, so they run the app as served.
    `runner.postScriptGC = false` is also in `.streamlit/config.toml`, for a server started with `streamlit run`.
    """
    from streamlit import config

    config.set_option("runner.postScriptGC", False)
    script_runner._clean_problem_modules = _reset_keras_state


def main() -> None:
    from unet.workspace import remove_stale_uploads

    remove_stale_uploads()  # uploads abandoned by a closed browser tab
    PagesManager.uses_pages_directory = False
    lighten_reruns()
    cli.main(args=["run", str(APP), *sys.argv[1:]], prog_name="streamlit")


if __name__ == "__main__":
    main()
