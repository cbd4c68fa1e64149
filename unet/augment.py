"""Joint image+mask augmentation, shared by training and the dataset preview.

Following Keras' own preprocessing layers, random parameters are drawn once per sample
(`Augmenter.get_random_transformation`) and then applied to the images and to the masks alike
(`transform_images`, `transform_masks`). Geometric transforms move both together: images are sampled bilinearly,
masks by nearest neighbour, so a mask never holds a class value it did not have. Intensity transforms touch the
image only. Everything is batched, stateless-random TF, so it runs inside `tf.data` maps (graph mode) and eagerly.

Each transform draws from its own seed stream (`_Stream`), so turning one transform on or off in the preview does
not reshuffle the others: moving the blur slider changes the blur and nothing else.
"""

from __future__ import annotations

import math
from enum import IntEnum

import numpy as np
import tensorflow as tf

from unet.config import AugmentConfig, DataConfig, FillMode
from unet.images import convertible, display_rgb
from unet.preprocess import Scale, reflect_index, resize_pair

BILINEAR = "BILINEAR"
NEAREST = "NEAREST"
_FILL_MODES = {FillMode.REFLECT: "REFLECT", FillMode.CONSTANT: "CONSTANT", FillMode.NEAREST: "NEAREST"}
_MASK_FILL = 0.0  # constant fill for masks: background
_IMAGE_FILL = 0.0  # constant fill for images: black

ELASTIC_GRID = 12  # control points per side of the random displacement field: sets how wavy it is
ELASTIC_SMOOTH = 1.0  # Gaussian sigma of the field, in control-point spacings
ELASTIC_MAX_SHIFT = 0.03  # displacement std at strength 1, as a fraction of the image side
_BLUR_TRUNCATE = 3.0  # Gaussian kernels reach this many sigmas
_MIN_SIGMA = 1e-3  # a blur sigma of 0 must still give a valid (delta) kernel


class _Stream(IntEnum):
    """One seed stream per random parameter, folded into the call's seed."""

    FLIP_X = 1
    FLIP_Y = 2
    ROTATE90 = 3
    ROTATE = 4
    ZOOM = 5
    SHIFT_X = 6
    SHIFT_Y = 7
    SHEAR = 8
    ELASTIC = 9
    BRIGHTNESS = 10
    CONTRAST = 11
    GAMMA = 12
    NOISE = 13
    BLUR = 14
    PREVIEW = 15


# ---------------------------------------------------------------------------------------------------------------
# Pure functions: parameters in, pixels out.
# ---------------------------------------------------------------------------------------------------------------


def _uniform(stream: _Stream, seed: tf.Tensor, batch: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.random.stateless_uniform([batch], tf.random.experimental.stateless_fold_in(seed, int(stream)), low, high)


def _matrices(rows: list[list[tf.Tensor]]) -> tf.Tensor:
    """[B, 2, 2] from a 2x2 nested list of [B] tensors."""
    return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)


