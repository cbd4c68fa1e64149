"""Masks drawn over images with OpenCV: the one picture the Dataset, Train and Inference pages all show."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from unet.images import display_rgb

# Readable on grey microscopy and on photos; index 0 (background) is never drawn.
DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (255, 64, 64),
    (64, 160, 255),
    (255, 200, 0),
    (64, 220, 120),
    (200, 90, 255),
    (255, 128, 0),
    (0, 220, 220),
    (255, 105, 180),
)


def class_colors(num_classes: int, colors: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """`num_classes` RGB colours as a uint8 [K, 3] array: the given ones first, then the default palette."""
    palette = [tuple(c) for c in (colors or [])][:num_classes]
    rng = np.random.default_rng(7)
    while len(palette) < num_classes:
        k = len(palette)
        extra = tuple(int(v) for v in rng.integers(40, 256, 3))
        palette.append(DEFAULT_COLORS[k] if k < len(DEFAULT_COLORS) else extra)
    return np.asarray(palette, dtype=np.uint8).reshape(num_classes, 3)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 RGB view of a grayscale (H, W), (H, W, 1) or RGB image on the 0..255 scale; any other channel count
    is shown as a colour composite (`unet.images.display_rgb`)."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] != 3:
        return display_rgb(image.astype(np.float32) / 255.0)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image


def colorize(mask: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Class-index mask (H, W) -> RGB picture using `colors` [K, 3]; an index past the classes (255: not labelled,
    or a hidden class) is black."""
    index = mask.reshape(mask.shape[:2])
    table = np.concatenate([colors, np.zeros((1, 3), colors.dtype)])
    return table[np.where((index >= 0) & (index < len(colors)), index, len(colors))]


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    colors: np.ndarray,
    opacity: float = 0.5,
    contours: bool = False,
    visible: Sequence[int] | None = None,
) -> np.ndarray:
    """The image with each foreground class tinted in its colour.

    Args:
        image: uint8 (H, W), (H, W, 1) or (H, W, 3) RGB.
        mask: class indices (H, W) or (H, W, 1), same H and W.
        colors: uint8 [K, 3] RGB, index 0 is background and stays untinted.
        opacity: 0 shows only the image, 1 only the class colour.
        contours: also draw each class's outline at full strength.
        visible: class indices to draw (default: every class but 0, the background; a dataset without background
            passes its class 0 here to tint it too).
    """
    rgb = to_rgb(image).astype(np.float32)
    index = mask.reshape(mask.shape[:2]).astype(np.int64)
    shown = set(range(1, len(colors))) if visible is None else {int(k) for k in visible if 0 <= k < len(colors)}
    painted = np.isin(index, list(shown)) if shown else np.zeros(index.shape, bool)
    tint = colors[np.clip(index, 0, len(colors) - 1)].astype(np.float32)
    rgb[painted] = (1 - opacity) * rgb[painted] + opacity * tint[painted]
    out = rgb.astype(np.uint8)
    if contours:
        for k in sorted(shown):
            found, _ = cv2.findContours((index == k).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, found, -1, tuple(int(c) for c in colors[k]), 1)
    return out
