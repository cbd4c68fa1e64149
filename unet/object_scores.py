"""Object-level (instance segmentation) scores, the way the field reports them: DSB2018, StarDist's
`matching_dataset` and Cellpose.

Each image's true and predicted objects (label images, 0 = background, one id per object, ids need not be
consecutive) are matched one to one; a pair may match only when its IoU is at least the threshold. From the
matches at each of the ten IoU thresholds 0.5, 0.55, ..., 0.95:

- tp, fp, fn: matched pairs, unmatched predicted objects, unmatched true objects;
- precision tp / (tp + fp), recall tp / (tp + fn), F1 2 tp / (2 tp + fp + fn);
- "average precision" tp / (tp + fp + fn): the DSB2018 and StarDist figure (StarDist's `accuracy`), not the area
  under a precision-recall curve;
- mean matched IoU (the mean IoU of the matched pairs) and panoptic quality
  sum of matched IoU / (tp + fp / 2 + fn / 2) (Kirillov et al.; StarDist's `panoptic_quality`).

Figures are pooled (counts summed over all images, then divided, as StarDist's `matching_dataset` with
`by_image=False`) and averaged per image (each image's figure, then the mean over the images where it is defined,
as DSB2018 averaged AP per image). Undefined figures (0 / 0) are None, never 0 or NaN.

Matching rule: a pair is a candidate when IoU >= threshold (StarDist's `>=`); among the candidates the matching is
the optimal one to one assignment that first maximises the number of matches, then their total IoU
(`scipy.optimize.linear_sum_assignment`; StarDist solves the same problem). At thresholds of 0.5 and above the
solver never changes the count: two objects of a partition can both reach IoU 0.5 with one object of the other
only when they are equally large and that object is exactly their union (a perfect merge or a perfect split,
IoU exactly 0.5 each), so at most one of the pair can match and every such conflict is an isolated star of two
edges. Below 0.5 a greedy "highest IoU first" matching can lose matches, and the solver is what keeps the count
maximal. The IoU matrix is computed once per image; every threshold is matched from it.

Used by evaluation's `objects` section, the Runs page AP curve, the HTML report and the trainer's validation
object score. NumPy and SciPy only: no TensorFlow, no Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
AP_THRESHOLD = 0.5
DIGITS = 4
AVERAGED = (
    "pooled: each image's tp, fp and fn are summed over all images, then divided (StarDist's matching_dataset "
    "with by_image=False); per_image_mean: each image's own figure, averaged over the images where it is defined "
    "(DSB2018 averaged AP per image); AP = TP / (TP + FP + FN) at one IoU threshold, as in DSB2018 and StarDist; "
    "mean_ap: the mean of the pooled AP over the IoU thresholds. Objects are matched one to one, a pair only when "
    "its IoU >= the threshold, maximising the number of matches, then their total IoU."
)


def _label_array(labels: np.ndarray, what: str) -> np.ndarray:
    """`labels` as an integer array; a float array is accepted only when every value is a whole number."""
    labels = np.asarray(labels)
    if labels.dtype == bool or np.issubdtype(labels.dtype, np.integer):
        return labels
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        return labels.astype(np.int64)
    raise ValueError(f"the {what} labels must be integer object ids (0 = background), not {labels.dtype} values")


def _ids_and_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct ids and each pixel's position among them (np.unique's return_inverse, which sorts
    every pixel by argsort, is several times slower than a plain unique and a binary search)."""
    ids = np.unique(labels)
    return ids, np.searchsorted(ids, labels)


