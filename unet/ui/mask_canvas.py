"""A mask-painting canvas in the browser: brush, eraser, lasso fill, zoom, pan and undo, with no build step.

Why it is built this way:
- Painting must be exact at the image's native resolution and stay responsive on a 2000x1500 picture, so the
  mask lives in the browser as a 16-bit array and is drawn there (mask_canvas.js); Python only sees the result.
- It is a Streamlit Components v2 component with inline JS/CSS (read from the files beside this module), so
  there is no npm build and no new dependency. It is registered once, at import.
- Pictures travel as PNG data URLs. A mask travels both ways as an opaque RGB PNG with R = low byte and
  G = high byte of each value: 16-bit ids survive a browser canvas, which stores 8-bit RGBA and would alter
  colours of pixels that are not fully opaque (premultiplied alpha).
- The browser is not trusted: a mask it sends is checked (PNG signature, size from the header before decoding,
  8-bit RGB/RGBA) and refused with ValueError when wrong.
- The component's state keeps the last edit across reruns, so the revisions already handed to the caller are
  remembered in st.session_state and an edit is returned once. An edit for another image (sent just before the
  user switched pictures) is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import streamlit as st

from unet.images import encode_png

__all__ = ["CanvasEdit", "decode_mask", "encode_image", "encode_mask", "mask_canvas"]

_LOG = logging.getLogger(__name__)
_HERE = Path(__file__).resolve().parent
_PNG_PREFIX = "data:image/png;base64,"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_ID = 65535

_component = st.components.v2.component(
    "unet_mask_canvas",
    js=(_HERE / "mask_canvas.js").read_text(encoding="utf-8"),
    css=(_HERE / "mask_canvas.css").read_text(encoding="utf-8"),
)


@dataclass(frozen=True)
class CanvasEdit:
    """What the user painted: the whole mask after the edit, and the edit's number for this image."""

    mask: np.ndarray  # uint16 [H, W], the full mask after the edit
    revision: int  # increases with every edit the browser sends for this image


# ---------------------------------------------------------------------------------------------------------------
# PNG data URLs


def _data_url(png: bytes) -> str:
    return _PNG_PREFIX + base64.b64encode(png).decode("ascii")


def encode_image(image: np.ndarray) -> str:
    """An RGB (HxWx3) or grayscale (HxW) uint8 picture as a PNG data URL."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"the image must be uint8 HxW or HxWx3, not {image.dtype} {image.shape}")
    return _data_url(encode_png(np.ascontiguousarray(image)))


def encode_mask(mask: np.ndarray) -> str:
    """An HxW mask of ids 0..65535 as an opaque PNG data URL: R = low byte, G = high byte, B = 0, A = 255."""
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"the mask must be an HxW integer array, not {mask.dtype} {mask.shape}")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > _MAX_ID):
        raise ValueError("mask values must lie in 0..65535")
    values = mask.astype(np.uint16, copy=False)
    bgra = np.empty((*mask.shape, 4), np.uint8)  # OpenCV orders channels B, G, R, A
    bgra[..., 0] = 0
    bgra[..., 1] = values >> 8
    bgra[..., 2] = values & 0xFF
    bgra[..., 3] = 255
    ok, png = cv2.imencode(".png", bgra)
    if not ok:
        raise ValueError("could not encode the mask as PNG")
    return _data_url(png.tobytes())


def _png_bytes(data_url: str) -> bytes:
    """The PNG inside a data URL, checked for the prefix, valid base64 and the PNG signature."""
    if not isinstance(data_url, str) or not data_url.startswith(_PNG_PREFIX):
        raise ValueError("not a PNG data URL")
    try:
        png = base64.b64decode(data_url[len(_PNG_PREFIX) :], validate=True)
    except ValueError as error:
        raise ValueError("the PNG data URL is not valid base64") from error
    if len(png) < 24 or not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("the data is not a PNG")
    return png


def decode_mask(data_url: str, shape: tuple[int, int]) -> np.ndarray:
    """The uint16 HxW mask inside a PNG data URL from `encode_mask` (or the browser); ValueError if it is not one.

    The size is read from the PNG header and compared with `shape` before anything is decoded, so a wrong or
    huge picture costs nothing.
    """
    png = _png_bytes(data_url)
    width, height = struct.unpack(">II", png[16:24])
    if (height, width) != tuple(shape):
        raise ValueError(f"the mask is {width}x{height}, expected {shape[1]}x{shape[0]}")
    pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError("the PNG could not be decoded")
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError("the mask PNG must be 8-bit RGB or RGBA")
    if pixels.shape[:2] != tuple(shape):
        raise ValueError(f"the mask is {pixels.shape[1]}x{pixels.shape[0]}, expected {shape[1]}x{shape[0]}")
    return pixels[..., 2].astype(np.uint16) | (pixels[..., 1].astype(np.uint16) << 8)


# ---------------------------------------------------------------------------------------------------------------
# The component


def _cached_url(cache: dict[str, tuple[str, str]], name: str, array: np.ndarray, encode: Callable[..., str]) -> str:
    """`encode(array)`, reused while the array's bytes are unchanged (a rerun would otherwise re-encode a big PNG)."""
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(repr((array.shape, str(array.dtype))).encode())
    fingerprint = digest.hexdigest()
    cached = cache.get(name)
    if cached is None or cached[0] != fingerprint:
        cached = (fingerprint, encode(array))
        cache[name] = cached
    return cached[1]


