"""The dataset's intensity rule: how stored pixel values become the network's input, decided once at ingest.

A stored dataset keeps its images' own values (8-bit, 16-bit or float; see docs/CONTRACTS.md). The rule that
scales them is one per dataset, per channel, recorded in dataset.json and copied into each run, so training,
validation, evaluation, inference and exports all apply the same numbers:
- "fixed": value / 255 for 8-bit photos (what every 8-bit tool does), or value / (2**bits - 1) for runs recorded
  before the rule was kept.
- "percentile": the dataset's 1st and 99.8th percentiles of each channel become 0 and 1 (the CSBDeep/StarDist
  default for microscopy, where a 16-bit camera fills only part of its range). Values outside are not clipped, so
  the order of intensities survives to the network (the brightest 0.2% stay brighter than the rest).
Never per image: a dim image must stay dimmer than a bright one.

NumPy only; the TF twin of `to_unit` is `unet.preprocess.scale_intensity`, which takes `low`/`high`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FIXED = "fixed"
PERCENTILE = "percentile"
PERCENTILES = (1.0, 99.8)
SAMPLES_PER_IMAGE = 200_000  # pixels per channel drawn from each image for the percentiles: exact enough, fast
_MIN_RANGE = 1e-6  # a constant channel still maps to a finite range


@dataclass(frozen=True)
class Intensity:
    """Per channel, the stored value that becomes 0 (`low`) and the one that becomes 1 (`high`)."""

    kind: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    percentiles: tuple[float, float] | None = None

    @classmethod
    def fixed(cls, channels: int, top: float = 255.0) -> Intensity:
        """0..`top` to 0..1 in every channel: 8-bit photos (top 255) or a fixed bit depth."""
        return cls(FIXED, (0.0,) * channels, (float(top),) * channels)

    @classmethod
    def from_samples(cls, samples: Sequence[np.ndarray], percentiles: tuple[float, float] = PERCENTILES
                     ) -> Intensity:
        """The percentile rule from pixel samples of every image ([N, C] arrays, one per image)."""
        values = np.concatenate([np.asarray(s, np.float64).reshape(-1, s.shape[-1]) for s in samples])
        low = np.percentile(values, percentiles[0], axis=0)
        high = np.percentile(values, percentiles[1], axis=0)
        flat = high - low < _MIN_RANGE  # nearly constant channel: its full range, else one unit, keeps it finite
        low = np.where(flat, values.min(axis=0), low)
        high = np.where(flat, values.max(axis=0), high)
        high = np.where(high - low < _MIN_RANGE, low + 1.0, high)
        return cls(PERCENTILE, tuple(float(v) for v in low), tuple(float(v) for v in high),
                   (float(percentiles[0]), float(percentiles[1])))

    @property
    def channels(self) -> int:
        return len(self.low)

    @property
    def is_eight_bit(self) -> bool:
        """value / 255 in every channel: the plain 8-bit rule, which the pipelines take a faster path for."""
        return self.kind == FIXED and all(v == 0.0 for v in self.low) and all(v == 255.0 for v in self.high)

    def as_scale(self) -> tuple[list[float], list[float]] | None:
        """The rule for `unet.preprocess` (`Scale`): None for the 8-bit rule, else (low, high) per channel."""
        return None if self.is_eight_bit else (list(self.low), list(self.high))

    def to_unit(self, image: np.ndarray) -> np.ndarray:
        """float32 [H, W, C] on the network's scale, from stored values [H, W] or [H, W, C]."""
        pixels = np.asarray(image, np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        return (pixels - low) / (high - low)

    def to_display(self, image: np.ndarray) -> np.ndarray:
        """uint8 of the same shape, for pictures: the rule's 0..1 shown as 0..255 (clipped)."""
        unit = self.to_unit(image)
        shown = np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
        return shown[:, :, 0] if np.asarray(image).ndim == 2 else shown

    def record(self) -> dict[str, Any]:
        """What dataset.json and a run's dataset.json keep."""
        record: dict[str, Any] = {"kind": self.kind, "low": list(self.low), "high": list(self.high)}
        if self.percentiles:
            record["percentiles"] = list(self.percentiles)
        return record

    @classmethod
    def from_record(cls, record: Any, channels: int, source_bits: int | None = None) -> Intensity:
        """The recorded rule; for data stored before it was kept, the fixed rule those runs trained with.

        Those datasets stored 8-bit images already scaled from `source_bits`, and their runs scaled new images
        by the same depth, so the legacy rule is value / (2**source_bits - 1) on the user's raw values.
        """
        if isinstance(record, dict) and record.get("kind") in (FIXED, PERCENTILE):
            try:
                low = tuple(float(v) for v in record["low"])
                high = tuple(float(v) for v in record["high"])
                found = record.get("percentiles")
                percentiles = (float(found[0]), float(found[1])) if found else None
                if len(low) == len(high) == channels:
                    return cls(record["kind"], low, high, percentiles)
            except (KeyError, TypeError, ValueError, IndexError):
                pass
        bits = int(source_bits or 8)
        return cls.fixed(channels, float(2**bits - 1))

    def describe(self) -> str:
        """The rule in plain words, for the dataset check, the run's report and an export's instructions."""
        if self.kind == FIXED:
            top = self.high[0]
            return f"each value divided by {top:g} (0..{top:g} becomes 0..1)"
        p_low, p_high = self.percentiles or PERCENTILES
        ranges = ", ".join(f"{lo:.4g}..{hi:.4g}" for lo, hi in zip(self.low, self.high, strict=True))
        per = "per channel " if self.channels > 1 else ""
        return (f"the dataset's {_ordinal(p_low)} to {_ordinal(p_high)} percentile {per}becomes 0..1 ({ranges}), "
                "the same numbers for every image; values outside are kept, not clipped")


def _ordinal(value: float) -> str:
    """1 -> '1st', 2 -> '2nd', 99.8 -> '99.8th'."""
    text = f"{value:g}"
    if "." in text or int(value) % 100 in (11, 12, 13):
        return f"{text}th"
    return text + {1: "st", 2: "nd", 3: "rd"}.get(int(value) % 10, "th")


def sample_pixels(image: np.ndarray, limit: int = SAMPLES_PER_IMAGE) -> np.ndarray:
    """[N, C] pixels drawn evenly from an image ([H, W] or [H, W, C]), at most `limit` of them."""
    pixels = np.asarray(image)
    flat = pixels.reshape(-1, 1) if pixels.ndim == 2 else pixels.reshape(-1, pixels.shape[-1])
    step = max(1, flat.shape[0] // limit)
    return flat[::step]
