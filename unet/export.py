"""Exporting a run's best model for use outside the app: `python -m unet export` and the Runs page.

Formats: `keras` (the native file, a checked copy), `savedmodel` (TensorFlow SavedModel through `model.export`, for
TF Serving), `tflite` (float32, through `tf.lite.TFLiteConverter`) and `onnx` (through tf2onnx, when installed).

Every export is loaded back with its own runtime and run on 2-4 sample images (the run's validation images, or
random inputs when the dataset is gone); its output must match the Keras model within `TOLERANCES` before the
result says `ok`. Keras and SavedModel run the same TensorFlow kernels, so they must agree to 1e-4; TFLite and
ONNX Runtime use their own kernels (fused, reordered float32 sums), so they are allowed 1e-3.

Keras, SavedModel and ONNX take any batch and any height and width that are multiples of 2**depth (the network
halves the image depth times): Keras' bilinear `UpSampling2D` cannot be traced for unknown sizes, so the graph
that is exported is a copy of the network whose up-sampling is `tf.image.resize` to twice the dynamic size (the
same arithmetic, same weights; `any_size_network`). TFLite stays at the run's input size (S x S), which its
converter needs. Each export is checked at two sizes where it can take them: S x S validation images, and a
non-square (S + 2**depth) x 2S input. Inputs are float32 [batch, H, W, C] on the network's scale (the run's
intensity rule, and standardised with dataset.json's mean and std when the run used 'standard'); outputs are
probabilities (sigmoid [batch, H, W, 1] for two classes, softmax [batch, H, W, K] otherwise).

Files are written only into `out` (and a temporary folder inside the run folder, removed afterwards).
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unet import preprocess, runs
from unet.config import Config
from unet.dataset import Dataset
from unet.errors import UserError
from unet.inference import load_model_file, prepare_image
from unet.intensity import Intensity

KERAS, SAVEDMODEL, TFLITE, ONNX = "keras", "savedmodel", "tflite", "onnx"
FORMATS = (KERAS, SAVEDMODEL, TFLITE, ONNX)
TOLERANCES = {KERAS: 1e-4, SAVEDMODEL: 1e-4, TFLITE: 1e-3, ONNX: 1e-3}  # max |export - keras| on probabilities
FILE_NAMES = {KERAS: "model.keras", SAVEDMODEL: "saved_model", TFLITE: "model.tflite", ONNX: "model.onnx"}
LABELS = {KERAS: "Keras (.keras)", SAVEDMODEL: "TensorFlow SavedModel (TF Serving)", TFLITE: "TensorFlow Lite",
          ONNX: "ONNX"}
SAMPLES = 3  # images the check runs (2-4 keeps it quick while covering more than one input)
ONNX_OPSET = 17
ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
ONNX_INSTALL = "pip install tf2onnx==1.17.0 onnx==1.23.2 onnxruntime==1.32.0"
INPUT_NAME = "image"
ANY_SIZE = (KERAS, SAVEDMODEL, ONNX)  # formats that take any multiple of 2**depth; TFLite needs a fixed size


def unsupported_reason(fmt: str) -> str | None:
    """Why `fmt` cannot be exported on this installation, in words for the user; None when it can."""
    if fmt not in FORMATS:
        return f"'{fmt}' is not an export format; choose one of {', '.join(FORMATS)}"
    if fmt == ONNX:
        missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            return (f"ONNX export is not available on this installation: it needs the converter packages "
                    f"{', '.join(missing)}, which are not installed (install them with `{ONNX_INSTALL}`)")
    return None


SUPPORTED_FORMATS = tuple(fmt for fmt in FORMATS if unsupported_reason(fmt) is None)


@dataclass(frozen=True)
class ExportResult:
    """An export written to `path` and the check of its predictions against the Keras model.

    `ok` is True when `max_abs_diff <= tolerance` on `samples` inputs (`checked_on` says which kind).
    """

    path: Path
    fmt: str
    max_abs_diff: float
    tolerance: float
    ok: bool
    seconds: float
    size_bytes: int
    samples: int = 0
    checked_on: str = ""
    input_shape: tuple[int | None, ...] = ()
    usage: str = ""  # what a user of the file must feed it: size, channels, and the preprocessing in numbers
    sizes_checked: tuple[tuple[int, int], ...] = ()  # (height, width) of each input size the check ran

    @property
    def download_name(self) -> str:
        """The file name a browser download gets: directory formats become a zip."""
        return f"{self.path.name}.zip" if self.path.is_dir() else self.path.name

    def download_bytes(self) -> bytes:
        """The export as one file's bytes: the file itself, or a zip of a directory (under its own name)."""
        if not self.path.is_dir():
            return self.path.read_bytes()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
                archive.write(file, Path(self.path.name) / file.relative_to(self.path))
        return buffer.getvalue()

    def summary(self) -> str:
        """One line for a user: what was written and how well it matched."""
        verdict = "match" if self.ok else "do NOT match"
        sizes = " and ".join(f"{h}x{w}" for h, w in self.sizes_checked)
        return (f"{LABELS[self.fmt]} written to {self.path} ({self.size_bytes / 1e6:.2f} MB, {self.seconds:.1f} s); "
                f"its predictions {verdict} the trained model on {self.samples} {self.checked_on}"
                + (f" (sizes {sizes})" if sizes else "")
                + f": largest difference {self.max_abs_diff:.2e} (allowed {self.tolerance:.0e})"
                + (f"\nInput: {self.usage}" if self.usage else ""))


