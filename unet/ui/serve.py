"""Start the web app: `python -m unet.ui.serve [streamlit options]` (what `make run` and the browser tests do).

Streamlit decides once per server process whether an app uses its legacy `pages/` folder navigation, and keeps
that mode until some session runs `st.navigation`. A first visit straight to `/train` after a restart would then
run `pages/train.py` alone, without app.py's navigation and sidebar. Starting the server in navigation mode
means every request goes through app.py from the first one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = Path(__file__).resolve().parents[2] / "app.py"


def main() -> None:
    from unet.workspace import remove_stale_uploads

    remove_stale_uploads()  # uploads abandoned by a closed browser tab
    PagesManager.uses_pages_directory = False
    cli.main(args=["run", str(APP), *sys.argv[1:]], prog_name="streamlit")


if __name__ == "__main__":
    main()
