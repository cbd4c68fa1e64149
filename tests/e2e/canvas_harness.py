"""A tiny Streamlit page around `mask_canvas`, for the browser tests in test_mask_canvas.py.

It paints on a generated picture and writes every edit the browser sends to a 16-bit PNG, so a test can drive
the canvas with real mouse events and then check the exact mask pixels on disk.

Settings come from the environment: HARNESS_SIZE (e.g. "200x150"), HARNESS_MODE ("semantic" or "instances")
and HARNESS_OUT (the PNG path). One server serves several tests: the query parameters `size`, `mode` and `tag`
override the first two and add "-<tag>" to the file name, so each test gets its own picture and file.

Three buttons play the calling page's part: "Fill from model" replaces the mask (a membrane rectangle, with a new
mask_version), "Brighter" changes the picture of the same image (contrast), "Next image" switches image_id.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project, when run as `streamlit run <this>`

from unet.atomic import write_bytes  # noqa: E402
from unet.ui.mask_canvas import mask_canvas  # noqa: E402

CLASSES = [("background", (0, 0, 0)), ("cell", (0, 200, 80)), ("membrane", (230, 40, 40))]


def _setting(name: str, env: str, default: str) -> str:
    return st.query_params.get(name) or os.environ.get(env) or default


def _size() -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,4})x(\d{1,4})", _setting("size", "HARNESS_SIZE", "200x150"))
    if not match:
        raise ValueError("HARNESS_SIZE must look like 200x150")
    return int(match[1]), int(match[2])


def _out_path() -> Path:
    out = Path(os.environ.get("HARNESS_OUT", "harness-mask.png"))
    tag = re.sub(r"[^a-z0-9-]", "", st.query_params.get("tag", "").lower())
    return out.with_name(f"{out.stem}-{tag}{out.suffix}") if tag else out


@st.cache_data
def _picture(width: int, height: int) -> np.ndarray:
    """Smooth gradients and a few discs: something to see, and a PNG that stays small at 2000x1500."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width * 180 + 40, y / height * 180 + 40, np.full_like(x, 90)], axis=-1)
    for cx, cy, r in ((0.3, 0.4, 0.12), (0.7, 0.6, 0.18)):
        disc = (x - cx * width) ** 2 + (y - cy * height) ** 2 < (r * min(width, height)) ** 2
        image[disc] = (235, 225, 200)
    return image.astype(np.uint8)


def _model_mask(width: int, height: int) -> np.ndarray:
    """What "Fill from model" puts in: a membrane rectangle in the lower left quarter."""
    mask = np.zeros((height, width), np.uint16)
    mask[height * 2 // 3 : height * 5 // 6, width // 10 : width * 3 // 10] = 2
    return mask


def _save(path: Path, mask: np.ndarray) -> None:
    ok, png = cv2.imencode(".png", mask)  # uint16 HxW -> 16-bit grayscale PNG
    assert ok
    write_bytes(path, png.tobytes())  # temp file beside it + os.replace: a reader never sees half a file


st.set_page_config(page_title="Mask canvas harness", layout="wide")
width, height = _size()
instances = _setting("mode", "HARNESS_MODE", "semantic") == "instances"
state = st.session_state
for name, start in (("mask_version", 0), ("bright", False), ("picture", 1)):
    state.setdefault(name, start)
buttons = st.columns(3)
if buttons[0].button("Fill from model"):
    state.mask_version += 1
if buttons[1].button("Brighter"):
    state.bright = not state.bright
if buttons[2].button("Next image"):
    state.picture += 1

picture = _picture(width, height)
if state.picture % 2 == 0:
    picture = np.ascontiguousarray(picture[::-1, ::-1])
if state.bright:
    picture = np.clip(picture.astype(np.int16) + 60, 0, 255).astype(np.uint8)
mask = _model_mask(width, height) if state.mask_version else np.zeros((height, width), np.uint16)
edit = mask_canvas(
    picture,
    mask,
    CLASSES,
    image_id=f"harness-{width}x{height}-{state.picture}",
    mask_version=state.mask_version,
    instances=instances,
    key="canvas",
)
if edit is not None:
    _save(_out_path(), edit.mask)
    st.session_state["saved"] = edit.revision
st.write(f"saved revision {st.session_state.get('saved', 0)}")
