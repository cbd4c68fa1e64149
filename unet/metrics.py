"""Dice, IoU, pixel accuracy and the training losses, per class.

Pure functions first (class indices -> confusion counts -> scores), then thin Keras objects over them, as in
segmentation_models' `base/functional.py`: the metric during training, the evaluation command and the tests use
the same Dice. Everything here is TensorFlow, XLA-compatible, and takes NumPy arrays as well as tensors.

Shapes: `y_true` is an int mask [B, H, W, 1] of class indices; `y_pred` is the model's output, sigmoid
[B, H, W, 1] for two classes, softmax [B, H, W, K] otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unet.config import LOSSES

BINARY_THRESHOLD = 0.5
SMOOTH = 1.0  # keeps the soft Dice defined (and near 1) when a class is absent from both masks; tiny next to a batch
FOCAL_GAMMA = 2.0
EPSILON = 1e-7  # keeps log() finite
TP, FP, FN, TN = range(4)  # columns of the confusion counts
PACKAGE = "unet"  # the registration package, so saved models name our objects as unet>DiceScore etc.


# ----------------------------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------------------------


def predicted_classes(y_pred: Any, num_classes: int) -> tf.Tensor:
    """Class indices [..., 1] int32 from probabilities: sigmoid > 0.5 for two classes, argmax otherwise."""
    y_pred = tf.convert_to_tensor(y_pred)
    if num_classes == 2:
        return tf.cast(y_pred > BINARY_THRESHOLD, tf.int32)
    return tf.cast(tf.argmax(y_pred, axis=-1), tf.int32)[..., None]


def confusion_counts(y_true: Any, y_pred: Any, num_classes: int) -> tf.Tensor:
    """Per-class (tp, fp, fn, tn) pixel counts, float64 [K, 4], from two class-index tensors of one shape.

    float64 keeps the counts exact past 2**24 pixels (float32 would not), and accumulates across an epoch.
    Pixels whose true class is outside 0..K-1 (the "not labelled" value, 255) are not counted.
    """
    y_true = tf.reshape(tf.cast(y_true, tf.int32), [-1])
    y_pred = tf.reshape(tf.cast(y_pred, tf.int32), [-1])
    labelled = y_true < num_classes
    pairs = tf.where(labelled, y_true * num_classes + y_pred, tf.zeros_like(y_true))
    ones = tf.cast(labelled, tf.float64)
    matrix = tf.reshape(tf.math.unsorted_segment_sum(ones, pairs, num_classes * num_classes), [num_classes] * 2)
    tp = tf.linalg.diag_part(matrix)
    fp = tf.reduce_sum(matrix, axis=0) - tp  # predicted k, truly something else
    fn = tf.reduce_sum(matrix, axis=1) - tp  # truly k, predicted something else
    tn = tf.reduce_sum(matrix) - tp - fp - fn
    return tf.stack([tp, fp, fn, tn], axis=1)


def _ratio(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
    """numerator / denominator, NaN where the denominator is zero: a class absent from both masks is not scored."""
    nan = tf.fill(tf.shape(numerator), tf.constant(float("nan"), numerator.dtype))
    return tf.where(denominator > 0, numerator / tf.maximum(denominator, 1), nan)


def dice_from_counts(counts: Any) -> tf.Tensor:
    """Per-class Dice = 2tp / (2tp + fp + fn), [K]."""
    counts = tf.convert_to_tensor(counts, tf.float64)
    tp, fp, fn = counts[:, TP], counts[:, FP], counts[:, FN]
    return _ratio(2 * tp, 2 * tp + fp + fn)


def iou_from_counts(counts: Any) -> tf.Tensor:
    """Per-class IoU (Jaccard) = tp / (tp + fp + fn), [K]."""
    counts = tf.convert_to_tensor(counts, tf.float64)
    tp, fp, fn = counts[:, TP], counts[:, FP], counts[:, FN]
    return _ratio(tp, tp + fp + fn)


def pixel_accuracy(counts: Any) -> tf.Tensor:
    """The fraction of pixels whose class is right: sum(tp) / pixels."""
    counts = tf.convert_to_tensor(counts, tf.float64)
    pixels = tf.reduce_sum(counts[0])  # every row sums to the pixel count
    return _ratio(tf.reduce_sum(counts[:, TP]), pixels)


def foreground_mean(per_class: tf.Tensor, first: int = 1) -> tf.Tensor:
    """The mean over the scored classes `first`..K-1 (NaN ones, absent from truth and prediction, left out):
    1 skips the background (class 0), 0 scores every class (a dataset without background, such as street scenes
    whose value 0 is sky).

    1.0 when no foreground class is scored (nothing to find, nothing found), so that early stopping and the best
    model's choice always compare numbers; `headline` below is the same rule in NumPy.
    """
    foreground = per_class[first:]
    scored = tf.math.is_finite(foreground)
    count = tf.reduce_sum(tf.cast(scored, foreground.dtype))
    total = tf.reduce_sum(tf.where(scored, foreground, tf.zeros_like(foreground)))
    return tf.where(count > 0, total / tf.maximum(count, 1), tf.ones_like(total))


# ----------------------------------------------------------------------------------------------------------------
# The same scores in NumPy, for evaluation, the Inference page and the report (one definition, two forms)
# ----------------------------------------------------------------------------------------------------------------


def confusion_matrix(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [K, K] pixel counts, rows the true class, columns the predicted class; "not labelled" truth
    pixels (any value outside 0..K-1, i.e. 255) are left out."""
    truth, predicted = truth.astype(np.int64).ravel(), predicted.astype(np.int64).ravel()
    labelled = truth < num_classes
    pairs = truth[labelled] * num_classes + predicted[labelled]
    return np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def counts_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """Per-class (tp, fp, fn, tn) float64 [K, 4], laid out as `confusion_counts` does."""
    matrix = matrix.astype(np.float64)
    tp = np.diag(matrix)
    fp, fn = matrix.sum(0) - tp, matrix.sum(1) - tp
    return np.stack([tp, fp, fn, matrix.sum() - tp - fp - fn], axis=1)