def _check_inputs(image: np.ndarray, mask: np.ndarray, classes: list[tuple[str, tuple[int, int, int]]]) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the image must be uint8 HxWx3, not {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"the mask is {mask.shape}, the image {image.shape[:2]}")
    if not classes:
        raise ValueError("at least one class (the background) is needed")


def _take_new_edit(edit: Any, image_id: str, shape: tuple[int, int], seen: dict[str, int]) -> CanvasEdit | None:
    """The browser's edit if it is for this image and newer than what the caller saw; it is then marked seen."""
    if not isinstance(edit, dict) or edit.get("image_id") != image_id:
        return None
    revision = edit.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision <= seen.get(image_id, 0):
        return None
    seen[image_id] = revision  # also when refused below, so a bad edit is not decoded again on every rerun
    try:
        mask = decode_mask(edit.get("mask"), shape)
    except ValueError as error:
        _LOG.warning("ignored a mask from the browser for %s: %s", image_id, error)
        return None
    return CanvasEdit(mask=mask, revision=revision)


def _ignore() -> None:
    """The state callback Components v2 needs to report the `edit` state; the caller reads the return value."""


def mask_canvas(
    image: np.ndarray,
    mask: np.ndarray,
    classes: list[tuple[str, tuple[int, int, int]]],
    *,
    image_id: str,
    mask_version: int = 0,
    instances: bool = False,
    opacity: float = 0.5,
    height: int = 620,
    key: str,
) -> CanvasEdit | None:
    """Show `image` with `mask` to paint on; return the newest edit not returned before, else None.

    `mask` is read by the browser when `image_id` is new (everything resets) or `mask_version` changed (loaded as
    one undoable change); otherwise the browser keeps its own mask, and a new `image` only swaps the picture.
    In semantic mode mask values are class indices into `classes` (names, RGB colours; 0 = background); with
    `instances` they are object ids (0 = background) painted in a fixed palette.
    """
    _check_inputs(image, mask, classes)
    seen: dict[str, int] = st.session_state.setdefault(f"_mask_canvas_seen_{key}", {})
    cache: dict[str, tuple[str, str]] = st.session_state.setdefault(f"_mask_canvas_cache_{key}", {})
    data = {
        "image_id": image_id,
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "image": _cached_url(cache, "image", image, encode_image),
        "mask": _cached_url(cache, "mask", mask, encode_mask),
        "mask_version": int(mask_version),
        "instances": bool(instances),
        "opacity": float(min(max(opacity, 0.0), 1.0)),
        "classes": [[str(name), [int(c) for c in colour]] for name, colour in classes],
        "revision_base": seen.get(image_id, 0),  # a remounted canvas numbers its edits after the ones seen
    }
    result = _component(key=key, data=data, height=height, on_edit_change=_ignore)
    return _take_new_edit(result.get("edit"), image_id, mask.shape, seen)
