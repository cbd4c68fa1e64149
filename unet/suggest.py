"""Settings that fit the data in front of us: input size, crops or resizing, model and epochs, with the reasons.

A default that ignores the data gives a success that is not one: 512x512 EM images shrunk to 128 px lose their
one-pixel-wide membranes before the network sees them, and the run then scores barely above painting every pixel
"cell". So the suggestion looks at the images' size and at the width of the thinnest structure in the masks
(from a distance transform of each class), shrinks images only as far as that structure stays at least
`MIN_STRUCTURE_PIXELS` wide, trains on crops at native resolution otherwise, and fits the epochs to a time budget
with the Model page's calibrated estimate. The user can still change everything.

Widths are measured on dense masks only: in a mask of a few strokes with the rest "not labelled"
(`unet.classmap.IGNORE_INDEX`), a class's regions are the strokes, and their width is the brush's (12 px on ISBI
strokes whose membranes are 3-5 px wide). Without a dense mask the width is unknown, and large images are then
never shrunk: a structure whose width is not known may be one that shrinking makes vanish.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from unet.classmap import IGNORE_INDEX
from unet.config import Config
from unet.dataset import Dataset
from unet.presets import apply_preset
from unet.units import about_text, count_text

MIN_STRUCTURE_PIXELS = 3.0  # a structure thinner than this after shrinking is lost to the network
SMALL_IMAGE = 256  # images up to this long side are trained whole at their own size
CROP_SIZE = 256
MASKS_SAMPLED = 8  # masks read to measure structure widths: enough for a typical width, fast on big datasets
MASKS_READ = 64  # at most this many masks are read looking for MASKS_SAMPLED dense ones
DENSE_SHARE = 0.05  # a mask is dense when at most this share of its pixels is "not labelled" (VOC's void borders)
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


@dataclass(frozen=True)
class Widths:
    """What the masks say about structure widths: the thinnest class (None when unmeasured), and how many of the
    masks read were too sparse to measure (strokes with the rest not labelled)."""

    thinnest: tuple[str, float] | None
    dense: int
    sparse: int
    unlabelled_share: float  # of the pixels of the sparse masks read


def measure_widths(dataset: Dataset, samples: int = MASKS_SAMPLED) -> Widths:
    """Structure widths from up to `samples` dense masks, spread over the dataset (see `thinnest_structure`)."""
    stems = dataset.stems
    step = max(1, len(stems) // samples)
    order = stems[::step] + [s for i, s in enumerate(stems) if i % step]  # spread first, then the rest
    widths: dict[int, list[np.ndarray]] = {}
    totals = np.zeros(max(dataset.num_classes, 1), np.int64)
    dense = sparse = unlabelled = sparse_pixels = 0
    for stem in order[:MASKS_READ]:
        if dense == samples:
            break
        mask = dataset.read_mask(stem)
        missing = int((mask == IGNORE_INDEX).sum())
        if missing > DENSE_SHARE * mask.size:
            sparse, unlabelled, sparse_pixels = sparse + 1, unlabelled + missing, sparse_pixels + mask.size
            continue
        dense += 1
        for k in range(dataset.num_classes):
            region = mask == k
            totals[k] += int(region.sum())
            widths.setdefault(k, []).append(_ridge_widths(region))
    share = unlabelled / sparse_pixels if sparse_pixels else 0.0
    if not totals.sum():
        return Widths(None, dense, sparse, share)
    typical = {k: float(np.median(np.concatenate(w))) for k, w in widths.items()
               if totals[k] >= 0.005 * totals.sum() and sum(len(x) for x in w)}
    if not typical:
        return Widths(None, dense, sparse, share)
    k = min(typical, key=typical.get)
    return Widths((dataset.classes[k].name, max(1.0, typical[k])), dense, sparse, share)


def thinnest_structure(dataset: Dataset, samples: int = MASKS_SAMPLED) -> tuple[str, float] | None:
    """(class name, typical width in pixels) of the class whose structures are thinnest, from a few dense masks;
    None when no mask read is dense enough to measure (see `measure_widths`).

    A class's width is the median of its ridge widths; classes covering under 0.5% of the pixels are skipped
    (a few stray pixels are no structure).
    """
    return measure_widths(dataset, samples).thinnest


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


def _size_and_mode(long_side: int, thinnest: tuple[str, float] | None, sizes: dict | None = None,
                   unmeasured: str | None = None) -> tuple[int, str, str]:
    """(input size, resize mode, the reason in one sentence); `unmeasured` says why no width was measured."""
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
    if thinnest is None and unmeasured:
        return CROP_SIZE, "crop", (f"{unmeasured}, and shrinking the {long_side}-px images could make thin "
                                   f"structures vanish: the network trains on {CROP_SIZE}-px crops at the images' "
                                   "own resolution and predicts whole images")
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


def _epochs_reason(seconds: float, epochs: int, wanted: float, minutes: float, images: int, patience: int) -> str:
    """Why this many epochs, with the time they take in the words the Model and Train pages use for it."""
    budget = count_text(int(minutes), "minute") if float(minutes).is_integer() else f"{minutes:g} minutes"
    total = about_text(seconds * epochs)
    if wanted > MAX_EPOCHS:
        fit = f"{epochs} epochs, the most suggested, take {total}: less than the {budget} allowed"
    elif wanted < MIN_EPOCHS:
        fit = f"{epochs} epochs, the fewest that learn much, take {total}: more than the {budget} allowed"
    else:
        fit = f"{epochs} epochs take {total}, within the {budget} allowed"
    return (f"{about_text(seconds)} per epoch of {count_text(images, 'training image')} on this machine, so {fit} "
            f"(early stopping after {patience} epochs without progress)")



def suggest(dataset: Dataset, minutes: float = 5.0, base: Config | None = None,
            gflops_per_second: float | None = None) -> Suggestion:
    """Settings for `dataset` that train in about `minutes` on this machine, with one reason per choice.

    Augmentation and normalisation of `base` (the user's current settings) are kept; channels and classes are
    the dataset's. The suggestion trains a new network (`train.init_from` is None): a fine-tuning source brings a
    network of its own shape.
    """
    from unet.model import model_facts
    from unet.splits import training_count
    from unet.training import fit_config, typical_size

    base = fit_config(base or Config(), dataset)
    height, width = typical_size(dataset)
    measured = measure_widths(dataset)
    thinnest = measured.thinnest
    unmeasured = None
    if thinnest is None and measured.sparse and not measured.dense:
        unmeasured = (f"the masks label only part of each image ({measured.unlabelled_share:.0%} of their pixels "
                      "not labelled, as strokes are), so the width of the thinnest structures cannot be measured "
                      "from them (a stroke's width is the brush's)")
    size, mode, size_reason = _size_and_mode(max(height, width), thinnest, dataset.image_sizes, unmeasured)
    config = apply_preset(base, "Balanced")
    batch = 8 if size <= 128 else config.train.batch_size
    config = config.replace(
        data=dataclasses.replace(config.data, input_size=size, resize=mode),
        train=dataclasses.replace(config.train, batch_size=batch, max_minutes=0.0, init_from=None),
    )  # a new network of the suggested shape: a model to fine-tune from has its own
    train_images = training_count(len(dataset.training_stems), config.train.validation_split)
    if gflops_per_second is None:
        from unet.calibration import achieved_gflops  # measured once per machine, then cached in the workspace

        gflops_per_second = achieved_gflops()
    facts = model_facts(config, train_images, gflops_per_second=gflops_per_second)
    seconds = facts.seconds_per_epoch or 1.0  # the Model and Train pages' estimate of the same config
    wanted = minutes * 60 / max(seconds, 0.05)
    epochs = int(min(MAX_EPOCHS, max(MIN_EPOCHS, wanted)))
    patience = max(10, epochs // 5)
    config = config.replace(train=dataclasses.replace(config.train, epochs=epochs, early_stopping_patience=patience))
    if config.data.task == "instances":  # the thin boundary class decides whether touching objects come apart
        config = config.replace(train=dataclasses.replace(config.train, class_weights=True))
    reasons = [
        size_reason,
        f"the Balanced model (depth {config.model.depth}, {config.model.base_filters} base filters) suits real images "
        "and trains within minutes on a CPU",
        _epochs_reason(seconds, epochs, wanted, minutes, train_images, patience),
    ]
    if config.train.class_weights and config.data.task == "instances":
        reasons.append("the classes are weighted by their rarity, so the thin boundaries between touching objects "
                       "count as much as the rest (DSB2018 nuclei, 10 minutes: AP@0.5 0.63 on the test images, "
                       "0.53 unweighted)")
    return Suggestion(config, reasons, thinnest)
