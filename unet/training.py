"""The trainer: one process that fits a U-Net and reports everything through files in its run folder.

`train()` is what `python -m unet train` runs, for the browser and the command line alike. It holds the
machine's training lock (a second trainer waits, `queued`), writes `status.json` (progress, throttled) and one
line per epoch to `history.jsonl`, saves the best model (`model.keras`, by validation Dice) and a resumable
checkpoint (`last.keras`, with optimizer state), and stops cleanly after the current batch when a `STOP` file
appears (or on SIGTERM, or at the time limit). Every file is replaced atomically, so a crash or a full disk never
leaves a damaged checkpoint or status behind. A fine-tuning (`train.init_from`, `unet.finetune`) copies an earlier
model's weights into the fresh one and records what it copied in `init_from.json`.

Readers (pages, `unet.runs`) never import this module; it imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib.util
import logging
import math
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from unet import atomic, finetune, pipeline, runs, schedule, splits, task
from unet import metrics as unet_metrics
from unet.augment import Augmenter
from unet.callbacks import CosineSchedule, ResumableEarlyStopping, RunRecorder
from unet.config import Config, Optimizer
from unet.dataset import DATASET_FILE, Dataset, ValueChoices
from unet.errors import UserError
from unet.model import build_unet
from unet.runs import StatusWriter

log = logging.getLogger("unet.training")

LOCK_POLL_SECONDS = 1.0
EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR = 0, 1, 2


def strategy() -> tf.distribute.Strategy:
    """The one place that decides how training uses devices: all local GPUs when there are several.

    Mixed precision (float16 compute, float32 weights) is switched on only with a GPU; on a CPU it is slower.
    TensorFlow's own thread pools are left at their defaults (intra- and inter-op = cores): on a 2-core machine
    nothing else measured faster (intra-op 1 halved the speed; inter-op 1, 2 or 4 made no difference).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def versions() -> dict[str, str]:
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------------------------------------------
# Setting up: log, lock, data, model.
# ---------------------------------------------------------------------------------------------------------------


def _setup_log(run_dir: Path) -> list[logging.Handler]:
    """Log to trainer.log, and to the terminal too unless stdout already is trainer.log (`runs.start_training`)."""
    log_path = run_dir / runs.LOG
    try:
        same = log_path.exists() and os.path.samestat(os.fstat(sys.stdout.fileno()), log_path.stat())
    except (OSError, ValueError, AttributeError):
        same = False
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if not same:
        handlers = [logging.FileHandler(log_path, encoding="utf-8"), logging.StreamHandler(sys.stderr)]
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handlers


@contextmanager
def _training_lock(run_dir: Path, status: StatusWriter) -> Iterator[bool]:
    """Hold `runs/.training.lock` for the whole training; while another trainer holds it, wait as `queued`.

    Yields False if a stop was requested while waiting. The kernel drops the lock when the process dies. With
    `UNET_TRAINING_LOCK=off` (a Ray job: the cluster's scheduler decides what trains at once) there is no lock.
    """
    if os.environ.get(runs.LOCK_ENV, "").lower() == "off":
        yield True
        return
    lock_path = run_dir.parent / runs.LOCK
    with open(lock_path, "a+") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if status.stop_requested():
                    yield False
                    return
                holder = runs.lock_holder(run_dir.parent) or "another run"
                status.write(state=runs.QUEUED, message=f"waiting for run {holder} to finish", force=False)
                time.sleep(LOCK_POLL_SECONDS)
        lock.seek(0)
        lock.truncate()
        lock.write(run_dir.name)
        lock.flush()
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_data(data: Path, run_dir: Path, reuse: bool, stacks: str | None = None, masks: str | None = None,
              values: ValueChoices | None = None) -> Dataset:
    """The dataset to train on; a raw folder or zip is stored into `RUN_DIR/data` (kept, so resume needs no DATA)."""
    stored = run_dir / runs.DATA
    if not (Path(data) / DATASET_FILE).exists():
        if reuse and (stored / DATASET_FILE).exists():
            return Dataset.load(stored)
        if stored.exists():
            shutil.rmtree(stored)
        log.info("storing the raw dataset %s in %s", data, stored)
    return pipeline.open_dataset(data, stored, stacks, masks, values)


