"""The page guard (issue #24): an unexpected error on any page is a plain message and a traceback in the
workspace's errors.log, never Streamlit's error box; Streamlit's own control flow (st.rerun, st.stop) passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_page


def _log(workspace: Path) -> str:
    path = workspace / "logs" / "errors.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _served_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request through app.py's navigation, as `unet.ui.serve` starts the server (AppTest would otherwise run
    a page of the pages/ folder alone, without app.py)."""
    from streamlit.runtime.scriptrunner import script_runner

    class Served(script_runner.PagesManager):  # AppTest resets the base class's flag before every run
        uses_pages_directory = False

    monkeypatch.setattr(script_runner, "PagesManager", Served)


def test_a_page_that_raises_shows_a_plain_message_and_logs_the_traceback(tmp_path, monkeypatch):
    from unet import runs

    def broken(*_args, **_kwargs):
        raise RuntimeError("the disk said no")

    _served_app(monkeypatch)
    at = open_page("pages/inference.py", tmp_path, monkeypatch)
    monkeypatch.setattr(runs, "list_runs", broken)
    at.run()
    assert not at.exception, "Streamlit's error box must not show"
    message = " ".join(e.value for e in at.error)
    assert "Something went wrong while showing the Inference page; your data is safe" in message
    assert "logs/errors.log in the workspace" in message and "the disk said no" not in message
    assert str(tmp_path) not in message, "no server path in the message"
    error_id = message.split("(id ")[1][:8]
    logged = _log(tmp_path)
    assert f"id {error_id} while showing the Inference page" in logged
    assert "Traceback" in logged and "RuntimeError: the disk said no" in logged and "list_runs" in logged
    assert at.sidebar.markdown, "the rest of the app (the sidebar) is still drawn"


def _guarded_script() -> None:
    import streamlit as st

    from unet.ui.page_guard import page_guard

    with page_guard("testing the guard"):
        st.session_state["runs"] = st.session_state.get("runs", 0) + 1
        if st.session_state["runs"] == 1:
            st.rerun()
        st.write(f"run {st.session_state['runs']}")
        if st.session_state.get("stop"):
            st.stop()
        if st.session_state.get("fail"):
            raise KeyError("boom")
        st.write("the end")


def test_st_rerun_and_st_stop_pass_through_the_guard(tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path))
    at = AppTest.from_function(_guarded_script).run()
    assert not at.exception and not at.error
    assert [m.value for m in at.markdown] == ["run 2", "the end"], "st.rerun restarted the script"
    at.session_state["stop"] = True
    at.run()
    assert not at.exception and not at.error
    assert [m.value for m in at.markdown] == ["run 3"], "st.stop ended it quietly"
    assert _log(tmp_path) == ""


def test_a_user_error_is_shown_as_it_is_and_not_logged(tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path))

    def script() -> None:
        from unet.errors import UserError
        from unet.ui.page_guard import page_guard

        with page_guard("testing the guard"):
            raise UserError("'a.png' is 3x3 pixels; at least 8x8 are needed")

    at = AppTest.from_function(script).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["'a.png' is 3x3 pixels; at least 8x8 are needed"]
    assert _log(tmp_path) == ""


def test_an_error_in_a_fragment_is_a_plain_message_too(tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path))

    def script() -> None:
        import streamlit as st

        from unet.ui import page_guard

        page_guard.install()

        @st.fragment
        def panel() -> None:
            raise ValueError("inside the fragment")

        with page_guard.page_guard("testing the guard"):
            panel()

    at = AppTest.from_function(script).run()
    assert not at.exception
    assert any("Something went wrong while updating the page" in e.value for e in at.error)
    assert "ValueError: inside the fragment" in _log(tmp_path)


def test_the_log_is_rotated_past_its_size(tmp_path, monkeypatch):
    from unet.ui import page_guard

    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path))
    monkeypatch.setattr(page_guard, "MAX_LOG_BYTES", 100)
    for i in range(3):
        try:
            raise OSError(f"failure {i}")
        except OSError as exc:
            page_guard.record_error("testing", exc)
    assert "failure 2" in _log(tmp_path) and "failure 0" not in _log(tmp_path)
    assert (tmp_path / "logs" / "errors.log.1").exists()


@pytest.mark.parametrize("page", ["pages/model.py", "pages/runs.py"])
def test_pages_still_open_under_the_guard(tmp_path, monkeypatch, page):
    _served_app(monkeypatch)
    at = open_page(page, tmp_path, monkeypatch)
    assert not at.exception and not at.error
