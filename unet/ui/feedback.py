"""Turning failures into messages a user can act on: a `UserError` is shown as it is, anything else as a
short apology while the traceback goes to the server log (never to the page)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from unet.errors import UserError

log = logging.getLogger("unet.ui")


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
    except Exception:  # the page must survive anything; the log keeps the details
        log.exception("unexpected error while %s", action)
        st.error(
            f"Something unexpected went wrong while {action}. Nothing was lost; please try again. "
            "If it happens again, the server log has the details.",
            icon=":material/error:",
        )
