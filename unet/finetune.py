"""Fine-tuning: start a training from an earlier run's model, or from a compatible `.keras` file.

A network that has already learned edges, textures and shapes on similar images needs far fewer epochs on new
data than one starting from random weights, so a user with a few new labelled images can adapt a good run
instead of training from scratch. Three steps, used by the trainer and the command line (and the pages):
- `resolve_source(path)`: which model file a run folder or a file name means (a run's best model, else its last
  checkpoint), refused in plain words when there is none;
- `fine_tune_config(config, source)`: the config for it: a run's architecture and preprocessing (so its
  weights fit), a tenth of the learning rate and a short schedule;
- `initialise(model, source, channels)`: copy the weights layer by layer, by name and shape, into the freshly
  built model; the output layer is replaced when the class count differs, and anything else that does not fit is
  refused, naming the first layer that does not.

A model file is data from the user: it is loaded only through `unet.inference.load_model_file` (its config is
screened for code first, then Keras loads it with `safe_mode=True, compile=False`), so nothing in it runs.
This module never imports Streamlit, and imports Keras only when it loads a model, so the command line can
check a source before anything heavy starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet import runs
from unet.config import Config
from unet.errors import UserError

if TYPE_CHECKING:
    import keras

INIT_FROM = runs.INIT_FROM  # in the run folder: where a fine-tuned run's weights came from
MODEL_SUFFIX = ".keras"
LR_FACTOR = 0.1  # a pretrained network needs small steps, or the first updates undo what it learned
MAX_EPOCHS = 20  # a network that starts close to a solution gets there in a short schedule
RUN, FILE = "run", "file"


@dataclass(frozen=True)
class Source:
    """Where the first weights come from: `kind` "run" (a run folder) or "file" (a `.keras` file)."""

    kind: str
    model_path: Path  # the .keras file that is loaded
    run_dir: Path | None  # the run folder, for a run
    label: str  # for messages: "run 20261127-cells" or "model.keras"

    @property
    def location(self) -> Path:
        """The folder or file itself, as `train.init_from` records it."""
        return self.run_dir if self.run_dir is not None else self.model_path


@dataclass(frozen=True)
class InitReport:
    """What `initialise` did: how many layers it copied and whether the output layer was replaced."""

    copied_layers: int
    head_replaced: bool
    classes_before: int
    classes_after: int
    message: str

    def status_line(self, source: Source) -> str:
        """One line for status.json and the log."""
        return f"fine-tuning from {source.label}" + (" (output layer replaced)" if self.head_replaced else "")

    def record(self, source: Source, given: str) -> dict[str, Any]:
        """The content of `RUN_DIR/init_from.json`."""
        return {
            "source": given,
            "kind": source.kind,
            "label": source.label,
            "run": source.run_dir.name if source.run_dir is not None else None,
            "model_path": str(source.model_path),
            "copied_layers": self.copied_layers,
            "head_replaced": self.head_replaced,
            "classes_before": self.classes_before,
            "classes_after": self.classes_after,
            "message": self.message,
        }


# ---------------------------------------------------------------------------------------------------------------
# Which model a path means
# ---------------------------------------------------------------------------------------------------------------


def resolve_source(path: str | Path) -> Source:
    """The source a run folder (its best model, else its last checkpoint) or a `.keras` file stands for.

    Raises:
        UserError: the path is missing, a folder that is not a run, a run without a model, or not a .keras file.
    """
    given = Path(path).expanduser()
    if not given.exists():
        raise UserError(f"cannot fine-tune from '{path}': there is no such run folder or model file")
    if given.is_dir():
        return _run_source(given.resolve(), str(path))
    if given.suffix.lower() != MODEL_SUFFIX:
        raise UserError(f"cannot fine-tune from '{given.name}': it is not a .keras model file; name a run folder "
                        "or a .keras file saved by Keras 3 (not .h5 or others)")
    resolved = given.resolve()
    return Source(kind=FILE, model_path=resolved, run_dir=None, label=resolved.name)


def _run_source(folder: Path, given: str) -> Source:
    if not (folder / runs.CONFIG).is_file():
        raise UserError(f"cannot fine-tune from '{given}': the folder is not a run (it has no {runs.CONFIG}); "
                        "name a run folder or a .keras model file")
    label = f"run {runs.Run(folder).name}"
    for name in (runs.BEST_MODEL, runs.LAST_MODEL):
        if (folder / name).is_file():
            return Source(kind=RUN, model_path=folder / name, run_dir=folder, label=label)
    raise UserError(f"cannot fine-tune from {label}: it has no trained model yet ({runs.BEST_MODEL} or "
                    f"{runs.LAST_MODEL}); let it finish an epoch, or pick another run")


# ---------------------------------------------------------------------------------------------------------------
# The config of a fine-tuning
# ---------------------------------------------------------------------------------------------------------------


def fine_tune_config(config: Config, source: Source) -> Config:
    """`config` set up to fine-tune from `source`; apply it once (it divides the learning rate).

    From a run, the weights only fit the same network fed the same way, so the run's model section (all but
    `num_classes`, which the new dataset decides) and its input size, resize mode and normalisation are taken
    from its config.json. The learning rate becomes a tenth of the run's (of `config`'s for a file): a
    pretrained network needs small steps, or the first updates wreck what it learned. The epochs are capped at
    20, since a network that starts close to a solution needs only a short schedule. `train.init_from` names
    the source, so the trainer initialises the fresh model from it.
    """
    base_rate = config.train.learning_rate
    if source.run_dir is not None:
        earlier = _run_config(source)
        base_rate = earlier.train.learning_rate
        config = config.replace(
            model=dataclasses.replace(earlier.model, num_classes=config.model.num_classes),
            data=dataclasses.replace(config.data, input_size=earlier.data.input_size, resize=earlier.data.resize,
                                     normalisation=earlier.data.normalisation),
        )
    train = dataclasses.replace(config.train, learning_rate=base_rate * LR_FACTOR,
                                epochs=min(config.train.epochs, MAX_EPOCHS), init_from=str(source.location))
    return config.replace(train=train)


def _run_config(source: Source) -> Config:
    assert source.run_dir is not None
    try:
        return Config.load(source.run_dir / runs.CONFIG)
    except UserError as exc:
        raise UserError(f"cannot fine-tune from {source.label}: its {runs.CONFIG} cannot be used ({exc})") from None


# ---------------------------------------------------------------------------------------------------------------
# Copying the weights
# ---------------------------------------------------------------------------------------------------------------


def initialise(model: keras.Model, source: Source, channels: int) -> InitReport:
    """Copy `source`'s weights into `model` (freshly built for `channels` input channels), layer by layer.

    Every weight-bearing layer but the output must find a layer of the same name and weight shapes in the
    source; the output layer is copied when its shape matches, else left freshly initialised (other classes).

    Raises:
        UserError: the file is not a Keras model or fails to load (named), it takes another number of input
            channels (both named), or a layer does not fit (the first one named, with both shapes).
    """
    from unet.inference import load_model_file  # imports Keras and TensorFlow: only when a model is loaded

    try:
        loaded = load_model_file(source.model_path)
    except UserError as exc:
        raise UserError(f"cannot fine-tune from {source.label}: {exc}" if source.kind == RUN else str(exc)) from None
    _check_channels(loaded, source, channels)
    head = model.layers[-1]
    theirs = {layer.name: layer for layer in loaded.layers}
    copied = 0
    for layer in model.layers:
        if layer is head or not layer.weights:
            continue
        weights = _matching_weights(layer, theirs.get(layer.name), source)
        layer.set_weights(weights)
        copied += 1
    their_head = theirs.get(head.name, loaded.layers[-1])
    before, after = _classes(loaded), _classes(model)
    head_fits = _shapes(their_head) == _shapes(head)
    if head_fits:
        head.set_weights(their_head.get_weights())
        copied += 1
    message = f"copied the weights of {copied} layers from {source.label}"
    if not head_fits:
        message += (f"; output layer replaced: {before} classes there, {after} here (it starts from random "
                    "weights and learns the new classes)")
    return InitReport(copied_layers=copied, head_replaced=not head_fits, classes_before=before, classes_after=after,
                      message=message)


def _check_channels(loaded: keras.Model, source: Source, channels: int) -> None:
    if len(loaded.inputs) != 1 or len(loaded.outputs) != 1 or len(loaded.inputs[0].shape) != 4:
        raise UserError(f"{source.label} is not a segmentation model (one image in, one mask out); "
                        "fine-tune from a U-Net trained here")
    theirs = loaded.inputs[0].shape[-1]
    if theirs != channels:
        raise UserError(f"{source.label} takes {_count(theirs, 'input channel')} but this dataset's images have "
                        f"{channels}; fine-tune from a model trained on {channels}-channel images, or start from "
                        "scratch")


def _matching_weights(layer: keras.layers.Layer, theirs: keras.layers.Layer | None, source: Source) -> list:
    """The source layer's weights for `layer`, or a UserError naming the first thing that does not fit."""
    hint = ("the source was built with other depth/filters; start from its run so the architecture is copied"
            if source.kind == FILE else
            "the run was built with other model settings (depth, filters, kernel size, batch norm or up-sampling) "
            "than this config; fine-tune with the run's model settings")
    if theirs is None or not theirs.weights:
        raise UserError(f"cannot fine-tune from {source.label}: layer '{layer.name}' is not in it; {hint}")
    here, there = _shapes(layer), _shapes(theirs)
    if here != there:
        raise UserError(f"cannot fine-tune from {source.label}: layer '{layer.name}' has {_words(there, here)} "
                        f"weights there and {_words(here, there)} here: {hint}")
    return theirs.get_weights()


def _shapes(layer: keras.layers.Layer) -> list[tuple[int, ...]]:
    return [tuple(int(side) for side in weight.shape) for weight in layer.weights]


def _words(shapes: list[tuple[int, ...]], other: list[tuple[int, ...]]) -> str:
    """'3x3x8x16' when the first arrays differ (the kernel), else every array's shape ('3x3x1x4 + 4')."""
    if shapes and other and shapes[0] != other[0]:
        shapes = shapes[:1]
    return " + ".join("x".join(str(side) for side in shape) for shape in shapes) or "no"


def _classes(model: keras.Model) -> int:
    """Classes of a model's output: one sigmoid output means two (background and foreground)."""
    units = int(model.outputs[0].shape[-1])
    return 2 if units == 1 else units


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
