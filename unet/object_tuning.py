"""The settings that turn a separate-objects model's probabilities into objects, chosen on the run's own
held-back images instead of fixed (issue #26).

A separate-objects prediction becomes objects in three steps, each with a setting: the foreground is where the
object probability passes `threshold`; seeds are where the interior probability passes `seed_probability`; a
watershed grows the seeds over the foreground, and objects under `min_size` pixels are dropped
(`unet.instances.labels_from_probabilities`). Fixed values (0.5, 0.8, 0) suit one model and not the next: a model
that is unsure of its interiors finds no seeds at 0.8, one that blurs its boundaries merges neighbours at 0.5.
The field's tools choose them after training on the validation images (StarDist's `optimize_thresholds`); so does
this module, on the images the run held back from training (its validation split, never its test set), by the
mean over images of AP at IoU 0.5 (TP / (TP + FP + FN), the DSB2018 and StarDist figure), within a time bound.

The chosen values are kept in the run folder (`objects.json`) and used by `predict`, `evaluate`, the Inference
page (as its sliders' starting values) and the exports' usage text. NumPy and SciPy only.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet.instances import SEED_PROBABILITY, drop_small_objects, labels_from_probabilities, renumber
from unet.object_scores import AP_THRESHOLD, iou_matrix, match_at
from unet.units import count_text

FILE = "objects.json"
DEFAULT_THRESHOLD = 0.5
THRESHOLDS = (0.5, 0.3, 0.4, 0.6, 0.7)  # the default first: it is always measured, whatever the time bound
SEEDS = (SEED_PROBABILITY, 0.5, 0.6, 0.7, 0.9)
SIZE_SHARES = (0.0, 0.1, 0.25, 0.5)  # minimum sizes tried, as shares of the median true object's area
BUDGET_SECONDS = 60.0


@dataclass(frozen=True)
class ObjectSettings:
    """How probabilities become objects; `measured` says what choosing them found (None: the fixed defaults)."""

    threshold: float = DEFAULT_THRESHOLD
    seed_probability: float = SEED_PROBABILITY
    min_size: int = 0
    measured: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def tuned(self) -> bool:
        return self.measured is not None

    def describe(self) -> str:
        """The settings in the user's words, with what choosing them measured."""
        text = (f"foreground probability {self.threshold:g}, interior (seed) probability {self.seed_probability:g}, "
                f"objects of at least {self.min_size} px")
        if self.measured:
            m = self.measured
            text += (f" (chosen on {count_text(int(m['images']), 'held-back image')}: object score AP@0.5 "
                     f"{m['ap50']:.3f}, objects found over found, missed and extra, against {m['default_ap50']:.3f} "
                     f"with the fixed 0.5 / {SEED_PROBABILITY:g} / 0)")
        return text


def read(run_dir: Path) -> ObjectSettings:
    """The run's chosen settings, or the fixed defaults when it has none (or an unreadable file)."""
    path = Path(run_dir) / FILE
    try:
        data = json.loads(path.read_text())
        return ObjectSettings(float(data["threshold"]), float(data["seed_probability"]), int(data["min_size"]),
                              data.get("measured"))
    except (OSError, ValueError, KeyError, TypeError):
        return ObjectSettings()


def write(run_dir: Path, settings: ObjectSettings) -> None:
    from unet import atomic

    atomic.write_json(Path(run_dir) / FILE, asdict(settings))


def _image_ap(truth: np.ndarray, labels: np.ndarray) -> float:
    """AP at IoU 0.5 of one image; an image with no true and no predicted object scores 1."""
    iou, _, _ = iou_matrix(truth, labels)
    value = match_at(iou, AP_THRESHOLD).average_precision
    return 1.0 if value is None else float(value)


def size_candidates(truths: Sequence[np.ndarray]) -> list[int]:
    """Minimum sizes to try: shares of the median true object's area (0 first)."""
    areas = np.concatenate([np.bincount(t.ravel().astype(np.int64))[1:] for t in truths]) if truths else np.zeros(0)
    areas = areas[areas > 0]
    median = float(np.median(areas)) if areas.size else 0.0
    return sorted({int(round(share * median)) for share in SIZE_SHARES})


def tune(pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], budget_seconds: float = BUDGET_SECONDS
         ) -> ObjectSettings:
    """The settings with the best mean AP@0.5 over `pairs` of (foreground probability, interior probability,
    true object ids), each float [H, W] / int [H, W]. Ties keep the earlier candidate (the defaults come first).
    Candidates are tried in the order of `THRESHOLDS` x `SEEDS` until `budget_seconds` have passed; each
    (threshold, seed) is labelled once and scored at every minimum size."""
    started = time.perf_counter()
    truths = [truth for _, _, truth in pairs]
    sizes = size_candidates(truths)
    best: tuple[float, float, float, int] | None = None
    default_ap = float("nan")
    tried = 0
    for threshold, seed in itertools.product(THRESHOLDS, SEEDS):
        if tried and time.perf_counter() - started > budget_seconds:
            break
        labelled = [labels_from_probabilities(fg >= threshold, interior, seed_probability=seed)
                    for fg, interior, _ in pairs]
        for size in sizes:
            scores = [_image_ap(truth, renumber(drop_small_objects(labels, size)) if size else labels)
                      for labels, truth in zip(labelled, truths, strict=True)]
            ap = float(np.mean(scores)) if scores else 0.0
            tried += 1
            if tried == 1:
                default_ap = ap
            if best is None or ap > best[0] + 1e-9:
                best = (ap, threshold, seed, size)
    if best is None:
        return ObjectSettings()
    ap, threshold, seed, size = best
    measured = {"images": len(pairs), "ap50": round(ap, 4), "default_ap50": round(default_ap, 4), "tried": tried,
                "seconds": round(time.perf_counter() - started, 1),
                "grid": {"threshold": list(THRESHOLDS), "seed_probability": list(SEEDS), "min_size": sizes}}
    return ObjectSettings(float(threshold), float(seed), int(size), measured)
