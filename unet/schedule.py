"""Learning-rate schedules: how the step size changes over a run, as a pure function of its progress.

"cosine" warms up for the first WARMUP of the run (batch norm's statistics are still settling, so full steps
early on are wasted), then follows half a cosine down to FLOOR of the chosen rate. Its progress is the larger of
"steps done / steps planned" and "time spent / time limit", so a run with a time limit still ends on small, careful
steps when the limit, not the epoch count, is what ends it. "plateau" halves the rate when validation loss
stalls (Keras' ReduceLROnPlateau, in `unet.training`); "constant" keeps it.

Measured on ISBI 2012 (Balanced, 5 minutes, 2 cores): see `unet.presets`.
"""

from __future__ import annotations

import math

from unet.config import Schedule

CONSTANT, PLATEAU, COSINE = Schedule.CONSTANT, Schedule.PLATEAU, Schedule.COSINE
WARMUP = 0.05  # share of the run spent warming up
WARMUP_START = 0.1  # the warm-up starts at this fraction of the rate
FLOOR = 0.01  # the cosine ends at this fraction of the rate


def run_progress(step: int, total_steps: int, seconds: float = 0.0, limit_seconds: float = 0.0) -> float:
    """How far through its budget a run is, 0..1: the larger of its step share and (with a limit) its time share."""
    progress = step / total_steps if total_steps > 0 else 0.0
    if limit_seconds > 0:
        progress = max(progress, seconds / limit_seconds)
    return min(max(progress, 0.0), 1.0)


def cosine_rate(base: float, progress: float) -> float:
    """The rate at `progress` (0..1) of a warm-up + cosine schedule that peaks at `base`."""
    if progress < WARMUP:
        return base * (WARMUP_START + (1 - WARMUP_START) * progress / WARMUP)
    decay = (progress - WARMUP) / (1 - WARMUP)
    return base * (FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * min(decay, 1.0))))