def usage_text(config: Config, recorded: dict[str, Any], any_size: bool = False) -> str:
    """The preprocessing a user of an exported file must apply, in numbers: the run's intensity rule (per
    channel), its normalisation, and the input's shape, so the file gives the app's results elsewhere."""
    data = config.data
    rule = Intensity.from_record(recorded.get("intensity"), data.channels, recorded.get("source_bits"))
    channels = {1: "1 channel (grayscale)", 3: "3 channels (RGB)"}.get(data.channels, f"{data.channels} channels")
    steps = [f"float32 [batch, height, width, {data.channels}] with {channels}",
             f"scale each image's raw values so that {rule.describe()}"]
    if data.normalisation == preprocess.STANDARD:
        steps.append(f"then subtract {float(recorded.get('mean', 0.0)):.6g} and divide by "
                     f"{float(recorded.get('std', 1.0)):.6g} (the dataset's mean and standard deviation)")
    multiple = 2 ** config.model.depth
    scale = recorded.get("resize_scale")
    if any_size:
        steps.append(f"any height and width that are multiples of {multiple} (pad the image's edges by "
                     f"reflection to the next multiple, e.g. {data.input_size}x{data.input_size} or "
                     f"{data.input_size + multiple}x{2 * data.input_size})")
        if data.resize == preprocess.RESIZE and scale:
            steps.append(f"first scale images like the training images, by {float(scale[0]):.4g} (height) and "
                         f"{float(scale[1]):.4g} (width), so objects have the size the network learned")
    else:
        steps.append(f"{data.input_size}x{data.input_size} pixels"
                     + (" (resize the whole image, as training did)" if data.resize == preprocess.RESIZE else
                        " windows (the network saw full-resolution crops; predict large images in overlapping "
                        "tiles)"))
    output = "one probability of the foreground per pixel" if config.model.num_classes == 2 else \
        f"{config.model.num_classes} class probabilities per pixel"
    return "; ".join(steps) + f". Output: {output}."


# ----------------------------------------------------------------------------------------------------------------
# Sample inputs for the check
# ----------------------------------------------------------------------------------------------------------------