def fit_config(config: Config, dataset: Dataset) -> Config:
    """The config with channels and classes taken from the dataset and the task (`unet.task.fit_to_dataset`)."""
    fitted = task.fit_to_dataset(config, dataset)
    if fitted != config:
        log.info("using the dataset's %d channel(s) and %d output classes", fitted.data.channels,
                 fitted.model.num_classes)
    return fitted


def _split(run_dir: Path, dataset: Dataset, config: Config, resume: bool) -> splits.Split:
    recorded = runs.Run(run_dir).training_data()
    if resume and recorded:
        split = splits.Split(train=recorded["train"], val=recorded["val"])
        missing = sorted(set(split.train + split.val) - set(dataset.stems))
        if missing:
            raise UserError(f"cannot resume: the dataset no longer has '{missing[0]}' ({len(missing)} missing)")
        if recorded.get("hash") != dataset.hash:
            log.warning("the dataset's files changed since this run started")
        return split
    return splits.split_stems(dataset.training_stems, config.train.validation_split, config.train.seed,
                                classes_of=lambda stem: set(np.unique(dataset.read_mask(stem)).tolist()),
                                group_of=dataset.group_of)


def typical_size(dataset: Dataset) -> tuple[int, int]:
    """(h, w) of the dataset's images: their size when all share one, else the geometric mean of the extremes."""
    sizes = dataset.image_sizes or {}
    low, high = sizes.get("min"), sizes.get("max")
    if not low or not high:
        return (1, 1)
    return (round(math.sqrt(low[0] * high[0])), round(math.sqrt(low[1] * high[1])))


def record_dataset(run_dir: Path, dataset: Dataset, split: splits.Split, config: Config) -> None:
    """The run's record of its data: the class map (values included), normalisation and the split."""
    class_map = dataset.class_map
    runs.write_json_atomic(run_dir / runs.TRAINING_DATA, {
        "name": dataset.name,
        "version": dataset.version,  # annotating makes versions (unet.annotation); a run names the one it used
        "path": str(dataset.root),
        "hash": dataset.hash,
        "channels": dataset.channels,
        "classes": class_map.records() if class_map else [
            {"index": c.index, "name": c.name, "color": list(c.color)} for c in dataset.classes],
        "soft_edges": dataset.soft_edges,
        "ignore_value": dataset.ignore_value,
        "ignore_values": list(dataset.ignore_values),
        "background": 0 if config.data.task == task.INSTANCES else dataset.background,
        "instances": dataset.instances,
        "source_bits": dataset.source_bits,
        "task": config.data.task,
        "objects_from": ("instance masks" if dataset.instances else "connected regions of the mask")
        if config.data.task == task.INSTANCES else None,
        "image_dtype": dataset.image_dtype,
        "intensity": dataset.rule.record(),
        "found": dataset.found,
        "train_image_size": list(typical_size(dataset)),
        "resize_scale": [config.data.input_size / side for side in typical_size(dataset)],
        "mask_kind": dataset.mask_kind,
        "mean": float(dataset.mean),
        "std": float(dataset.std),
        "seed": config.train.seed,
        "validation_split": config.train.validation_split,
        "train": split.train,
        "val": split.val,
        "test": list(dataset.test_stems),
    })


def _optimizer(config: Config) -> keras.optimizers.Optimizer:
    lr = config.train.learning_rate
    return {
        Optimizer.ADAM: lambda: keras.optimizers.Adam(lr),
        Optimizer.ADAMW: lambda: keras.optimizers.AdamW(lr),
        Optimizer.SGD: lambda: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True),
        Optimizer.RMSPROP: lambda: keras.optimizers.RMSprop(lr),
    }[config.train.optimizer]()


