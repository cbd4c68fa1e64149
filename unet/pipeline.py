"""The tf.data input pipeline: stored PNGs -> decoded pairs -> fixed-size, normalised, augmented batches.

Training and validation read the same files through the same `unet.preprocess` functions, so what validation,
evaluation and inference see differs from training only by the random parts (crop position, augmentation).

Memory stays bounded by a byte budget, not by the dataset: decoded uint8 pairs are cached in memory only when
they fit in the budget; above it they are decoded again each epoch (parallel, prefetched).

Reproducibility: the split is a seeded permutation of the sorted stems; the shuffle is seeded; crops and
augmentation draw from stateless seeds `[seed, counter]`, where the counter numbers elements and batches over
the whole run (the training stream repeats forever and Keras takes `steps` batches per epoch), so epoch 2 does
not replay epoch 1's augmentation and the same config gives the same batches.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from unet import images as image_io
from unet import preprocess
from unet.config import Config
from unet.dataset import DATASET_FILE, Dataset, ValueChoices, ingest
from unet.errors import UserError

CACHE_BUDGET_BYTES = 1 << 30  # decoded uint8 pairs kept in memory up to this, for train and validation together
AUTOTUNE = tf.data.AUTOTUNE

# Separate random streams, so changing one (e.g. the crop) does not shift the other.
_CROP_STREAM = 1
_AUGMENT_STREAM = 2

Augment = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


@dataclass(frozen=True)
class InputPipeline:
    """A tf.data pipeline with the facts the trainer needs: batches per pass, and whether it lives in memory."""

    dataset: tf.data.Dataset
    steps: int
    images: int
    cached: bool


def png_size(path: Path) -> tuple[int, int]:
    """(height, width) from a PNG header, without decoding the image."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        raise UserError(f"'{path.name}' is not a PNG file; store the dataset again")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def decoded_bytes(dataset: Dataset, stems: Sequence[str], channels: int) -> int:
    """Bytes the decoded pairs (image with `channels` channels in the stored dtype + 1-byte mask) take in memory."""
    per_sample = np.dtype(dataset.image_dtype).itemsize
    total = 0
    for stem in stems:
        height, width = png_size(dataset.mask_path(stem))  # masks are PNGs of the image's size, whatever the image
        total += height * width * (channels * per_sample + 1)
    return total


def intensity_scale(dataset: Dataset) -> preprocess.Scale | None:
    """The dataset's rule for `preprocess`: None for 8-bit data (value / 255, the fast path), else (low, high)."""
    return dataset.rule.as_scale()


def plan_cache(train_bytes: int, val_bytes: int, budget: int) -> tuple[bool, bool]:
    """(cache train, cache validation): validation first (small, read every epoch), then train if it still fits."""
    cache_val = val_bytes <= budget
    cache_train = train_bytes <= budget - (val_bytes if cache_val else 0)
    return cache_train, cache_val


