"""The Keras callbacks of the trainer: what it writes into the run folder while it fits, and how it steers the fit.

`RunRecorder` writes the run folder as training goes (status, history, checkpoints, sample pictures) and stops
on STOP, SIGTERM or the time limit; `ResumableEarlyStopping` and `CosineSchedule` carry their state across a
resume. Every file is replaced atomically, so a crash or a full disk never leaves a damaged file behind.
`unet.training` assembles them; readers of run folders (pages, `unet.runs`) never import this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import tensorflow as tf

from unet import atomic, runs, schedule
from unet.classmap import IGNORE_INDEX
from unet.config import Config, Task
from unet.dataset import Dataset
from unet.images import display_rgb
from unet.overlay import class_colors, overlay
from unet.runs import StatusWriter

SAMPLE_TILE = 128  # pixels per side of one picture in samples/*.png
# Sample pictures are predicted after the first epoch, then at most this often, and after the last: on short
# epochs (the demo data: 3 s) predicting them every epoch cost 3-8% of the training time.
SAMPLE_SECONDS = 10.0


def predict_classes(model: Any, images: tf.Tensor | np.ndarray) -> np.ndarray:
    """Class indices [B, H, W] from a sigmoid (binary) or softmax output; `model` is a model or any callable."""
    probs = keras.ops.convert_to_numpy(model(images, training=False))
    return (probs[..., 0] > 0.5).astype(np.int64) if probs.shape[-1] == 1 else probs.argmax(-1)


SAMPLE_GAP = 6  # white pixels between tiles and rows
SAMPLE_HEADER = 22  # pixels of the caption row
SAMPLE_TITLES = ("image", "truth", "prediction")


def sample_picture(images01: np.ndarray, masks: np.ndarray, predicted: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Rows of image | truth | prediction (uint8 RGB) under a caption row, tiles apart; truth and prediction are
    drawn over the image in the class colours (as on the Inference page), each tile at most SAMPLE_TILE wide."""
    rows = []
    for image, mask, pred in zip(images01, masks, predicted, strict=True):
        picture = display_rgb(image)  # any channel count; the 0..1 of the intensity rule as 0..255
        mask = np.where(mask.reshape(mask.shape[:2]) == IGNORE_INDEX, 0, mask.reshape(mask.shape[:2]))
        tiles = [picture, overlay(picture, mask, colors, opacity=0.55), overlay(picture, pred, colors, opacity=0.55)]
        if tiles[0].shape[0] > SAMPLE_TILE:
            tiles = [cv2.resize(t, (SAMPLE_TILE, SAMPLE_TILE), interpolation=cv2.INTER_AREA) for t in tiles]
        rows.append(_with_gaps(tiles, axis=1))
    body = _with_gaps(rows, axis=0)
    header = np.full((SAMPLE_HEADER, body.shape[1], 3), 255, np.uint8)
    tile_width = (body.shape[1] - 2 * SAMPLE_GAP) // 3
    for i, title in enumerate(SAMPLE_TITLES):
        cv2.putText(header, title, (i * (tile_width + SAMPLE_GAP) + 4, SAMPLE_HEADER - 7), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (40, 40, 40), 1, cv2.LINE_AA)
    return np.concatenate([header, body], axis=0)


def _with_gaps(pictures: list[np.ndarray], axis: int) -> np.ndarray:
    """The pictures side by side (axis 1) or stacked (axis 0), SAMPLE_GAP white pixels apart."""
    shape = list(pictures[0].shape)
    shape[axis] = SAMPLE_GAP
    gap = np.full(shape, 255, np.uint8)
    parts = [part for picture in pictures for part in (picture, gap)][:-1]
    return np.concatenate(parts, axis=axis)


def _number(value: Any) -> float | None:
    value = float(keras.ops.convert_to_numpy(value))
    return value if np.isfinite(value) else None


