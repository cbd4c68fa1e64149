"""Running a fully convolutional network over an image of any size: padded whole, or in blended tiles.

Why two paths:
- An image the memory can hold at once is reflect-padded to a multiple of 2**depth (each pooling level halves
  it) and predicted whole: the network sees all the context there is, and nothing is computed twice.
- A large image (a 4000 x 3000 photo) would need gigabytes of activations at once, so it is cut into overlapping
  tiles (512 px, 64 px overlap by default) predicted a few at a time. Pixels near a tile's edge lack context, so
  each tile's probabilities are weighted by a separable window that is flat inside and falls off with a raised
  cosine (Hann half-window) over the overlap on every side that has a neighbour; weighted probabilities and
  weights are summed and divided at the end. Two neighbouring ramps sum to one (sin^2 + cos^2), so the blend is
  seamless, and pixels at the image border keep full weight.

Tiles start at multiples of 2**depth, so every tile's pooling grid lines up with the whole image's: away from
the seams (further than the receptive field from a tile edge) a tile predicts exactly what the whole image would.

Padding mirrors the edge pixel included (`d c b a | a b c d`), the rule `unet.preprocess.reflect_index` uses in
training, and works for pads wider than the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

TILE = 512  # pixels per tile side
OVERLAP = 64  # pixels shared by neighbouring tiles; the blending ramp's length
TILE_BATCH = 4  # tiles per forward pass: enough to keep the cores busy, few enough to bound activations
# Largest image predicted whole, for a model with REFERENCE_WIDTH filters at full resolution (about 1 GB of
# activations on a CPU); wider models get proportionally fewer pixels.
WHOLE_IMAGE_PIXELS = 1024 * 1024
REFERENCE_WIDTH = 16

# float [B, h, w, C] raw tiles -> float32 [B, h, w, K] probabilities; normalisation happens inside.
PredictFn = Callable[[np.ndarray], np.ndarray]


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` ([H, W] or [H, W, C]) mirrored out at the bottom and right to `height` x `width`."""
    pad = [(0, height - image.shape[0]), (0, width - image.shape[1])] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="symmetric") if height > image.shape[0] or width > image.shape[1] else image


def should_tile(height: int, width: int, full_resolution_width: int) -> bool:
    """Whether an image is too large to predict whole with a model this wide at full resolution."""
    budget = WHOLE_IMAGE_PIXELS * REFERENCE_WIDTH / max(full_resolution_width, REFERENCE_WIDTH)
    return height * width > budget


def predict_whole(predict: PredictFn, image: np.ndarray, multiple: int) -> np.ndarray:
    """Probabilities [H, W, K] of `image` [H, W, C], padded to a multiple of `multiple` and cropped back."""
    height, width = image.shape[:2]
    padded = pad_to(image, round_up(height, multiple), round_up(width, multiple))
    return predict(padded[None])[0, :height, :width]


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile offsets along one axis: every `stride`, the last one flush with the end. `length` >= `tile`."""
    return list(range(0, length - tile, stride)) + [length - tile]


def ramp_window(length: int, overlap: int, rise: bool, fall: bool) -> np.ndarray:
    """1-D weights: 1 inside, a raised-cosine ramp over `overlap` pixels at each end that meets a neighbour.

    Never exactly 0 (the ramp is sampled at pixel centres), so every pixel covered by a tile has weight.
    """
    window = np.ones(length, np.float32)
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)).astype(np.float32)
    if rise:
        window[:overlap] = ramp
    if fall:
        window[length - overlap :] = ramp[::-1]
    return window


class TileGrid:
    """Where the tiles of one image go.

    The image is padded to a multiple of `multiple` (then at least to one tile per axis if smaller). The tile
    side and the overlap are rounded up to multiples of `multiple`, so every tile starts on the pooling grid.
    """

    def __init__(self, height: int, width: int, multiple: int, tile: int = TILE, overlap: int = OVERLAP) -> None:
        tile, overlap = round_up(tile, multiple), round_up(overlap, multiple)
        if tile < 2 * overlap:
            raise ValueError(f"a tile ({tile} px) must be at least twice the overlap ({overlap} px)")
        self.height, self.width, self.overlap = height, width, overlap
        self.padded = (round_up(height, multiple), round_up(width, multiple))
        self.tile = (min(tile, self.padded[0]), min(tile, self.padded[1]))
        self.rows = tile_starts(self.padded[0], self.tile[0], self.tile[0] - overlap)
        self.cols = tile_starts(self.padded[1], self.tile[1], self.tile[1] - overlap)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def corners(self) -> Iterator[tuple[int, int]]:
        for top in self.rows:
            for left in self.cols:
                yield top, left

    def weights(self, top: int, left: int) -> np.ndarray:
        """The [tile_h, tile_w] blending weights of the tile at (top, left)."""
        (th, tw), (ph, pw) = self.tile, self.padded
        rows = ramp_window(th, self.overlap, top > 0, top + th < ph)
        cols = ramp_window(tw, self.overlap, left > 0, left + tw < pw)
        return np.outer(rows, cols)


def predict_tiles(
    predict: PredictFn,
    image: np.ndarray,
    multiple: int,
    tile: int = TILE,
    overlap: int = OVERLAP,
    batch: int = TILE_BATCH,
) -> np.ndarray:
    """Probabilities [H, W, K] float32 of `image` [H, W, C], from blended overlapping tiles.

    Memory: the padded input, two float32 accumulators of the image's size (K + 1 values per pixel) and the
    activations of `batch` tiles; never the whole image's activations.
    """
    grid = TileGrid(image.shape[0], image.shape[1], multiple, tile, overlap)
    padded = pad_to(image, *grid.padded)
    th, tw = grid.tile
    total = weight = None
    corners = list(grid.corners())
    for start in range(0, len(corners), batch):
        chunk = corners[start : start + batch]
        probs = predict(np.stack([padded[t : t + th, s : s + tw] for t, s in chunk]))
        if total is None:
            total = np.zeros((*grid.padded, probs.shape[-1]), np.float32)
            weight = np.zeros(grid.padded, np.float32)
        for (top, left), p in zip(chunk, probs, strict=True):
            w = grid.weights(top, left)
            total[top : top + th, left : left + tw] += p * w[:, :, None]
            weight[top : top + th, left : left + tw] += w
    total = total[: image.shape[0], : image.shape[1]]
    total /= weight[: image.shape[0], : image.shape[1], None]
    return total
