"""Prediction with a trained model on images of any size: load safely, preprocess as in training, predict, save.

Loading. A model comes from a run folder (model.keras with the run's config.json and dataset.json, which give the
class names, colours and normalisation statistics) or from an uploaded `.keras` file (channels and classes read
from the model's input and output, normalisation 'unit'). A model file is data that can smuggle code: its
config.json is read first and a Lambda layer, a pickled Python function or a class from outside Keras is refused
before Keras sees the file; Keras then loads it with `safe_mode=True` anyway (see DESIGN.md, known traps).

Scale, the one choice that must match training (`config.data.resize`):
- 'resize' runs trained on whole images stretched to input_size x input_size (aspect not kept), so a new image is
  stretched the same way (the same TF resize as training), predicted, and its probabilities resized back
  (bilinear) to the image's own size. A model only ever sees objects at the scale it learned.
- 'crop' runs trained on full-resolution windows, so a new image is predicted at full resolution: reflect-padded
  whole when it fits in memory, otherwise in blended tiles (`unet.tiling`).
An uploaded model with a fixed input size is treated as 'resize' at that size; one without is full resolution.

Channels follow the model (grayscale into RGB: repeated; RGB into grayscale: luminance) and every conversion is
said in `Prediction.notes`. The result keeps the probabilities, so a new threshold or clean-up never re-runs the
model.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import tensorflow as tf

from unet import atomic, postprocess, preprocess, runs, tiling
from unet import images as image_io
from unet.classmap import ClassMap
from unet.config import MAX_CHANNELS, Config
from unet.errors import UserError
from unet.instances import (
    OBJECT_COLUMNS,
    SEED_PROBABILITY,
    drop_small_objects,
    label_file_pixels,
    labels_from_probabilities,
    object_table,
    objects_of_mask,
    renumber,
    table_csv,
)
from unet.intensity import FIXED, Intensity
from unet.object_tuning import ObjectSettings
from unet.object_tuning import read as read_object_settings
from unet.overlay import class_colors
from unet.postprocess import measurements_csv, zip_results
from unet.task import INSTANCES, SEMANTIC

log = logging.getLogger("unet.inference")

__all__ = ["Prediction", "Predictor", "check_memory", "label_file_pixels", "load_model_file", "load_predictor",
           "measurements_csv", "predict_folder", "prepare_image", "zip_results"]

MODEL_SUFFIX = ".keras"
OBJECTS_CSV = "objects.csv"  # `predict` writes it beside the masks
MAX_MODEL_BYTES = 2 * 1024**3  # the archive and its unpacked members alike
MAX_ARCHIVE_MEMBERS = 1000
MAX_CONFIG_BYTES = 64 * 1024**2
CODE_CLASSES = {  # config class names that carry or load code
    "Lambda": "a Lambda layer",
    "TFSMLayer": "a TensorFlow SavedModel layer",
    "__lambda__": "a Python lambda",
}
SAFE_PACKAGES = ("keras", "keras_hub", "keras_cv", "keras_nlp")  # the only modules Keras itself imports in safe mode
MIN_SIDE = 8  # pixels; below this there is nothing for a U-Net to see
FALLBACK_MULTIPLE = 32  # for an uploaded model whose down-sampling cannot be read from its layers
MAX_MULTIPLE = 256
DOWNSAMPLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Conv2D)
MULTI_CLASS_DTYPE = np.float16  # K probabilities per pixel of a 12-megapixel image: halve the memory
BINARY_DTYPE = np.float32


# ----------------------------------------------------------------------------------------------------------------
# Loading a model file safely
# ----------------------------------------------------------------------------------------------------------------


def _read_archive_config(path: Path, name: str) -> dict[str, Any]:
    """The config.json of a `.keras` archive, after checking that the file is one (without unpacking it)."""
    if not name.lower().endswith(MODEL_SUFFIX) or path.suffix.lower() != MODEL_SUFFIX:
        raise UserError(f"'{name}' is not a .keras model file; only the .keras format is accepted (not .h5 or others)")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UserError(f"cannot read '{name}' ({exc.strerror})") from None
    if size > MAX_MODEL_BYTES:
        limit = MAX_MODEL_BYTES // 1024**3
        raise UserError(f"'{name}' is {size / 1024**3:.1f} GB; model files over {limit} GB are refused")
    not_a_model = f"'{name}' is not a Keras model file (a .keras file saved by Keras or by this app)"
    if not zipfile.is_zipfile(path):
        raise UserError(not_a_model)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ARCHIVE_MEMBERS or sum(m.file_size for m in members) > MAX_MODEL_BYTES:
                raise UserError(f"{not_a_model}: it holds too many or too large files")
            names = {m.filename: m for m in members}
            if "config.json" not in names or names["config.json"].file_size > MAX_CONFIG_BYTES:
                raise UserError(f"{not_a_model}: it has no model description (config.json)")
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError):
        raise UserError(f"{not_a_model}: it is damaged") from None
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise UserError(f"{not_a_model}: its config.json does not describe a model")
    return config


def _saved_by(path: Path) -> str | None:
    """The Keras version that saved a `.keras` archive, from its metadata.json (None when it does not say)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo("metadata.json").file_size > MAX_CONFIG_BYTES:
                return None
            version = json.loads(archive.read("metadata.json")).get("keras_version")
    except (KeyError, OSError, ValueError, AttributeError, zipfile.BadZipFile):
        return None
    return version if isinstance(version, str) and version[:1].isdigit() else None


