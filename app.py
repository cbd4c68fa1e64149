"""U-Net Studio: the entry point. Builds the navigation over the pages that exist and runs the chosen one inside
the page guard (an unexpected error is a plain message and a line in workspace/logs/errors.log, never a traceback)."""

from pathlib import Path

import streamlit as st

from unet.ui import page_guard
from unet.ui.sidebar import show_sidebar

st.set_page_config(page_title="U-Net Studio", page_icon=":material/biotech:", layout="wide")
page_guard.install()

PAGES = [
    ("pages/dataset.py", "Dataset", ":material/photo_library:"),
    ("pages/annotate.py", "Annotate", ":material/brush:"),
    ("pages/model.py", "Model", ":material/account_tree:"),
    ("pages/train.py", "Train", ":material/monitoring:"),
    ("pages/inference.py", "Inference", ":material/auto_fix_high:"),
    ("pages/runs.py", "Runs", ":material/history:"),
]

here = Path(__file__).parent
navigation = st.navigation(
    [st.Page(path, title=title, icon=icon) for path, title, icon in PAGES if (here / path).exists()]
)
# Drawn before the page (so it is there even when a page stops early) and again after it, so it shows what the
# page just changed (a dataset loaded, a preset applied).
st.sidebar.markdown("## :material/biotech: U-Net Studio")
st.sidebar.caption("Train a segmentation model on your own images, no code.")
sidebar = st.sidebar.empty()
with sidebar.container(), page_guard.page_guard("drawing the sidebar"):
    show_sidebar()
with page_guard.page_guard(f"showing the {navigation.title} page"):
    navigation.run()
with sidebar.container(), page_guard.page_guard("drawing the sidebar"):
    show_sidebar()
