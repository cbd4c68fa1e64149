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


def should_tile(height: int, width: int, full_resolution_width: int) -> bool:
    """Whether an image is too large to predict whole with a model this wide at full resolution."""
    budget = WHOLE_IMAGE_PIXELS * REFERENCE_WIDTH / max(full_resolution_width, REFERENCE_WIDTH)
    return height * width > budget


def predict_whole(predict: PredictFn, image: np.ndarray, multiple: int) -> np.ndarray:
    """Probabilities [H, W, K] of `image` [H, W, C], padded to a multiple of `multiple` and cropped back."""
    height, width = image.shape[:2]
    padded = window(image, 0, 0, round_up(height, multiple), round_up(width, multiple))
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

    def window(self, start: int, length: int, padded: int) -> np.ndarray:
        """The 1-D blending weights along one axis of a tile starting at `start`."""
        return ramp_window(length, self.overlap, start > 0, start + length < padded)

    def weights(self, top: int, left: int) -> np.ndarray:
        """The [tile_h, tile_w] blending weights of the tile at (top, left)."""
        (th, tw), (ph, pw) = self.tile, self.padded
        return np.outer(self.window(top, th, ph), self.window(left, tw, pw))


def mirrored(index: np.ndarray, length: int) -> np.ndarray:
    """Indices past either end of an axis of `length` mirrored back, edge pixel included (`d c b a | a b c d`):
    `np.pad(mode="symmetric")`'s rule, for pads of any width."""
    period = np.mod(index, 2 * length)
    return np.where(period < length, period, 2 * length - 1 - period)


def window(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The `height` x `width` part of `image` at (top, left), mirrored where it reaches past the image (past the
    bottom and right: tiles start inside it), without padding (copying) the whole image first."""
    if top + height <= image.shape[0] and left + width <= image.shape[1]:
        return image[top : top + height, left : left + width]
    rows = mirrored(np.arange(top, top + height), image.shape[0])
    cols = mirrored(np.arange(left, left + width), image.shape[1])
    return image[np.ix_(rows, cols)]


Progress = Callable[[int, int], None]  # (tiles done, tiles in all)


def predict_tiles(
    predict: PredictFn,
    image: np.ndarray,
    multiple: int,
    tile: int = TILE,
    overlap: int = OVERLAP,
    batch: int = TILE_BATCH,
    progress: Progress | None = None,
) -> np.ndarray:
    """Probabilities [H, W, K] float32 of `image` [H, W, C], from blended overlapping tiles.

    Memory: one float32 accumulator of the image's size (K values per pixel) and the activations of `batch` tiles;
    never the whole image's activations, nor a padded copy of the image. The weights are a product of one weight
    per row and one per column (every tile's window is), so their sum is two vectors, not a second image.
    `progress(done, total)` is called after every batch of tiles.
    """
    grid = TileGrid(image.shape[0], image.shape[1], multiple, tile, overlap)
    height, width = image.shape[:2]
    th, tw = grid.tile
    row_weight, col_weight = np.zeros(grid.padded[0], np.float32), np.zeros(grid.padded[1], np.float32)
    for top in grid.rows:
        row_weight[top : top + th] += grid.window(top, th, grid.padded[0])
    for left in grid.cols:
        col_weight[left : left + tw] += grid.window(left, tw, grid.padded[1])
    total = None
    corners = list(grid.corners())
    for start in range(0, len(corners), batch):
        chunk = corners[start : start + batch]
        probs = predict(np.stack([window(image, t, s, th, tw) for t, s in chunk]))
        if total is None:
            total = np.zeros((height, width, probs.shape[-1]), np.float32)
        for (top, left), p in zip(chunk, probs, strict=True):
            h, w = min(th, height - top), min(tw, width - left)  # the part of the tile inside the image
            if h <= 0 or w <= 0:
                continue
            weights = np.outer(grid.window(top, th, grid.padded[0])[:h], grid.window(left, tw, grid.padded[1])[:w])
            total[top : top + h, left : left + w] += p[:h, :w] * weights[:, :, None]
        if progress is not None:
            progress(min(start + batch, len(corners)), len(corners))
    total /= row_weight[:height, None, None]
    total /= col_weight[None, :width, None]
    return total
