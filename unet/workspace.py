"""The workspace folder that holds datasets and runs, and the one way a user's name becomes a path in it.

`./workspace` by default, `UNET_WORKSPACE` to move it. Nothing the product writes goes outside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

from unet import atomic
from unet.errors import UserError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Names Windows keeps for devices: a folder called 'con' cannot be created there, and a workspace may be copied.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
UPLOADS = "uploads"  # staged uploads: one folder per upload, removed once it is stored
STALE_UPLOAD_HOURS = 1.0


def location() -> Path:
    """Where the workspace is (or would be), without creating it."""
    return Path(os.environ.get("UNET_WORKSPACE", "workspace")).resolve()


def root() -> Path:
    """The workspace folder, created on first use."""
    path = location()
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    path = root() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Model files users uploaded to start a training from (kept: the trainer process reads them later)."""
    path = root() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    path = root() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir() -> Path:
    """Where the app writes what a user should not see but a maintainer needs (`errors.log`, from the page guard)."""
    path = root() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def safe_name(name: str, fallback: str = "untitled", max_length: int = 64) -> str:
    """A user's name reduced to letters, digits, '.', '_' and '-', never empty, never '.' or '..'.

    Accents are folded ('Zellkerne_Ä' -> 'Zellkerne_A'), anything else becomes '_'.
    """
    folded = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", folded).strip("._-")[:max_length].strip("._-")
    if cleaned.split(".")[0].lower() in _RESERVED:
        cleaned = f"{cleaned}_"
    return cleaned or fallback


def child(parent: Path, name: str) -> Path:
    """`parent / safe_name(name)`, checked to stay inside `parent`."""
    path = (parent / safe_name(name)).resolve()
    if os.path.commonpath([path, parent.resolve()]) != str(parent.resolve()):
        raise UserError(f"the name '{name}' cannot be used as a folder name")
    return path


def _newest_change(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for parent, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
            except OSError:
                continue
    return newest


def upload_folder() -> Path:
    """A fresh folder under `workspace/uploads/` for one upload; the caller removes it once the data is stored
    (and `remove_stale_uploads` does, should the browser or server go away first)."""
    folder = root() / "uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


LAST_USED = "last_used.json"  # the settings and dataset a new tab or a reload starts from


def read_last_used() -> dict:
    """What the app was last set to in this workspace ({"config": {...}, "dataset": name}); {} when unknown."""
    try:
        data = json.loads((root() / LAST_USED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_last_used(**changes: object) -> None:
    """Update the last-used record atomically (a unique temp file per writer, then a rename)."""
    data = read_last_used()
    if all(data.get(key) == value for key, value in changes.items()):
        return
    data.update(changes)
    with contextlib.suppress(OSError):  # a full disk must not break the page; the settings stay in the tab
        atomic.write_json(root() / LAST_USED, data)


@contextlib.contextmanager
def staging() -> Iterator[Path]:
    """`with staging() as folder:` a fresh upload folder, removed when the block ends, however it ends."""
    folder = upload_folder()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale_uploads(max_age_hours: float = STALE_UPLOAD_HOURS) -> list[str]:
    """Remove what an interrupted upload left behind; returns the removed folders' names.

    A browser closed (or a server stopped) in the middle of an upload leaves its staging folder in
    `workspace/uploads/`, and an interrupted ingest a hidden `.ingest-*` folder in `datasets/`. Neither is ever
    shown as a dataset, but they hold the user's files and disk space. Folders untouched for `max_age_hours`
    are removed; an upload in progress is younger than that.
    """
    cutoff = time.time() - max_age_hours * 3600
    candidates = [*(root() / UPLOADS).glob("*"), *datasets_dir().glob(".ingest-*")]
    removed = []
    for folder in candidates:
        try:
            if folder.is_symlink() or not folder.is_dir() or _newest_change(folder) >= cutoff:
                continue
            shutil.rmtree(folder)
        except OSError:
            continue
        removed.append(folder.name)
    return removed
