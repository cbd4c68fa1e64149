"""`python -m unet bench`: how close training on this machine runs to its limit, and how fast the product feels.

Every figure comes from one run, so ratios hold on a noisy machine: the practical float32 limit (a large
matmul), the default model trained with a bare `model.fit` on in-memory tensors (the ceiling for that model),
the same model trained through the product's own path (`unet.training.train`: stored dataset on disk,
augmentation, metrics, callbacks, checkpoints, samples, history), previews, prediction, and the trainer's peak
memory on a dataset ten times the demo data. With `quality=True` it also trains the Balanced preset on the
ISBI 2012 membrane images for five minutes and reports the Dice of the cell class on the whole validation images,
scored by `unet.evaluation` as the Runs page scores a run, and trains on the DSB 2018 nuclei sample ten minutes
with the instance task and ten without it, reporting the nuclei found one by one on 12 test images (issue #15).
It also measures 16-bit 2-channel input against 8-bit 1-channel on the same images, and the DSB ingest (#14).
The full benchmark also measures how fast a small model trains while ten sessions use the app, against
the same trainer idle (`python -m unet.ui.load_probe`, run in its own process: this module never imports
Streamlit).

Throughput is measured on steady-state epochs: the first epoch (graph tracing, a few seconds) is left out, and
each figure is the median over the remaining epochs. An epoch's wall time runs from one epoch's end (after its
checkpoints, samples and history line) to the next, so everything the trainer does per epoch is in it.

The default model is `Config()`'s (depth 3, 16 base filters, 128 x 128 inputs resized whole, batch 8), which is
also the Quick demo preset's model. This is a benchmark, not a test: numbers are reported, never judged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from unet.config import AugmentConfig, Config, DataConfig, ModelConfig, TrainConfig  # noqa: E402

ISBI_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "isbi-membrane"
ISBI_ENV = "UNET_ISBI"  # another place for the ISBI folder
DSB_DEFAULT = ISBI_DEFAULT.parent / "dsb2018-nuclei-sample"
DSB_ENV = "UNET_DSB"
QUALITY_MINUTES = 5.0
LARGE_IMAGE = (3000, 4000)  # (height, width) of the tiled prediction
RSS_FACTOR = 10  # the memory figure trains on this many times the demo data
LOAD_PHASE_SECONDS = 22.0  # each of the idle and the busy phase of `load_while_sessions_use_the_app`

# Every figure `run_bench` reports as a number (some may be None when skipped: see the *_note keys).
NUMERIC_KEYS = (
    "matmul_gflops", "bare_fit_images_per_s", "train_images_per_s", "train_steps_images_per_s",
    "pipeline_efficiency", "steps_efficiency", "conv_gflops_per_image", "achieved_gflops", "fraction_of_peak",
    "epoch_s", "epoch_steps_s", "epoch_validation_s", "epoch_bookkeeping_s", "first_epoch_s",
    "preview_ms", "predict_ms_512", "predict_ms_512_full_resolution", "predict_ms_4000x3000", "peak_rss_mb",
    "train_images_per_s_16bit_2ch", "deep_input_ratio", "deep_ingest_s",
)
QUALITY_KEYS = ("isbi_dice_5min",)
# The full benchmark's figures of training while ten sessions use the app (not measured in tiny mode).
CLUSTER_KEYS = ("cluster_one_images_per_s", "cluster_two_images_per_s", "cluster_two_ratio")
CLUSTER_TRAINING = {"data": {"input_size": 64}, "augment": {"enabled": False}, "model": {"depth": 3, "base_filters": 8},
                    "train": {"epochs": 8, "batch_size": 4, "early_stopping_patience": 0, "validation_split": 0.2}}
LOAD_KEYS = ("load_alone_images_per_s", "load_busy_images_per_s", "load_ratio", "load_requests", "load_page_views")


@dataclasses.dataclass(frozen=True)
class Setting:
    """How big the benchmark is: full size, or tiny (for a test that must finish in seconds)."""

    config: Config
    demo_count: int
    demo_size: int
    bare_epochs: int
    train_epochs: int
    matmul_side: int
    matmul_repeats: int
    predict_repeats: int
    large_image: tuple[int, int]
    rss_epochs: int
    quality_minutes: float


FULL = Setting(
    config=Config(),
    demo_count=48, demo_size=128,  # the cells demo data as `python -m unet demo-data` writes it
    bare_epochs=8, train_epochs=8,
    matmul_side=4096, matmul_repeats=5, predict_repeats=7, large_image=LARGE_IMAGE, rss_epochs=2,
    quality_minutes=QUALITY_MINUTES,
)
TINY = Setting(
    config=Config(data=DataConfig(input_size=32), model=ModelConfig(depth=2, base_filters=4),
                  train=TrainConfig(batch_size=4)),
    demo_count=10, demo_size=48,
    bare_epochs=3, train_epochs=3,
    matmul_side=256, matmul_repeats=2, predict_repeats=2, large_image=(600, 800), rss_epochs=1,
    quality_minutes=0.1,
)


class EpochTimer(keras.callbacks.Callback):
    """Times each epoch, its training steps and its validation pass.

    Appended after the trainer's own callbacks, its `on_epoch_end` runs once the epoch's files are written, so
    the time from one epoch's end to the next holds everything the trainer does per epoch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fit_begin = 0.0
        self.begins: list[float] = []
        self.ends: list[float] = []
        self.test_begins: dict[int, float] = {}  # by 1-based epoch
        self.test_ends: dict[int, float] = {}

    def on_train_begin(self, logs=None) -> None:
        self.fit_begin = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.begins.append(time.perf_counter())

    def on_test_begin(self, logs=None) -> None:
        self.test_begins[len(self.begins)] = time.perf_counter()

    def on_test_end(self, logs=None) -> None:
        self.test_ends[len(self.begins)] = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.ends.append(time.perf_counter())

    def walls(self) -> list[float]:
        """Wall seconds per epoch, each from the previous epoch's end (the first from fit's start)."""
        starts = [self.fit_begin, *self.ends[:-1]]
        return [end - start for start, end in zip(starts, self.ends, strict=True)]

    def parts(self, index: int) -> tuple[float, float]:
        """(seconds of training steps, seconds of validation) of epoch `index` (0-based)."""
        begin, end = self.begins[index], self.ends[index]
        test_begin = self.test_begins.get(index + 1, end)
        return test_begin - begin, self.test_ends.get(index + 1, end) - test_begin


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _machine() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpus": cpus, "platform": platform.platform(), "processor": platform.machine(),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU"))}


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return [float("nan")] * 3