def iou_matrix(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iou [n_true, n_pred] float64, true ids, predicted ids) for the non-zero objects of two label images of one
    shape. One pass over the pixels: np.unique and np.searchsorted give each pixel's object index, then the
    overlapping pixel pairs are counted by np.unique on a combined code, so the cost grows with the pixels and the
    overlapping pairs, not with n_true x n_pred (only the returned matrix has that size)."""
    truth, predicted = _label_array(truth, "true"), _label_array(predicted, "predicted")
    if truth.shape != predicted.shape:
        raise ValueError(f"the true and predicted labels differ in shape: {truth.shape} and {predicted.shape}")
    true_ids, true_index = _ids_and_index(truth.ravel())
    pred_ids, pred_index = _ids_and_index(predicted.ravel())
    true_area = np.bincount(true_index, minlength=len(true_ids))
    pred_area = np.bincount(pred_index, minlength=len(pred_ids))
    true_keep, pred_keep = true_ids != 0, pred_ids != 0
    both = true_keep[true_index] & pred_keep[pred_index]
    code = true_index[both].astype(np.int64) * len(pred_ids) + pred_index[both]
    pairs, overlap = np.unique(code, return_counts=True)
    rows, cols = np.divmod(pairs, len(pred_ids))
    union = true_area[rows] + pred_area[cols] - overlap
    # Positions in the background-free matrix: each kept id's rank among the kept ids.
    true_rank = np.cumsum(true_keep) - 1
    pred_rank = np.cumsum(pred_keep) - 1
    iou = np.zeros((int(true_keep.sum()), int(pred_keep.sum())), np.float64)
    iou[true_rank[rows], pred_rank[cols]] = overlap / union
    return iou, true_ids[true_keep], pred_ids[pred_keep]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class ImageMatch:
    """One image (or a pool of images) at one IoU threshold: matched pairs (tp), unmatched predicted objects (fp),
    unmatched true objects (fn) and the summed IoU of the matched pairs. Every ratio is None when undefined."""

    tp: int
    fp: int
    fn: int
    matched_iou_sum: float = 0.0

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def average_precision(self) -> float | None:
        """tp / (tp + fp + fn): DSB2018's and StarDist's "AP" at one threshold."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def mean_matched_iou(self) -> float | None:
        return _ratio(self.matched_iou_sum, self.tp)

    @property
    def panoptic_quality(self) -> float | None:
        """sum of matched IoU / (tp + fp / 2 + fn / 2): segmentation quality x recognition quality."""
        return _ratio(self.matched_iou_sum, self.tp + self.fp / 2 + self.fn / 2)

    def __add__(self, other: ImageMatch) -> ImageMatch:
        return ImageMatch(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                          self.matched_iou_sum + other.matched_iou_sum)


def match_at(iou: np.ndarray, threshold: float) -> ImageMatch:
    """The optimal one to one matching of an IoU matrix [n_true, n_pred] at IoU >= `threshold` (0 < threshold
    <= 1): the most matches, and among those the largest total IoU.

    A candidate pair whose row and column have no other candidate is matched directly (at 0.5 and above nearly all
    of them are); only the rest, the conflicts, go to `scipy.optimize.linear_sum_assignment`, with weight
    1 + IoU / (2 k) per candidate (k = the smaller side), so one more match always outweighs any gain in IoU.
    """
    iou = np.asarray(iou, np.float64)
    if iou.ndim != 2:
        raise ValueError(f"the IoU matrix must be [n_true, n_pred], not of shape {iou.shape}")
    if not 0 < threshold <= 1:
        raise ValueError(f"an IoU threshold must lie in (0, 1], not {threshold}")
    n_true, n_pred = iou.shape
    candidate = iou >= threshold
    rows, cols = np.nonzero(candidate)
    if rows.size == 0:
        return ImageMatch(0, n_pred, n_true, 0.0)
    row_count = np.bincount(rows, minlength=n_true)
    col_count = np.bincount(cols, minlength=n_pred)
    lone = (row_count[rows] == 1) & (col_count[cols] == 1)
    tp = int(lone.sum())
    matched = float(iou[rows[lone], cols[lone]].sum())
    if not lone.all():
        sub_rows = np.unique(rows[~lone])
        sub_cols = np.unique(cols[~lone])
        sub_iou = iou[np.ix_(sub_rows, sub_cols)]
        sub_candidate = candidate[np.ix_(sub_rows, sub_cols)]
        k = min(sub_iou.shape)
        weight = np.where(sub_candidate, 1.0 + sub_iou / (2 * k), 0.0)
        from scipy.optimize import linear_sum_assignment

        r, c = linear_sum_assignment(weight, maximize=True)
        ok = sub_candidate[r, c]
        tp += int(ok.sum())
        matched += float(sub_iou[r[ok], c[ok]].sum())
    return ImageMatch(tp, n_pred - tp, n_true - tp, matched)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), DIGITS)


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