def find_code(node: Any) -> str | None:
    """What in a model's config would run code when loaded (None if nothing): the thing's description.

    The compile section is skipped: it is not read when loading with `compile=False`.
    """
    if isinstance(node, list):
        return next((found for item in node if (found := find_code(item))), None)
    if not isinstance(node, dict):
        return None
    cls, module = node.get("class_name"), node.get("module")
    if isinstance(cls, str):
        if cls in CODE_CLASSES:
            return CODE_CLASSES[cls]
        if isinstance(module, str) and module.split(".")[0] not in SAFE_PACKAGES and module != "builtins":
            kind = "function" if cls == "function" else "class"
            return f"a custom {kind} '{node.get('registered_name') or cls}' from '{module}'"
    return next((found for key, value in node.items() if key != "compile_config" and (found := find_code(value))), None)


def load_model_file(path: Path, name: str | None = None) -> keras.Model:
    """A `.keras` model, loaded only if its config holds no code; nothing of a refused file is executed.

    Args:
        path: the file on disk (an upload is saved to a temporary `.keras` file first).
        name: the name to show the user (the uploaded file's name); defaults to the file's name.

    Raises:
        UserError: not `.keras`, not a model, damaged, or containing custom code.
    """
    path = Path(path)
    name = name or path.name
    config = _read_archive_config(path, name)
    code = find_code(config)
    if code:
        raise UserError(
            f"'{name}' contains custom code ({code}) and was not loaded: model files may use only Keras' built-in "
            "layers, because code inside a file could harm this computer; rebuild the model without it"
        )
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception:  # Keras raises many types for a bad file; the user needs one plain message, the log the rest
        log.warning("loading the uploaded model %r failed", name, exc_info=True)
        saved_by = _saved_by(path)
        if saved_by and saved_by.split(".")[0] != keras.__version__.split(".")[0]:
            raise UserError(
                f"'{name}' was saved by Keras {saved_by} and this app runs Keras {keras.__version__}, which cannot "
                f"read it; load it in Keras {saved_by.split('.')[0]} and save it again with Keras 3 "
                "(model.save('model.keras')), or train the model here"
            ) from None
        raise UserError(
            f"'{name}' could not be loaded as a Keras model: it is damaged, or uses layers or settings this app's "
            f"Keras {keras.__version__} does not know"
        ) from None
    if not isinstance(model, keras.Model):
        raise UserError(f"'{name}' holds a Keras object that is not a model")
    return model


# ----------------------------------------------------------------------------------------------------------------
# What a model needs, read from the model itself
# ----------------------------------------------------------------------------------------------------------------


def _layers(model: keras.layers.Layer) -> Iterable[keras.layers.Layer]:
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _layers(layer)


def downsampling_factor(model: keras.Model) -> int:
    """How many times the model halves the image (as 2**depth): the product of its pooling/conv strides."""
    factor = 1
    for layer in _layers(model):
        if isinstance(layer, DOWNSAMPLING):
            strides = getattr(layer, "strides", None) or getattr(layer, "pool_size", (1, 1))
            factor *= max(int(s) for s in strides)
    return factor


def _shapes(model: keras.Model, name: str) -> tuple[tuple, tuple]:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"'{name}' has several inputs or outputs; a segmentation model has one image in, one mask out")
    inp, out = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(inp) != 4 or len(out) != 4:
        raise UserError(f"'{name}' does not take images and give masks (input {inp}, output {out})")
    if inp[3] is None or not 1 <= inp[3] <= MAX_CHANNELS:
        raise UserError(f"'{name}' expects {inp[3]} channels per pixel; 1 to {MAX_CHANNELS} are supported")
    return inp, out


