"""No page ever shows Streamlit's error box: an unexpected exception becomes a plain message, and its traceback
goes to `workspace/logs/errors.log` under a short id the message names, so a maintainer can find it.

app.py runs every page inside `page_guard`; `install` also hands Streamlit a handler for what runs outside the
page script proper (a fragment's own reruns, a widget's callback), so those end in the same message.

Streamlit stops and restarts scripts with exceptions of its own (`st.stop`, `st.rerun`, `st.switch_page` raise
`StopException` / `RerunException`); they derive from `BaseException`, not `Exception`, and pass through untouched,
as does the `FragmentHandledException` by which a fragment says its error was shown already.
A `UserError` is a message for the user, shown as it is, and is not logged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st
from streamlit.errors import FragmentHandledException

from unet import workspace
from unet.errors import UserError

log = logging.getLogger("unet.ui")

ERRORS_LOG = "errors.log"
MAX_LOG_BYTES = 5 * 1024**2  # then errors.log becomes errors.log.1 (the one before is dropped)
_WRITING = threading.Lock()  # one server process, many sessions: entries never interleave


def log_path() -> Path:
    return workspace.logs_dir() / ERRORS_LOG


def record_error(action: str, error: BaseException) -> str:
    """Append `error`'s traceback to the workspace's errors.log under a new id, and return the id.

    Never raises: a log that cannot be written (a full disk) must not turn one failure into two; the server's
    own log then has the traceback.
    """
    error_id = uuid.uuid4().hex[:8]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    entry = f"--- {stamp} id {error_id} while {action}\n{text}\n"
    log.error("unexpected error while %s (id %s)", action, error_id, exc_info=error)
    try:
        path = log_path()
        with _WRITING:
            if path.exists() and path.stat().st_size > MAX_LOG_BYTES:
                os.replace(path, path.with_name(ERRORS_LOG + ".1"))
            with path.open("a", encoding="utf-8") as out:
                out.write(entry)
    except OSError:
        log.warning("could not write %s", ERRORS_LOG, exc_info=True)
    return error_id


def plain_message(action: str, error_id: str) -> str:
    """What the user reads instead of a traceback: the log's place within the workspace, never a server path."""
    return (f"Something went wrong while {action}; your data is safe. The details were written to "
            f"logs/{ERRORS_LOG} in the workspace (id {error_id}); please try again, and quote the id if you "
            "report it.")


def show_error(action: str, error: BaseException) -> str:
    """Log `error` and show the plain message for it; returns the id."""
    if isinstance(error, MemoryError):
        st.error(f"Not enough memory while {action}. Try fewer or smaller images.", icon=":material/memory:")
    error_id = record_error(action, error)
    if not isinstance(error, MemoryError):
        st.error(plain_message(action, error_id), icon=":material/error:")
    return error_id


@contextmanager
def page_guard(action: str) -> Iterator[None]:
    """Run a page (or any block); an exception ends it with a plain message, never Streamlit's error box.

    Args:
        action: what the user was doing, in their words ("showing the Inference page").
    """
    try:
        yield
    except FragmentHandledException:  # a fragment's error, already shown by `_fallback`: Streamlit ends the run
        raise
    except UserError as exc:  # a message for the user that no inner block caught
        st.error(str(exc), icon=":material/error:")
    except Exception as exc:  # the page must survive anything; errors.log keeps the details
        show_error(action, exc)


def _fallback(error: Exception) -> bool:
    """Streamlit's hook for exceptions outside `page_guard` (a fragment's own rerun, a widget callback): the same
    plain message, and True so Streamlit shows no error box of its own."""
    if isinstance(error, UserError):
        st.error(str(error), icon=":material/error:")
    else:
        show_error("updating the page", error)
    return True


def install() -> None:
    """Hand this session's script runner the fallback handler (app.py calls it at the top of every run).

    `on_script_error` is the hook Streamlit's own runtime offers for this; a Streamlit without it keeps its
    default for the few exceptions outside `page_guard`.
    """
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None and hasattr(ctx, "on_script_error"):
        ctx.on_script_error = _fallback