def projective_transforms(linear: tf.Tensor, shift: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """The [B, 8] rows `ImageProjectiveTransformV3` wants, for `input = centre + linear @ (output - centre) + shift`.

    Args:
        linear: [B, 2, 2] acting on (x, y) about the image centre, mapping output pixels to input pixels.
        shift: [B, 2] translation (x, y) in input pixels.
    """
    centre = tf.stack([(tf.cast(width, tf.float32) - 1) / 2, (tf.cast(height, tf.float32) - 1) / 2])
    offset = centre + shift - tf.linalg.matvec(linear, tf.broadcast_to(centre, tf.shape(shift)))
    zeros = tf.zeros_like(shift[:, :2])
    return tf.concat([linear[:, 0], offset[:, :1], linear[:, 1], offset[:, 1:], zeros], axis=1)


def warp(images: tf.Tensor, transforms: tf.Tensor, interpolation: str, fill_mode: str, fill_value: float) -> tf.Tensor:
    """Resamples [B, H, W, C] once through per-sample projective `transforms` [B, 8]; keeps dtype and shape."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=fill_value,
        interpolation=interpolation,
        fill_mode=_FILL_MODES[fill_mode],
    )


def _gather(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor, fill_mode: str) -> tf.Tensor:
    """images[b, rows[b, i, j], cols[b, i, j]] for integer index maps [B, H, W]; outside pixels per `fill_mode`.

    A flat `tf.gather` over [B * H * W, C] (measured 2-3x faster than `tf.gather_nd` on a 2-core CPU). Constant
    fill pads a one-pixel border of zeros and sends every outside index onto it, which is cheaper than masking.
    """
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    if fill_mode == FillMode.REFLECT:
        rows, cols = reflect_index(rows, height), reflect_index(cols, width)
    elif fill_mode == FillMode.NEAREST:
        rows, cols = tf.clip_by_value(rows, 0, height - 1), tf.clip_by_value(cols, 0, width - 1)
    else:
        images = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
        height, width = height + 2, width + 2
        rows, cols = tf.clip_by_value(rows + 1, 0, height - 1), tf.clip_by_value(cols + 1, 0, width - 1)
    first_row = tf.range(shape[0])[:, None, None] * height
    return tf.gather(tf.reshape(images, [-1, shape[3]]), (first_row + rows) * width + cols)


def displace(images: tf.Tensor, displacement: tf.Tensor, interpolation: str, fill_mode: str) -> tf.Tensor:
    """Samples images [B, H, W, C] at (row + dy, col + dx) for a displacement [B, H, W, 2] of (dy, dx).

    BILINEAR blends the four neighbours (images); NEAREST takes the closest pixel (masks), so no class is blended.
    """
    shape = tf.shape(images)
    rows = tf.cast(tf.range(shape[1])[None, :, None], tf.float32) + displacement[..., 0]
    cols = tf.cast(tf.range(shape[2])[None, None, :], tf.float32) + displacement[..., 1]
    if interpolation == NEAREST:
        return _gather(images, tf.cast(tf.round(rows), tf.int32), tf.cast(tf.round(cols), tf.int32), fill_mode)
    top, left = tf.floor(rows), tf.floor(cols)
    wy, wx = (rows - top)[..., None], (cols - left)[..., None]
    top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)
    top_left, top_right = _gather(images, top, left, fill_mode), _gather(images, top, left + 1, fill_mode)
    low_left, low_right = _gather(images, top + 1, left, fill_mode), _gather(images, top + 1, left + 1, fill_mode)
    upper = top_left + (top_right - top_left) * wx
    lower = low_left + (low_right - low_left) * wx
    return upper + (lower - upper) * wy


def gaussian_kernels(sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """[B, 2 * radius + 1] normalised 1-D Gaussian kernels, one per sigma in [B]."""
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigma = tf.maximum(sigma, _MIN_SIGMA)[:, None]
    weights = tf.exp(-0.5 * tf.square(taps[None, :] / sigma))
    return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def blur(images: tf.Tensor, kernels: tf.Tensor) -> tf.Tensor:
    """Separable blur of [B, H, W, C] with a different 1-D kernel per sample ([B, K], K odd), edges mirrored.

    The batch is folded into the channels so one depthwise convolution applies every sample's own kernel.
    """
    shape = tf.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    radius = (tf.shape(kernels)[1] - 1) // 2
    folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, height, width, batch * channels])
    folded = tf.pad(folded, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    per_channel = tf.transpose(tf.repeat(kernels, channels, axis=0))  # [K, B * C]
    vertical = per_channel[:, None, :, None]
    horizontal = per_channel[None, :, :, None]
    folded = tf.nn.depthwise_conv2d(folded, vertical, [1, 1, 1, 1], "VALID")
    folded = tf.nn.depthwise_conv2d(folded, horizontal, [1, 1, 1, 1], "VALID")
    return tf.transpose(tf.reshape(folded, [height, width, batch, channels]), [2, 0, 1, 3])


def elastic_field(seed: tf.Tensor, batch: tf.Tensor, height: tf.Tensor, width: tf.Tensor, strength: float) -> tf.Tensor:
    """A smooth random displacement [B, H, W, 2] in pixels: Gaussian-blurred noise, scaled by `strength`.

    The noise lives on a coarse ELASTIC_GRID x ELASTIC_GRID lattice and is blurred there, then resized up
    bilinearly: the same smooth field as blurring full-size noise with a wide kernel, at a tiny fraction of the cost.
    """
    radius = math.ceil(_BLUR_TRUNCATE * ELASTIC_SMOOTH)
    noise = tf.random.stateless_normal([batch, ELASTIC_GRID, ELASTIC_GRID, 2], seed)
    kernel = gaussian_kernels(tf.fill([batch], ELASTIC_SMOOTH), radius)
    smooth = blur(noise, kernel)
    smooth = smooth / tf.reduce_sum(tf.square(kernel[0]))  # back to unit std: blurring shrinks it by sum(w^2)
    side = tf.cast(tf.minimum(height, width), tf.float32)
    return tf.image.resize(smooth, tf.stack([height, width])) * (strength * ELASTIC_MAX_SHIFT * side)


# ---------------------------------------------------------------------------------------------------------------
# The Augmenter: draws parameters once per sample, applies them to images and masks.
# ---------------------------------------------------------------------------------------------------------------


class Augmenter:
    """Random joint augmentation of image and mask batches, configured by an `AugmentConfig`.

    Geometric transforms (flips, 90-degree and free rotation, zoom, shift, shear) are composed into one
    projective matrix per sample and resampled once; elastic deformation follows as a second, gather-based
    resampling. Intensity transforms (brightness, contrast, gamma, blur, noise) follow on the image only.
    Uncovered corners are filled per `cfg.fill_mode` (a constant mask fill is background, 0).
    Quarter turns map pixels exactly onto pixels for square inputs (what training feeds); on non-square ones
    they rotate about the centre and fill the bands they uncover. Blur needs sides above 3 * `cfg.blur`.

    Args:
        cfg: which transforms run and how strongly; a strength of 0 or False turns one off, `enabled=False` all.

    Call arguments:
        images: float32 [B, H, W, C] in 0..1, C = 1 or 3.
        masks: int32 [B, H, W, 1] class indices.
        seed: int32 [2]; the same seed gives the same output. Vary it per batch (e.g. zip the dataset with
            `tf.data.Dataset.random(seed).batch(2)`).

    Returns:
        (images float32 [B, H, W, C] clipped to 0..1, masks int32 [B, H, W, 1]).

    Example:
        >>> augmenter = Augmenter(AugmentConfig(rotate=30, elastic=0.5))
        >>> images, masks = augmenter(images, masks, tf.constant([1, 2]))
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg
        on = cfg.enabled
        self.geometric = on and bool(cfg.flip or cfg.rotate90 or cfg.rotate or cfg.zoom or cfg.shift or cfg.shear)
        self.elastic = on and cfg.elastic > 0
        self.intensity = on and bool(cfg.brightness or cfg.contrast or cfg.gamma or cfg.noise or cfg.blur)

    def get_config(self) -> dict:
        return {"cfg": self.cfg}

    def __call__(self, images: tf.Tensor, masks: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if not self.cfg.enabled:
            return images, masks
        params = self.get_random_transformation(images, seed)
        return self.transform_images(images, params), self.transform_masks(masks, params)

    def get_random_transformation(self, images: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """Every random parameter for the batch, drawn once per sample; keys exist only for active transforms."""
        cfg = self.cfg
        seed = tf.cast(seed, tf.int32)
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        params: dict[str, tf.Tensor] = {}
        if self.geometric:
            params["transforms"] = self._projective(seed, batch, height, width)
        if self.elastic:
            stream = tf.random.experimental.stateless_fold_in(seed, int(_Stream.ELASTIC))
            params["displacement"] = elastic_field(stream, batch, height, width, cfg.elastic)
        if cfg.brightness:
            params["brightness"] = _uniform(_Stream.BRIGHTNESS, seed, batch, -cfg.brightness, cfg.brightness)
        if cfg.contrast:
            params["contrast"] = _uniform(_Stream.CONTRAST, seed, batch, 1 - cfg.contrast, 1 + cfg.contrast)
        if cfg.gamma:
            params["gamma"] = _uniform(_Stream.GAMMA, seed, batch, 1 - cfg.gamma, 1 + cfg.gamma)
        if cfg.blur:
            params["blur"] = gaussian_kernels(
                _uniform(_Stream.BLUR, seed, batch, 0.0, cfg.blur), math.ceil(_BLUR_TRUNCATE * cfg.blur)
            )
        if cfg.noise:
            params["noise_seed"] = tf.random.experimental.stateless_fold_in(seed, int(_Stream.NOISE))
        return params

    def _projective(self, seed: tf.Tensor, batch: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
        """One output-to-input matrix per sample: flip . rot90 . rotation . shear . zoom, then the shift."""
        cfg = self.cfg
        one, zero = tf.ones([batch]), tf.zeros([batch])
        linear = tf.eye(2, batch_shape=[batch])
        if cfg.flip:
            sign = lambda s: tf.where(_uniform(s, seed, batch, 0, 1) < 0.5, -one, one)  # noqa: E731
            linear = _matrices([[sign(_Stream.FLIP_X), zero], [zero, sign(_Stream.FLIP_Y)]])
        if cfg.rotate90:
            quarter = tf.floor(_uniform(_Stream.ROTATE90, seed, batch, 0, 4)) * (math.pi / 2)
            cos, sin = tf.round(tf.cos(quarter)), tf.round(tf.sin(quarter))  # exact, so pixels map to pixels
            linear = linear @ _matrices([[cos, -sin], [sin, cos]])
        if cfg.rotate:
            angle = _uniform(_Stream.ROTATE, seed, batch, -cfg.rotate, cfg.rotate) * (math.pi / 180)
            cos, sin = tf.cos(angle), tf.sin(angle)
            linear = linear @ _matrices([[cos, -sin], [sin, cos]])
        if cfg.shear:
            slope = tf.tan(_uniform(_Stream.SHEAR, seed, batch, -cfg.shear, cfg.shear) * (math.pi / 180))
            linear = linear @ _matrices([[one, slope], [zero, one]])
        if cfg.zoom:
            inverse = 1 / _uniform(_Stream.ZOOM, seed, batch, 1 - cfg.zoom, 1 + cfg.zoom)  # zoom in = sample less
            linear = linear @ _matrices([[inverse, zero], [zero, inverse]])
        shift = tf.zeros([batch, 2])
        if cfg.shift:
            fractions = [_uniform(s, seed, batch, -cfg.shift, cfg.shift) for s in (_Stream.SHIFT_X, _Stream.SHIFT_Y)]
            shift = tf.stack(fractions, axis=1) * tf.cast(tf.stack([width, height]), tf.float32)
        return projective_transforms(linear, shift, height, width)

    def transform_images(self, images: tf.Tensor, params: dict[str, tf.Tensor]) -> tf.Tensor:
        """Applies `params` to float32 images [B, H, W, C] on the network's scale.

        The result is clipped to 0..1, widened to each image's own range where it reaches beyond (percentile-
        scaled microscopy keeps its brightest and darkest pixels, which inference does not clip either).
        """
        fill = self.cfg.fill_mode
        floor = tf.minimum(tf.reduce_min(images, axis=[1, 2, 3], keepdims=True), 0.0)
        ceiling = tf.maximum(tf.reduce_max(images, axis=[1, 2, 3], keepdims=True), 1.0)
        if "transforms" in params:
            images = warp(images, params["transforms"], BILINEAR, fill, _IMAGE_FILL)
        if "displacement" in params:
            images = displace(images, params["displacement"], BILINEAR, fill)
        if "brightness" in params:
            images = images + params["brightness"][:, None, None, None]
        if "contrast" in params:
            mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
            images = (images - mean) * params["contrast"][:, None, None, None] + mean
        if "gamma" in params:
            images = tf.pow(tf.clip_by_value(images, 0.0, ceiling), params["gamma"][:, None, None, None])
        if "blur" in params:
            images = blur(images, params["blur"])
        if "noise_seed" in params:
            images = images + tf.random.stateless_normal(tf.shape(images), params["noise_seed"]) * self.cfg.noise
        return tf.clip_by_value(images, floor, ceiling)

    def transform_masks(self, masks: tf.Tensor, params: dict[str, tf.Tensor]) -> tf.Tensor:
        """Applies the geometric part of `params` to int32 masks [B, H, W, 1] by nearest neighbour."""
        if "transforms" in params:
            masks = warp(masks, params["transforms"], NEAREST, self.cfg.fill_mode, _MASK_FILL)
        if "displacement" in params:
            masks = displace(masks, params["displacement"], NEAREST, self.cfg.fill_mode)
        return masks


# ---------------------------------------------------------------------------------------------------------------
# Preview: what training sees, as uint8 arrays for the dataset page.
# ---------------------------------------------------------------------------------------------------------------


def _as_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """[H, W, channels] from a stored grayscale (H x W) or RGB image."""
    image = image if image.ndim == 3 else image[..., None]
    if image.shape[-1] == channels:
        return image
    if not convertible(image.shape[-1], channels):
        raise ValueError(f"an image of {image.shape[-1]} channels cannot be shown as {channels}")
    if channels == 3:
        return np.repeat(image[..., :1], 3, axis=-1)
    return np.asarray(tf.image.rgb_to_grayscale(image[..., :3]))


def preview_pairs(
    images: list[np.ndarray],
    masks: list[np.ndarray],
    cfg: AugmentConfig,
    data: DataConfig,
    n: int = 8,
    seed: int = 0,
    scale: Scale | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n` augmented pairs, made by the same `resize_pair` + `Augmenter` code that training runs.

    Pairs are taken in order, cycling when there are fewer than `n`.

    Args:
        images: [H, W] or [H, W, C] as stored (uint8, uint16 or float32); sizes may differ.
        masks: uint8 [H, W] or [H, W, 1] class indices, one per image.
        cfg: the augmentation to show.
        data: input size, channels and resize mode.
        n: how many pairs.
        seed: the same seed gives the same previews.
        scale: the dataset's intensity rule (`unet.pipeline.intensity_scale`); None for 8-bit data.

    Returns:
        n tuples (image uint8 [S, S, C], mask uint8 [S, S]) with S = data.input_size and C = data.channels (1 or
        3), or a colour composite [S, S, 3] of the channels for any other count (`unet.images.display_rgb`).
    """
    if not images or len(images) != len(masks):
        raise ValueError("preview_pairs needs at least one image and exactly one mask per image")
    base = tf.constant([seed, int(_Stream.PREVIEW)], tf.int32)
    batch_images, batch_masks = [], []
    for i in range(n):
        mask = masks[i % len(masks)]
        image, mask = resize_pair(
            _as_channels(images[i % len(images)], data.channels),
            mask if mask.ndim == 3 else mask[..., None],
            data.input_size,
            data.resize,
            tf.random.experimental.stateless_fold_in(base, i),
            scale,
        )
        batch_images.append(image)
        batch_masks.append(mask)
    out_images, out_masks = Augmenter(cfg)(tf.stack(batch_images), tf.stack(batch_masks), base)
    if data.channels in (1, 3):
        out_images = np.asarray(tf.cast(tf.round(tf.clip_by_value(out_images, 0.0, 1.0) * 255.0), tf.uint8))
    else:
        out_images = np.stack([display_rgb(image) for image in np.asarray(out_images)])
    out_masks = np.asarray(tf.cast(out_masks[..., 0], tf.uint8))
    return list(zip(out_images, out_masks, strict=True))
