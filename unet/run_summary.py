"""What the Runs page and the command line say about runs: one summary row each, config differences, and the
command that reproduces a run headless."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from unet.config import Config
from unet.errors import UserError
from unet.runs import HELD_BACK, INIT_FROM, RUNNING, Run, elapsed_seconds, read_json
from unet.units import duration_text


def summary_row(run: Run) -> dict[str, Any]:
    """One line of the run table: name, dataset, state, best validation Dice and IoU (the live proxy), the
    held-back Dice with its baseline (whole images, end of training), epochs, duration, start."""
    status = run.read_status()
    history = run.read_history()
    best = max(history, key=lambda r: r.get("val_dice") or -1.0) if history else {}
    dataset = run.training_data()
    ended = status.get("ended") or (status.get("updated") if status.get("state") == RUNNING else None)
    held_back = read_json(run.file(HELD_BACK), {}) or {}
    return {
        "id": run.id,
        "name": run.name,
        "dataset": dataset.get("name", ""),
        "started_from": (read_json(run.file(INIT_FROM), {}) or {}).get("label", ""),
        "state": status.get("state", "?"),
        "best_val_dice": best.get("val_dice"),
        "best_val_iou": best.get("val_iou"),
        "held_back_dice": held_back.get("dice"),
        "baseline_dice": (held_back.get("baseline") or {}).get("dice"),
        "averaged_over": ", ".join(held_back.get("averaged_over") or []),
        "near_baseline": bool(held_back.get("near_baseline")),
        "best_epoch": best.get("epoch"),
        "epochs": len(history),
        "duration": duration_text(elapsed_seconds({**status, "ended": ended}) if status.get("started") else None),
        "started": (status.get("started") or "")[:16].replace("T", " "),
    }


SETTING_NAMES = {  # what a non-programmer reads in the compare table, for config.json's keys
    "data.input_size": "Input size (pixels)", "data.channels": "Image channels", "data.normalisation":
    "Brightness normalisation", "data.resize": "Large images", "augment.enabled": "Augmentation",
    "augment.flip": "Flips", "augment.rotate90": "Quarter turns", "augment.rotate": "Rotation (degrees)",
    "augment.zoom": "Zoom", "augment.shift": "Shift", "augment.shear": "Shear (degrees)", "augment.elastic":
    "Elastic deformation", "augment.brightness": "Brightness change", "augment.contrast": "Contrast change",
    "augment.gamma": "Gamma change", "augment.noise": "Noise", "augment.blur": "Blur (pixels)",
    "augment.fill_mode": "Corner filling", "model.depth": "Depth (levels)", "model.base_filters": "Base filters",
    "model.kernel_size": "Kernel size", "model.batch_norm": "Batch normalisation", "model.activation": "Activation",
    "model.leaky_alpha": "Leaky ReLU slope", "model.dropout": "Dropout", "model.dropout_placement":
    "Dropout placement", "model.pooling": "Down-sampling", "model.upsampling": "Up-sampling", "model.num_classes":
    "Classes", "train.epochs": "Epochs", "train.batch_size": "Batch size", "train.learning_rate": "Learning rate",
    "train.optimizer": "Optimizer", "train.loss": "Loss", "train.class_weights": "Weight rare classes",
    "train.validation_split": "Validation share", "train.early_stopping_patience": "Stop early after (epochs)",
    "train.lr_schedule": "Learning-rate schedule", "train.reduce_lr_patience": "Lower the rate after (epochs)",
    "train.seed": "Random seed", "train.max_minutes": "Time limit (minutes)",
}
VALUE_NAMES = {
    "adam": "Adam", "adamw": "AdamW", "sgd": "SGD with momentum", "dice_ce": "Dice + cross-entropy",
    "ce": "Cross-entropy", "dice": "Dice", "focal": "Focal", "cosine": "Warm up, then lower smoothly",
    "plateau": "Halve when progress stalls", "constant": "Fixed", "crop": "Crops at native resolution",
    "resize": "Resized whole", "unit": "0 to 1", "standard": "Mean 0, spread 1", "max": "Max pooling",
    "average": "Average pooling", "bilinear": "Bilinear", "transpose": "Transposed convolution", "relu": "ReLU",
    "leaky_relu": "Leaky ReLU", "elu": "ELU", "gelu": "GELU", "bottleneck": "Bottleneck only",
    "decoder": "Decoder", "all": "Every level", "reflect": "Mirrored", "constant_fill": "Black",
}


def _plain(value: Any) -> Any:
    """A value as a person reads it: yes/no, 60 rather than 60.0, named choices."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return int(value) if value.is_integer() else float(f"{value:.6g}")
    if isinstance(value, str):
        return VALUE_NAMES.get(value, value)
    return value


def config_table(configs: dict[str, Config]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows `{"setting": "Depth (levels)", run name: value, ...}` for every setting, in plain words, and the
    settings (their plain names) that differ between the runs."""
    flat = {name: _flatten(config.to_dict()) for name, config in configs.items()}
    keys = list(next(iter(flat.values()))) if flat else []
    rows, differing = [], []
    for key in keys:
        values = {name: values.get(key) for name, values in flat.items()}
        label = SETTING_NAMES.get(key, key.split(".")[-1].replace("_", " ").capitalize())
        rows.append({"setting": label, **{name: str(_plain(v)) for name, v in values.items()}})
        if len({repr(v) for v in values.values()}) > 1:
            differing.append(label)
    return rows, differing


def _flatten(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, values in sections.items() for key, value in values.items()}


def train_command(run: Run, private: bool = False) -> str:
    """The `python -m unet train` line that repeats this run headless (copy config.json beside the data).

    `private`: for a document that leaves the machine (the HTML report), name the dataset folder only, never the
    server's path to it.
    """
    dataset = run.training_data()
    data = dataset.get("path") or run.info.get("dataset") or "DATA"
    if private and data != "DATA":
        data = Path(str(data)).name
    try:
        epochs = run.config().train.epochs
    except UserError:
        epochs = None
    parts = ["python", "-m", "unet", "train", "--data", str(data), "--out", f"runs/{run.id}-again",
             "--config", "config.json"]
    if epochs:
        parts += ["--epochs", str(epochs)]
    return " ".join(shlex.quote(p) for p in parts)