def _outputs_scores(model: keras.Model) -> bool:
    """True when the last layer has no activation, so its outputs are scores (logits), not probabilities."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") == "linear"


def _keeps_size(model: keras.Model, channels: int, side: int) -> bool:
    try:
        out = model(np.zeros((1, side, side, channels), np.float32), training=False)
    except Exception:  # a model that cannot run at this size
        return False
    return tuple(out.shape[1:3]) == (side, side)


# ----------------------------------------------------------------------------------------------------------------
# Prediction
# ----------------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Prediction:
    """The model's probabilities for one image, at the image's own size.

    `probabilities` is [H, W, 1] float32 (sigmoid of the foreground) for a binary model, [H, W, K] float16
    (softmax) otherwise. `notes` says what was done to the image (channel conversion, resizing, tiling).
    """

    probabilities: np.ndarray
    num_classes: int
    notes: tuple[str, ...] = ()
    interior: np.ndarray | None = None  # instance task: float16 [H, W] probability of "object interior"
    seed_probability: float = SEED_PROBABILITY  # instance task: the run's chosen seed level (`unet.object_tuning`)

    @property
    def binary(self) -> bool:
        return self.probabilities.shape[-1] == 1

    @property
    def shape(self) -> tuple[int, int]:
        return self.probabilities.shape[0], self.probabilities.shape[1]

    def class_probability(self, k: int) -> np.ndarray:
        """float32 [H, W] probability of class `k`."""
        if self.binary:
            p = self.probabilities[..., 0].astype(np.float32)
            return p if k == 1 else 1.0 - p
        return self.probabilities[..., k].astype(np.float32)

    def mask(self, threshold: float = 0.5, min_size: int = 0, fill_holes: bool = False) -> np.ndarray:
        """uint8 class indices [H, W]; `threshold` applies to binary models (multi-class is argmax).

        `min_size` removes objects smaller than that many pixels; `fill_holes` fills background enclosed by an
        object (both per class).
        """
        mask = postprocess.mask_from_probabilities(self.probabilities, threshold)
        return postprocess.clean(mask, min_size, fill_holes)

    @property
    def separates_objects(self) -> bool:
        return self.interior is not None

    def labels(self, threshold: float = 0.5, min_size: int = 0) -> np.ndarray:
        """int32 [H, W], one id per object (0 = background), ids 1..n: the largest id is the object count.

        Instance-task runs: seeds where the interior is likely, grown by a watershed over the foreground
        (probability over `threshold`), so touching objects keep apart (`unet.instances.labels_from_probabilities`).
        Any other binary run: the foreground's connected regions, where touching objects are one.
        """
        from scipy import ndimage

        foreground = self.probabilities[..., 0] >= threshold if self.binary else self.mask(threshold) > 0
        if self.interior is None:
            labels, _ = ndimage.label(foreground, structure=ndimage.generate_binary_structure(2, 1))
            return renumber(drop_small_objects(labels.astype(np.int32, copy=False), min_size))
        return labels_from_probabilities(foreground, self.interior, seed_probability=self.seed_probability,
                                         min_size=min_size)


@dataclass(eq=False)
class Predictor:
    """A loaded model and everything needed to feed it as training did.

    `multiple` is 2**depth: padded sizes are multiples of it. `resize_to` is the training input size for
    'resize' runs and None for full-resolution prediction. `train_scale` (y, x) is the factor by which a 'resize'
    run shrank its training images (input size over their size): new images are scaled by that same factor and
    predicted whole or in tiles, so a 2048x2048 image of 512x512-trained data is seen at the detail training saw
    (not squashed into the input square). Without it (a bare model file, or a run recorded before the factor was
    kept), images are stretched to `resize_to`.
    """

    model: keras.Model
    channels: int
    num_classes: int
    multiple: int
    class_names: tuple[str, ...]
    colors: np.ndarray
    normalisation: str = preprocess.UNIT
    mean: float = 0.0
    std: float = 1.0
    resize_to: int | None = None
    name: str = "model"
    scores_out: bool = False  # the model gives logits; apply sigmoid/softmax here
    class_map: ClassMap | None = None  # the run's mask values per class; None for a bare model file
    source_bits: int | None = None  # the bit depth of the run's dataset (8-bit images are brought to it)
    intensity: Intensity | None = None  # the run's rule from stored values to the network's scale; None: 8-bit
    task: str = SEMANTIC  # "instances": the model gives background / interior / boundary; predictions are binary
    train_scale: tuple[float, float] | None = None
    train_size: tuple[int, int] | None = None  # (h, w) of the training images the scale was taken from
    tile: int = tiling.TILE
    overlap: int = tiling.OVERLAP
    tile_batch: int = tiling.TILE_BATCH
    objects: ObjectSettings = field(default_factory=ObjectSettings)  # instance task: how probabilities become objects
    _forward: Callable[[Any], Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Traced once per tile shape (bilinear up-sampling cannot be traced for unknown sizes); whole images of
        # ever-new sizes run eagerly instead, which costs less than a new trace each.
        self._forward = tf.function(lambda x: self.model(x, training=False), autograph=False)

    @property
    def depth(self) -> int:
        return int(math.log2(self.multiple))

    @property
    def full_resolution_width(self) -> int:
        """Filters of the first convolution: what sets the memory per pixel at full resolution."""
        convs = [layer for layer in _layers(self.model) if isinstance(layer, keras.layers.Conv2D)]
        return int(convs[0].filters) if convs else tiling.REFERENCE_WIDTH

    @classmethod
    def from_run(cls, run_dir: Path, model_file: Path | None = None) -> Predictor:
        """The run's best model (or `model_file`) with the run's channels, scale, normalisation and classes."""
        run = runs.Run(Path(run_dir))
        if not run.file(runs.CONFIG).exists():
            raise UserError(f"'{run.path.name}' is not a run folder (it has no {runs.CONFIG})")
        config = Config.load(run.file(runs.CONFIG))
        path = Path(model_file) if model_file else run.file(runs.BEST_MODEL)
        if not path.exists():
            raise UserError(f"run '{run.name}' has no model yet ({path.name}); train it first")
        model = load_model_file(path)
        inp, out = _shapes(model, path.name)
        recorded = run.training_data()
        task = INSTANCES if recorded.get("task") == INSTANCES and int(out[3]) == 3 else SEMANTIC
        num_classes = 2 if task == INSTANCES else max(2, int(out[3]))  # objects or not, for every pixel score
        names, colors = _classes(recorded.get("classes", []), num_classes)
        data = config.data
        if data.normalisation == preprocess.STANDARD and not {"mean", "std"} <= set(recorded):
            raise UserError(f"run '{run.name}' uses 'standard' normalisation but its record of the training data has "
                            "no mean/std")
        return cls(
            model=model, channels=int(inp[3]), num_classes=num_classes, multiple=2**config.model.depth,
            class_names=names, colors=colors, normalisation=data.normalisation,
            mean=float(recorded.get("mean", 0.0)), std=float(recorded.get("std", 1.0)),
            resize_to=data.input_size if data.resize == preprocess.RESIZE else None, name=run.name,
            class_map=ClassMap.from_record(recorded),
            source_bits=recorded.get("source_bits"),
            intensity=Intensity.from_record(recorded.get("intensity"), int(inp[3]), recorded.get("source_bits")),
            task=task,
            train_scale=_pair(recorded.get("resize_scale")) if data.resize == preprocess.RESIZE else None,
            train_size=_pair(recorded.get("train_image_size"), int),
            objects=read_object_settings(run.path) if task == INSTANCES else ObjectSettings(),
        )

    @classmethod
    def from_file(cls, path: Path, name: str | None = None) -> Predictor:
        """An uploaded `.keras` model: channels and classes from its shapes, 'unit' normalisation, default colours."""
        name = name or Path(path).name
        model = load_model_file(Path(path), name)
        inp, out = _shapes(model, name)
        channels, num_classes = int(inp[3]), max(2, int(out[3]))
        if inp[1] != inp[2]:
            raise UserError(f"'{name}' takes {inp[2]}x{inp[1]} images; only square or any-size inputs are supported")
        fixed = inp[1]  # a fixed input size: images are resized to it, as for a 'resize' run
        multiple = downsampling_factor(model)
        if multiple > MAX_MULTIPLE:
            multiple = FALLBACK_MULTIPLE
        probe = fixed or max(2 * multiple, FALLBACK_MULTIPLE)
        if not _keeps_size(model, channels, probe):
            multiple, probe = FALLBACK_MULTIPLE, fixed or 2 * FALLBACK_MULTIPLE
            if not _keeps_size(model, channels, probe):
                raise UserError(f"'{name}' does not give a mask the size of its input, so it cannot segment images")
        names, colors = _classes([], num_classes)
        return cls(model=model, channels=channels, num_classes=num_classes, multiple=multiple, class_names=names,
                   colors=colors, resize_to=fixed, name=name, scores_out=_outputs_scores(model))

    # -- running the network ------------------------------------------------------------------------------------

    def _probabilities(self, batch01: np.ndarray, traced: bool = False) -> np.ndarray:
        """float32 [B, h, w, K] probabilities of images in 0..1, normalised as in training."""
        x = preprocess.normalise(np.asarray(batch01, np.float32), self.normalisation, self.mean, self.std)
        x = tf.convert_to_tensor(x, tf.float32)
        out = self._forward(x) if traced else self.model(x, training=False)
        if self.scores_out:
            out = tf.sigmoid(out) if out.shape[-1] == 1 else tf.nn.softmax(out, axis=-1)
        if self.task == INSTANCES:  # background and interior make the prediction; the boundary is the rest
            out = out[..., :2]
        return out.numpy().astype(np.float32, copy=False)

    def _predict_raw(self, images: np.ndarray) -> np.ndarray:
        return self._probabilities(images)

    def _predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        return self._probabilities(tiles, traced=True)

    @property
    def rule(self) -> Intensity:
        """The intensity rule new images get: the run's, or value / 255 for a bare model file."""
        return self.intensity or Intensity.fixed(self.channels)

    def picture(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB of an image as the model sees it (its intensity rule; channels as a colour composite), for
        overlays: a 16-bit image is shown by the rule, not clipped at 255."""
        unit, _ = prepare_image(image, self.channels, self.rule, self.source_bits)
        return image_io.display_rgb(unit)

    def predict(self, image: np.ndarray, progress: tiling.Progress | None = None) -> Prediction:
        """Probabilities for one image: [H, W] or [H, W, C], uint8/uint16/float32 (RGBA: alpha ignored).

        `progress(done, total)` hears of every batch of tiles, and (1, 1) at the end.

        Raises:
            UserError: an empty, too small or too large image, one that is not a picture, or one whose channels
                the model cannot take (e.g. 3 channels for a 2-channel model).
        """
        pixels, notes = prepare_image(image, self.channels, self.rule, self.source_bits)
        height, width = pixels.shape[:2]
        if self.resize_to and self.train_scale:
            probs = self._predict_at_training_scale(pixels, notes, progress)
        elif self.resize_to:
            probs = self._predict_resized(pixels, height, width)
            size = f"{self.resize_to}x{self.resize_to}"
            notes.append(f"resized to {size}, the size the model was trained at; mask resized back")
        else:
            probs = self._predict_full(pixels, notes, progress)
        del pixels
        if progress is not None:  # done (an image predicted whole, or resized to the input, has no tiles to count)
            progress(1, 1)
        if self.task == INSTANCES:  # background / interior -> the foreground, plus the interior
            foreground = np.subtract(1.0, probs[..., :1], dtype=BINARY_DTYPE)
            interior = probs[..., 1].astype(MULTI_CLASS_DTYPE)
            del probs
            return Prediction(foreground, self.num_classes, tuple(notes), interior=interior,
                              seed_probability=self.objects.seed_probability)
        dtype = BINARY_DTYPE if probs.shape[-1] == 1 else MULTI_CLASS_DTYPE
        return Prediction(probs.astype(dtype, copy=False), self.num_classes, tuple(notes))

    def _predict_full(self, pixels: np.ndarray, notes: list[str], progress: tiling.Progress | None = None
                      ) -> np.ndarray:
        """Probabilities at the image's own size: whole, or in overlapping tiles when it is large."""
        height, width = pixels.shape[:2]
        if tiling.should_tile(height, width, self.full_resolution_width):
            grid = tiling.TileGrid(height, width, self.multiple, self.tile, self.overlap)
            notes.append(f"predicted in {len(grid)} overlapping tiles of {grid.tile[1]}x{grid.tile[0]} pixels")
            return tiling.predict_tiles(self._predict_tiles, pixels, self.multiple, self.tile, self.overlap,
                                        self.tile_batch, progress)
        return tiling.predict_whole(self._predict_raw, pixels, self.multiple)

    def _predict_at_training_scale(self, pixels: np.ndarray, notes: list[str],
                                   progress: tiling.Progress | None = None) -> np.ndarray:
        """Scale by the training factor (antialiased bilinear, as training resized), predict, scale back; at a
        factor that keeps the size (training images already the input size), predict as it is."""
        height, width = pixels.shape[:2]
        sy, sx = self.train_scale or (1.0, 1.0)
        scaled_h, scaled_w = max(self.multiple, round(height * sy)), max(self.multiple, round(width * sx))
        same = (scaled_h, scaled_w) == (height, width)
        if not same:
            resized = tf.image.resize(pixels, [scaled_h, scaled_w], method="bilinear", antialias=True).numpy()
            if self.rule.is_eight_bit:  # as training: 8-bit images resized, overshoot clipped into 0..255's range
                resized = np.clip(resized, 0.0, 1.0)
            notes.append(f"scaled by {sx:.3g} x {sy:.3g} to {scaled_w}x{scaled_h}, the scale the model was trained "
                         "at; mask scaled back")
        if self.train_size:
            th, tw = self.train_size
            ratio = max(height / th, width / tw, th / height, tw / width)
            if ratio >= 2:
                notes.append(f"this image is {width}x{height} and the training images were {tw}x{th}: it was "
                             "scaled by the same factor, so objects keep the size training saw; if its objects "
                             "are not the same size in pixels, the result may suffer")
        if same:
            return self._predict_full(pixels, notes, progress)
        probs = self._predict_full(resized, notes, progress)
        del resized
        out = np.empty((height, width, probs.shape[-1]), np.float32)
        for k in range(probs.shape[-1]):  # one channel at a time: OpenCV caps the channel count
            out[:, :, k] = cv2.resize(probs[:, :, k], (width, height), interpolation=cv2.INTER_LINEAR)
        return out

    def _predict_resized(self, pixels: np.ndarray, height: int, width: int) -> np.ndarray:
        size = self.resize_to
        blank = np.zeros((height, width, 1), np.uint8)  # the training resize takes a pair; the mask is unused
        identity = ([0.0] * self.channels, [1.0] * self.channels)  # the pixels are on the network's scale already
        resized, _ = preprocess.center_or_resize(pixels, blank, size, preprocess.RESIZE, identity)
        if self.rule.is_eight_bit:
            resized = tf.clip_by_value(resized, 0.0, 1.0)
        probs = self._probabilities(resized.numpy()[None])[0]
        out = np.empty((height, width, probs.shape[-1]), np.float32)
        for k in range(probs.shape[-1]):  # one channel at a time: OpenCV caps the channel count
            out[:, :, k] = cv2.resize(probs[:, :, k], (width, height), interpolation=cv2.INTER_LINEAR)
        return out


def _pair(value: Any, kind: type = float) -> tuple[Any, Any] | None:
    """A recorded [y, x] pair, or None when absent or malformed."""
    try:
        y, x = value
        return kind(y), kind(x)
    except (TypeError, ValueError):
        return None


def _classes(recorded: list[dict[str, Any]], num_classes: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names and colours from dataset.json's classes, filled with defaults up to `num_classes`."""
    by_index = {int(c["index"]): c for c in recorded if isinstance(c, dict) and "index" in c}
    names = tuple(
        str(by_index.get(k, {}).get("name") or ("background" if k == 0 else f"class {k}")) for k in range(num_classes)
    )
    given = [by_index[k]["color"] for k in range(num_classes) if k in by_index and "color" in by_index[k]]
    colors = class_colors(num_classes, given if len(given) == num_classes else None)
    return names, colors


def prepare_image(image: np.ndarray, channels: int, rule: Intensity | None = None, source_bits: int | None = None
                  ) -> tuple[np.ndarray, list[str]]:
    """float32 [H, W, channels] on the network's scale, and notes on what was converted.

    The run's intensity rule (`rule`; value / 255 when None) is applied to the image's own values, the same
    numbers for every image, as in training. An 8-bit image for a model trained on deeper data is first brought
    to that depth, as the dataset's 8-bit images were. Grayscale and RGB convert into each other; any other channel
    mismatch is refused, naming both counts.
    """
    rule = rule or Intensity.fixed(channels)
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.dtype.kind not in "uif":
        raise UserError("an image must be height x width, or height x width x channels, of numbers")
    notes: list[str] = []
    height, width = image.shape[:2]
    if image.size == 0:
        raise UserError("the image is empty (0 pixels)")
    if min(height, width) < MIN_SIDE:
        raise UserError(f"the image is {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} are needed")
    if height * width > image_io.MAX_PIXELS:
        limit = image_io.MAX_PIXELS // 1_000_000
        raise UserError(f"the image is {width}x{height} pixels; images over {limit} megapixels are refused")
    if image.ndim == 3 and image.shape[2] == 4 and channels in (1, 3):  # RGBA: the colour without alpha
        image = image[:, :, :3]
        notes.append("transparency (alpha) ignored")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    have = image_io.channels_of(image)
    stored = 1 if image.ndim == 2 else image.shape[2]
    if not image_io.convertible(have, channels) and stored != channels:
        raise UserError(f"the image has {stored} channels but the model takes {channels}; give images with "
                        f"{channels} channel{'s' if channels != 1 else ''}, like those it was trained on")
    if channels == 3 and have == 1 and stored != 3:
        notes.append("grayscale image repeated into 3 channels for an RGB model")
    elif channels == 1 and have == 3:
        notes.append("colour image converted to grayscale (luminance) for a grayscale model")
    pixels = image_io.to_channels(image, channels) if stored != channels else image
    deep = source_bits is not None and source_bits > 8
    if rule.kind == FIXED and rule.is_eight_bit and pixels.dtype != np.uint8:
        pixels, _ = _legacy_to_8_bit(pixels, source_bits, notes)
    elif pixels.dtype == np.uint8 and deep and not rule.is_eight_bit:
        notes.append(f"an 8-bit image for a model trained on {source_bits}-bit images: scaled to {source_bits} "
                     f"bits as the training's 8-bit images were (x {2**source_bits - 1} / 255); intensities may "
                     "not match")
        pixels = pixels.astype(np.float64) * ((2**source_bits - 1) / 255.0)
    elif pixels.dtype != np.uint8 and not rule.is_eight_bit and rule.kind == FIXED:
        top = int(pixels.max()) if pixels.dtype.kind in "ui" and pixels.size else 0
        if top > rule.high[0]:
            notes.append(f"values up to {top} are brighter than the training images' range (0..{rule.high[0]:g})")
    unit = rule.to_unit(pixels)
    return unit, notes


# Working memory of one image on the Inference page, in bytes per pixel of the image: the upload, the image, its
# network-scale copy, the tile accumulators, the prediction kept for the sliders, and for runs that separate
# objects the watershed's seeds, patches and ids. Measured in the app's server (issue #24): a 6000x4000 noise image
# of 345,000 objects raised its memory by 0.80 GB, 33 bytes a pixel; 40 leaves room. Semantic runs are estimated
# from their arrays: 12 bytes, and 6 per class output (the tile accumulator and the kept probabilities).
OBJECT_BYTES_PER_PIXEL = 40
CLASS_BYTES_PER_PIXEL = 12
BYTES_PER_OUTPUT = 6
MEMORY_RESERVE = 512 * 1024**2  # left for everything else the server does


def memory_available() -> int | None:
    """Bytes this machine can still give out without swapping (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def working_bytes(predictor: Predictor, height: int, width: int) -> int:
    """About how much memory predicting (and separating the objects of) a `height` x `width` image takes."""
    if predictor.task == INSTANCES:
        return OBJECT_BYTES_PER_PIXEL * height * width
    outputs = 1 if predictor.num_classes == 2 else predictor.num_classes
    return (CLASS_BYTES_PER_PIXEL + BYTES_PER_OUTPUT * outputs) * height * width


def check_memory(predictor: Predictor, name: str, shape: tuple[int, int], available: int | None = None) -> None:
    """Refuse, before any work, an image this machine cannot predict now, naming its size and the largest it can.

    Raises:
        UserError: the image needs more memory than is free (`available`, default: what the machine says).
    """
    from unet.units import bytes_text

    height, width = shape
    free = memory_available() if available is None else available
    if free is None:
        return
    usable = max(free - MEMORY_RESERVE, 0)
    needed = working_bytes(predictor, height, width)
    if needed <= usable:
        return
    per_pixel = needed / (height * width)
    largest = usable / per_pixel / 1e6
    what = "separating its objects" if predictor.task == INSTANCES else "predicting it"
    raise UserError(
        f"'{name}' is {width}x{height} pixels ({height * width / 1e6:.0f} megapixels): {what} needs about "
        f"{bytes_text(needed)} of memory and this server has {bytes_text(usable)} to spare now, enough for about "
        f"{largest:.0f} megapixels. Crop it into parts or scale it down below that, and upload those."
    )


def _legacy_to_8_bit(pixels: np.ndarray, source_bits: int | None, notes: list[str]) -> tuple[np.ndarray, int | None]:
    """A deeper image for an 8-bit model: scaled by the run's recorded depth (or its own), as such runs trained."""
    depth = source_bits if source_bits and source_bits > 8 and pixels.dtype.kind in "ui" else None
    top = int(pixels.max()) if pixels.size and pixels.dtype.kind in "ui" else 0
    if depth and top.bit_length() > depth:
        notes.append(f"values up to {top} are brighter than the training images' {depth}-bit range; they were clipped")
    notes.append(f"{pixels.dtype} pixels scaled to 8 bits" + (f" as in training (value x 255 / {2**depth - 1})"
                                                               if depth else ""))
    return image_io.to_uint8(pixels, depth), depth


# ----------------------------------------------------------------------------------------------------------------
# Folders and downloads
# ----------------------------------------------------------------------------------------------------------------


def load_predictor(run_dir: Path | None, model_file: Path | None = None) -> Predictor:
    """A run's model (optionally another model file with the run's settings), or a bare model file."""
    if run_dir is not None:
        return Predictor.from_run(Path(run_dir), model_file)
    if model_file is not None:
        return Predictor.from_file(Path(model_file))
    raise UserError("give a run folder (--run) or a model file (--model)")


def _print_problem(name: str, problem: str) -> None:
    print(f"skipped '{name}': {problem}", file=sys.stderr)


def mask_file_pixels(predictor: Predictor, classes: np.ndarray, class_indices: bool = False
                     ) -> tuple[np.ndarray, list[tuple[int, int, int]] | None]:
    """What a predicted mask file holds: the user's own mask values (and a display palette for gray values up to
    255), so that the file reads back as a mask of the same dataset; or the class indices 0..K-1 when asked, or
    when the model came without a class map (a bare model file)."""
    class_map = predictor.class_map
    if class_indices or class_map is None or class_map.num_classes != predictor.num_classes:
        table = [tuple(int(v) for v in c) for c in predictor.colors] + [(0, 0, 0)] * (256 - predictor.num_classes)
        return classes.astype(np.uint8), table
    values = class_map.encode(classes)
    palette = class_map.palette() if values.ndim == 2 and values.dtype == np.uint8 else None
    return values, palette


def predict_folder(
    run_dir: Path | None,
    images: Path,
    out: Path,
    model_file: Path | None = None,
    threshold: float | None = None,
    report: Callable[[str, str], None] = _print_problem,
    class_indices: bool = False,
    labels: bool | None = None,
) -> list[Path]:
    """`python -m unet predict`: one mask PNG per image, the image's size, named STEM.png (STEM.tif with one
    plane per plane for a TIFF stack).

    The masks use the run's own mask values (0/255, the user's index values or colours; gray values are stored
    as a palette PNG that viewers show in the class colours), so a folder of predictions can be used as masks
    again; `class_indices` writes the class numbers 0..K-1 instead. `labels` writes instead one id per object
    (0 = background): the default for instance-task runs (touching objects separated), available for any binary
    run (its connected regions); 8-bit PNG up to 255 objects, 16-bit up to 65535, a 32-bit STEM.tif past that
    (Fiji, napari and every viewer read them).
    `objects.csv` beside them has one row per object of every image (area, centroid, box, perimeter,
    eccentricity, mean intensity per channel). Unreadable images and files that are not images are passed to
    `report(file name, problem)` and skipped. Returns the masks written.
    `threshold` None: the run's own (chosen on its held-back images for a separate-objects run, else 0.5); object
    ids use the run's chosen seed level and minimum object size (`unet.object_tuning`).
    """
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise UserError(f"there is no folder '{images.name}'")
    if out.resolve() == images.resolve():
        raise UserError("write the masks to another folder than the images (they would replace them)")
    files = sorted(p for p in images.iterdir() if p.is_file() and not p.name.startswith("."))
    if not any(p.suffix.lower() in image_io.IMAGE_EXTENSIONS for p in files):
        raise UserError(f"'{images.name}' holds no images ({', '.join(image_io.IMAGE_EXTENSIONS)})")
    predictor = load_predictor(run_dir, model_file)
    labels = predictor.task == INSTANCES if labels is None else labels
    threshold = predictor.objects.threshold if threshold is None else threshold
    if labels and predictor.num_classes != 2:
        raise UserError(f"object ids need a model of one foreground class; this one has {predictor.num_classes} "
                        "classes")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    objects: list[dict[str, Any]] = []
    for path in files:
        target = out / f"{path.stem}.png"
        if path.suffix.lower() not in image_io.IMAGE_EXTENSIONS:
            report(path.name, "not an image file")
        elif target in written:
            report(path.name, f"another image named '{path.stem}' was already written as '{target.name}'")
        else:
            try:
                masks = []
                for suffix, image in image_io.read_images(path):
                    prediction = predictor.predict(image)
                    if labels:
                        ids = prediction.labels(threshold, predictor.objects.min_size)
                        masks.append((label_file_pixels(ids), None))
                        objects += object_table(ids, image, path.name + suffix)
                    else:
                        classes = prediction.mask(threshold)
                        masks.append(mask_file_pixels(predictor, classes, class_indices))
                        objects += objects_of_mask(classes, predictor.class_names, image, path.name + suffix)
                if len(masks) > 1:  # a stack: one mask plane per image plane, as a TIFF stack (Fiji opens it)
                    target = target.with_suffix(".tif")
                    image_io.write_stack(target, np.stack([pixels for pixels, _ in masks]))
                elif masks[0][0].dtype == np.uint32:  # more than 65535 objects: past what a PNG holds
                    target = target.with_suffix(".tif")
                    image_io.write_stored(target, masks[0][0])
                else:
                    image_io.write_png(target, *masks[0])
                written.append(target)
            except UserError as exc:
                report(path.name, str(exc))
    if written:  # one row per object of every image: area, centroid, box, perimeter, eccentricity, intensity
        atomic.write_text(out / OBJECTS_CSV, table_csv(objects, ("class",) * (not labels) + OBJECT_COLUMNS))
    return written