def np_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (the class is not scored)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.full_like(numerator, np.nan), where=denominator > 0)


def dice_iou(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice and IoU [K] from (tp, fp, fn, tn) [K, 4]; NaN for a class absent from truth and prediction.

    A class absent from the truth but predicted scores 0: every pixel given to it is wrong.
    """
    tp, fp, fn = counts[:, TP], counts[:, FP], counts[:, FN]
    return np_ratio(2 * tp, 2 * tp + fp + fn), np_ratio(tp, tp + fp + fn)


def headline(per_class: np.ndarray, first: int = 1) -> float | None:
    """The headline score: the mean over the scored classes `first`..K-1 (1: the background left out; 0: a
    dataset without background), None when none is scored."""
    foreground = np.asarray(per_class, np.float64)[first:]
    scored = foreground[np.isfinite(foreground)]
    return float(scored.mean()) if scored.size else None


def mean_scored(per_class: np.ndarray) -> float | None:
    """The mean over every scored class, background included."""
    values = np.asarray(per_class, np.float64)
    scored = values[np.isfinite(values)]
    return float(scored.mean()) if scored.size else None


def baseline_matrix(matrix: np.ndarray) -> np.ndarray:
    """The confusion matrix of the trivial model that paints every pixel its images' most common true class."""
    truth = matrix.sum(axis=1)
    baseline = np.zeros_like(matrix)
    baseline[:, int(np.argmax(truth))] = truth
    return baseline


NEAR_BASELINE_SKILL = 0.25  # a model closing less than this share of the gap from the baseline to perfect
NEAR_BASELINE_MARGIN = 0.02  # or whose headline is not this much above the baseline's headline


def near_baseline(headline_dice: float | None, baseline_dice: float | None, skill_value: float | None) -> bool:
    """True when a model is barely better than painting every pixel the majority class: its headline is within
    NEAR_BASELINE_MARGIN of the baseline's (a 0.869 cell Dice beside the 0.876 of "all cell" on ISBI), or it closes
    less than NEAR_BASELINE_SKILL of the gap over all classes."""
    if headline_dice is not None and baseline_dice is not None and headline_dice < baseline_dice + NEAR_BASELINE_MARGIN:
        return True
    return skill_value is not None and skill_value < NEAR_BASELINE_SKILL


def skill(model_mean: float | None, baseline_mean: float | None) -> float | None:
    """How much of the gap between the trivial baseline and a perfect score the model closes (1 = perfect, 0 = none).

    Computed on the mean over all scored classes, background included, so that a model painting everything the
    majority class shows its zero there even when the majority class is the foreground (ISBI's cells).
    """
    if model_mean is None or baseline_mean is None:
        return None
    if baseline_mean >= 1.0:
        return 1.0 if model_mean >= 1.0 else 0.0
    return float((model_mean - baseline_mean) / (1.0 - baseline_mean))


# ----------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------

LOSS_NAMES = LOSSES  # config.Loss, in the pages' order: one list of losses


def _probabilities(y_pred: tf.Tensor, num_classes: int) -> tf.Tensor:
    """[B, H, W, K] probabilities for every class, also for the single sigmoid channel of a binary model."""
    y_pred = tf.cast(y_pred, tf.float32)
    if num_classes == 2:
        return tf.concat([1 - y_pred, y_pred], axis=-1)
    return y_pred


def _one_hot(y_true: tf.Tensor, num_classes: int) -> tf.Tensor:
    """One-hot truth [B, H, W, K]; a "not labelled" pixel (255) is all zeros, which every term below skips."""
    return tf.one_hot(tf.cast(y_true[..., 0], tf.int32), num_classes, dtype=tf.float32)


def _labelled(truth: tf.Tensor) -> tf.Tensor:
    """1 where the pixel has a class, 0 where it is "not labelled" (its one-hot row is zeros)."""
    return tf.reduce_sum(truth, axis=-1)


def _pixel_weights(truth: tf.Tensor, class_weights: tf.Tensor | None) -> tf.Tensor:
    """Per-pixel weights; 0 for "not labelled" pixels, so they teach nothing."""
    if class_weights is None:
        return _labelled(truth)
    return tf.reduce_sum(truth * class_weights, axis=-1)


def cross_entropy(truth: tf.Tensor, probs: tf.Tensor, class_weights: tf.Tensor | None = None) -> tf.Tensor:
    """Mean (optionally class-weighted) cross-entropy over pixels; truth one-hot and probs [B, H, W, K]."""
    per_pixel = -tf.reduce_sum(truth * tf.math.log(tf.maximum(probs, EPSILON)), axis=-1)
    weights = _pixel_weights(truth, class_weights)
    return tf.reduce_sum(per_pixel * weights) / tf.maximum(tf.reduce_sum(weights), EPSILON)


def focal(truth: tf.Tensor, probs: tf.Tensor, class_weights: tf.Tensor | None = None) -> tf.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true)**gamma, so easy pixels count less."""
    p_true = tf.clip_by_value(tf.reduce_sum(truth * probs, axis=-1), EPSILON, 1.0)
    per_pixel = -((1 - p_true) ** FOCAL_GAMMA) * tf.math.log(p_true)
    weights = _pixel_weights(truth, class_weights)
    return tf.reduce_sum(per_pixel * weights) / tf.maximum(tf.reduce_sum(weights), EPSILON)


def soft_dice(truth: tf.Tensor, probs: tf.Tensor, class_weights: tf.Tensor | None = None, first: int = 1
              ) -> tf.Tensor:
    """1 - soft Dice over the whole batch, averaged over classes `first`..K-1 (weighted if weights are given).

    Summing over the batch, not per image, keeps it defined when an image has no foreground.
    """
    axes = [0, 1, 2]
    probs = probs * _labelled(truth)[..., None]  # "not labelled" pixels neither count for nor against a class
    intersection = tf.reduce_sum(truth * probs, axis=axes)
    total = tf.reduce_sum(truth, axis=axes) + tf.reduce_sum(probs, axis=axes)
    dice = (2 * intersection + SMOOTH) / (total + SMOOTH)
    weights = tf.ones_like(dice[first:]) if class_weights is None else class_weights[first:]
    return 1 - tf.reduce_sum(dice[first:] * weights) / tf.reduce_sum(weights)


_LOSS_TERMS = {
    "ce": (cross_entropy,),
    "dice": (soft_dice,),
    "dice_ce": (soft_dice, cross_entropy),
    "focal": (focal,),
}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SegmentationLoss(keras.losses.Loss):
    """A segmentation loss on sparse masks: cross-entropy, soft Dice, their sum, or focal.

    Args:
        kind: one of `LOSS_NAMES`.
        num_classes: K, counting the background; 2 means a single sigmoid output.
        class_weights: optional K weights; a pixel of class k counts `class_weights[k]` times.
        first_scored: the first class the Dice term averages over: 1 (class 0 is background) or 0 (no
            background: every class counts).

    Input shapes: y_true int [B, H, W, 1]; y_pred [B, H, W, 1] (K == 2) or [B, H, W, K]. Returns a scalar.

    Example:
        >>> model.compile(optimizer="adam", loss=SegmentationLoss("dice_ce", num_classes=2))
    """

    def __init__(
        self,
        kind: str = "dice_ce",
        num_classes: int = 2,
        class_weights: Sequence[float] | None = None,
        name: str | None = None,
        first_scored: int = 1,
        **kwargs: Any,
    ) -> None:
        if kind not in _LOSS_TERMS:
            raise ValueError(f"unknown loss '{kind}' (known: {', '.join(LOSS_NAMES)})")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"{len(class_weights)} class weights given for {num_classes} classes")
        super().__init__(name=name or kind, **kwargs)
        self.kind = kind
        self.num_classes = num_classes
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.first_scored = int(first_scored)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        truth = _one_hot(y_true, self.num_classes)
        probs = _probabilities(y_pred, self.num_classes)
        weights = None if self.class_weights is None else tf.constant(self.class_weights, tf.float32)
        first = self.first_scored
        return tf.add_n([term(truth, probs, weights, first) if term is soft_dice else term(truth, probs, weights)
                         for term in _LOSS_TERMS[self.kind]])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(kind=self.kind, num_classes=self.num_classes, class_weights=self.class_weights,
                      first_scored=self.first_scored)
        return config


def make_loss(name: str, num_classes: int, class_weights: Sequence[float] | None = None,
              first_scored: int = 1) -> SegmentationLoss:
    """The loss a `TrainConfig.loss` names ('ce', 'dice', 'dice_ce' or 'focal'); `first_scored` 0 for a dataset
    without background."""
    return SegmentationLoss(name, num_classes, class_weights, first_scored=first_scored)


# ----------------------------------------------------------------------------------------------------------------
# Metrics that accumulate over an epoch
# ----------------------------------------------------------------------------------------------------------------


class _ConfusionMetric(keras.metrics.Metric):
    """Accumulates per-class (tp, fp, fn, tn) over every batch since the last reset, then scores them once.

    So an epoch's Dice is the Dice of the whole epoch's pixels, not a mean of per-batch Dice values.
    """

    def __init__(self, num_classes: int = 2, class_index: int | None = None, name: str = "", first: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if class_index is not None and not 0 <= class_index < num_classes:
            raise ValueError(f"class_index {class_index} is not one of the {num_classes} classes")
        self.num_classes = num_classes
        self.class_index = class_index
        self.first = int(first)  # the mean's first class: 1 leaves the background out, 0 scores every class
        self.counts = self.add_variable(shape=(num_classes, 4), initializer="zeros", dtype="float64", name="counts")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        predicted = predicted_classes(y_pred, self.num_classes)
        self.counts.assign_add(confusion_counts(y_true, predicted, self.num_classes))

    def score(self, counts: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def result(self) -> tf.Tensor:
        return tf.cast(self.score(self.counts), tf.float32)

    def reset_state(self) -> None:
        self.counts.assign(tf.zeros_like(self.counts))

    def get_config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "class_index": self.class_index, "name": self.name,
                "first": self.first}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiceScore(_ConfusionMetric):
    """Dice (F1) of the predicted classes, over a whole epoch.

    Args:
        num_classes: K, counting the background.
        class_index: one class's Dice; None for the mean over foreground classes 1..K-1.
        name: the key in the training history.

    Input shapes: y_true int [B, H, W, 1]; y_pred the model output. A class absent from both masks scores 1.

    Example:
        >>> metrics = [DiceScore(3), DiceScore(3, class_index=1, name="dice_1")]
    """

    def __init__(self, num_classes: int = 2, class_index: int | None = None, name: str = "dice", first: int = 1,
                 **kwargs: Any):
        super().__init__(num_classes, class_index, name, first, **kwargs)

    def score(self, counts: tf.Tensor) -> tf.Tensor:
        per_class = dice_from_counts(counts)
        return foreground_mean(per_class, self.first) if self.class_index is None else per_class[self.class_index]


@keras.saving.register_keras_serializable(package=PACKAGE)
class IoUScore(_ConfusionMetric):
    """Intersection over union (Jaccard) of the predicted classes, over a whole epoch. Arguments as `DiceScore`."""

    def __init__(self, num_classes: int = 2, class_index: int | None = None, name: str = "iou", first: int = 1,
                 **kwargs: Any):
        super().__init__(num_classes, class_index, name, first, **kwargs)

    def score(self, counts: tf.Tensor) -> tf.Tensor:
        per_class = iou_from_counts(counts)
        return foreground_mean(per_class, self.first) if self.class_index is None else per_class[self.class_index]


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelAccuracy(_ConfusionMetric):
    """The fraction of pixels whose predicted class is right, over a whole epoch."""

    def __init__(self, num_classes: int = 2, name: str = "pixel_accuracy", **kwargs: Any):
        kwargs.pop("class_index", None)
        kwargs.pop("first", None)
        super().__init__(num_classes, None, name, **kwargs)

    def score(self, counts: tf.Tensor) -> tf.Tensor:
        return pixel_accuracy(counts)


def segmentation_metrics(num_classes: int, per_class: bool = True, first_scored: int = 1
                         ) -> list[keras.metrics.Metric]:
    """The metrics the trainer compiles: `dice` and `iou` (mean over classes `first_scored`..K-1), `pixel_accuracy`,
    and with `per_class` also `dice_k` and `iou_k` for every class k (history.jsonl's per-class values)."""
    metrics: list[keras.metrics.Metric] = [DiceScore(num_classes, first=first_scored),
                                           IoUScore(num_classes, first=first_scored), PixelAccuracy(num_classes)]
    if per_class:
        for k in range(num_classes):
            metrics += [DiceScore(num_classes, k, name=f"dice_{k}"), IoUScore(num_classes, k, name=f"iou_{k}")]
    return metrics
