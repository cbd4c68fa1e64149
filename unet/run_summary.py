"""What the Runs page and the command line say about runs: one summary row each, config differences, and the
command that reproduces a run headless."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from unet.config import (
    ACTIVATION_NAMES,
    DROPOUT_PLACEMENT_NAMES,
    LOSS_NAMES,
    NORMALISATION_NAMES,
    POOLING_NAMES,
    RESIZE_NAMES,
    SCHEDULE_NAMES,
    UPSAMPLING_NAMES,
    Config,
    FillMode,
    Optimizer,
    Task,
)
from unet.errors import UserError
from unet.overlay import class_colors
from unet.runs import (
    COMPLETED,
    CONFIG,
    FAILED,
    HELD_BACK,
    INIT_FROM,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    STARTING,
    STOPPED,
    Run,
    elapsed_seconds,
    read_json,
)
from unet.task import LABELS as TASK_LABELS
from unet.task import TARGET_CLASSES
from unet.units import duration_text

STATE_NAMES = {  # a run's state in words: the Train page's badge, the run tables and the report say the same
    STARTING: "Starting", QUEUED: "Queued", RUNNING: "Training", COMPLETED: "Completed", STOPPED: "Stopped",
    FAILED: "Failed", INTERRUPTED: "Interrupted",
}


def state_name(state: str | None) -> str:
    return STATE_NAMES.get(state or QUEUED, str(state).capitalize())


def epochs_text(done: int, planned: int | None, running: bool) -> str:
    """'3 of 50 (epoch 4 running)', '12 of 50', or '3' when the plan is unknown."""
    text = f"{done} of {planned}" if planned else str(done)
    return f"{text} (epoch {done + 1} running)" if running and (not planned or done < planned) else text


def _planned_epochs(run: Run, status: dict[str, Any]) -> int | None:
    if isinstance(status.get("epochs"), int) and status["epochs"] > 0:
        return status["epochs"]  # the trainer's own (a resume may have added epochs)
    try:
        return run.config().train.epochs
    except UserError:
        return None


def network_classes(run: Run) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Names and colours of the classes the network learned (the per-class figures of history.jsonl): the run's
    recorded classes (training_data.json), or background / object interior / object boundary for a run that
    separates touching objects, whose recorded classes (background, object) are what its predictions become."""
    recorded = run.training_data()
    try:
        config = run.config()
        count, separate = config.model.num_classes, config.data.task == Task.INSTANCES
    except UserError:
        count, separate = len(recorded.get("classes", [])), recorded.get("task") == Task.INSTANCES
    if separate:
        return [name for name, _ in TARGET_CLASSES], [tuple(color) for _, color in TARGET_CLASSES]
    by_index = {int(c["index"]): c for c in recorded.get("classes", []) if "index" in c}
    names = [str(by_index.get(k, {}).get("name") or f"class {k}") for k in range(count)]
    given = [by_index[k]["color"] for k in range(count) if "color" in by_index.get(k, {})]
    colors = class_colors(count, given if len(given) == count else None)
    return names, [tuple(int(v) for v in color) for color in colors]


def summary_row(run: Run) -> dict[str, Any]:
    """One line of the run table: name, dataset, state (in words), best validation Dice and IoU (the live proxy),
    the held-back Dice with its baseline (whole images, end of training), epochs done of planned, duration,
    start. `epochs_done` is the count of finished epochs."""
    status = run.read_status()
    history = run.read_history()
    best = max(history, key=lambda r: r.get("val_dice") or -1.0) if history else {}
    dataset = run.training_data()
    state = status.get("state") or QUEUED
    ended = status.get("ended") or (status.get("updated") if state == RUNNING else None)
    held_back = read_json(run.file(HELD_BACK), {}) or {}
    return {
        "id": run.id,
        "name": run.name,
        "dataset": dataset.get("name", ""),
        "started_from": (read_json(run.file(INIT_FROM), {}) or {}).get("label", ""),
        "state": state_name(state),
        "best_val_dice": best.get("val_dice"),
        "best_val_iou": best.get("val_iou"),
        "held_back_dice": held_back.get("dice"),
        "baseline_dice": (held_back.get("baseline") or {}).get("dice"),
        "averaged_over": ", ".join(held_back.get("averaged_over") or []),
        "near_baseline": bool(held_back.get("near_baseline")),
        "best_epoch": best.get("epoch"),
        "epochs": epochs_text(len(history), _planned_epochs(run, status), state == RUNNING),
        "epochs_done": len(history),
        "duration": duration_text(elapsed_seconds({**status, "ended": ended}) if status.get("started") else None),
        "started": (status.get("started") or "")[:16].replace("T", " "),
    }


