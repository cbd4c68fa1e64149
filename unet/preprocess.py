"""Turning one stored image+mask pair into a fixed-size network input, and normalising batches.

These are the TF functions shared by the training pipeline, validation, previews and inference, so every path
sees the same pixels. They work eagerly and inside `tf.data` maps (graph mode), on tensors of any size.

Out-of-image pixels follow one rule everywhere (`reflect_index`): the edge is mirrored, edge pixel included
(`d c b a | a b c d | d c b a`), which is what `ImageProjectiveTransformV3` calls REFLECT.
"""

from __future__ import annotations

import tensorflow as tf

from unet.config import Normalisation, ResizeMode

RESIZE, CROP = ResizeMode.RESIZE, ResizeMode.CROP
UNIT, STANDARD = Normalisation.UNIT, Normalisation.STANDARD

_PIXEL_MAX = 255.0
_MIN_STD = 1e-6  # guards against a constant dataset, whose std is 0


def reflect_index(index: tf.Tensor, size: tf.Tensor | int) -> tf.Tensor:
    """Maps any integer index into 0..size-1 by mirroring at the edges, however far outside it lies.

    Unlike `tf.pad(mode="REFLECT")` this works for pads wider than the image (a 20-pixel image cropped to 128).
    """
    size = tf.cast(size, index.dtype)
    period = tf.maximum(2 * size, 1)
    folded = tf.math.floormod(index, period)
    return tf.where(folded < size, folded, period - 1 - folded)


def _window(
    image: tf.Tensor, mask: tf.Tensor, top: tf.Tensor, left: tf.Tensor, size: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """A size x size window at (top, left); parts outside the image are mirrored in (reflect padding)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows = reflect_index(top + tf.range(size), height)
    cols = reflect_index(left + tf.range(size), width)
    crop = lambda x: tf.gather(tf.gather(x, rows, axis=0), cols, axis=1)  # noqa: E731
    return crop(image), crop(mask)


Scale = tuple[list[float], list[float]]  # the dataset's intensity rule: per channel, the values that become 0 and 1


def scale_intensity(image: tf.Tensor, scale: Scale | None) -> tf.Tensor:
    """float32 on the network's scale: (value - low) / (high - low) per channel (`unet.intensity`); None: / 255."""
    if scale is None:
        return tf.cast(image, tf.float32) / _PIXEL_MAX
    low, high = (tf.constant(v, tf.float32) for v in scale)
    return (tf.cast(image, tf.float32) - low) / (high - low)


def _to_outputs(image: tf.Tensor, mask: tf.Tensor, size: int, scale: Scale | None = None,
                eight_bit: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """float32 image on the network's scale and int32 mask, with the static shape known so Keras can build on it.

    An 8-bit image that was resized is float already and may overshoot 0..255 a little, so it is clipped back;
    deeper data keeps its values (the intensity rule does not clip).
    """
    if image.dtype.is_floating and eight_bit:
        image = tf.clip_by_value(tf.cast(image, tf.float32), 0.0, _PIXEL_MAX)
    image = scale_intensity(image, scale)
    mask = tf.cast(mask, tf.int32)
    image = tf.ensure_shape(image, [size, size, None])
    mask = tf.ensure_shape(mask, [size, size, 1])
    return image, mask


def _resize(image: tf.Tensor, mask: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    # antialias keeps thin structures from aliasing when a large image is shrunk; masks stay nearest so no
    # class value is ever blended into another.
    image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    mask = tf.image.resize(mask, [size, size], method="nearest")
    return image, mask


def resize_pair(
    image: tf.Tensor, mask: tf.Tensor, size: int, mode: str = RESIZE, seed: tf.Tensor | None = None,
    scale: Scale | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Brings one training pair to size x size.

    Mode "resize" scales the whole image to size x size (bilinear image, nearest mask). The aspect ratio is
    NOT kept: a 200x100 image is stretched to a square. Mode "crop" takes a random size x size window (seeded)
    where the image is larger, and mirrors the image in (reflect padding) where it is smaller.

    Args:
        image: [H, W, C] as stored: uint8, uint16 or float32.
        mask: uint8 (or any integer) [H, W, 1] of class indices.
        size: the output side in pixels.
        mode: "resize" or "crop".
        seed: int32 [2]; places the crop. Needed only for "crop"; the same seed gives the same window.
        scale: the dataset's intensity rule (low, high per channel); None for 8-bit data (value / 255).

    Returns:
        (image float32 [size, size, C] on the network's scale (0..1 for 8-bit), mask int32 [size, size, 1]).
    """
    image, mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
    eight_bit = image.dtype == tf.uint8
    if mode == RESIZE:
        image, mask = _resize(image, mask, size)
    elif mode == CROP:
        if seed is None:
            raise ValueError("resize_pair: mode 'crop' needs a seed")
        top, left = _random_corner(tf.shape(image)[0], tf.shape(image)[1], size, seed)
        image, mask = _window(image, mask, top, left, size)
    else:
        raise ValueError(f"resize_pair: unknown mode '{mode}' (expected '{RESIZE}' or '{CROP}')")
    return _to_outputs(image, mask, size, scale, eight_bit)


def center_or_resize(image: tf.Tensor, mask: tf.Tensor, size: int, mode: str = RESIZE,
                     scale: Scale | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """The deterministic twin of `resize_pair`, for validation: "resize" resizes, "crop" takes the centre window.

    Shapes, dtypes and `scale` as in `resize_pair`.
    """
    image, mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
    eight_bit = image.dtype == tf.uint8
    if mode == RESIZE:
        image, mask = _resize(image, mask, size)
    elif mode == CROP:
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        image, mask = _window(image, mask, (height - size) // 2, (width - size) // 2, size)
    else:
        raise ValueError(f"center_or_resize: unknown mode '{mode}' (expected '{RESIZE}' or '{CROP}')")
    return _to_outputs(image, mask, size, scale, eight_bit)


def _random_corner(height: tf.Tensor, width: tf.Tensor, size: int, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Top-left corner of a random window; on a side shorter than `size` the window is centred (padded)."""

    def corner(side: tf.Tensor, stream: int) -> tf.Tensor:
        room = side - size
        drawn = tf.random.stateless_uniform(
            [], tf.random.experimental.stateless_fold_in(seed, stream), 0, tf.maximum(room, 0) + 1, dtype=tf.int32
        )
        return tf.where(room >= 0, drawn, room // 2)

    return corner(height, 0), corner(width, 1)


def normalise(images: tf.Tensor, mode: str = UNIT, mean: float = 0.0, std: float = 1.0) -> tf.Tensor:
    """Scales images in 0..1 for the network: "unit" leaves them, "standard" gives (x - mean) / std.

    `mean` and `std` are the dataset's (`dataset.json`), so training and inference must pass the same values.
    Works on any shape.
    """
    if mode == UNIT:
        return images
    if mode == STANDARD:
        return (images - mean) / max(float(std), _MIN_STD)
    raise ValueError(f"normalise: unknown mode '{mode}' (expected '{UNIT}' or '{STANDARD}')")
