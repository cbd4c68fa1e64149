"""What this machine can do: its measured training throughput, and whether a model fits in its memory.

Time estimates come from FLOPs divided by a throughput measured here, once per machine, with a few real
training steps of a small reference U-Net (about 2-4 seconds). The result is kept in the workspace's
`calibration.json`, keyed by the machine (CPU count, platform, TensorFlow version), so a new TensorFlow or a
bigger container measures again. Convolutions on a CPU reach a fraction of peak that depends on layer sizes,
so the estimate is good to roughly a factor of 1.5, not to the second.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet import atomic, workspace
from unet.config import Config, DataConfig, Loss, ModelConfig, Optimizer, TrainConfig
from unet.metrics import make_loss
from unet.model import TRAIN_FLOPS_FACTOR, ModelFacts, build_unet, model_facts
from unet.units import bytes_text

CALIBRATION_FILE = "calibration.json"
REFERENCE = Config(
    data=DataConfig(input_size=128),
    model=ModelConfig(depth=2, base_filters=16, batch_norm=True),
    train=TrainConfig(batch_size=4),
)
WARMUP_STEPS = 1  # the first step traces the graph; it is not timed
MIN_STEPS = 3
MEASURE_SECONDS = 1.0  # timed steps stop after this long (or MAX_STEPS)
MAX_STEPS = 50
SAFE_FRACTION = 0.8  # leave room for the operating system, the web app and the data pipeline

_lock = threading.Lock()  # one measurement at a time in a process (Streamlit runs sessions in threads)


def machine_key() -> str:
    """Identifies the hardware and software a measurement is valid for."""
    import tensorflow as tf

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = len(tf.config.list_physical_devices("GPU"))
    return f"{platform.system()}-{platform.machine()}-cpu{cpus}-gpu{gpus}-tf{tf.__version__}"


def calibration_path() -> Path:
    return workspace.location() / CALIBRATION_FILE


def _keeps_a_workspace() -> bool:
    """Whether there is a workspace to keep the measurement in: the app's, or one named by UNET_WORKSPACE. A
    command run elsewhere (`python -m unet suggest DATA`) measures again instead of creating `./workspace` for one
    number: it leaves the folder it ran in as it was."""
    return bool(os.environ.get("UNET_WORKSPACE")) or workspace.location().is_dir()


def cached_gflops(path: Path | None = None) -> float | None:
    """The stored throughput for this machine, or None if it was never measured (never measures)."""
    entry = _read(path or calibration_path()).get(machine_key())
    return float(entry["gflops"]) if entry else None


def achieved_gflops(path: Path | None = None, refresh: bool = False) -> float:
    """Training throughput of this machine in GFLOP/s (forward FLOPs x 3 per second), measured once and stored."""
    path = path or calibration_path()
    with _lock:
        if not refresh and (cached := cached_gflops(path)) is not None:
            return cached
        gflops, seconds = measure_gflops()
        if path != calibration_path() or _keeps_a_workspace():
            entries = _read(path)
            entries[machine_key()] = {"gflops": gflops, "seconds": round(seconds, 2), "measured_at": time.time()}
            _write(path, entries)
        return gflops


def measure_gflops() -> tuple[float, float]:
    """(GFLOP/s, seconds the measurement took) from real training steps of the reference U-Net."""
    started = time.perf_counter()
    cfg = REFERENCE
    size, batch = cfg.data.input_size, cfg.train.batch_size
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, cfg.data.channels), dtype=np.float32)
    masks = (images > 0.5).astype(np.int32)
    model = build_unet(cfg)
    model.compile(optimizer=Optimizer.ADAM, loss=make_loss(Loss.DICE_CE, cfg.model.num_classes))
    for _ in range(WARMUP_STEPS):
        model.train_on_batch(images, masks)
    steps, timed_start = 0, time.perf_counter()
    while steps < MIN_STEPS or (time.perf_counter() - timed_start < MEASURE_SECONDS and steps < MAX_STEPS):
        model.train_on_batch(images, masks)
        steps += 1
    elapsed = time.perf_counter() - timed_start
    flops = model_facts(cfg).flops * TRAIN_FLOPS_FACTOR * batch * steps
    return flops / elapsed / 1e9, time.perf_counter() - started


def _read(path: Path) -> dict:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write(path: Path, entries: dict) -> None:
    """Write whole (`unet.atomic`), so a second process never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, entries)


# ----------------------------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryCheck:
    """Whether a training fits in RAM. `level` is 'ok', 'warning' (fits, but not with what is free now) or 'error'."""

    level: str
    needed_bytes: int
    total_bytes: int
    available_bytes: int
    message: str

    @property
    def ok(self) -> bool:
        return self.level != "error"


def machine_memory() -> tuple[int, int]:
    """(total, currently available) physical memory in bytes; (0, 0) where the system does not say."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0, 0


def fits_in_memory(facts: ModelFacts, memory: tuple[int, int] | None = None) -> MemoryCheck:
    """Compare a training's memory need (`facts.memory_bytes` for `facts.batch_size`) with this machine's RAM.

    An error when it needs more than 80% of all memory, a warning when more than 80% of what is free now.
    `memory` (total, available) replaces the machine's own figures, for tests.
    """
    total, available = memory or machine_memory()
    needed_bytes = facts.memory_bytes
    need = f"this model needs about {bytes_text(needed_bytes)} for a batch of {facts.batch_size}"
    advice = "lower the batch size, the input size or the base filters"
    if total and needed_bytes > SAFE_FRACTION * total:
        message = f"{need}; this machine has {bytes_text(total)}; {advice}"
        return MemoryCheck("error", needed_bytes, total, available, message)
    if available and needed_bytes > SAFE_FRACTION * available:
        message = f"{need}; only {bytes_text(available)} is free now; close other programs or {advice}"
        return MemoryCheck("warning", needed_bytes, total, available, message)
    return MemoryCheck("ok", needed_bytes, total, available, f"{need}; this machine has {bytes_text(total)}")


def memory_warning(facts: ModelFacts) -> str | None:
    """The plain-language message when a training would not fit comfortably, None when it fits (for the Model page)."""
    check = fits_in_memory(facts)
    return None if check.level == "ok" else check.message


