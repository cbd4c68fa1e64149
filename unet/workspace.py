"""The workspace folder that holds datasets and runs, and the one way a user's name becomes a path in it.

`./workspace` by default, `UNET_WORKSPACE` to move it. Nothing the product writes goes outside it.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from unet.errors import UserError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def root() -> Path:
    """The workspace folder, created on first use."""
    path = Path(os.environ.get("UNET_WORKSPACE", "workspace")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    path = root() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    path = root() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def safe_name(name: str, fallback: str = "untitled", max_length: int = 64) -> str:
    """A user's name reduced to letters, digits, '.', '_' and '-', never empty, never '.' or '..'.

    Accents are folded ('Zellkerne_Ä' -> 'Zellkerne_A'), anything else becomes '_'.
    """
    folded = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", folded).strip("._-")[:max_length].strip("._-")
    return cleaned or fallback


def child(parent: Path, name: str) -> Path:
    """`parent / safe_name(name)`, checked to stay inside `parent`."""
    path = (parent / safe_name(name)).resolve()
    if os.path.commonpath([path, parent.resolve()]) != str(parent.resolve()):
        raise UserError(f"the name '{name}' cannot be used as a folder name")
    return path