def build_model(config: Config, weights: list[float] | None, resume_from: Path | None,
                first_scored: int = 1) -> keras.Model:
    """A compiled model: fresh, or restored from `last.keras` with its optimizer state. `first_scored` is 0 for
    a dataset without background (the Dice term and the validation Dice then count every class)."""
    if resume_from is not None:
        return keras.models.load_model(resume_from, safe_mode=True, compile=True)
    k = config.model.num_classes
    model = build_unet(config)
    model.compile(
        optimizer=_optimizer(config),
        loss=unet_metrics.make_loss(config.train.loss, k, weights, first_scored),
        metrics=unet_metrics.segmentation_metrics(k, per_class=k > 2, first_scored=first_scored),
    )
    return model


def _initialise(model: keras.Model, source: finetune.Source, config: Config, run_dir: Path,
                status: StatusWriter) -> None:
    """Fine-tuning: the fresh model takes the source's weights; `init_from.json` records what was copied."""
    status.write(message=f"copying the weights of {source.label}")
    report = finetune.initialise(model, source, config.data.channels)
    log.info("%s", report.message)
    atomic.write_json(run_dir / finetune.INIT_FROM, report.record(source, str(config.train.init_from)))
    line = report.status_line(source)
    status.write(message=line, init_from=line)


# ---------------------------------------------------------------------------------------------------------------
# The training itself.
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Prepared:
    """What the first step settles: the data, the config fitted to it, the split and where training resumes."""

    dataset: Dataset
    config: Config
    split: splits.Split
    history: list[dict]
    done: int  # epochs finished before this start
    source: finetune.Source | None  # the weights a fine-tuning starts from


@dataclasses.dataclass
class _Inputs:
    """What the second step builds: the input pipelines and the class weights."""

    dataset: Dataset  # the task's view: the instance task trains on its 3-class targets
    train: pipeline.InputPipeline
    val: pipeline.InputPipeline
    steps: int
    weights: list[float] | None


def _fit(run_dir: Path, data: Path, config: Config, resume: bool, status: StatusWriter,
         extra_callbacks: Sequence[keras.callbacks.Callback] = (), test_split: float = 0.0,
         stacks: str | None = None, task_given: bool = True, masks: str | None = None,
         values: ValueChoices | None = None) -> tuple[str, str]:
    """Fit and return (final state, message), in four steps: prepare, inputs, callbacks, outcome.

    Raises UserError for things the user can fix.
    """
    prepared = _prepare(run_dir, data, config, resume, status, test_split, stacks, task_given, masks, values)
    config, done = prepared.config, prepared.done
    if done >= config.train.epochs:
        return runs.COMPLETED, f"already trained for {done} epochs; raise the number of epochs to continue"
    inputs = _inputs(prepared, status)

    status.write(message="building the model")
    with strategy().scope():
        first = 1 if config.data.task == task.INSTANCES or inputs.dataset.background == 0 else 0
        model = build_model(config, inputs.weights, run_dir / runs.LAST_MODEL if resume else None, first)
        if prepared.source is not None:
            _initialise(model, prepared.source, config, run_dir, status)
    callbacks, recorder, early = _callbacks(run_dir, prepared, inputs, status, extra_callbacks)

    fine_tuning = f" ({status.data['init_from']})" if prepared.source is not None else ""
    status.write(message=f"training from epoch {done + 1}{fine_tuning}")
    model.fit(inputs.train.dataset, epochs=config.train.epochs, initial_epoch=done, steps_per_epoch=inputs.steps,
              validation_data=inputs.val.dataset, callbacks=callbacks, verbose=2, shuffle=False)
    return _outcome(recorder, early, config)


