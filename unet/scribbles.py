"""Synthetic strokes from dense masks: what a user who paints a few lines of each class gives the trainer.

Used by the benchmark (`python -m unet bench --quality`) to measure training from scribbles against training from
full masks on the same images. A stroke follows the middle of a class's region (its skeleton), as a person's
brush does, inside a few random windows per class and image, thickened to a 3-pixel brush; every other pixel is
"not labelled" (255), which the loss and the scores leave out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from unet.classmap import IGNORE_INDEX as NOT_LABELLED


def strokes(mask: np.ndarray, num_classes: int, windows: int = 4, window: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 [H, W]: the class of each stroke pixel, 255 elsewhere.

    Args:
        mask: uint8 class indices [H, W] (255 already "not labelled" stays so).
        num_classes: K; every class present in the mask gets strokes.
        windows: random windows per class in which its skeleton is kept (more windows, more labelled pixels).
        window: the side of a window in pixels.
        seed: the random windows' seed (the same seed, the same strokes).
    """
    rng = np.random.default_rng(seed)
    out = np.full(mask.shape, NOT_LABELLED, np.uint8)
    height, width = mask.shape
    for k in range(num_classes):
        region = mask == k
        if not region.any():
            continue
        inner = ndimage.binary_erosion(region, iterations=1)  # a stroke stays inside its region, as a brush would
        line = skeletonize(inner if inner.any() else region)
        ys, xs = np.nonzero(line)
        if ys.size == 0:
            continue
        keep = np.zeros_like(line)
        for centre in rng.choice(ys.size, size=min(windows, ys.size), replace=False):
            top = int(np.clip(ys[centre] - window // 2, 0, max(height - window, 0)))
            left = int(np.clip(xs[centre] - window // 2, 0, max(width - window, 0)))
            keep[top : top + window, left : left + window] = True
        stroke = ndimage.binary_dilation(line & keep, iterations=1) & region
        out[stroke] = k
    return out


def labelled_share(masks: list[np.ndarray]) -> float:
    """The share of pixels that carry a class (not 255) over `masks`."""
    total = sum(m.size for m in masks)
    return sum(int((m != NOT_LABELLED).sum()) for m in masks) / max(total, 1)
