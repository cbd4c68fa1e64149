"""Generated demo datasets, so a first-time user can train something before bringing their own images.

Both are made to be learnable by a small U-Net in about a minute on a CPU, and are the same for the same seed:
- `cells`: microscopy-like grayscale pictures of textured elliptical blobs on an unevenly lit background, with
  blur and noise; binary masks (0 background, 1 cell).
- `shapes`: RGB pictures of circles (class 1), squares (class 2) and triangles (class 3) in random colours on a
  textured background, so the class is told by the shape, never by the colour.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from unet.errors import UserError
from unet.images import write_png

KINDS = ("cells", "shapes")
CLASS_NAMES = {"cells": ("background", "cell"), "shapes": ("background", "circle", "square", "triangle")}


def _smooth_noise(rng: np.random.Generator, size: int, scale: float, channels: int = 1) -> np.ndarray:
    """Noise in -1..1 that varies over about `scale` pixels: texture and uneven light."""
    coarse = max(2, round(size / scale))
    small = rng.uniform(-1, 1, (coarse, coarse, channels)).astype(np.float32)
    big = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(big.reshape(size, size, channels), -1, 1)


def _cells(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    tilt = rng.uniform(-0.1, 0.1, 2)
    light = rng.uniform(0.12, 0.25) + tilt[0] * xx + tilt[1] * yy + 0.06 * _smooth_noise(rng, size, size / 2)[..., 0]
    mask = np.zeros((size, size), np.uint8)
    cells = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(4, 12))):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.uniform(size * 0.04, size * 0.12, 2))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
        cv2.ellipse(cells, centre, axes, angle, 0, 360, float(rng.uniform(0.35, 0.6)), -1)
    texture = 1 + 0.2 * _smooth_noise(rng, size, 6)[..., 0]
    image = light + cells * texture
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.6, 1.4)))
    image += rng.normal(0, rng.uniform(0.02, 0.05), image.shape).astype(np.float32)
    return np.clip(image * 255, 0, 255).astype(np.uint8), mask


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(120, 255), rng.uniform(170, 255)]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0
    return float(r), float(g), float(b)


def _polygon(centre: np.ndarray, radius: float, corners: int, angle: float) -> np.ndarray:
    turns = angle + np.arange(corners) * 2 * np.pi / corners
    return np.round(centre + radius * np.stack([np.cos(turns), np.sin(turns)], axis=1)).astype(np.int32)


def _shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    base = rng.uniform(0.05, 0.3, 3).astype(np.float32)
    image = base + 0.08 * _smooth_noise(rng, size, 8, channels=3)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        kind = int(rng.integers(1, 4))
        centre = rng.uniform(size * 0.1, size * 0.9, 2)
        radius = float(rng.uniform(size * 0.07, size * 0.15))
        colour = _random_colour(rng)
        if kind == 1:
            point = tuple(int(v) for v in np.round(centre))
            cv2.circle(image, point, int(radius), colour, -1)
            cv2.circle(mask, point, int(radius), kind, -1)
        else:
            corners = 4 if kind == 2 else 3
            points = _polygon(centre, radius * (1.2 if kind == 3 else 1.0), corners, float(rng.uniform(0, np.pi)))
            cv2.fillPoly(image, [points], colour)
            cv2.fillPoly(mask, [points], kind)
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=0.7)
    image += rng.normal(0, 0.03, image.shape).astype(np.float32)
    return np.clip(image * 255, 0, 255).astype(np.uint8), mask


def write_demo_dataset(out: Path, kind: str = "cells", count: int = 48, size: int = 128, seed: int = 0) -> Path:
    """Write `count` pairs as `out/images/NAME.png` and `out/masks/NAME.png` (class indices); returns `out`."""
    if kind not in KINDS:
        raise UserError(f"the demo data kind must be one of {', '.join(KINDS)}, not '{kind}'")
    if not 1 <= count <= 10_000 or not 32 <= size <= 2048:
        raise UserError("the demo data needs 1 to 10000 images of 32 to 2048 pixels")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    draw = _cells if kind == "cells" else _shapes
    for i in range(count):
        image, mask = draw(rng, size)
        write_png(out / "images" / f"{kind}_{i:03d}.png", image)
        write_png(out / "masks" / f"{kind}_{i:03d}.png", mask)
    return out