# ---------------------------------------------------------------------------------------------------------------
# The figures, one function each.
# ---------------------------------------------------------------------------------------------------------------


def matmul_gflops(side: int, repeats: int) -> float:
    """Best-of-`repeats` float32 GFLOP/s of a side x side matmul: the machine's practical limit."""
    import tensorflow as tf

    a = tf.random.stateless_uniform([side, side], [1, 2])
    b = tf.random.stateless_uniform([side, side], [3, 4])
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    matmul(a, b).numpy()  # trace and warm up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * side**3 / best / 1e9


def bare_fit(cfg: Config, images: np.ndarray, masks: np.ndarray, steps: int, epochs: int) -> dict[str, float]:
    """Images/s of plain `model.fit` on in-memory tensors: same model, loss, optimizer, batch; no augmentation,
    no metrics, no callbacks but the timer. The median of epochs 2.. (the first traces the graph)."""
    import tensorflow as tf

    from unet.metrics import make_loss
    from unet.model import build_unet
    from unet.training import _optimizer

    keras.utils.set_random_seed(0)
    batch = cfg.train.batch_size
    n = steps * batch
    index = np.arange(n) % len(images)
    # Batches made once and kept in memory: NumPy arrays given to fit directly are sliced and shuffled per batch,
    # which measured slower than the product's own pipeline, so they would be no ceiling.
    data = tf.data.Dataset.from_tensor_slices((images[index], masks[index])).batch(batch).cache().repeat()
    model = build_unet(cfg)
    model.compile(optimizer=_optimizer(cfg), loss=make_loss(cfg.train.loss, cfg.model.num_classes))
    timer = EpochTimer()
    model.fit(data.prefetch(2), steps_per_epoch=steps, epochs=epochs, callbacks=[timer], verbose=0)
    walls = timer.walls()
    return {"bare_fit_images_per_s": n / _median(walls[1:]), "bare_first_epoch_s": walls[0]}


def train_path(cfg: Config, dataset_dir: Path, run_dir: Path, epochs: int) -> dict[str, float]:
    """The product's own training (`unet.training.train`) on a stored dataset, timed per epoch."""
    from unet import pipeline, splits, training
    from unet.dataset import Dataset

    cfg = cfg.replace(train=dataclasses.replace(cfg.train, epochs=epochs, early_stopping_patience=0))
    timer = EpochTimer()
    code = training.train(run_dir, dataset_dir, cfg, callbacks=[timer])
    if code != 0:
        raise RuntimeError(f"the benchmark's training failed (exit code {code}); see {run_dir / 'trainer.log'}")
    dataset = Dataset.load(dataset_dir)
    split = splits.split_stems(dataset.stems, cfg.train.validation_split, cfg.train.seed)
    steps = pipeline.steps_for(len(split.train), cfg.train.batch_size)
    images = steps * cfg.train.batch_size
    walls = timer.walls()
    parts = [timer.parts(i) for i in range(1, len(walls))]
    epoch = _median(walls[1:])
    steps_s = _median([p[0] for p in parts])
    validation_s = _median([p[1] for p in parts])
    return {
        "train_images_per_s": images / epoch,
        "train_steps_images_per_s": images / steps_s,
        "epoch_s": epoch,
        "epoch_steps_s": steps_s,
        "epoch_validation_s": validation_s,
        "epoch_bookkeeping_s": _median([w - p[0] - p[1] for w, p in zip(walls[1:], parts, strict=True)]),
        "first_epoch_s": walls[0],
        "train_images_per_epoch": images,
        "validation_images": len(split.val),
    }


def preview_ms(dataset_dir: Path, cfg: Config, n: int = 8) -> float:
    """Milliseconds for `n` augmented previews (`unet.augment.preview_pairs`), warm: the median of 3 after one."""
    from unet.augment import preview_pairs
    from unet.dataset import Dataset

    dataset = Dataset.load(dataset_dir)
    pairs = [dataset.read_pair(stem) for stem in dataset.stems[:n]]
    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    augment = AugmentConfig()
    times = []
    for seed in range(4):
        start = time.perf_counter()
        preview_pairs(images, masks, augment, cfg.data, n=n, seed=seed)
        times.append(time.perf_counter() - start)
    return _median(times[1:]) * 1000


