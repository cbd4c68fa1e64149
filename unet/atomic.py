"""Writing files whole: every file another process (or a second tab) may read is written here.

Each writer puts the content in a temp file beside the target, with a unique name (`mkstemp`), then renames it
over the target (`os.replace`), so a reader sees the old file or the new one, never half of one, and two writers
never share a temp file. Files are made readable by others (0644), since a web server may run as another user.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unet.images import encode_png


def _replace_with(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> None:
    """Let `write` fill a fresh temp file beside `path`, then rename it over `path`; the temp never stays."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    temp = Path(name)
    try:
        os.chmod(temp, 0o644)
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    _replace_with(path, lambda temp: temp.write_bytes(data))


def write_text(path: Path, text: str) -> None:
    _replace_with(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False))


def write_png(path: Path, array: np.ndarray, palette: list[tuple[int, int, int]] | None = None) -> None:
    """A picture (HxW or HxWx3 RGB, or HxW values with a display palette) as a PNG file."""
    write_bytes(path, encode_png(array, palette, Path(path).name))


def save_model(model: Any, path: Path) -> None:
    """A Keras model; the temp file keeps the `.keras` suffix, which Keras requires."""
    _replace_with(path, model.save, suffix=".keras")


def link(source: Path, path: Path) -> None:
    """Make `path` a second name for `source` (a hard link; a copy where links are not possible).

    Replacing `source` later (`os.replace`) gives it a new file and leaves `path` as it was.
    """
    def make(temp: Path) -> None:
        temp.unlink()
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)

    _replace_with(path, make)
