"""Scoring a run's best model on a labelled dataset: `python -m unet evaluate`.

Pixels are counted over the whole dataset before Dice and IoU are computed (the same `unet.metrics` functions the
training metrics use), so one small image cannot swing the score. Images go through the validation path of
`unet.pipeline` at the training input size, normalised with the training dataset's statistics.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unet import metrics, pipeline, runs
from unet.errors import UserError


def load_best_model(run_dir: Path) -> keras.Model:
    """The run's best model, loaded safely (no code from the file runs) and uncompiled."""
    path = Path(run_dir) / runs.BEST_MODEL
    if not path.exists():
        raise UserError(f"run '{Path(run_dir).name}' has no model yet (model.keras); train it first")
    return keras.models.load_model(path, safe_mode=True, compile=False)


def _class_names(recorded: dict[str, Any], dataset_classes: list, num_classes: int) -> list[str]:
    names = {int(c["index"]): c["name"] for c in recorded.get("classes", [])}
    for c in dataset_classes:
        names.setdefault(int(c.index), c.name)
    return [names.get(k, f"class {k}") for k in range(num_classes)]


def evaluate(run_dir: Path, data: Path, batch_size: int = 8) -> dict[str, Any]:
    """Dice, IoU and pixel accuracy of the run's best model over every pair of `data`.

    Args:
        run_dir: a run folder with config.json and model.keras.
        data: a stored dataset, or a raw folder/zip (stored in a temporary folder inside the run, then removed).

    Returns:
        {"dice", "iou" (means over foreground classes), "pixel_accuracy",
         "per_class": [{"class": k, "name", "dice", "iou"} for foreground k], "images": N}
    """
    run = runs.Run(Path(run_dir))
    config = run.config()
    model = load_best_model(run.path)
    k = config.model.num_classes
    recorded = runs.read_json(run.path / runs.DATASET, {}) or {}
    with tempfile.TemporaryDirectory(dir=run.path, prefix=".evaluate-") as scratch:
        dataset = pipeline.open_dataset(Path(data), Path(scratch) / "data")
        if dataset.num_classes > k:
            raise UserError(f"the dataset has {dataset.num_classes} classes but the model knows only {k}")
        stats = (recorded.get("mean", dataset.mean), recorded.get("std", dataset.std))
        batches = pipeline.eval_pipeline(dataset, dataset.stems, config, cache=False, batch_size=batch_size,
                                         stats=stats)

        @tf.function(reduce_retracing=True)
        def counts_of(images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
            predicted = metrics.predicted_classes(model(images, training=False), k)
            return metrics.confusion_counts(masks, predicted, k)

        counts = np.zeros((k, 4), np.float64)
        for images, masks in batches.dataset:
            counts += counts_of(images, masks).numpy()
        names = _class_names(recorded, dataset.classes, k)
        images = len(dataset.stems)

    dice = metrics.dice_from_counts(counts).numpy()
    iou = metrics.iou_from_counts(counts).numpy()
    return {
        "dice": float(dice[1:].mean()),
        "iou": float(iou[1:].mean()),
        "pixel_accuracy": float(metrics.pixel_accuracy(counts).numpy()),
        "per_class": [
            {"class": c, "name": names[c], "dice": float(dice[c]), "iou": float(iou[c])} for c in range(1, k)
        ],
        "images": images,
    }
