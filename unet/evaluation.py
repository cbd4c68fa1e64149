"""Scoring a run's best model on a labelled dataset: `python -m unet evaluate`, the Runs page and the report.

Prediction goes through `unet.inference.Predictor.from_run`, the code the Inference page runs, so an image is
scored exactly as a user would see it predicted: at its own size, with the run's channels, scale and
normalisation, against its mask as stored (never resized). The best threshold of the sweep can therefore be
handed to the Inference page as it is.

Pixels are counted over the whole dataset before Dice and IoU are computed (pooled, with the training metrics'
rule that a class absent from both masks scores 1), so one small image cannot swing the headline score; the
per-image rows use the same rule per image and sort the worst first.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet import metrics, pipeline, postprocess, runs
from unet.errors import UserError
from unet.inference import Predictor

DEFAULT_THRESHOLD = metrics.BINARY_THRESHOLD
SWEEP = np.round(np.arange(0.05, 0.951, 0.05), 2)  # thresholds tried for binary models: 0.05, 0.10, ..., 0.95
GALLERY_SIZE = 12  # worst images kept as pictures
GALLERY_SIDE = 256  # pixels, the longer side of a gallery picture
TP, FP, FN = metrics.TP, metrics.FP, metrics.FN

Progress = Callable[[float, str], None]


# ----------------------------------------------------------------------------------------------------------------
# Counting (pure NumPy)
# ----------------------------------------------------------------------------------------------------------------


def confusion_matrix(mask: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [K, K] pixel counts, rows the true class, columns the predicted class."""
    pairs = truth.astype(np.int64).ravel() * num_classes + mask.astype(np.int64).ravel()
    return np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def counts_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """Per-class (tp, fp, fn, tn) float64 [K, 4], as `unet.metrics.confusion_counts` lays them out."""
    matrix = matrix.astype(np.float64)
    tp = np.diag(matrix)
    fp, fn = matrix.sum(0) - tp, matrix.sum(1) - tp
    return np.stack([tp, fp, fn, matrix.sum() - tp - fp - fn], axis=1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 1.0 where both are 0 (a class absent from both masks is found perfectly)."""
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1), 1.0)


def dice_iou(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice and IoU [K] from (tp, fp, fn, tn) counts [K, 4]."""
    tp, fp, fn = counts[:, TP], counts[:, FP], counts[:, FN]
    return _ratio(2 * tp, 2 * tp + fp + fn), _ratio(tp, tp + fp + fn)


def sweep_counts(probability: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(tp, fp, fn) float64 [T, 3] of a binary prediction at every threshold, in one pass over the pixels.

    A pixel is foreground at threshold t when its probability is > t (as `Prediction.mask` decides), so the
    number of thresholds it passes is the count of thresholds strictly below it.
    """
    thresholds = np.asarray(thresholds, np.float32)
    passes = np.searchsorted(thresholds, probability.astype(np.float32).ravel(), side="left")
    positive = truth.ravel() > 0
    size = len(thresholds) + 1
    # Pixels passing exactly j thresholds are foreground for thresholds 0..j-1: reverse cumulative sums.
    fg = np.cumsum(np.bincount(passes[positive], minlength=size)[::-1])[::-1][1:]
    bg = np.cumsum(np.bincount(passes[~positive], minlength=size)[::-1])[::-1][1:]
    return np.stack([fg, bg, positive.sum() - fg], axis=1).astype(np.float64)


def best_of_sweep(thresholds: np.ndarray, dice: np.ndarray) -> float:
    """The threshold with the highest Dice; among equals, the one closest to 0.5 (the untuned default)."""
    best = np.flatnonzero(dice >= dice.max() - 1e-12)
    return float(thresholds[best[np.argmin(np.abs(thresholds[best] - DEFAULT_THRESHOLD))]])


# ----------------------------------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryItem:
    """One image of the worst-first gallery: true positives green, false positives red, false negatives blue."""

    image: str
    dice: float
    picture: np.ndarray  # uint8 RGB, longer side at most GALLERY_SIDE


@dataclass
class Evaluation:
    """Everything the evaluation found; `to_dict()` is the JSON of `python -m unet evaluate --json`.

    `counts` [K, 4] are pooled (tp, fp, fn, tn); `confusion` [K, K] has true classes in rows; `per_image` rows are
    sorted worst first; `sweep` (binary models only) has one {"threshold", "dice", "iou"} per threshold.
    """

    run: str
    class_names: list[str]
    threshold: float
    counts: np.ndarray
    confusion: np.ndarray
    per_image: list[dict[str, Any]]
    sweep: list[dict[str, float]] = field(default_factory=list)
    best_threshold: float | None = None
    worst: list[GalleryItem] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    @property
    def images(self) -> int:
        return len(self.per_image)

    @property
    def dice(self) -> float:
        return float(dice_iou(self.counts)[0][1:].mean())

    @property
    def iou(self) -> float:
        return float(dice_iou(self.counts)[1][1:].mean())

    @property
    def pixel_accuracy(self) -> float:
        pixels = self.confusion.sum()
        return float(np.trace(self.confusion) / pixels) if pixels else 1.0

    @property
    def per_class(self) -> list[dict[str, Any]]:
        dice, iou = dice_iou(self.counts)
        return [
            {"class": k, "name": self.class_names[k], "dice": float(dice[k]), "iou": float(iou[k]),
             "true_pixels": int(self.confusion[k].sum()), "predicted_pixels": int(self.confusion[:, k].sum())}
            for k in range(1, self.num_classes)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dice": self.dice,
            "iou": self.iou,
            "pixel_accuracy": self.pixel_accuracy,
            "per_class": self.per_class,
            "images": self.images,
            "threshold": self.threshold,
            "best_threshold": self.best_threshold,
            "sweep": self.sweep,
            "confusion": {"classes": self.class_names, "matrix": self.confusion.tolist()},
            "per_image": self.per_image,
        }


# ----------------------------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------------------------


def _image_row(stem: str, matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    dice, iou = dice_iou(counts_from_matrix(matrix))
    pixels = int(matrix.sum())
    return {
        "image": stem,
        "dice": float(dice[1:].mean()),
        "iou": float(iou[1:].mean()),
        "pixel_accuracy": float(np.trace(matrix) / pixels) if pixels else 1.0,
        "per_class": [{"class": k, "name": names[k], "dice": float(dice[k]), "iou": float(iou[k])}
                      for k in range(1, len(names))],
    }


def evaluate_detailed(
    run_dir: Path,
    data: Path,
    threshold: float = DEFAULT_THRESHOLD,
    gallery: int = GALLERY_SIZE,
    progress: Progress | None = None,
) -> Evaluation:
    """Score the run's best model on every pair of `data`.

    Args:
        run_dir: a run folder with config.json, dataset.json and model.keras.
        data: a stored dataset, or a raw folder/zip (stored in a temporary folder inside the run, then removed).
        threshold: the foreground threshold of a binary model for the headline numbers (argmax for multi-class).
        gallery: how many of the worst images to keep as error pictures.
        progress: called with (fraction done, message) after each image.
    """
    run = runs.Run(Path(run_dir))
    predictor = Predictor.from_run(run.path)
    k, names = predictor.num_classes, list(predictor.class_names)
    confusion = np.zeros((k, k), np.int64)
    sweep = np.zeros((len(SWEEP), 3), np.float64)
    rows: list[dict[str, Any]] = []
    worst: list[tuple[float, int, GalleryItem]] = []  # a heap on -dice: its top is the best kept, dropped first
    with tempfile.TemporaryDirectory(dir=run.path, prefix=".evaluate-") as scratch:
        dataset = pipeline.open_dataset(Path(data), Path(scratch) / "data")
        if dataset.num_classes > k:
            raise UserError(f"the dataset has {dataset.num_classes} classes but the model knows only {k}")
        if not dataset.stems:
            raise UserError(f"the dataset '{dataset.name}' has no image/mask pairs")
        for i, stem in enumerate(dataset.stems):
            image, truth = dataset.read_pair(stem)
            prediction = predictor.predict(image)
            mask = prediction.mask(threshold)
            matrix = confusion_matrix(mask, truth, k)
            confusion += matrix
            if predictor.num_classes == 2:
                sweep += sweep_counts(prediction.probabilities[..., 0], truth, SWEEP)
            row = _image_row(stem, matrix, names)
            rows.append(row)
            if gallery > 0:
                picture = postprocess.shrink(postprocess.error_overlay(image, mask, truth), GALLERY_SIDE)
                entry = (-row["dice"], -i, GalleryItem(stem, row["dice"], picture))
                (heapq.heappush if len(worst) < gallery else heapq.heappushpop)(worst, entry)
            if progress is not None:
                progress((i + 1) / len(dataset.stems), f"scored {i + 1} of {len(dataset.stems)} images")

    result = Evaluation(
        run=run.name, class_names=names, threshold=float(threshold), counts=counts_from_matrix(confusion),
        confusion=confusion, per_image=sorted(rows, key=lambda r: r["dice"]),
        worst=[item for _, _, item in sorted(worst, key=lambda e: (-e[0], -e[1]))],
    )
    if k == 2:
        tp, fp, fn = sweep[:, 0], sweep[:, 1], sweep[:, 2]
        dice, iou = _ratio(2 * tp, 2 * tp + fp + fn), _ratio(tp, tp + fp + fn)
        result.sweep = [{"threshold": float(t), "dice": float(d), "iou": float(j)}
                        for t, d, j in zip(SWEEP, dice, iou, strict=True)]
        result.best_threshold = best_of_sweep(SWEEP, dice)
    return result


def evaluate(run_dir: Path, data: Path, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Dice, IoU and pixel accuracy of the run's best model over every pair of `data` (see `Evaluation.to_dict`).

    Returns:
        {"dice", "iou" (means over foreground classes), "pixel_accuracy",
         "per_class": [{"class": k, "name", "dice", "iou", ...} for foreground k], "images": N,
         "threshold", "best_threshold" (binary models, else None), "sweep", "confusion", "per_image" (worst first)}
    """
    return evaluate_detailed(run_dir, data, threshold=threshold, gallery=0).to_dict()