SETTING_NAMES = {  # what a non-programmer reads in the compare table and the report, for config.json's keys
    "data.input_size": "Input size (pixels)", "data.channels": "Image channels", "data.normalisation":
    "Brightness scaling", "data.resize": "Bring images to the input size by", "data.task": "What to learn",
    "augment.enabled": "Augmentation", "augment.flip": "Flips", "augment.rotate90": "Quarter turns",
    "augment.rotate": "Rotation (degrees)", "augment.zoom": "Zoom", "augment.shift": "Shift",
    "augment.shear": "Shear (degrees)", "augment.elastic": "Elastic deformation", "augment.brightness":
    "Brightness change", "augment.contrast": "Contrast change", "augment.gamma": "Gamma change", "augment.noise":
    "Noise", "augment.blur": "Blur (pixels)", "augment.fill_mode": "Fill corners with", "model.depth":
    "Depth (levels)", "model.base_filters": "Base filters", "model.kernel_size": "Kernel size", "model.batch_norm":
    "Batch normalisation", "model.activation": "Activation", "model.leaky_alpha": "LeakyReLU alpha",
    "model.dropout": "Dropout", "model.dropout_placement": "Dropout where", "model.pooling": "Down-sampling",
    "model.upsampling": "Up-sampling", "model.num_classes": "Classes the network outputs", "train.epochs": "Epochs",
    "train.batch_size": "Batch size", "train.learning_rate": "Learning rate", "train.optimizer": "Optimizer",
    "train.loss": "Loss", "train.class_weights": "Weight rare classes more", "train.validation_split":
    "Validation share", "train.early_stopping_patience": "Stop early after (epochs)", "train.lr_schedule":
    "Learning-rate schedule", "train.reduce_lr_patience": "Lower the rate after (epochs)", "train.seed":
    "Random seed", "train.max_minutes": "Time limit (minutes)", "train.init_from": "Started from",
}
FILL_MODE_NAMES = {FillMode.REFLECT: "Mirrored image", FillMode.CONSTANT: "Black", FillMode.NEAREST:
                   "Edge pixels repeated"}
OPTIMIZER_NAMES = {Optimizer.ADAM: "Adam", Optimizer.ADAMW: "AdamW", Optimizer.SGD: "SGD with momentum",
                   Optimizer.RMSPROP: "RMSprop"}
SETTING_VALUES = {  # each choice's words, per setting (the pages' own names: unet.config's *_NAMES tables)
    "data.normalisation": NORMALISATION_NAMES, "data.resize": RESIZE_NAMES, "data.task": TASK_LABELS,
    "augment.fill_mode": FILL_MODE_NAMES, "model.activation": ACTIVATION_NAMES, "model.pooling": POOLING_NAMES,
    "model.upsampling": UPSAMPLING_NAMES, "model.dropout_placement": DROPOUT_PLACEMENT_NAMES,
    "train.optimizer": OPTIMIZER_NAMES, "train.loss": {k: v.removesuffix(" (recommended)") for k, v in
                                                       LOSS_NAMES.items()},
    "train.lr_schedule": {k: v.removesuffix(" (recommended)") for k, v in SCHEDULE_NAMES.items()},
}
VALUE_NAMES = {  # the same words by value alone, for the choices whose values no other setting shares
    value: name for key in ("model.activation", "model.upsampling", "train.optimizer", "train.loss")
    for value, name in SETTING_VALUES[key].items()
}


def setting_name(key: str) -> str:
    """'model.depth' -> 'Depth (levels)'."""
    return SETTING_NAMES.get(key, key.split(".")[-1].replace("_", " ").capitalize())


def setting_value(key: str, value: Any) -> str:
    """A value of setting `key` as a person reads it: yes/no, 60 rather than 60.0, named choices, the name of the
    run or file a fine-tuning started from (never a path on the server)."""
    if value is None:
        return "none" if key != "train.init_from" else "a new network"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value) if value.is_integer() else float(f"{value:.6g}"))
    if key == "train.init_from":
        return _source_name(str(value))
    if key == "model.kernel_size":
        return f"{value}×{value}"
    return str(SETTING_VALUES.get(key, {}).get(value, value))


def _source_name(location: str) -> str:
    path = Path(location)
    if (path / CONFIG).exists():
        return f"the model of run {Run(path).name}"
    return path.name


OBJECT_SCORES_EXPLAINED = (
    "A predicted object is found when it covers one true object with an IoU (overlap) of at least the threshold; "
    "each object is matched at most once. AP = found / (found + extra + missed), as the DSB2018 challenge and "
    "StarDist report it. Pooled: the objects of all images counted together, then divided; mean per image: each "
    "image's own figure, then averaged. Mean AP: the pooled AP averaged over the thresholds 0.5 to 0.95."
)
OBJECT_COLUMNS = {  # an evaluation's objects "per_image" rows, in words
    "image": "Image", "true_objects": "True objects", "predicted_objects": "Predicted objects",
    "tp50": "Found (IoU 0.5)", "fp50": "Extra", "fn50": "Missed", "ap50": "AP@0.5", "f1_50": "F1@0.5",
}


def config_table(configs: dict[str, Config]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows `{"setting": "Depth (levels)", run name: value, ...}` for every setting, in plain words, and the
    settings (their plain names) that differ between the runs."""
    flat = {name: _flatten(config.to_dict()) for name, config in configs.items()}
    keys = list(next(iter(flat.values()))) if flat else []
    rows, differing = [], []
    for key in keys:
        values = {name: values.get(key) for name, values in flat.items()}
        label = setting_name(key)
        rows.append({"setting": label, **{name: setting_value(key, v) for name, v in values.items()}})
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