def _prepare(run_dir: Path, data: Path, config: Config, resume: bool, status: StatusWriter, test_split: float,
             stacks: str | None, task_given: bool, masks: str | None = None,
             values: ValueChoices | None = None) -> _Prepared:
    """Step 1: read the data, fit the config to it, split, and record config, data and versions in the run."""
    run = runs.Run(run_dir)
    history = run.read_history() if resume else []
    if resume and not (run_dir / runs.LAST_MODEL).exists():
        raise UserError("cannot resume: this run has no checkpoint (last.keras); start a new run instead")
    done = max((int(h.get("epoch", 0)) for h in history), default=0)
    init_from = None if resume else config.train.init_from  # a resume continues from last.keras instead
    source = finetune.resolve_source(init_from) if init_from else None  # a missing source fails before the data
    if not resume and source is None:
        (run_dir / finetune.INIT_FROM).unlink(missing_ok=True)  # a new training in an old folder: not fine-tuned

    status.write(state=runs.RUNNING, message="reading the dataset")
    dataset = load_data(data, run_dir, reuse=resume, stacks=stacks, masks=masks, values=values)
    if test_split and not resume:
        held_out = dataset.set_test_split(test_split, seed=config.train.seed)
        log.info("test set: %d images set aside (%s)", len(held_out), ", ".join(held_out[:10]))
    if not task_given and not resume:
        config = config.replace(data=dataclasses.replace(config.data, task=task.default_task(dataset)))
    config = fit_config(config, dataset)
    split = _split(run_dir, dataset, config, resume)
    atomic.write_text(run_dir / runs.CONFIG, config.to_json())
    record_dataset(run_dir, dataset, split, config)
    runs.write_json_atomic(run_dir / runs.VERSIONS, versions())
    return _Prepared(dataset, config, split, history, done, source)


def _inputs(prepared: _Prepared, status: StatusWriter) -> _Inputs:
    """Step 2: the task's view of the data, the training and validation pipelines, and the class weights."""
    config, split, done = prepared.config, prepared.split, prepared.done
    if config.data.task == task.INSTANCES:
        status.write(message="drawing each object's interior and boundary (the instance task's targets)")
    dataset = task.training_view(prepared.dataset, config.data.task)  # the instance task learns 3-class targets

    train_bytes = pipeline.decoded_bytes(dataset, split.train, config.data.channels)
    val_bytes = pipeline.decoded_bytes(dataset, split.val, config.data.channels)
    cache_train, cache_val = pipeline.plan_cache(train_bytes, val_bytes, pipeline.CACHE_BUDGET_BYTES)
    steps = pipeline.steps_for(len(split.train), config.train.batch_size)
    augmenter = Augmenter(config.augment)
    train_in = pipeline.train_pipeline(dataset, split.train, config, augmenter, cache_train, start_step=done * steps)
    val_in = pipeline.eval_pipeline(dataset, split.val, config, cache_val)
    log.info("%d training and %d validation pairs, %d batches per epoch, cached in memory: train %s, val %s",
             len(split.train), len(split.val), steps, cache_train, cache_val)

    weights = None
    if config.train.class_weights:
        counts = pipeline.class_pixel_counts(dataset, split.train, config.model.num_classes)
        weights = pipeline.class_weights(counts)
        log.info("class weights from training pixel counts %s: %s", counts.tolist(), weights)
    return _Inputs(dataset, train_in, val_in, steps, weights)