def sample_inputs(run_dir: Path, config: Config, count: int = SAMPLES) -> tuple[np.ndarray, str]:
    """float32 [n, S, S, C] network inputs prepared as training prepared validation images, and what they are.

    Falls back to random pixels (seeded) when the run's dataset is no longer on disk.
    """
    data, size = config.data, config.data.input_size
    recorded = runs.Run(Path(run_dir)).training_data()
    mean, std = float(recorded.get("mean", 0.0)), float(recorded.get("std", 1.0))
    images: list[np.ndarray] = []
    try:
        dataset = Dataset.load(Path(recorded.get("path", "")))
        stems = [s for s in recorded.get("val", []) + recorded.get("train", []) if s in set(dataset.stems)]
        for stem in stems[:count]:
            image, mask = dataset.read_pair(stem)
            rule = Intensity.from_record(recorded.get("intensity"), data.channels, recorded.get("source_bits"))
            pixels, _ = prepare_image(image, data.channels, rule, recorded.get("source_bits"))
            identity = ([0.0] * data.channels, [1.0] * data.channels)  # the pixels are on the network's scale
            resized, _ = preprocess.center_or_resize(pixels, mask[..., None], size, data.resize, identity)
            images.append(resized.numpy())
    except (UserError, OSError, TypeError):
        images = []
    if images:
        what = "validation images"
    else:
        images = list(np.random.default_rng(0).random((count, size, size, data.channels), np.float32))
        what = "random inputs (the run's dataset is gone)"
    batch = np.stack(images).astype(np.float32)
    return np.asarray(preprocess.normalise(batch, data.normalisation, mean, std), np.float32), what


