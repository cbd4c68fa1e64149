"""Turning failures into messages a user can act on: a `UserError` is shown as it is, anything else as a
short apology while the traceback goes to the workspace's errors.log under an id the message names
(`unet.ui.page_guard`), never to the page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from unet.errors import UserError
from unet.ui.page_guard import show_error


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Run a block; show what went wrong instead of a traceback.

    Args:
        action: what the user was doing, in their words ("saving the dataset"), used in unexpected-error messages.
    """
    try:
        yield
    except UserError as exc:
        st.error(str(exc), icon=":material/error:")
    except MemoryError:
        st.error(f"Not enough memory while {action}. Try fewer or smaller images.", icon=":material/memory:")
    except Exception as exc:  # the page must survive anything; errors.log keeps the details
        show_error(action, exc)