def _callbacks(run_dir: Path, prepared: _Prepared, inputs: _Inputs, status: StatusWriter,
               extra: Sequence[keras.callbacks.Callback]
               ) -> tuple[list[keras.callbacks.Callback], RunRecorder, ResumableEarlyStopping | None]:
    """Step 3: the run recorder (files, stop requests), the schedule, early stopping, TensorBoard, then `extra`."""
    config, done = prepared.config, prepared.done
    samples = next(iter(pipeline.eval_pipeline(inputs.dataset, prepared.split.val[:4], config, cache=False,
                                               batch_size=4).dataset))  # after the model is built, as before
    recorder = RunRecorder(run_dir, status, config, inputs.dataset, samples, prepared.history, inputs.steps)
    callbacks: list[keras.callbacks.Callback] = [recorder]
    if config.train.lr_schedule == schedule.COSINE:
        callbacks.insert(0, CosineSchedule(config, inputs.steps, done))
    early = None
    if config.train.early_stopping_patience:
        early = ResumableEarlyStopping(config.train.early_stopping_patience, prepared.history)
        callbacks.append(early)
    if config.train.lr_schedule == schedule.PLATEAU and config.train.reduce_lr_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            "val_loss", factor=0.5, patience=config.train.reduce_lr_patience, min_lr=1e-6, verbose=1))
    if importlib.util.find_spec("tensorboard") is not None:  # tf.summary needs the tensorboard package
        callbacks.append(keras.callbacks.TensorBoard(
            str(run_dir / runs.TENSORBOARD), histogram_freq=0, write_graph=False, update_freq="epoch", profile_batch=0))
    else:
        log.info("tensorboard is not installed: no TensorBoard logs (pip install tensorboard to get them)")
    callbacks.extend(extra)  # last, so their on_epoch_end sees the epoch's files written
    return callbacks, recorder, early


def _outcome(recorder: RunRecorder, early: ResumableEarlyStopping | None, config: Config) -> tuple[str, str]:
    """Step 4: the final state and the sentence that says why training ended."""
    last_epoch = recorder.last_epoch
    if recorder.stop_reason == "stop":
        return runs.STOPPED, (f"stopped on request after epoch {last_epoch} of {config.train.epochs} (the epoch under "
                              "way was not finished); resume continues from there")
    if recorder.stop_reason == "time":
        limit = f"{config.train.max_minutes:g} minutes"
        return runs.STOPPED, f"stopped at the time limit ({limit}) after epoch {last_epoch}; resume continues"
    if early is not None and early.stopped_epoch > 0:
        return runs.COMPLETED, (f"stopped early after epoch {last_epoch} of {config.train.epochs}: validation Dice "
                                f"did not improve for {config.train.early_stopping_patience} epochs")
    return runs.COMPLETED, f"finished {last_epoch} epochs"


def _choose_object_settings(run_dir: Path, status: StatusWriter) -> None:
    """A separate-objects run: choose how its probabilities become objects on the held-back images, so `predict`,
    `evaluate` and the Inference page start from settings measured for this model (`unet.object_tuning`)."""
    if not (run_dir / runs.BEST_MODEL).exists() or Config.load(run_dir / runs.CONFIG).data.task != task.INSTANCES:
        return
    from unet.evaluation import choose_object_settings  # imports the inference path, needed only here

    status.write(message="choosing how the model's probabilities become objects, on the held-back images",
                 force=True)
    try:
        settings = choose_object_settings(run_dir)
    except UserError as exc:
        log.warning("could not choose the object settings: %s", exc)
        return
    if settings is not None:
        log.info("object settings: %s", settings.describe())


def _score_held_back(run_dir: Path, status: StatusWriter, message: str) -> str:
    """Score the best model on the whole held-back images, as `evaluate --split val` does, into held_back.json.

    The live validation Dice is measured on what training feeds the network (centre crops, or downscaled
    images), so it is a proxy; this is the figure a user may quote, next to the trivial baseline. A model barely
    better than that baseline gets a warning in the run's final message instead of a plain success.
    """
    if not (run_dir / runs.BEST_MODEL).exists():
        return message
    from unet.evaluation import evaluate_detailed  # imports the inference path, needed only here

    status.write(message="scoring the best model on the whole held-back images", force=True)
    try:
        result = evaluate_detailed(run_dir, None, gallery=0, split="val")
    except UserError as exc:
        log.warning("could not score the held-back images: %s", exc)
        return message
    scored = result.to_dict()
    runs.write_json_atomic(run_dir / runs.HELD_BACK, scored)
    log.info("held-back images: %s", result.summary())
    status.write(held_back_dice=scored["dice"], near_baseline=scored["near_baseline"], force=True)
    if scored["near_baseline"]:
        return (f"{message}. Warning: on the held-back images the model is barely better than painting every "
                f"pixel \"{scored['baseline']['predicts']}\" ({result.summary()})")
    return message


