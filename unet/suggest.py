"""Settings that fit the data in front of us: input size, crops or resizing, model and epochs, with the reasons.

A default that ignores the data gives a success that is not one: 512x512 EM images shrunk to 128 px lose their
one-pixel-wide membranes before the network sees them, and the run then scores barely above painting every pixel
"cell". So the suggestion looks at the images' size and at the width of the thinnest structure in the masks
(from a distance transform of each class), shrinks images only as far as that structure stays at least
`MIN_STRUCTURE_PIXELS` wide, trains on crops at native resolution otherwise, and fits the epochs to a time budget
with the Model page's calibrated estimate. The user can still change everything.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from unet.config import Config
from unet.dataset import Dataset
from unet.presets import apply_preset

MIN_STRUCTURE_PIXELS = 3.0  # a structure thinner than this after shrinking is lost to the network
SMALL_IMAGE = 256  # images up to this long side are trained whole at their own size
CROP_SIZE = 256
MASKS_SAMPLED = 8  # masks read to measure structure widths: enough for a typical width, fast on big datasets
MIN_EPOCHS, MAX_EPOCHS = 10, 1000
MULTIPLE = 16  # input sizes are multiples of 2**depth for depth 4
MIXED_SIZE_RATIO = 1.5  # long sides further apart than this: crops at native resolution, never one shrink


@dataclass(frozen=True)
class Suggestion:
    config: Config
    reasons: list[str]
    thinnest: tuple[str, float] | None  # (class name, width in pixels) of the thinnest structure, when measured

    def to_dict(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "reasons": list(self.reasons)}


def _ridge_widths(region: np.ndarray) -> np.ndarray:
    """Widths (pixels) of a binary region along its medial ridge: twice the distance to its edge, minus one."""
    if not region.any():
        return np.zeros(0)
    framed = cv2.copyMakeBorder(region.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    distance = cv2.distanceTransform(framed, cv2.DIST_L2, 5)[1:-1, 1:-1]  # the image's edge ends a region too
    ridge = (distance > 0) & (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8)))
    return 2 * distance[ridge] - 1


def thinnest_structure(dataset: Dataset, samples: int = MASKS_SAMPLED) -> tuple[str, float] | None:
    """(class name, typical width in pixels) of the class whose structures are thinnest, from a few masks.

    A class's width is the median of its ridge widths; classes covering under 0.5% of the pixels are skipped
    (a few stray pixels are no structure).
    """
    stems = dataset.stems[:: max(1, len(dataset.stems) // samples)][:samples]
    widths: dict[int, list[np.ndarray]] = {}
    totals = np.zeros(max(dataset.num_classes, 1), np.int64)
    for stem in stems:
        mask = dataset.read_mask(stem)
        for k in range(dataset.num_classes):
            region = mask == k
            totals[k] += int(region.sum())
            widths.setdefault(k, []).append(_ridge_widths(region))
    if not totals.sum():
        return None
    typical = {k: float(np.median(np.concatenate(w))) for k, w in widths.items()
               if totals[k] >= 0.005 * totals.sum() and sum(len(x) for x in w)}
    if not typical:
        return None
    k = min(typical, key=typical.get)
    return dataset.classes[k].name, max(1.0, typical[k])


def _round_up(value: float, multiple: int = MULTIPLE) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _mixed_sizes(sizes: dict) -> tuple[int, int] | None:
    """(shortest, longest) long side when the images' sizes differ by more than MIXED_SIZE_RATIO, else None."""
    try:
        (h0, w0), (h1, w1) = sizes["min"], sizes["max"]
    except (KeyError, TypeError, ValueError):
        return None
    short, long = max(h0, w0), max(h1, w1)
    return (short, long) if sizes.get("distinct", 1) > 1 and long > MIXED_SIZE_RATIO * short else None