class RunRecorder(keras.callbacks.Callback):
    """Writes the run folder as training goes, and stops training on STOP, SIGTERM or the time limit.

    Per batch: progress in status.json (throttled). Per epoch: a history.jsonl line, `last.keras`, and
    `model.keras` when validation Dice improved (a hard link to the same file). `samples/epoch_NNN.png` +
    `samples/latest.png` after the first epoch, then every SAMPLE_SECONDS at most, and after the last epoch.
    """

    def __init__(self, run_dir: Path, status: StatusWriter, config: Config, dataset: Dataset,
                 samples: tuple[tf.Tensor, tf.Tensor], history: list[dict[str, Any]], steps: int) -> None:
        super().__init__()
        self.run_dir, self.status, self.config, self.steps = run_dir, status, config, steps
        scored = [(h["val_dice"], h["epoch"]) for h in history if isinstance(h.get("val_dice"), (int, float))]
        self.best_val_dice, self.best_epoch = max(scored, default=(-1.0, None))
        self.last_epoch = max((int(h["epoch"]) for h in history), default=0)
        self.stop_reason: str | None = None
        self.deadline = time.monotonic() + config.train.max_minutes * 60 if config.train.max_minutes else None
        images, masks = samples
        self.sample_inputs = images
        self._forward: Any = None
        self.sampled_at: float | None = None
        self.sampled_epoch = 0
        std, mean = (dataset.std, dataset.mean) if config.data.normalisation == "standard" else (1.0, 0.0)
        self.sample_images = images.numpy() * max(float(std), 1e-6) + float(mean)
        self.sample_masks = masks.numpy()[..., 0]
        self.colors = class_colors(config.model.num_classes, [c.color for c in dataset.classes])
        (run_dir / runs.SAMPLES).mkdir(exist_ok=True)
        # Drop a half-written last line (a killed trainer) so the file stays one object per line.
        atomic.write_text(run_dir / runs.HISTORY, "".join(json.dumps(h) + "\n" for h in history))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.monotonic()
        lr = _number(self.model.optimizer.learning_rate)
        self.lr = None if lr is None else float(f"{lr:.6g}")  # the float32 variable's noise digits help nobody
        self.status.write(state=runs.RUNNING, epoch=epoch + 1, batch=0, batches=self.steps,
                          message=f"epoch {epoch + 1} of {self.config.train.epochs}")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.status.stop_requested():
            self.stop_reason = "stop"
        elif self.deadline is not None and time.monotonic() > self.deadline:
            self.stop_reason = "time"
        if self.stop_reason:
            self.model.stop_training = True
            self.status.write(batch=batch + 1, message="stopping: checking the model on the validation images")
        else:
            self.status.write(batch=batch + 1, force=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(time.monotonic() - self.epoch_started, 3),
                               "lr": self.lr}
        for key, value in (logs or {}).items():
            if key != "learning_rate":
                row[key] = _number(value)
        for prefix in ("", "val_"):  # binary: the one foreground class is class 1
            for name in ("dice", "iou"):
                row.setdefault(f"{prefix}{name}_1", row.get(f"{prefix}{name}"))
        if self.stop_reason:
            row["partial"] = True  # the epoch was cut short after some batches
        # Checkpoints first, the history line last: a line in history.jsonl means its epoch is in last.keras.
        # The model is saved once (last.keras); when it is also the best, model.keras becomes a second name for
        # the same file, which halves the per-epoch saving.
        last, best = self.run_dir / runs.LAST_MODEL, self.run_dir / runs.BEST_MODEL
        atomic.save_model(self.model, last)
        val_dice = row.get("val_dice")
        if val_dice is not None and val_dice > self.best_val_dice:
            self.best_val_dice, self.best_epoch = val_dice, epoch + 1
            atomic.link(last, best)
        elif not best.exists():
            atomic.link(last, best)  # never finish without a model
        if self.sampled_at is None or time.monotonic() - self.sampled_at >= SAMPLE_SECONDS:
            object_ap = self._write_samples(epoch + 1)
            if object_ap is not None:
                row["val_object_ap50"] = object_ap
        row["seconds"] = round(time.monotonic() - self.epoch_started, 3)  # with the checkpoint and samples
        with open(self.run_dir / runs.HISTORY, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self.last_epoch = epoch + 1
        extra = {"object_ap50": row["val_object_ap50"]} if "val_object_ap50" in row else {}
        self.status.write(epoch=epoch + 1, best_val_dice=None if self.best_epoch is None else self.best_val_dice,
                          best_epoch=self.best_epoch, **extra)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.last_epoch and self.sampled_epoch != self.last_epoch:
            self._write_samples(self.last_epoch)  # the final model's samples, even when the last epoch skipped them

    def _write_samples(self, epoch: int) -> float | None:
        """The sample picture of this epoch; for the instance task also the objects found on the sample crops
        (AP at IoU 0.5, the watershed applied to prediction and truth alike), returned for the history."""
        if self._forward is None:  # traced once: an eager call of the model costs more than the prediction
            model = self.model
            self._forward = tf.function(lambda x, training=False: model(x, training=training), autograph=False)
        predicted = predict_classes(self._forward, self.sample_inputs)
        picture = sample_picture(self.sample_images, self.sample_masks, predicted, self.colors)
        folder = self.run_dir / runs.SAMPLES
        atomic.write_png(folder / f"epoch_{epoch:03d}.png", picture)
        atomic.link(folder / f"epoch_{epoch:03d}.png", folder / "latest.png")
        self.sampled_at, self.sampled_epoch = time.monotonic(), epoch
        if self.config.data.task != Task.INSTANCES:
            return None
        from unet.instances import labels_from_classes
        from unet.object_scores import ObjectScores

        scores = ObjectScores(thresholds=(0.5,))
        for truth, guess in zip(self.sample_masks, predicted, strict=True):
            truth = np.where(truth == IGNORE_INDEX, 0, truth)
            scores.add(labels_from_classes(truth), labels_from_classes(guess))
        return scores.to_dict()["ap50"]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on validation Dice that carries its count across a resume.

    Keras' own starts every `fit` from scratch, so after a resume the first epoch always counted as an improvement
    and patience began again. This one starts from the run's history: the best Dice so far and the epochs since
    it. A run that had already run out of patience (early stopping ended it) gets a fresh window, since resuming
    it means the user asked for more epochs.
    """

    def __init__(self, patience: int, history: Sequence[dict[str, Any]]) -> None:
        super().__init__("val_dice", patience=patience, mode="max")
        scored = [(h["val_dice"], -int(h["epoch"])) for h in history if isinstance(h.get("val_dice"), (int, float))]
        self.previous_best = max(scored, default=None)  # the best Dice; the earliest epoch that reached it
        self.previous_last = max((int(h["epoch"]) for h in history), default=0)

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self.previous_best is not None:
            best, negative_epoch = self.previous_best
            self.best, self.best_epoch = float(best), -negative_epoch - 1  # Keras counts epochs from 0
            waited = self.previous_last + negative_epoch
            self.wait = waited if waited < self.patience else 0


class CosineSchedule(keras.callbacks.Callback):
    """Sets the optimizer's rate before every batch from `unet.schedule.cosine_rate` (warm-up, then cosine).

    The run's progress counts the steps of all epochs (a resumed run carries on where it stopped) and, with a
    time limit, the time spent in this session, whichever is further along.
    """

    def __init__(self, config: Config, steps: int, done_epochs: int) -> None:
        super().__init__()
        self.base = config.train.learning_rate
        self.total_steps = config.train.epochs * steps
        self.step = done_epochs * steps
        self.limit_seconds = config.train.max_minutes * 60
        self.started = time.monotonic()

    def _apply(self) -> None:
        progress = schedule.run_progress(self.step, self.total_steps, time.monotonic() - self.started,
                                         self.limit_seconds)
        self.model.optimizer.learning_rate = schedule.cosine_rate(self.base, progress)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._apply()  # before RunRecorder reads the rate for the history line

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._apply()
        self.step += 1