def _plain_error(exc: BaseException) -> str:
    """A message for status.json: what happened, in a line, without a traceback."""
    if isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError)):
        return "training ran out of memory; use a smaller batch size, input size or model, then start again"
    if isinstance(exc, OSError) and exc.errno == 28:
        return "the disk is full; free some space, then resume the run"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"training failed: {type(exc).__name__}: {text[:200]}; see trainer.log"


def train(run_dir: Path, data: Path, config: Config, resume: bool = False,
          callbacks: Sequence[keras.callbacks.Callback] = (), test_split: float = 0.0, stacks: str | None = None,
          task_given: bool = True, masks: str | None = None, values: ValueChoices | None = None) -> int:
    """Train one run to the end (or a stop) and return the process exit code: 0, 1 (crash) or 2 (user error).

    Args:
        run_dir: the run folder; created if missing (the command line may name a new one).
        data: a stored dataset folder, or a raw folder/zip of images/ and masks/ (stored into RUN_DIR/data).
        config: the run's config; channels and number of classes are taken from the dataset. With
            `train.init_from` a new training starts from that run's or file's weights (`unet.finetune`).
        resume: continue from `last.keras`, its optimizer state and `history.jsonl`.
        callbacks: extra Keras callbacks, run after the trainer's own (the benchmark times epochs with one).
        test_split: set this share of the dataset aside as its test set before splitting (not on resume).
        stacks: how a raw source's TIFF stacks become 2D images (`unet.stacks`); None: automatic.
        masks: whether a raw source's gray masks are object ids ("ids") or classes ("classes"); None or "auto":
            decided over the whole dataset (`unet.masks.MaskReading`).
        values: a raw source's background and "not labelled" values (`unet.dataset.ValueChoices`); None: the
            background is value 0 when it is the most common value, and no value is "not labelled" but VOC's 255.
        task_given: False when nobody chose `config.data.task`: the dataset's default task is used (separating
            touching objects for instance label masks, `unet.task.default_task`).
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    handlers = _setup_log(run_dir)
    if not (run_dir / runs.CONFIG).exists():
        atomic.write_text(run_dir / runs.CONFIG, config.to_json())
    previous = runs.Run(run_dir).read_status() if resume else {}
    status = StatusWriter(run_dir, {
        "state": runs.QUEUED, "pid": os.getpid(), "node": platform.node(), "started": runs.now_iso(), "ended": None,
        "previous_seconds": runs.earlier_seconds(previous),
        "epoch": previous.get("epoch", 0), "epochs": config.train.epochs, "batch": 0, "batches": 0,
        "best_val_dice": previous.get("best_val_dice"), "best_epoch": previous.get("best_epoch"),
        "message": "preparing", "error": None,
    })
    if not resume:
        (run_dir / runs.STOP).unlink(missing_ok=True)
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: status.request_stop())
    code = EXIT_OK
    try:
        with _training_lock(run_dir, status) as acquired:
            if not acquired:
                state, message = runs.STOPPED, "stopped while waiting for another run"
            else:
                state, message = _fit(run_dir, data, config, resume, status, callbacks, test_split, stacks,
                                      task_given, masks, values)
                if state in (runs.COMPLETED, runs.STOPPED):
                    _choose_object_settings(run_dir, status)
                    message = _score_held_back(run_dir, status, message)
        status.write(state=state, message=message, ended=runs.now_iso(), force=True)
    except UserError as exc:
        log.error("%s", exc)
        status.write(state=runs.FAILED, message=str(exc), error=str(exc), ended=runs.now_iso(), force=True)
        code = EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - the edge of the trainer process: every failure becomes a status
        log.exception("training failed")
        message = _plain_error(exc)
        status.write(state=runs.FAILED, message=message, error=message, ended=runs.now_iso(), force=True)
        code = EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        (run_dir / runs.STOP).unlink(missing_ok=True)
        for handler in handlers:
            handler.flush()
            log.removeHandler(handler)
            handler.close()
    return code
