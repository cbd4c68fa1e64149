"""Make sure every page runs inside app.py's navigation, even on a deep link right after a server start.

Streamlit decides once per server process whether the app uses the old `pages/` folder navigation: until
`st.navigation` has run in some session, a first visit to `/train` would run `pages/train.py` alone, without
app.py's navigation and sidebar. A page that finds itself in that mode switches it off and reruns, so the
request goes through app.py like every other.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def ensure_app_navigation() -> None:
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