class ObjectScores:
    """Accumulates images; add(truth, predicted, name="") per image; to_dict() for JSON.

    Each image keeps only its object counts and one ImageMatch per threshold (plus IoU 0.5, always matched for
    the AP@0.5 figures), never its pixels.
    """

    def __init__(self, thresholds: Sequence[float] = THRESHOLDS) -> None:
        thresholds = tuple(float(t) for t in thresholds)
        if not thresholds:
            raise ValueError("at least one IoU threshold is needed")
        for t in thresholds:
            if not 0 < t <= 1:
                raise ValueError(f"an IoU threshold must lie in (0, 1], not {t}")
        self.thresholds = thresholds
        self._matched = tuple(dict.fromkeys((*thresholds, AP_THRESHOLD)))
        self._names: list[str] = []
        self._counts: list[tuple[int, int]] = []
        self._matches: list[dict[float, ImageMatch]] = []

    def __len__(self) -> int:
        return len(self._names)

    def add(self, truth: np.ndarray, predicted: np.ndarray, name: str = "") -> None:
        """Match one image's objects at every threshold (an empty name becomes "image N")."""
        iou, true_ids, pred_ids = iou_matrix(truth, predicted)
        self._names.append(name or f"image {len(self._names) + 1}")
        self._counts.append((len(true_ids), len(pred_ids)))
        self._matches.append({t: match_at(iou, t) for t in self._matched})

    def pooled(self, threshold: float) -> ImageMatch:
        """Counts and matched IoU summed over every image at one of the matched thresholds."""
        total = ImageMatch(0, 0, 0, 0.0)
        for matches in self._matches:
            total = total + matches[threshold]
        return total

    def to_dict(self) -> dict[str, Any]:
        pooled_rows, mean_rows, pooled_ap = [], [], []
        for t in self.thresholds:
            p = self.pooled(t)
            pooled_ap.append(p.average_precision)
            pooled_rows.append({
                "threshold": t, "tp": p.tp, "fp": p.fp, "fn": p.fn, "precision": _round(p.precision),
                "recall": _round(p.recall), "f1": _round(p.f1), "average_precision": _round(p.average_precision),
                "mean_matched_iou": _round(p.mean_matched_iou), "panoptic_quality": _round(p.panoptic_quality),
            })
            per_image = [m[t] for m in self._matches]
            mean_rows.append({"threshold": t, **{
                key: _round(_mean_defined([getattr(m, key) for m in per_image]))
                for key in ("precision", "recall", "f1", "average_precision", "panoptic_quality")
            }})
        at50 = self.pooled(AP_THRESHOLD)
        rows = []
        for name, (n_true, n_pred), matches in zip(self._names, self._counts, self._matches, strict=True):
            m = matches[AP_THRESHOLD]
            rows.append({"image": name, "true_objects": n_true, "predicted_objects": n_pred, "tp50": m.tp,
                         "fp50": m.fp, "fn50": m.fn, "ap50": _round(m.average_precision), "f1_50": _round(m.f1)})
        return {
            "thresholds": list(self.thresholds),
            "images": len(self._names),
            "true_objects": sum(c[0] for c in self._counts),
            "predicted_objects": sum(c[1] for c in self._counts),
            "pooled": pooled_rows,
            "per_image_mean": mean_rows,
            "ap50": _round(at50.average_precision),
            "f1_50": _round(at50.f1),
            "mean_ap": _round(_mean_defined(pooled_ap)),
            "per_image": rows,
            "averaged": AVERAGED,
        }


def _figure(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def summary_sentence(scores: dict[str, Any]) -> str:
    """One sentence from `ObjectScores.to_dict()`, e.g. "AP@0.5 0.81 (pooled over 12 images: 240 of 300 true
    objects found, 25 extra); F1@0.5 0.88; mean AP over IoU 0.5-0.95 0.52"."""
    images = scores["images"]
    noun = "image" if images == 1 else "images"
    if not scores["true_objects"] and not scores["predicted_objects"]:
        return f"No objects to score: neither the truth nor the prediction has any in {images} {noun}."
    found = sum(row["tp50"] for row in scores["per_image"])
    extra = sum(row["fp50"] for row in scores["per_image"])
    thresholds = scores["thresholds"]
    low, high = min(thresholds), max(thresholds)
    span = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    return (f"AP@0.5 {_figure(scores['ap50'])} (pooled over {images} {noun}: {found} of {scores['true_objects']} "
            f"true objects found, {extra} extra); F1@0.5 {_figure(scores['f1_50'])}; "
            f"mean AP over IoU {span} {_figure(scores['mean_ap'])}")