def steps_for(images: int, batch_size: int) -> int:
    return max(1, -(-images // batch_size))


def _read_tiff(path: bytes) -> np.ndarray:
    """A stored TIFF image as [H, W, C] (runs inside tf.numpy_function; stored files were checked at ingest)."""
    image = image_io.read_image(Path(path.decode()))
    return image[:, :, None] if image.ndim == 2 else image


def decode_pair(image_path: tf.Tensor, mask_path: tf.Tensor, channels: int, image_format: str = "png",
                image_dtype: str = "uint8") -> tuple[tf.Tensor, tf.Tensor]:
    """Image [H, W, channels] as stored (uint8 PNG, or a TIFF's uint8/uint16/float32) and uint8 mask [H, W, 1]."""
    if image_format == "png":
        image = tf.io.decode_png(tf.io.read_file(image_path), channels=channels, dtype=tf.uint8)
    else:
        image = tf.numpy_function(_read_tiff, [image_path], tf.as_dtype(image_dtype), stateful=False)
        image = tf.ensure_shape(image, [None, None, channels])
    mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1, dtype=tf.uint8)
    return image, mask


def _decoder(dataset: Dataset, channels: int) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    return lambda i, m: decode_pair(i, m, channels, dataset.image_format, dataset.image_dtype)


def _paths(dataset: Dataset, stems: Sequence[str]) -> tf.data.Dataset:
    images = [str(dataset.image_path(s)) for s in stems]
    masks = [str(dataset.mask_path(s)) for s in stems]
    return tf.data.Dataset.from_tensor_slices((images, masks))


def _normalise(cfg: Config, stats: tuple[float, float]) -> Callable[[tf.Tensor], tf.Tensor]:
    mode, (mean, std) = cfg.data.normalisation, stats
    return lambda images: preprocess.normalise(images, mode, float(mean), float(std))


def open_dataset(data: Path, store_in: Path, stacks: str | None = None, masks: str | None = None,
                 values: ValueChoices | None = None) -> Dataset:
    """A stored dataset as it is; a raw folder or zip of images/ and masks/ is stored first, as `store_in`.

    Raw data is checked and cleaned exactly as the Dataset page does it (`unet.dataset.ingest`), stacks read by
    `stacks` (`unet.stacks`; automatic when None), masks as object ids or classes by `masks` ("ids", "classes";
    decided over the whole dataset when None or "auto").
    """
    data = Path(data)
    if (data / DATASET_FILE).exists():
        return Dataset.load(data)
    if not data.exists():
        raise UserError(f"there is no dataset at '{data.name}'")
    dataset, _report = ingest(data, store_in.name, store_in.parent, stacks=stacks, masks=masks, values=values)
    return dataset


def train_pipeline(
    dataset: Dataset,
    stems: Sequence[str],
    cfg: Config,
    augment: Augment | None = None,
    cache: bool = True,
    start_step: int = 0,
) -> InputPipeline:
    """An endless stream of shuffled, augmented, normalised batches; one epoch is `steps` batches.

    Batches are always full (the stream wraps around), so 4 pairs with batch size 8 still train and every
    batch has the same shape. `start_step` continues the seed counters of a resumed run.
    """
    batch, size, mode, seed = cfg.train.batch_size, cfg.data.input_size, cfg.data.resize, cfg.train.seed
    steps = steps_for(len(stems), batch)
    decode = _decoder(dataset, cfg.data.channels)
    scale = intensity_scale(dataset)
    shuffle_seed = seed + start_step  # a resumed run does not replay the first epochs' order
    ds = _paths(dataset, stems)
    if cache:
        ds = ds.map(decode, num_parallel_calls=AUTOTUNE).cache()
        ds = ds.shuffle(len(stems), seed=shuffle_seed, reshuffle_each_iteration=True).repeat()
    else:  # shuffle the (small) paths, not decoded images, so memory stays at a few batches
        ds = ds.shuffle(len(stems), seed=shuffle_seed, reshuffle_each_iteration=True).repeat()
        ds = ds.map(decode, num_parallel_calls=AUTOTUNE)

    def fit(index: tf.Tensor, pair: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        element_seed = tf.stack([tf.constant(seed + _CROP_STREAM, tf.int32), tf.cast(index, tf.int32)])
        return preprocess.resize_pair(pair[0], pair[1], size, mode, element_seed, scale)

    ds = tf.data.Dataset.zip(tf.data.Dataset.counter(start_step * batch), ds)
    ds = ds.map(fit, num_parallel_calls=AUTOTUNE).batch(batch, drop_remainder=True)
    normalise = _normalise(cfg, (dataset.mean, dataset.std))

    def finish(step: tf.Tensor, pair: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        images, masks = pair
        if augment is not None:
            batch_seed = tf.stack([tf.constant(seed + _AUGMENT_STREAM, tf.int32), tf.cast(step, tf.int32)])
            images, masks = augment(images, masks, batch_seed)
        return normalise(images), masks

    ds = tf.data.Dataset.zip(tf.data.Dataset.counter(start_step), ds)
    ds = ds.map(finish, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    return InputPipeline(ds, steps, len(stems), cache)


_OWN: Any = object()  # eval_pipeline's default: the dataset's own intensity rule


def eval_pipeline(dataset: Dataset, stems: Sequence[str], cfg: Config, cache: bool = True,
                  batch_size: int | None = None, stats: tuple[float, float] | None = None,
                  scale: Any = _OWN) -> InputPipeline:
    """Every pair once, in order, deterministic (centre crop or resize), normalised, never augmented.

    `stats` (mean, std) and `scale` (the intensity rule) must be the training dataset's when evaluating a model
    on other data.
    """
    size, mode = cfg.data.input_size, cfg.data.resize
    batch = batch_size or cfg.train.batch_size
    ds = _paths(dataset, stems).map(_decoder(dataset, cfg.data.channels), num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    normalise = _normalise(cfg, stats or (dataset.mean, dataset.std))
    scale = intensity_scale(dataset) if scale is _OWN else scale
    ds = ds.map(lambda i, m: preprocess.center_or_resize(i, m, size, mode, scale), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch).map(lambda i, m: (normalise(i), m), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    return InputPipeline(ds, steps_for(len(stems), batch), len(stems), cache)


def class_pixel_counts(dataset: Dataset, stems: Sequence[str], num_classes: int) -> np.ndarray:
    """Pixels per class over the masks of `stems` (at their stored size), for class weights."""
    masks = tf.data.Dataset.from_tensor_slices([str(dataset.mask_path(s)) for s in stems])
    counts = masks.map(
        lambda p: tf.math.bincount(
            tf.reshape(tf.cast(tf.io.decode_png(tf.io.read_file(p), channels=1), tf.int32), [-1]),
            minlength=num_classes, maxlength=num_classes, dtype=tf.int64,
        ),
        num_parallel_calls=AUTOTUNE,
    ).reduce(tf.zeros([num_classes], tf.int64), lambda total, c: total + c)
    return counts.numpy()


def class_weights(counts: np.ndarray, max_ratio: float = 10.0) -> list[float]:
    """Inverse-frequency weights normalised to mean 1, clipped so a class seen in a few pixels cannot dominate.

    A class absent from the training masks gets weight 1 (there is nothing to balance).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.ones_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    weights = np.clip(weights, weights[present].min(), weights[present].min() * max_ratio) if present.any() else weights
    return [float(w) for w in weights / weights.mean()]