def predict_figures(run_dir: Path, repeats: int, large: tuple[int, int]) -> dict[str, Any]:
    """Warm prediction times of the run's best model: one 512 x 512 image, and one large image in tiles.

    The default model was trained in 'resize' mode, so a 512 x 512 image is resized to the input size, predicted
    and its probabilities resized back; the large image is predicted at full resolution in tiles, as a 'crop'
    run's would be (the same network; the resize mode only changes how the image is fed).
    """
    from unet import tiling
    from unet.inference import Predictor

    predictor = Predictor.from_run(run_dir)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (512, 512), dtype=np.uint8)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        predictor.predict(image)
        times.append(time.perf_counter() - start)
    out: dict[str, Any] = {"predict_ms_512": _median(times[1:]) * 1000}
    out["predict_512_mode"] = (f"{predictor.resize_to}x{predictor.resize_to} resize (data.resize='resize')"
                               if predictor.resize_to else "full resolution")
    tiled = dataclasses.replace(predictor, resize_to=None)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        tiled.predict(image)
        times.append(time.perf_counter() - start)
    out["predict_ms_512_full_resolution"] = _median(times[1:]) * 1000  # what a 'crop' run's model costs
    big = rng.integers(0, 256, large, dtype=np.uint8)
    grid = tiling.TileGrid(large[0], large[1], tiled.multiple, tiled.tile, tiled.overlap)
    times = []
    for _ in range(2 if repeats > 2 else 1):  # the first call traces the tile shapes
        start = time.perf_counter()
        tiled.predict(big)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    tiled.predict(big)
    times.append(time.perf_counter() - start)
    out["predict_ms_4000x3000"] = _median(times[1:]) * 1000
    out["predict_large_mode"] = (f"{large[1]}x{large[0]} at full resolution (as data.resize='crop'), "
                                 f"{len(grid)} tiles of {grid.tile[1]}x{grid.tile[0]}, batch {tiled.tile_batch}")
    return out


def peak_rss_mb(cfg: Config, setting: Setting, work: Path) -> dict[str, Any]:
    """Peak resident memory of `python -m unet train` (its own process) on RSS_FACTOR x the demo data."""
    from unet.dataset import ingest
    from unet.demo import write_demo_dataset

    count = setting.demo_count * RSS_FACTOR
    raw = write_demo_dataset(work / "rss-raw", kind="cells", count=count, size=setting.demo_size, seed=1)
    dataset, _ = ingest(raw, "rss-cells", work / "datasets")
    config = work / "rss-config.json"
    config.write_text(cfg.replace(train=dataclasses.replace(cfg.train, early_stopping_patience=0)).to_json())
    cmd = [sys.executable, "-m", "unet", "train", "--data", str(dataset.root), "--out", str(work / "runs" / "rss"),
           "--config", str(config), "--epochs", str(setting.rss_epochs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]),
                                                      os.environ.get("PYTHONPATH")) if p)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not every child's maximum
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"the memory benchmark's trainer failed ({proc.returncode}): {stderr[-500:]}")
    kib = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss  # macOS counts bytes
    return {"peak_rss_mb": kib / 1024, "rss_images": count, "rss_trainer_s": time.perf_counter() - start}