def second_size_input(config: Config) -> np.ndarray:
    """One non-square input, (S + 2**depth) x 2S, random but seeded: the any-size check's second size."""
    size, multiple = config.data.input_size, 2 ** config.model.depth
    rng = np.random.default_rng(1)
    return rng.random((1, size + multiple, 2 * size, config.data.channels), dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------------
# One writer and one reader per format
# ----------------------------------------------------------------------------------------------------------------


def _signature(config: Config, any_size: bool = True) -> list[tf.TensorSpec]:
    size = None if any_size else config.data.input_size
    return [tf.TensorSpec([None, size, size, config.data.channels], tf.float32, name=INPUT_NAME)]


class ResizeUp(keras.layers.Layer):
    """Bilinear up-sampling by an integer factor to twice the *dynamic* size: what `UpSampling2D(interpolation=
    "bilinear")` computes (both call `tf.image.resize`), in a form a graph with unknown height and width can hold.
    Used only in exported graphs, never saved as a .keras file."""

    def __init__(self, factor: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        size = tf.shape(x)[1:3] * self.factor
        return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)

    def compute_output_shape(self, shape):
        grow = [None if side is None else side * self.factor for side in shape[1:3]]
        return (shape[0], *grow, shape[3])


def any_size_network(model: keras.Model) -> keras.Model:
    """The same network and weights with an input of any height and width (multiples of 2**depth)."""
    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.UpSampling2D):
            return ResizeUp(int(layer.size[0]), name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    image = keras.Input((None, None, model.input_shape[-1]), name=INPUT_NAME)
    copy = keras.models.clone_model(model, input_tensors=image, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _write_savedmodel(model, config: Config, target: Path) -> None:
    any_size_network(model).export(str(target), format="tf_saved_model", input_signature=_signature(config),
                                   verbose=False)


def _write_tflite(model, config: Config, target: Path, scratch: Path) -> None:
    saved = scratch / "saved_model"
    model.export(str(saved), format="tf_saved_model", input_signature=_signature(config, any_size=False),
                 verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = []  # float32 as trained: no quantisation
    target.write_bytes(converter.convert())


def _write_onnx(model, config: Config, target: Path) -> None:
    import tf2onnx

    tf2onnx.convert.from_keras(any_size_network(model), input_signature=_signature(config), opset=ONNX_OPSET,
                               output_path=str(target))


def _run_keras(path: Path, x: np.ndarray) -> np.ndarray:
    return np.asarray(load_model_file(path)(x, training=False))


def _run_savedmodel(path: Path, x: np.ndarray) -> np.ndarray:
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    outputs = serve(**{name: tf.constant(x)})
    return np.asarray(next(iter(outputs.values())))


def _run_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # TF 2.21 points to ai_edge_litert, which is not a dependency of ours
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_path=str(path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(out["index"]))


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])


_READERS = {KERAS: _run_keras, SAVEDMODEL: _run_savedmodel, TFLITE: _run_tflite, ONNX: _run_onnx}


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _place(built: Path, target: Path) -> None:
    """Move the checked export to `target`, replacing an earlier export of the same format."""
    staging = target.with_name(f".{target.name}.incoming")
    if staging.is_dir():
        shutil.rmtree(staging)
    else:
        staging.unlink(missing_ok=True)
    shutil.move(str(built), str(staging))  # may cross file systems (the run folder and `out`)
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(staging, target)


def export_model(run_dir: Path, fmt: str, out: Path) -> ExportResult:
    """Export the run's best model as `fmt` into the folder `out`, check it, and say how well it matched.

    The file is `out/model.keras`, `out/saved_model/`, `out/model.tflite` or `out/model.onnx` (an earlier export
    of the same format there is replaced). An export that does not match is still written, with `ok` False.

    Raises:
        UserError: an unknown or unsupported format, or a run without a model.
    """
    reason = unsupported_reason(fmt)
    if reason:
        raise UserError(reason)
    run = runs.Run(Path(run_dir))
    if not run.file(runs.CONFIG).exists():
        raise UserError(f"'{run.path.name}' is not a run folder (it has no {runs.CONFIG})")
    source = run.file(runs.BEST_MODEL)
    if not source.exists():
        raise UserError(f"run '{run.name}' has no model yet ({runs.BEST_MODEL}); train it first")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"'{out}' is a file; give a folder to export into")
    started = time.perf_counter()
    config = run.config()
    model = load_model_file(source)
    x, checked_on = sample_inputs(run.path, config)
    inputs = [x] + ([second_size_input(config)] if fmt in ANY_SIZE else [])
    expected = [np.asarray(model(batch, training=False)) for batch in inputs]
    target = out / FILE_NAMES[fmt]
    with tempfile.TemporaryDirectory(dir=run.path, prefix=".export-") as scratch:
        scratch = Path(scratch)
        built = scratch / FILE_NAMES[fmt]
        if fmt == KERAS:
            shutil.copyfile(source, built)
        elif fmt == SAVEDMODEL:
            _write_savedmodel(model, config, built)
        elif fmt == TFLITE:
            _write_tflite(model, config, built, scratch)
        else:
            _write_onnx(model, config, built)
        diff = 0.0
        for batch, wanted in zip(inputs, expected, strict=True):
            got = _READERS[fmt](built, batch)
            if got.shape != wanted.shape:
                raise UserError(f"the {LABELS[fmt]} export gives outputs of shape {got.shape}, not {wanted.shape}")
            diff = max(diff, float(np.max(np.abs(got.astype(np.float64) - wanted))))
        out.mkdir(parents=True, exist_ok=True)
        _place(built, target)
    return ExportResult(
        path=target, fmt=fmt, max_abs_diff=diff, tolerance=TOLERANCES[fmt], ok=diff <= TOLERANCES[fmt],
        seconds=time.perf_counter() - started, size_bytes=_size(target), samples=len(x), checked_on=checked_on,
        input_shape=(None, None, None, config.data.channels) if fmt in ANY_SIZE else
        (None, config.data.input_size, config.data.input_size, config.data.channels),
        usage=usage_text(config, run.training_data(), any_size=fmt in ANY_SIZE)
        + ("" if fmt in ANY_SIZE else " (TensorFlow Lite's converter needs this fixed size.)"),
        sizes_checked=tuple(batch.shape[1:3] for batch in inputs),
    )