def _size_and_mode(long_side: int, thinnest: tuple[str, float] | None, sizes: dict | None = None
                   ) -> tuple[int, str, str]:
    """(input size, resize mode, the reason in one sentence)."""
    mixed = _mixed_sizes(sizes or {})
    if mixed is not None:
        smallest = min(mixed[0], min((sizes or {}).get("min", [CROP_SIZE])))
        size = max(64, min(CROP_SIZE, smallest // MULTIPLE * MULTIPLE))
        return size, "crop", (f"the images come in {sizes['distinct']} sizes ({mixed[0]} to {mixed[1]} px): shrinking "
                              "each to one square would show the same objects at different scales, so the network "
                              f"trains on {size}-px crops at the images' own resolution and predicts whole images")
    if long_side <= SMALL_IMAGE:
        size = max(64, _round_up(long_side))
        return size, "resize", (f"the images are small ({long_side} px), so they are trained whole at their own "
                                f"resolution ({size}x{size})")
    if thinnest is None:
        return CROP_SIZE, "crop", (f"the images are {long_side} px; the network trains on {CROP_SIZE}-px crops at "
                                   "their own resolution and predicts whole images")
    name, width = thinnest
    shrink = max(1.0, width / MIN_STRUCTURE_PIXELS)
    target = long_side / shrink
    if target <= CROP_SIZE:
        size = max(128, _round_up(target))
        return size, "resize", (f"the thinnest structures ('{name}', about {width:.0f} px wide) stay visible when "
                                f"the {long_side}-px images are shrunk to {size} px, so they are trained whole")
    return CROP_SIZE, "crop", (f"the thinnest structures ('{name}', about {width:.0f} px wide) would vanish if the "
                               f"{long_side}-px images were shrunk to a small input, so the network trains on "
                               f"{CROP_SIZE}-px crops at the images' own resolution and predicts whole images")


def suggest(dataset: Dataset, minutes: float = 5.0, base: Config | None = None,
            gflops_per_second: float | None = None) -> Suggestion:
    """Settings for `dataset` that train in about `minutes` on this machine, with one reason per choice.

    Augmentation and normalisation of `base` (the user's current settings) are kept; channels and classes are
    the dataset's.
    """
    from unet.model import model_facts
    from unet.splits import training_count
    from unet.training import fit_config, typical_size

    base = fit_config(base or Config(), dataset)
    height, width = typical_size(dataset)
    thinnest = thinnest_structure(dataset)
    size, mode, size_reason = _size_and_mode(max(height, width), thinnest, dataset.image_sizes)
    config = apply_preset(base, "Balanced")
    batch = 8 if size <= 128 else config.train.batch_size
    config = config.replace(
        data=dataclasses.replace(config.data, input_size=size, resize=mode),
        train=dataclasses.replace(config.train, batch_size=batch, max_minutes=0.0),
    )
    train_images = training_count(len(dataset.training_stems), config.train.validation_split)
    if gflops_per_second is None:
        from unet.calibration import achieved_gflops  # measured once per machine, then cached in the workspace

        gflops_per_second = achieved_gflops()
    facts = model_facts(config, train_images, gflops_per_second=gflops_per_second)
    per_epoch = max(facts.seconds_per_epoch or 1.0, 0.05)
    epochs = int(min(MAX_EPOCHS, max(MIN_EPOCHS, minutes * 60 / per_epoch)))
    patience = max(10, epochs // 5)
    config = config.replace(train=dataclasses.replace(config.train, epochs=epochs, early_stopping_patience=patience))
    if config.data.task == "instances":  # the thin boundary class decides whether touching objects come apart
        config = config.replace(train=dataclasses.replace(config.train, class_weights=True))
    reasons = [
        size_reason,
        f"the Balanced model (depth {config.model.depth}, {config.model.base_filters} base filters) suits real images "
        "and trains within minutes on a CPU",
        f"about {per_epoch:.1f} s per epoch of {train_images} training images on this machine, so {epochs} epochs "
        f"fit in about {minutes:g} minutes (early stopping after {patience} epochs without progress)",
    ]
    if config.train.class_weights and config.data.task == "instances":
        reasons.append("the classes are weighted by their rarity, so the thin boundaries between touching objects "
                       "count as much as the rest (DSB2018 nuclei, 10 minutes: AP@0.5 0.63 on the test images, "
                       "0.53 unweighted)")
    return Suggestion(config, reasons, thinnest)