def load_while_sessions_use_the_app(work: Path, phase_seconds: float = LOAD_PHASE_SECONDS,
                                    progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Training images/s alone and while ten sessions use the app, from `python -m unet.ui.load_probe`.

    The probe runs in its own process (it starts the app server and runs page scripts, so it imports Streamlit;
    this module never does), with its own workspace under `work`. A probe that fails is reported in `load_note`
    with its figures None, so a long benchmark keeps its other figures.
    """
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "unet.ui.load_probe", "--workspace", str(work / "load-workspace"),
           "--seconds", str(phase_seconds), "--json"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              timeout=4 * phase_seconds + 300)
        probe = json.loads(done.stdout) if done.returncode == 0 else None
        problem = "" if probe else f"exit code {done.returncode}: {done.stderr[-600:]}"
    except (subprocess.TimeoutExpired, ValueError) as exc:
        probe, problem = None, f"{type(exc).__name__}: {exc}"
    if probe is None:
        message = f"the load probe failed ({problem.strip()})"
        progress(message)
        return {**dict.fromkeys(LOAD_KEYS), "load_failures": None, "load_note": message}
    return {
        "load_alone_images_per_s": probe["alone_images_per_s"],
        "load_busy_images_per_s": probe["busy_images_per_s"],
        "load_ratio": probe["ratio"],
        "load_requests": probe["requests"],
        "load_page_views": probe["page_views"],
        "load_failures": probe["failures"],
        "load_note": (f"the probe's small model (`unet.ui.load_probe.TRAINING`) trained alone for {phase_seconds:g} s"
                      f", then while {probe['sessions']} HTTP tabs and one page session used the app for "
                      f"{phase_seconds:g} s; {probe['alone_epochs']} and {probe['busy_epochs']} epochs measured"),
    }


def trainings_on_a_cluster(work: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Training images/s of one small training alone on a one-machine Ray head, then of two at once (#19).

    Each run's figure is the median over its epochs after the first (graph tracing); the pair's is the sum of
    the two runs' figures. Skipped, with a note, where Ray is not installed.
    """
    from unet import backend, runs
    from unet.demo import write_demo_dataset
    from unet.errors import UserError

    raw = write_demo_dataset(work / "cluster-data", kind="cells", count=30, size=64)
    config = Config.from_dict(CLUSTER_TRAINING)
    train_images = 30 - round(30 * config.train.validation_split)

    def train(names: list[str]) -> list[float]:
        started = [runs.create_run(work / "cluster-runs", name, config, raw) for name in names]
        for run in started:
            backend.start(run.path, raw)
        deadline = time.monotonic() + 900
        while any(run.read_status().get("state") in runs.ACTIVE_STATES for run in started):
            if time.monotonic() > deadline:
                raise UserError("the cluster's trainings took over 15 minutes")
            backend.check_runs(work / "cluster-runs")
            time.sleep(0.5)
        return [train_images / _median([h["seconds"] for h in run.read_history()[1:]]) for run in started]

    previous = os.environ.get(backend.RAY_ADDRESS_ENV)
    try:
        with backend.local_head(cpus=os.cpu_count() or 2) as address:
            os.environ[backend.RAY_ADDRESS_ENV] = address
            progress("cluster: one training alone")
            alone = train(["alone"])[0]
            progress("cluster: two trainings at once")
            pair = train(["first", "second"])
    except (UserError, OSError, ValueError, ZeroDivisionError) as exc:
        return {**dict.fromkeys(CLUSTER_KEYS), "cluster_note": f"skipped: {exc}"}
    finally:
        if previous is None:
            os.environ.pop(backend.RAY_ADDRESS_ENV, None)
        else:
            os.environ[backend.RAY_ADDRESS_ENV] = previous
    return {
        "cluster_one_images_per_s": alone, "cluster_two_images_per_s": sum(pair),
        "cluster_two_ratio": sum(pair) / alone,
        "cluster_note": (f"a one-machine Ray head with {os.cpu_count()} CPUs, each training reserving 1; small "
                         f"model (bench.CLUSTER_TRAINING), {config.train.epochs} epochs of {train_images} images; "
                         f"the two ran at {pair[0]:.1f} and {pair[1]:.1f} images/s"),
    }


def deep_two_channel_copy(raw: Path, out: Path) -> Path:
    """The demo data as a microscope would give it: 16-bit (12-bit values), 2 channels in a TIFF, same masks."""
    import tifffile

    from unet.images import read_image

    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for path in sorted((raw / "images").glob("*.png")):
        gray = read_image(path).astype(np.uint16) * 16  # 0..4080: a 12-bit camera's range
        stain = (4080 - gray).astype(np.uint16)  # a second channel that differs from the first
        tifffile.imwrite(out / "images" / f"{path.stem}.tif", np.dstack([gray, stain]), photometric="minisblack",
                         planarconfig="contig")
        (out / "masks" / path.name).write_bytes((raw / "masks" / path.name).read_bytes())
    return out


def deep_input_throughput(cfg: Config, raw: Path, work: Path, epochs: int, eight_bit: float) -> dict[str, Any]:
    """Training images/s with 16-bit 2-channel input against the 8-bit 1-channel figure on the same images.

    The goal (issue #14) is within 10%: after the first epoch both read from the in-memory cache, so the cost
    of deeper input is one wider first convolution and the intensity rule's subtraction and division.
    """
    from unet.dataset import ingest

    deep_raw = deep_two_channel_copy(raw, work / "deep-raw")
    started = time.perf_counter()
    dataset, _ = ingest(deep_raw, "deep", work / "datasets")
    ingest_s = time.perf_counter() - started
    figures = train_path(cfg, dataset.root, work / "runs" / "deep", epochs)
    deep = figures["train_images_per_s"]
    return {"train_images_per_s_16bit_2ch": deep, "deep_input_ratio": deep / eight_bit,
            "deep_ingest_s": ingest_s}


def dsb_ingest(folder: Path, work: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """Seconds to check and store the DSB 2018 nuclei sample (16-bit instance label masks), with what it found."""
    from unet.dataset import ingest

    if not (folder / "images").is_dir():
        message = f"skipped: the DSB 2018 nuclei sample is not at {folder} (set {DSB_ENV} to its folder)"
        progress(message)
        return {"dsb_ingest_s": None, "dsb_note": message}
    started = time.perf_counter()
    dataset, report = ingest(folder, "dsb", work / "datasets")
    seconds = time.perf_counter() - started
    objects = sorted(report.objects.values())
    return {"dsb_ingest_s": seconds, "dsb_pairs": report.pairs, "dsb_objects": sum(objects),
            "dsb_note": f"{report.pairs} pairs, {objects[0] if objects else 0} to {objects[-1] if objects else 0} "
                        f"objects per image; {report.found}"}


def isbi_quality(folder: Path, work: Path, minutes: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """Held-back cell and membrane Dice after `minutes` of training on ISBI 2012 with the settings `suggest`
    proposes for it (what a user gets by accepting the suggestion)."""
    from unet import runs, training
    from unet.dataset import ingest
    from unet.suggest import suggest

    if not (folder / "images").is_dir():
        message = f"skipped: the ISBI membrane data is not at {folder} (set {ISBI_ENV} to its folder)"
        progress(message)
        return {"isbi_dice_5min": None, "isbi_note": message}
    dataset, _ = ingest(folder, "isbi", work / "datasets")  # into the temporary workspace, never the project
    cfg = suggest(dataset, minutes).config
    progress(f"quality: the suggestion is {cfg.data.input_size}-px {cfg.data.resize}, {cfg.train.epochs} epochs")
    # The suggestion as a user accepts it, also capped at `minutes` (its schedule then ends with the time limit),
    # without early stopping so every run gets the whole time; model.keras keeps the best epoch, which is scored.
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, max_minutes=minutes, early_stopping_patience=0))
    run_dir = work / "runs" / "isbi"
    started = time.perf_counter()
    code = training.train(run_dir, dataset.root, cfg)
    if code != 0:
        raise RuntimeError(f"the ISBI training failed (exit code {code}); see {run_dir / 'trainer.log'}")
    history = runs.Run(run_dir).read_history()
    scored = [h["val_dice_1"] for h in history if isinstance(h.get("val_dice_1"), (int, float))]
    wall = time.perf_counter() - started
    progress("quality: scoring the best model on the whole validation images")
    full = _whole_image_scores(run_dir, dataset, work / "isbi-val")
    return {
        "isbi_dice_5min": full["dice"],
        "isbi_dice_5min_best_threshold": full["best_threshold_dice"],
        "isbi_membrane_dice_5min": full["membrane_dice"],
        "isbi_baseline_dice": full["baseline_dice"],
        "isbi_dice_5min_crops": max(scored) if scored else None,
        "isbi_epochs": len(history),
        "isbi_minutes": minutes,
        "isbi_wall_s": wall,
        "isbi_note": f"the settings `suggest` proposes for ISBI ({cfg.data.input_size}-px {cfg.data.resize}, "
                     f"Balanced model), at most {minutes:g} minutes of training (early stopping off). Cell "
                     "(class 1) and membrane (class 0) Dice of the best epoch's model on the 6 whole 512x512 "
                     "validation images, predicted at full resolution as the Inference page does, at threshold "
                     "0.5; _best_threshold: at the "
                     "evaluation's best threshold; _crops: what training measured, on their centre 256x256",
    }


SCRIBBLE_WINDOWS = 10  # stroke windows per class and image: about 2% of ISBI's pixels labelled


def isbi_scribbles_quality(folder: Path, work: Path, minutes: float, progress: Callable[[str], None]
                           ) -> dict[str, Any]:
    """Training from strokes (issue #25): ISBI's 25 training images with synthetic strokes of each class (about 2%
    of the pixels, `unet.scribbles`), the rest "not labelled"; the same suggested settings and minutes as the dense
    figure; membrane and cell Dice of the best model on the 5 held-back images with their full masks."""
    import json
    import shutil

    from unet import atomic, training
    from unet.dataset import DATASET_FILE, Dataset, ingest
    from unet.evaluation import evaluate_detailed
    from unet.scribbles import labelled_share, strokes
    from unet.suggest import suggest

    if not (folder / "images").is_dir():
        message = f"skipped: the ISBI membrane data is not at {folder} (set {ISBI_ENV} to its folder)"
        progress(message)
        return {"isbi_scribbles_membrane_dice": None, "isbi_scribbles_note": message}
    dense, _ = ingest(folder, "isbi-dense", work / "datasets")
    dense.set_test_split(5 / len(dense.stems))  # 25 to train on (and choose the best epoch), 5 held back
    target = work / "datasets" / "isbi-scribbles"
    shutil.copytree(dense.root, target)
    info = json.loads((target / DATASET_FILE).read_text())
    drawn, totals = [], np.zeros(dense.num_classes, np.int64)
    for i, stem in enumerate(dense.training_stems):
        sparse = strokes(dense.read_mask(stem), dense.num_classes, windows=SCRIBBLE_WINDOWS, seed=i)
        atomic.write_png(target / "masks" / f"{stem}.png", sparse)
        drawn.append(sparse)
        totals += np.bincount(sparse.ravel(), minlength=256)[: dense.num_classes]
    for record, pixels in zip(info["classes"], totals, strict=True):
        record["pixels"] = int(pixels)
    info.update(name="isbi-scribbles", hash=f"{info['hash']}-strokes-{SCRIBBLE_WINDOWS}")
    atomic.write_json(target / DATASET_FILE, info)
    share = labelled_share(drawn)
    scribbles = Dataset.load(target)
    cfg = suggest(dense, minutes).config  # the dense figure's settings: the same model and minutes, only masks differ
    cfg = cfg.replace(train=dataclasses.replace(cfg.train, max_minutes=minutes, early_stopping_patience=0))
    progress(f"quality: strokes on {len(drawn)} ISBI images ({100 * share:.1f}% of their pixels labelled), "
             f"{minutes:g} minutes")
    run_dir = work / "runs" / "isbi-scribbles"
    started = time.perf_counter()
    code = training.train(run_dir, scribbles.root, cfg)
    if code != 0:
        raise RuntimeError(f"the scribbles training failed (exit code {code}); see {run_dir / 'trainer.log'}")
    wall = time.perf_counter() - started
    held_back = work / "isbi-held-back"  # the 5 images no training saw, as the user's files, full masks
    for sub in ("images", "masks"):
        (held_back / sub).mkdir(parents=True, exist_ok=True)
        for stem in dense.test_stems:
            source = next((folder / sub).glob(f"{stem}.*"))
            shutil.copyfile(source, held_back / sub / source.name)
    result = evaluate_detailed(run_dir, held_back, gallery=0, split="all")
    names = [row["name"] for row in result.per_class]
    return {
        "isbi_scribbles_membrane_dice": result.per_class[0]["dice"],
        "isbi_scribbles_cell_dice": result.per_class[1]["dice"],
        "isbi_scribbles_labelled_share": share,
        "isbi_scribbles_minutes": minutes,
        "isbi_scribbles_wall_s": wall,
        "isbi_scribbles_note": f"{len(drawn)} ISBI images with synthetic strokes ({100 * share:.1f}% of the pixels "
                               f"labelled, {SCRIBBLE_WINDOWS} skeleton windows per class and image, 3-px brush), the "
                               f"rest not labelled; the suggested settings, {minutes:g} minutes; Dice of the best "
                               f"epoch's model on the {result.images} held-back images with their full masks "
                               f"(classes {', '.join(names)}: value 0 membrane, 255 cell)",
    }


def dsb_objects_quality(folder: Path, work: Path, minutes: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """Nuclei found one by one on 12 test images of the DSB 2018 sample (a fixed 20% test set): the suggested
    settings trained `minutes` with the instance task and `minutes` without it (objects = connected regions),
    and the connected regions of the *true* masks, the ceiling the old way can never pass."""
    from skimage.measure import label

    from unet import object_tuning, runs, task, training
    from unet.dataset import ingest
    from unet.evaluation import evaluate
    from unet.object_scores import ObjectScores
    from unet.suggest import suggest

    if not (folder / "images").is_dir():
        message = f"skipped: the DSB 2018 nuclei sample is not at {folder} (set {DSB_ENV} to its folder)"
        progress(message)
        return {"dsb_instances_ap50": None, "dsb_objects_note": message}
    dataset, _ = ingest(folder, "dsb-objects", work / "datasets")
    test = dataset.set_test_split(0.2, seed=0)
    ceiling = ObjectScores()
    for stem in test:
        truth = task.true_objects(dataset, stem)
        ceiling.add(truth, label(truth > 0, connectivity=1), stem)
    result: dict[str, Any] = {"dsb_test_images": len(test), "dsb_minutes": minutes}
    for name in (task.INSTANCES, task.SEMANTIC):
        base = Config(data=DataConfig(task=name))
        cfg = suggest(dataset, minutes, base=base).config
        cfg = cfg.replace(train=dataclasses.replace(cfg.train, max_minutes=minutes, early_stopping_patience=0))
        progress(f"objects: {name} task, {cfg.data.input_size}-px {cfg.data.resize}, {minutes:g} minutes")
        run_dir = work / "runs" / f"dsb-{name}"
        started = time.perf_counter()
        if training.train(run_dir, dataset.root, cfg) != 0:
            raise RuntimeError(f"the DSB {name} training failed; see {run_dir / 'trainer.log'}")
        objects = evaluate(run_dir, split="test")["objects"]
        result[f"dsb_{name}_ap50"] = objects["per_image_mean"][0]["average_precision"]
        result[f"dsb_{name}_ap50_pooled"] = objects["ap50"]
        result[f"dsb_{name}_recall50"] = objects["pooled"][0]["recall"]
        result[f"dsb_{name}_epochs"] = len(runs.Run(run_dir).read_history())
        result[f"dsb_{name}_wall_s"] = time.perf_counter() - started
        if name == task.INSTANCES:  # the settings chosen on the held-back images, against the fixed ones (#26)
            chosen = object_tuning.read(run_dir)
            result["dsb_instances_object_settings"] = chosen.describe()
            kept = run_dir / object_tuning.FILE
            aside = kept.rename(run_dir / f"{object_tuning.FILE}.aside") if kept.exists() else None
            try:
                fixed = evaluate(run_dir, split="test")["objects"]
            finally:
                if aside is not None:
                    aside.rename(kept)
            result["dsb_instances_ap50_fixed_settings"] = fixed["per_image_mean"][0]["average_precision"]
    truth = ceiling.to_dict()
    result["dsb_true_components_ap50"] = truth["per_image_mean"][0]["average_precision"]
    result["dsb_true_components_recall50"] = truth["pooled"][0]["recall"]
    result["dsb_objects_note"] = (f"AP@0.5 = TP/(TP+FP+FN) averaged over the {len(test)} test images (a fixed 20% "
                                  "test set, never trained on); recall pooled over them. The suggested settings for "
                                  f"each task, {minutes:g} minutes each.")
    return result


def _whole_image_scores(run_dir: Path, dataset: Any, folder: Path) -> dict[str, float | None]:
    """Cell and membrane Dice of the run's best model on its whole held-back images, and the majority-class
    baseline, through `unet.evaluation` (what `evaluate --split val` and the Runs page report)."""
    from unet.evaluation import evaluate_detailed

    result = evaluate_detailed(run_dir, None, gallery=0, split="val")
    cell, membrane = result.per_class[1]["dice"], result.per_class[0]["dice"]
    return {"dice": cell, "membrane_dice": membrane, "baseline_dice": result.baseline["dice"],
            "best_threshold_dice": max((row["dice"] or 0.0 for row in result.sweep), default=cell)}


# ---------------------------------------------------------------------------------------------------------------
# The whole benchmark.
# ---------------------------------------------------------------------------------------------------------------


def run_bench(quality: bool = False, tiny: bool = False, progress: Callable[[str], None] = print,
              isbi: Path | None = None) -> dict[str, Any]:
    """Measure every figure in one run and return them as one JSON-ready dict (see the module docstring).

    Args:
        quality: also train Balanced on ISBI 2012 for five minutes (`isbi_dice_5min`).
        tiny: a small model, few images and few steps, so a test finishes in seconds.
        progress: called with a line of text before each phase.
        isbi: the ISBI folder (default: $UNET_ISBI, else ../shared/datasets/isbi-membrane beside the project).
    """
    from unet import pipeline, splits
    from unet.dataset import Dataset, ingest
    from unet.demo import write_demo_dataset
    from unet.model import TRAIN_FLOPS_FACTOR, model_facts

    setting = TINY if tiny else FULL
    cfg = setting.config
    started = time.perf_counter()
    result: dict[str, Any] = {"tiny": tiny, "load_average_start": _load_average(), "machine": _machine()}
    m, d, t = cfg.model, cfg.data, cfg.train
    result["model"] = (f"{'tiny' if tiny else 'Config() defaults = Quick demo preset'}: depth {m.depth}, "
                       f"{m.base_filters} base filters, {d.input_size}x{d.input_size} ({d.resize}), batch "
                       f"{t.batch_size}, {t.loss} loss, {t.optimizer}")
    with tempfile.TemporaryDirectory(prefix="unet-bench-") as tmp:
        work = Path(tmp)
        os.environ["UNET_WORKSPACE"] = str(work)  # anything the core writes to "the workspace" stays here
        progress("matmul: the machine's float32 limit")
        result["matmul_gflops"] = matmul_gflops(setting.matmul_side, setting.matmul_repeats)

        raw = write_demo_dataset(work / "demo-raw", kind="cells", count=setting.demo_count, size=setting.demo_size)
        dataset, _ = ingest(raw, "cells", work / "datasets")
        dataset = Dataset.load(dataset.root)
        result["dataset"] = f"cells demo data: {len(dataset.stems)} images of {setting.demo_size}x{setting.demo_size}"

        split = splits.split_stems(dataset.stems, t.validation_split, t.seed)
        steps = pipeline.steps_for(len(split.train), t.batch_size)
        eval_cfg = cfg.replace(train=dataclasses.replace(t, batch_size=1))
        pairs = list(pipeline.eval_pipeline(dataset, split.train, eval_cfg, cache=False).dataset)
        images = np.concatenate([p[0].numpy() for p in pairs])
        masks = np.concatenate([p[1].numpy() for p in pairs])

        progress(f"bare model.fit: {setting.bare_epochs} epochs of {steps} steps")
        result.update(bare_fit(cfg, images, masks, steps, setting.bare_epochs))
        keras.backend.clear_session()

        progress(f"training through unet.training: {setting.train_epochs} epochs")
        run_dir = work / "runs" / "bench"
        result.update(train_path(cfg, dataset.root, run_dir, setting.train_epochs))
        result["pipeline_efficiency"] = result["train_images_per_s"] / result["bare_fit_images_per_s"]
        result["steps_efficiency"] = result["train_steps_images_per_s"] / result["bare_fit_images_per_s"]
        flops = model_facts(cfg).flops
        result["conv_gflops_per_image"] = flops / 1e9
        result["achieved_gflops"] = flops * TRAIN_FLOPS_FACTOR * result["train_images_per_s"] / 1e9
        result["fraction_of_peak"] = result["achieved_gflops"] / result["matmul_gflops"]

        progress(f"16-bit 2-channel input: the same images, {setting.train_epochs} epochs")
        result.update(deep_input_throughput(cfg, raw, work, setting.train_epochs, result["train_images_per_s"]))
        keras.backend.clear_session()
        if not tiny:
            progress("ingest of the DSB 2018 nuclei sample")
            result.update(dsb_ingest(Path(os.environ.get(DSB_ENV) or DSB_DEFAULT), work, progress))

        progress("previews")
        result["preview_ms"] = preview_ms(dataset.root, cfg)
        progress("prediction")
        result.update(predict_figures(run_dir, setting.predict_repeats, setting.large_image))
        keras.backend.clear_session()

        progress(f"trainer memory on {RSS_FACTOR}x the demo data")
        result.update(peak_rss_mb(cfg, setting, work))

        if not tiny:
            progress("two trainings at once on a one-machine Ray cluster, against one alone")
            result.update(trainings_on_a_cluster(work, progress))
            progress(f"training while ten sessions use the app: {LOAD_PHASE_SECONDS:g} s alone, "
                     f"{LOAD_PHASE_SECONDS:g} s busy")
            result.update(load_while_sessions_use_the_app(work, LOAD_PHASE_SECONDS, progress))

        if quality:
            folder = Path(isbi or os.environ.get(ISBI_ENV) or ISBI_DEFAULT)
            progress(f"quality: Balanced on ISBI for {setting.quality_minutes:g} minutes")
            result.update(isbi_quality(folder, work, setting.quality_minutes, progress))
            progress(f"quality: the same from strokes (about 2% of the pixels) for {setting.quality_minutes:g} minutes")
            result.update(isbi_scribbles_quality(folder, work, setting.quality_minutes, progress))
            dsb = Path(os.environ.get(DSB_ENV) or DSB_DEFAULT)
            minutes = setting.quality_minutes * 2  # 10 minutes per task at full size
            progress(f"objects: DSB 2018 nuclei, each task {minutes:g} minutes")
            result.update(dsb_objects_quality(dsb, work, minutes, progress))
    result["load_average"] = _load_average()
    result["bench_seconds"] = time.perf_counter() - started
    return {key: _rounded(value) for key, value in result.items()}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


# ---------------------------------------------------------------------------------------------------------------
# Output.
# ---------------------------------------------------------------------------------------------------------------

_ROWS = (
    ("matmul_gflops", "float32 matmul (machine limit)", "GFLOP/s"),
    ("bare_fit_images_per_s", "bare model.fit, in-memory tensors", "images/s"),
    ("train_images_per_s", "product training, whole epochs", "images/s"),
    ("train_steps_images_per_s", "product training, steps only", "images/s"),
    ("pipeline_efficiency", "whole epochs / bare fit", ""),
    ("steps_efficiency", "steps only / bare fit", ""),
    ("achieved_gflops", "achieved (conv FLOPs x 3)", "GFLOP/s"),
    ("fraction_of_peak", "fraction of matmul peak", ""),
    ("first_epoch_s", "first epoch (tracing)", "s"),
    ("epoch_s", "steady epoch", "s"),
    ("epoch_steps_s", "  of which training steps", "s"),
    ("epoch_validation_s", "  of which validation", "s"),
    ("epoch_bookkeeping_s", "  of which checkpoints, samples, logs", "s"),
    ("train_images_per_s_16bit_2ch", "product training, 16-bit 2-channel input", "images/s"),
    ("deep_input_ratio", "  16-bit 2-channel / 8-bit 1-channel", ""),
    ("dsb_ingest_s", "ingest the DSB 2018 nuclei sample", "s"),
    ("preview_ms", "8 augmented previews", "ms"),
    ("predict_ms_512", "predict 512x512", "ms"),
    ("predict_ms_512_full_resolution", "predict 512x512 at full resolution", "ms"),
    ("predict_ms_4000x3000", "predict 4000x3000 (tiled)", "ms"),
    ("peak_rss_mb", "trainer peak memory, 10x demo data", "MB"),
    ("load_alone_images_per_s", "small model training, app idle", "images/s"),
    ("load_busy_images_per_s", "  while 10 tabs + a page session use it", "images/s"),
    ("load_ratio", "  busy / idle", ""),
    ("load_requests", "  HTTP requests answered", ""),
    ("load_page_views", "  page views", ""),
    ("load_failures", "  failed requests and page views", ""),
    ("cluster_one_images_per_s", "one small training on a Ray head", "images/s"),
    ("cluster_two_images_per_s", "  two at once, together", "images/s"),
    ("cluster_two_ratio", "  two together / one alone", ""),
    ("isbi_dice_5min", "ISBI cell Dice after 5 min (the suggested settings)", ""),
    ("isbi_dice_5min_best_threshold", "  at the evaluation's best threshold", ""),
    ("isbi_membrane_dice_5min", "ISBI membrane Dice after 5 min (the suggested settings)", ""),
    ("isbi_baseline_dice", "  cell Dice of painting everything 'cell'", ""),
    ("isbi_dice_5min_crops", "  as training measured it (centre crops)", ""),
    ("isbi_epochs", "  epochs in those 5 minutes", ""),
    ("dsb_instances_ap50", "DSB nuclei AP@0.5, separate touching objects", ""),
    ("dsb_instances_recall50", "  recall at IoU 0.5", ""),
    ("dsb_instances_ap50_fixed_settings", "  with the fixed 0.5 / 0.8 / 0 instead of the chosen settings", ""),
    ("dsb_semantic_ap50", "DSB nuclei AP@0.5, classes only (regions)", ""),
    ("dsb_semantic_recall50", "  recall at IoU 0.5", ""),
    ("dsb_true_components_ap50", "  ceiling: regions of the true masks", ""),
)


def format_table(result: dict[str, Any]) -> str:
    """The result as a plain-text table for a terminal."""
    machine = result.get("machine", {})
    lines = [
        f"U-Net Studio benchmark on {machine.get('cpus')} CPUs, {machine.get('platform')}, "
        f"TensorFlow {machine.get('tensorflow')}",
        f"model: {result.get('model')}",
        f"data: {result.get('dataset')}",
        f"load average: {result.get('load_average_start')} at start, {result.get('load_average')} at the end",
        "",
    ]
    for key, label, unit in _ROWS:
        if key not in result:
            continue
        value = result[key]
        if value is None:
            text = "skipped"
        elif isinstance(value, list):
            text = f"{len(value):,}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        lines.append(f"  {label:<40} {text:>12} {unit}")
    for key in ("predict_512_mode", "predict_large_mode", "dsb_note", "isbi_note", "dsb_objects_note", "load_note",
                "cluster_note"):
        if result.get(key):
            lines.append(f"  {key}: {result[key]}")
    lines += [f"  load failure: {failure}" for failure in (result.get("load_failures") or [])[:5]]
    return "\n".join(lines)


def main(json_output: bool = False, quality: bool = False, tiny: bool = False) -> int:
    """What `python -m unet bench` runs: progress on stderr, the result on stdout."""
    with contextlib.redirect_stdout(sys.stderr):  # Keras' and the trainer's epoch lines must not mix with the result
        result = run_bench(quality=quality, tiny=tiny, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2) if json_output else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(json_output="--json" in sys.argv, quality="--quality" in sys.argv, tiny="--tiny" in sys.argv))
