"""A run's best model as a BioImage Model Zoo package (bioimage.io): one zip that Fiji/deepImageJ, ilastik,
napari, QuPath, BiaPy and ZeroCostDL4Mic open, validated by `bioimageio.spec` and tested by `bioimageio.core`.

The package (`OUT/NAME.bioimageio.zip`) holds `rdf.yaml` (the model description, in the newest model format the
installed bioimageio.spec implements: 0.5.12), the weights twice, both made and checked against the Keras model by
`unet.export`: ONNX (opset `export.ONNX_OPSET`, the weights the check runs) and a TensorFlow SavedModel (zipped,
re-saved with a named output, which bioimageio.core needs; "parent" of the ONNX entry, as both come from the same
Keras model and tf2onnx converts through its TensorFlow graph), a test input (the run's first validation image,
raw values) with the output the ONNX weights give for it (.npy, and .tif as "sample tensors"), a cover and a README.

The preprocessing is the app's own, written in the spec's terms: the dataset's intensity rule
((value - low) / (high - low) per channel, the same numbers for every image) followed, for 'standard'
normalisation, by (x - mean) / std; both are linear, so they are one `scale_linear` along the channel axis
(`scale_linear`). The outputs are the network's probabilities, without postprocessing.

The spatial size follows the ONNX weights: a graph that takes any height and width (symbolic dimensions) gets
`ParameterizedSize(min=2**depth, step=2**depth)`; a fixed graph gets the run's input size (`spatial_size`).
A 'resize' run learned from images scaled by a factor, which the spec cannot express: the test image is brought
to that scale and the factor is stated in the usage text and the README.

The rdf is written as plain data and validated by the spec's own loader afterwards: bioimageio.spec 0.5.12's
serializer fails under pydantic 2.14, so it needs `PYDANTIC_PIN` (checked before any work, `_check_compatible`).
bioimageio.spec and bioimageio.core are imported inside the functions, so the app starts without them.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet import export, preprocess, runs, workspace
from unet import images as image_io
from unet.config import Config
from unet.dataset import Dataset
from unet.errors import UserError
from unet.intensity import Intensity
from unet.overlay import class_colors, overlay
from unet.task import INSTANCES

Progress = Callable[[float, str], None]

INSTALL = "pip install bioimageio.core==0.11.0"
PYDANTIC_PIN = "pydantic<2.14"  # bioimageio.spec 0.5.12 (pinned by bioimageio.core 0.11.0) breaks on pydantic 2.14
SUFFIX = ".bioimageio.zip"
DEFAULT_LICENSE = "CC-BY-4.0"
DEFAULT_AUTHOR = "U-Net Studio user"
INPUT_ID, OUTPUT_ID = "input", "output"
RDF = "rdf.yaml"
TEST_SIDE_MAX = 256  # the test image of any-size weights: sides a multiple of 2**depth, at most this
COVER_WIDTH, COVER_GAP = 600, 4  # the cover: image | prediction, at most this wide in all
MAX_DESCRIPTION = 1024  # the spec's limit
UNET_PAPER = ("Ronneberger O., Fischer P., Brox T. (2015). U-Net: Convolutional Networks for Biomedical Image "
              "Segmentation. MICCAI 2015, LNCS 9351, 234-241.", "10.1007/978-3-319-24574-4_28")
FILES = {"onnx": "model.onnx", "savedmodel": "tf_saved_model.zip", "input": "test_input.npy",
         "output": "test_output.npy", "sample_input": "sample_input.tif", "sample_output": "sample_output.tif",
         "cover": "cover.png", "readme": "README.md"}
INSTANCE_CHANNELS = ("background", "interior", "boundary")  # what an instance run's 3 outputs mean
_MIN_STD = 1e-6  # as `unet.preprocess.normalise`
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_+\- ()]+")  # what the spec allows in a model's name


@dataclass(frozen=True)
class PackageResult:
    """A package written to `path`, and what the bioimage.io checks said of it.

    `validated`: `bioimageio.spec` loaded the zip without errors; `test_passed`: `bioimageio.core`'s model test
    (the ONNX weights reproduce the test output from the test input) passed, None when the checks were skipped.
    `messages` says in plain words what was decided for the user and which check failed and why.
    """

    path: Path
    size_bytes: int
    seconds: float
    validated: bool
    test_passed: bool | None
    messages: list[str] = field(default_factory=list)
    usage: str = ""
    weights_match: bool = True  # both formats matched the Keras model in `unet.export`, and each other

    @property
    def ok(self) -> bool:
        """Checked, valid, tested and matching the trained model."""
        return self.validated and self.test_passed is True and self.weights_match

    def summary(self) -> str:
        """One line for a user: what was written and whether it passed."""
        return (f"BioImage Model Zoo package written to {self.path} ({self.size_bytes / 1e6:.2f} MB, "
                f"{self.seconds:.1f} s); {self.verdict}" + (f"\nInput: {self.usage}" if self.usage else ""))

    @property
    def verdict(self) -> str:
        """Whether the package passed the bioimage.io checks, in words (no file paths: pages show it)."""
        if self.test_passed is None:
            verdict = "not checked (the bioimage.io validation and test were skipped)"
        else:
            valid = "valid" if self.validated else "NOT valid"
            tested = "passes" if self.test_passed else "does NOT pass"
            verdict = f"{valid} by bioimageio.spec and {tested} bioimageio.core's model test"
        if not self.weights_match:
            verdict += "; its weights do NOT match the trained model"
        return verdict


# ----------------------------------------------------------------------------------------------------------------
# The numbers: size rule, preprocessing, names
# ----------------------------------------------------------------------------------------------------------------


def _bioimageio() -> Any:
    """The spec's v0_5 model module, or a UserError that says how to install it."""
    try:
        import bioimageio.core  # noqa: F401  (the test needs it; fail before any work is done)
        from bioimageio.spec.model import v0_5
    except ImportError:
        raise UserError(f"BioImage Model Zoo export needs the bioimageio packages, which are not installed; "
                        f"install them with `{INSTALL} \"{PYDANTIC_PIN}\"`") from None
    return v0_5


def _check_compatible(v0_5: Any) -> None:
    """UserError when the installed pydantic breaks bioimageio.spec: 0.5.12 passes its serialization info where
    pydantic 2.14 wants an index key, so it can neither write nor load (validate) any model there."""
    import pydantic
    from bioimageio.spec import ValidationContext

    try:
        with ValidationContext(perform_io_checks=False):
            probe = v0_5.OnnxWeightsDescr(source=Path("model.onnx"), opset_version=export.ONNX_OPSET)
        probe.model_dump(mode="json")
    except Exception as exc:  # the incompatibility shows as a serialization error; any other failure too
        import bioimageio.spec

        raise UserError(
            f"the installed bioimageio.spec {bioimageio.spec.__version__} does not work with pydantic "
            f"{pydantic.VERSION} ({type(exc).__name__}), so packages cannot be checked; install `{INSTALL} "
            f"\"{PYDANTIC_PIN}\"`") from None


def spatial_size(config: Config, dynamic: bool) -> Any:
    """The size of the input's y and x axes: `ParameterizedSize(min=2**depth, step=2**depth)` when the weights
    take any multiple of 2**depth (`dynamic`), else the run's fixed `config.data.input_size`."""
    if not dynamic:
        return int(config.data.input_size)
    from bioimageio.spec.model.v0_5 import ParameterizedSize

    multiple = 2**config.model.depth
    return ParameterizedSize(min=multiple, step=multiple)


def onnx_is_dynamic(onnx_file: Path | bytes) -> bool:
    """Whether an ONNX graph (a file, or its bytes) takes any height and width: its input's y and x dimensions
    are symbolic (a name, or nothing) rather than numbers."""
    import onnx

    model = onnx.load_model_from_string(onnx_file) if isinstance(onnx_file, bytes) else \
        onnx.load(str(onnx_file), load_external_data=False)
    initialisers = {i.name for i in model.graph.initializer}
    (inp,) = [i for i in model.graph.input if i.name not in initialisers]
    dims = inp.type.tensor_type.shape.dim
    return len(dims) == 4 and all(not d.HasField("dim_value") for d in dims[1:3])


def onnx_opset(path: Path) -> int:
    """The default-domain opset the ONNX file was written with (`export.ONNX_OPSET` when it does not say)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    found = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return int(found[0]) if found else export.ONNX_OPSET


def scale_linear(config: Config, recorded: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Per channel (gain, offset) so that stored value * gain + offset is the network's input, as the app feeds it.

    The intensity rule gives u = (v - low) / (high - low); 'standard' normalisation then (u - mean) / std
    (`preprocess.normalise`, std at least 1e-6), 'unit' leaves u. Together: gain = 1 / ((high - low) * std),
    offset = (-low / (high - low) - mean) / std, with mean 0 and std 1 for 'unit'.

    Raises:
        UserError: a 'standard' run whose dataset.json has no mean/std.
    """
    data = config.data
    rule = Intensity.from_record(recorded.get("intensity"), data.channels, recorded.get("source_bits"))
    mean, std = 0.0, 1.0
    if data.normalisation == preprocess.STANDARD:
        if not {"mean", "std"} <= set(recorded):
            raise UserError("the run uses 'standard' normalisation but its record of the training data has no mean/std")
        mean, std = float(recorded["mean"]), max(float(recorded["std"]), _MIN_STD)
    gains, offsets = [], []
    for low, high in zip(rule.low, rule.high, strict=True):
        span = float(high) - float(low)
        gains.append(1.0 / (span * std))
        offsets.append((-float(low) / span - mean) / std + 0.0)  # + 0.0: no "-0.0" in the rdf
    return gains, offsets


def input_channel_names(config: Config, recorded: dict[str, Any]) -> list[str]:
    """'gray' or 'red', 'green', 'blue' for 8-bit photos; 'channel0', 'channel1'... for anything else."""
    channels = config.data.channels
    eight_bit = int(recorded.get("source_bits") or 8) == 8 and recorded.get("image_dtype", "uint8") == "uint8"
    if eight_bit and channels == 1:
        return ["gray"]
    if eight_bit and channels == 3:
        return ["red", "green", "blue"]
    return [f"channel{c}" for c in range(channels)]


def _class_records(recorded: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(c["index"]): c for c in recorded.get("classes", []) if isinstance(c, dict) and "index" in c}


def class_names(config: Config, recorded: dict[str, Any]) -> list[str]:
    """The dataset's name of every class 0..K-1 (defaults where it has none)."""
    by_index = _class_records(recorded)
    count = 2 if _is_instances(config, recorded) else config.model.num_classes
    return [str(by_index.get(k, {}).get("name") or ("background" if k == 0 else f"class {k}")).strip()
            or f"class {k}" for k in range(count)]


def output_channel_names(config: Config, recorded: dict[str, Any]) -> list[str]:
    """One per output channel: the foreground class (sigmoid, 2 classes), the K classes (softmax), or
    background / interior / boundary for an instance run."""
    if _is_instances(config, recorded):
        return list(INSTANCE_CHANNELS)
    names = class_names(config, recorded)
    return names[1:2] if config.model.num_classes == 2 else names


def _is_instances(config: Config, recorded: dict[str, Any]) -> bool:
    return config.data.task == INSTANCES and config.model.num_classes == 3


def model_name(run_name: str) -> str:
    """The run's name cleaned to what the spec accepts: letters, digits, '_+- ()', 5 to 64 characters."""
    cleaned = re.sub(r"\s+", " ", _NAME_CHARS.sub(" ", str(run_name))).strip(" -")
    if len(cleaned) < 5:
        cleaned = f"U-Net {cleaned}".strip()
    return cleaned[:64].rstrip()


def check_license(license: str) -> str:
    """The SPDX id as the spec spells it (case-insensitive match).

    Raises:
        UserError: an id the spec does not know, listing a few common ones.
    """
    from typing import get_args

    from bioimageio.spec._internal.license_id import DeprecatedLicenseIdLiteral, LicenseIdLiteral

    known = {name.lower(): name for name in get_args(LicenseIdLiteral)}
    deprecated = {name.lower(): name for name in get_args(DeprecatedLicenseIdLiteral)}
    given = str(license or "").strip()
    if given.lower() in known:
        return known[given.lower()]
    common = "CC-BY-4.0, CC0-1.0, MIT, BSD-3-Clause, Apache-2.0"
    if given.lower() in deprecated:
        raise UserError(f"licence '{given}' is a deprecated SPDX id; use a current one, e.g. {common}")
    raise UserError(f"'{given}' is not an SPDX licence id the BioImage Model Zoo accepts; use e.g. {common} "
                    "(see https://spdx.org/licenses/)")


# ----------------------------------------------------------------------------------------------------------------
# Test tensors and cover
# ----------------------------------------------------------------------------------------------------------------


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H, W, C] centre-cropped to height x width; sides that are shorter are mirrored in (edge pixel included,
    as `preprocess.reflect_index`)."""
    h, w = image.shape[:2]
    pad_h, pad_w = max(height - h, 0), max(width - w, 0)
    if pad_h or pad_w:
        image = np.pad(image, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
                       mode="symmetric")
        h, w = image.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return image[top:top + height, left:left + width]


def test_side(side: int, config: Config, dynamic: bool) -> int:
    """The test image's side for a stored side: the fixed input size, or for any-size weights the largest
    multiple of 2**depth up to the image's side and `TEST_SIDE_MAX` (at least 2**depth)."""
    if not dynamic:
        return config.data.input_size
    multiple = 2**config.model.depth
    return max(multiple, min(side, TEST_SIDE_MAX) // multiple * multiple)


test_side.__test__ = False  # type: ignore[attr-defined]  (not a pytest test when imported into one)


def _at_training_scale(image: np.ndarray, config: Config, recorded: dict[str, Any]) -> np.ndarray:
    """A 'resize' run's image brought to the scale its network learned (as `Predictor` does: the recorded
    factor, else stretched to the input size); a 'crop' run's image unchanged. Raw values, float32."""
    import tensorflow as tf

    if config.data.resize != preprocess.RESIZE:
        return image
    h, w = image.shape[:2]
    multiple = 2**config.model.depth
    scale = recorded.get("resize_scale")
    try:
        sy, sx = (float(v) for v in scale)
        size = [max(multiple, round(h * sy)), max(multiple, round(w * sx))]
    except (TypeError, ValueError):
        size = [config.data.input_size, config.data.input_size]
    if size == [h, w]:
        return image
    resized = tf.image.resize(image, size, method="bilinear", antialias=True).numpy().astype(np.float32)
    if recorded.get("image_dtype", "uint8") == "uint8":  # as training: 8-bit overshoot clipped back
        resized = np.clip(resized, 0.0, 255.0)
    return resized


def test_input(run_dir: Path, config: Config, recorded: dict[str, Any], dynamic: bool) -> tuple[np.ndarray, str]:
    """float32 [1, H, W, C] of stored (raw) values, and what it is: the run's first validation image (at the
    training scale for a 'resize' run), centre-cropped or mirrored to a size the weights take; random values in
    the rule's range when the run's dataset is gone."""
    data = config.data
    rule = Intensity.from_record(recorded.get("intensity"), data.channels, recorded.get("source_bits"))
    image = None
    try:
        dataset = Dataset.load(Path(recorded.get("path", "")))
        stems = [s for s in recorded.get("val", []) + recorded.get("train", []) if s in set(dataset.stems)]
        if stems:
            stored, _ = dataset.read_pair(stems[0])
            stored = image_io.to_channels(stored, data.channels)
            image = np.asarray(stored, np.float32).reshape(*stored.shape[:2], data.channels)
            what = f"validation image '{stems[0]}'" if stems[0] in recorded.get("val", []) else \
                f"training image '{stems[0]}'"
    except (UserError, OSError, TypeError, ValueError):
        image = None
    if image is None:
        side = data.input_size
        low, high = np.asarray(rule.low, np.float32), np.asarray(rule.high, np.float32)
        image = low + (high - low) * np.random.default_rng(0).random((side, side, data.channels), np.float32)
        what = "random values in the intensity rule's range (the run's dataset is gone)"
    image = _at_training_scale(image, config, recorded)
    h, w = image.shape[:2]
    fitted = _fit(image, test_side(h, config, dynamic), test_side(w, config, dynamic))
    return np.ascontiguousarray(fitted[None], np.float32), what


test_input.__test__ = False  # type: ignore[attr-defined]


def preprocessed(raw: np.ndarray, gain: list[float], offset: list[float]) -> np.ndarray:
    """The network's input from raw values [..., C]: value * gain + offset per channel (float64 sums, float32)."""
    return (np.asarray(raw, np.float64) * np.asarray(gain) + np.asarray(offset)).astype(np.float32)


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], np.float32)


def _cover(raw: np.ndarray, probabilities: np.ndarray, config: Config, recorded: dict[str, Any]) -> np.ndarray:
    """uint8 RGB: the test image by the run's rule, beside the same with its prediction drawn over it."""
    import cv2

    data = config.data
    rule = Intensity.from_record(recorded.get("intensity"), data.channels, recorded.get("source_bits"))
    picture = image_io.display_rgb(rule.to_unit(raw))
    if _is_instances(config, recorded):
        from unet.instances import label_colours, labels_from_probabilities

        foreground = probabilities[..., 0] < 0.5  # background under one half
        labels = labels_from_probabilities(foreground, probabilities[..., 1])
        drawn = label_colours(labels, picture)
    else:
        mask = (probabilities[..., 0] >= 0.5).astype(np.uint8) if probabilities.shape[-1] == 1 else \
            np.argmax(probabilities, axis=-1).astype(np.uint8)
        by_index = _class_records(recorded)
        count = config.model.num_classes
        given = [by_index[k]["color"] for k in range(count) if "color" in by_index.get(k, {})]
        colors = class_colors(count, given if len(given) == count else None)
        drawn = overlay(picture, mask, colors, opacity=0.5, contours=True)
    side = (COVER_WIDTH - COVER_GAP) // 2  # each half fits a side x side square
    factor = side / max(picture.shape[:2])
    size = (max(1, round(picture.shape[1] * factor)), max(1, round(picture.shape[0] * factor)))
    method = cv2.INTER_NEAREST if factor >= 1 else cv2.INTER_AREA
    halves = [cv2.resize(half, size, interpolation=method) for half in (picture, drawn)]
    gap = np.full((size[1], COVER_GAP, 3), 255, np.uint8)
    return np.concatenate([halves[0], gap, halves[1]], axis=1)


# ----------------------------------------------------------------------------------------------------------------
# Words: usage, description, README
# ----------------------------------------------------------------------------------------------------------------


def usage_parts(config: Config, recorded: dict[str, Any], dynamic: bool, gain: list[float], offset: list[float]
                ) -> list[str]:
    """How to use the package, one point each: which programs, the input (axes, channels, the scaling in numbers,
    the size rule, the scale of the objects) and the output."""
    data = config.data
    rule = Intensity.from_record(recorded.get("intensity"), data.channels, recorded.get("source_bits"))
    names = input_channel_names(config, recorded)
    multiple = 2**config.model.depth
    numbers = ", ".join(f"{n} x {g:.6g} {'+' if o >= 0 else '-'} {abs(o):.6g}"
                        for n, g, o in zip(names, gain, offset, strict=True))
    scaling = f"Values: the raw values as stored; the package scales them itself: {rule.describe()}"
    if data.normalisation == preprocess.STANDARD:
        scaling += (f", then minus {float(recorded.get('mean', 0.0)):.6g} and divided by "
                    f"{float(recorded.get('std', 1.0)):.6g}")
    parts = [
        "Programs: Fiji/deepImageJ, napari (with bioimageio.core), ilastik, QuPath, BiaPy, ZeroCostDL4Mic, or Python "
        "with bioimageio.core",
        f"Input '{INPUT_ID}': axes batch, y, x, channel; {data.channels} channel{'s' if data.channels != 1 else ''} "
        f"({', '.join(names)})",
        f"{scaling} (one scale_linear per channel: {numbers})",
        (f"Size: any height and width that are multiples of {multiple} (at least {multiple})" if dynamic else
         f"Size: {data.input_size}x{data.input_size} pixels; programs cut larger images into tiles of that size"),
    ]
    scale = recorded.get("resize_scale")
    if data.resize == preprocess.RESIZE:
        try:
            sy, sx = (float(v) for v in scale)
            parts.append(f"Scale: training scaled its images by {sx:.3g} (x) and {sy:.3g} (y) before the network "
                         "saw them; scale new images of the same kind by that factor first, so objects have the "
                         "size in pixels the model learned")
        except (TypeError, ValueError):
            parts.append(f"Scale: training stretched whole images to {data.input_size}x{data.input_size}; do the "
                         "same first")
    names_out = output_channel_names(config, recorded)
    if _is_instances(config, recorded):
        out = ("3 probabilities per pixel (background, object interior, object boundary); object labels come from "
               "seeds where the interior probability is high, grown by a watershed over the foreground")
    elif config.model.num_classes == 2:
        out = f"the probability of '{names_out[0]}' per pixel (threshold at 0.5 for a mask)"
    else:
        out = f"{len(names_out)} class probabilities per pixel ({', '.join(names_out)}; the largest wins)"
    return parts + [f"Output '{OUTPUT_ID}': {out}"]


def usage_text(config: Config, recorded: dict[str, Any], dynamic: bool, gain: list[float], offset: list[float]
               ) -> str:
    """`usage_parts` in one paragraph."""
    return "; ".join(usage_parts(config, recorded, dynamic, gain, offset)) + "."


def _classes_phrase(config: Config, recorded: dict[str, Any]) -> str:
    names = class_names(config, recorded)
    if _is_instances(config, recorded):
        return f"separate '{names[1]}' objects (touching objects apart)"
    if len(names) == 2:
        return f"'{names[1]}' against '{names[0]}'"
    return f"{len(names)} classes ({', '.join(names)})"


def _data_phrase(config: Config, recorded: dict[str, Any]) -> str:
    bits = int(recorded.get("source_bits") or 8)
    channels = config.data.channels
    return f"{channels}-channel {bits}-bit images" if channels != 1 else f"1-channel {bits}-bit images"


def _headline(held_back: dict[str, Any]) -> str | None:
    """'Held-back Dice 0.878 (cell only) on 2 images; predicting "background" everywhere scores 0.000.'"""
    if not held_back or "dice" not in held_back:
        return None
    over = held_back.get("averaged_over") or []
    what = f"{over[0]} only" if len(over) == 1 else f"mean of {len(over)} classes: {', '.join(over)}"
    images = held_back.get("images")
    text = f"Held-back Dice {_fmt(held_back.get('dice'))} ({what})" + (f" on {images} images" if images else "")
    base = held_back.get("baseline") or {}
    if base:
        text += f"; predicting \"{base.get('predicts')}\" everywhere scores {_fmt(base.get('dice'))}"
    return text + "."


def default_description(config: Config, recorded: dict[str, Any], held_back: dict[str, Any]) -> str:
    text = (f"U-Net trained with U-Net Studio to segment {_classes_phrase(config, recorded)} in "
            f"{_data_phrase(config, recorded)} of the dataset '{recorded.get('name', 'unknown')}'.")
    headline = _headline(held_back)
    if headline:
        text += f" {headline}"
    if _is_instances(config, recorded):
        text += (" Gives background/interior/boundary probabilities; objects are made by seeds where the interior "
                 "is likely and a watershed over the foreground (see README).")
    return text[:500]


def _fmt(value: Any) -> str:
    return "not scored" if value is None else f"{float(value):.3f}"


def _validation_section(config: Config, recorded: dict[str, Any], held_back: dict[str, Any]) -> list[str]:
    lines = ["## Validation", ""]
    headline = _headline(held_back)
    if not headline:
        return lines + ["No held-back scores were recorded for this run (it has no held_back.json).", ""]
    lines += [f"{headline} These are the best model's scores on whole held-back images that training never "
              "learned from (the run's validation split); Dice = 2 x correct pixels / (true + predicted pixels), "
              "pooled over the images. The headline averages the foreground classes named; the baseline paints "
              "every pixel the most common class.", ""]
    base = {row.get("class"): row for row in (held_back.get("baseline") or {}).get("per_class", [])}
    rows = held_back.get("per_class") or []
    if rows:
        lines += ["| Class | Dice | IoU | Baseline Dice |", "|---|---|---|---|"]
        lines += [f"| {r.get('name')} | {_fmt(r.get('dice'))} | {_fmt(r.get('iou'))} | "
                  f"{_fmt(base.get(r.get('class'), {}).get('dice'))} |" for r in rows]
        lines.append("")
    if held_back.get("near_baseline"):
        lines += ["**Warning:** the model is barely better than the baseline on these images.", ""]
    objects = held_back.get("objects") or {}
    if _is_instances(config, recorded) and objects.get("summary"):
        lines += [f"Objects: {objects['summary']} (predicted objects: {objects.get('predicted_by', '')}).", ""]
    return lines


def readme(run: runs.Run, config: Config, recorded: dict[str, Any], held_back: dict[str, Any], name: str,
           description: str, usage: list[str], dynamic: bool, opset: int, tf_version: str, test_what: str) -> str:
    """The package's documentation (README.md): what, from which data, how well, how trained, limits, how to open."""
    from unet.model import model_facts
    from unet.run_summary import VALUE_NAMES
    from unet.units import duration_text

    data, model, train, augment = config.data, config.model, config.train, config.augment
    rule = Intensity.from_record(recorded.get("intensity"), data.channels, recorded.get("source_bits"))
    names = class_names(config, recorded)
    out_names = output_channel_names(config, recorded)
    status, history = run.read_status(), run.read_history()
    counts = {k: len(recorded.get(k) or []) for k in ("train", "val", "test")}
    facts = model_facts(config)
    lines = [f"# {name}", "", description, ""]

    lines += ["## What it segments", ""]
    if _is_instances(config, recorded):
        from unet import object_tuning

        chosen = object_tuning.read(run.path)
        lines += [f"Separate objects of class '{names[1]}', touching ones included. The network gives, per pixel, "
                  "the probabilities of background, object interior and object boundary (channels "
                  f"{', '.join(out_names)}). Object labels are not in the package: U-Net Studio makes them from "
                  "these probabilities (`unet.instances.labels_from_probabilities`): foreground = background "
                  f"probability under {1 - chosen.threshold:g}; seeds = connected regions where the interior "
                  f"probability is at least {chosen.seed_probability:g}; a watershed over the interior probability "
                  "grows the seeds across the foreground, so touching objects stay apart at their boundary"
                  + (f"; objects under {chosen.min_size} pixels are dropped" if chosen.min_size else "") + "."
                  + (f" These values were chosen on the run's held-back images ({chosen.describe()})."
                     if chosen.tuned else ""), ""]
    elif model.num_classes == 2:
        lines += [f"'{names[1]}' against '{names[0]}': one channel, the probability of '{names[1]}' per pixel "
                  "(sigmoid); threshold it at 0.5 for a mask.", ""]
    else:
        lines += [f"{len(names)} classes: {', '.join(names)}. One probability per class and pixel (softmax, "
                  "in this order); the most likely class is the mask.", ""]

    lines += ["## Input and output", ""] + [f"- {part}." for part in usage] + [""]

    lines += ["## Training data", ""]
    version = recorded.get("version")
    lines += [f"- Dataset: '{recorded.get('name', 'unknown')}'" + (f" (version {version})" if version else "")
              + f", {sum(counts.values())} images with masks ({counts['train']} for training, {counts['val']} "
              f"held back for validation" + (f", {counts['test']} set aside for testing" if counts['test'] else "")
              + ").",
              f"- Images: {data.channels} channel{'s' if data.channels != 1 else ''}, "
              f"{int(recorded.get('source_bits') or 8)}-bit ({recorded.get('image_dtype', 'uint8')} as stored).",
              f"- Intensity rule: {rule.describe()}.",
              "- Normalisation: " + ("none beyond the rule (0..1)" if data.normalisation == preprocess.UNIT else
                                     f"then minus the dataset's mean {float(recorded.get('mean', 0.0)):.6g} and "
                                     f"divided by its standard deviation {float(recorded.get('std', 1.0)):.6g}")
              + ".", ""]

    lines += _validation_section(config, recorded, held_back)

    lines += ["## Training", ""]
    epochs_run = len(history) or status.get("epoch")
    best = status.get("best_epoch")
    seconds = runs.elapsed_seconds(status) if status.get("started") else None
    augmentations = [k for k in ("flip", "rotate90", "rotate", "zoom", "shift", "shear", "elastic", "brightness",
                                 "contrast", "gamma", "noise", "blur") if getattr(augment, k)]
    lines += [f"- Epochs: {epochs_run} of {train.epochs}" + (f" (best model from epoch {best})" if best else "")
              + (f", {duration_text(seconds)}" if seconds else "") + ".",
              f"- Model: U-Net, depth {model.depth} (images halved {model.depth} times), {model.base_filters} base "
              f"filters, {model.kernel_size}x{model.kernel_size} kernels, "
              f"batch norm {'on' if model.batch_norm else 'off'}, "
              f"{VALUE_NAMES.get(model.activation, model.activation)}, "
              f"{VALUE_NAMES.get(model.upsampling, model.upsampling).lower()} up-sampling, "
              f"{facts.params:,} parameters, receptive field {facts.receptive_field} px.",
              f"- Input size {data.input_size}x{data.input_size} px, "
              + ("whole images resized to it" if data.resize == preprocess.RESIZE else
                 "crops at the images' own resolution") + ".",
              f"- Loss: {VALUE_NAMES.get(train.loss, train.loss)}; "
              f"optimizer {VALUE_NAMES.get(train.optimizer, train.optimizer)}, "
              f"learning rate {train.learning_rate:g}, batch size {train.batch_size}.",
              "- Augmentation: " + (("on (" + ", ".join(augmentations) + ")") if augment.enabled and augmentations
                                    else "off") + ".", ""]
    init = runs.read_json(run.file(runs.INIT_FROM), {}) or {}
    if init.get("label"):
        lines[-1:-1] = [f"- Fine-tuned from {init['label']}."]

    lines += ["## Intended use and limits", "",
              "- Images of the same kind as the training data: same modality and stain, same channels in the same "
              "order, objects at the same size in pixels, and the same intensity scaling (the package applies "
              "the training's fixed numbers, not a per-image normalisation).",
              "- Check the results on your own images before relying on them; the scores above come from "
              f"{held_back.get('images', 'a few')} held-back images of one dataset.",
              "- Not validated for diagnosis or any clinical use.",
              "- The outputs are probabilities; thresholds and clean-up (small objects, holes) are left to the "
              "program that opens the package.", ""]
    if not dynamic:
        lines.insert(-1, f"- The weights take exactly {data.input_size}x{data.input_size} pixels: programs predict "
                         "larger images tile by tile, and tile edges may be less accurate.")

    lines += ["## How to open it", "",
              "- **Fiji / deepImageJ**: add the DeepImageJ update site (Help > Update > Manage update sites), "
              "install this zip as a model from a local file with deepImageJ's model installer, open an image and "
              "run the model with DeepImageJ Run.",
              "- **napari**: the `napari-bioimageio` plugin manages bioimage.io models; to run this one on an image "
              "layer, call `bioimageio.core.predict` (below) from napari's console.",
              "- **Python**: `pip install bioimageio.core onnxruntime` (this package was checked with bioimageio.core "
              "0.11.0 and pydantic < 2.14); `bioimageio test THIS.bioimageio.zip`, "
              "`bioimageio predict THIS.bioimageio.zip --inputs image.tif`, or "
              "`bioimageio.core.predict(model='THIS.bioimageio.zip', inputs=array)` with a [batch, y, x, channel] "
              "array of raw values.",
              "- ilastik, QuPath, BiaPy and ZeroCostDL4Mic read the same package.", "",
              "## Files", "",
              f"- `{FILES['onnx']}`: ONNX weights (opset {opset}), converted from the Keras model by tf2onnx.",
              f"- `{FILES['savedmodel']}`: TensorFlow {tf_version} SavedModel (zipped), exported from the same model.",
              f"- `{FILES['input']}` / `{FILES['output']}`: the test input ({test_what}, raw values) and the "
              "probabilities the ONNX weights give for it.",
              f"- `{FILES['sample_input']}` / `{FILES['sample_output']}`: the same two as TIFF.",
              f"- `{FILES['cover']}`: the test image and its prediction.", "",
              "## Citation", "", f"{UNET_PAPER[0]} https://doi.org/{UNET_PAPER[1]}", "",
              f"Made with U-Net Studio from run '{run.name}'.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# The description and the checks
# ----------------------------------------------------------------------------------------------------------------


def _named_savedmodel(exported: Path, target: Path) -> None:
    """`unet.export`'s checked SavedModel, re-saved so that its 'serve' endpoint and 'serving_default' signature
    take `INPUT_ID` and return {`OUTPUT_ID`: probabilities}: bioimageio.core runs TF2 weights through
    `keras.layers.TFSMLayer(call_endpoint="serve")` and needs named (dict) outputs, where Keras' own export
    returns a bare tensor. The wrapped graph is the exported one, variables included."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported))
    default = loaded.signatures["serving_default"]
    (spec,) = default.structured_input_signature[1].values()

    def forward(x: tf.Tensor) -> tf.Tensor:
        out = loaded.serve(x) if hasattr(loaded, "serve") else default(x)
        return next(iter(out.values())) if isinstance(out, dict) else out

    module = tf.Module()
    module.exported = loaded  # tracked, so its variables are saved with the wrapper
    module.serve = tf.function(lambda x: {OUTPUT_ID: forward(x)},
                               input_signature=[tf.TensorSpec(spec.shape, tf.float32, name=INPUT_ID)])
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})


def _run_savedmodel(path: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept while it runs: its functions reference its variables
    return np.asarray(loaded.serve(tf.constant(x))[OUTPUT_ID], np.float32)


def _zip_folder(folder: Path, target: Path) -> None:
    """The folder's contents (not the folder) in a zip: saved_model.pb at its root, as bioimage.io wants."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(folder).as_posix())


def _file(folder: Path, name: str) -> dict[str, str]:
    """A package file as the rdf names it: its name in the zip and its SHA-256."""
    import hashlib

    return {"source": name, "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()}


def rdf_content(*, name: str, description: str, authors: list[str], license: str, config: Config,
                recorded: dict[str, Any], dynamic: bool, gain: list[float], offset: list[float], opset: int,
                tf_version: str, folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """The model description (rdf.yaml) of the files in `folder`, as plain data, in the newest model format the
    installed bioimageio.spec implements (0.5.12 for bioimageio.spec 0.5.12).

    Written as data rather than through the spec's classes and `save_bioimageio_package`, whose serializer fails
    under pydantic 2.14 ('index_key' is expected to be an integer or a string); `validate_package` then loads
    what was written with the spec's own loader.
    """
    size = spatial_size(config, dynamic)
    size = size if isinstance(size, int) else {"min": int(size.min), "step": int(size.step)}
    inputs = {
        "id": INPUT_ID, "description": "raw values as stored (the package scales them)",
        "axes": [{"type": "batch"}, {"type": "space", "id": "y", "size": size},
                 {"type": "space", "id": "x", "size": size},
                 {"type": "channel", "channel_names": input_channel_names(config, recorded)}],
        "test_tensor": _file(folder, FILES["input"]), "sample_tensor": _file(folder, FILES["sample_input"]),
        "data": {"type": "float32"},
        "preprocessing": [],
    }
    if not (all(g == 1.0 for g in gain) and all(o == 0.0 for o in offset)):  # the spec refuses a redundant one
        inputs["preprocessing"].append({"id": "scale_linear", "kwargs": {
            "axis": "channel", "gain": [float(g) for g in gain], "offset": [float(o) for o in offset]}})
    outputs = {
        "id": OUTPUT_ID, "description": "probabilities (no postprocessing)",
        "axes": [{"type": "batch"},
                 {"type": "space", "id": "y", "size": {"tensor_id": INPUT_ID, "axis_id": "y"}},
                 {"type": "space", "id": "x", "size": {"tensor_id": INPUT_ID, "axis_id": "x"}},
                 {"type": "channel", "channel_names": output_channel_names(config, recorded)}],
        "test_tensor": _file(folder, FILES["output"]), "sample_tensor": _file(folder, FILES["sample_output"]),
        "data": {"type": "float32", "range": [0.0, 1.0]},
    }
    weights = {
        "tensorflow_saved_model_bundle": {
            **_file(folder, FILES["savedmodel"]), "tensorflow_version": tf_version,
            "comment": "Keras 3 model.export of the run's best model, re-saved with a named input and output"},
        "onnx": {
            **_file(folder, FILES["onnx"]), "opset_version": int(opset), "parent": "tensorflow_saved_model_bundle",
            "comment": f"converted from the same Keras model by tf2onnx (opset {opset}) and checked against it"},
    }
    task = "instance-segmentation" if _is_instances(config, recorded) else "semantic-segmentation"
    return {
        "format_version": _bioimageio().ModelDescr.implemented_format_version, "type": "model", "name": name,
        "description": description,
        "authors": [{"name": a} for a in authors], "license": license,
        "cite": [{"text": UNET_PAPER[0], "doi": UNET_PAPER[1]}],
        "documentation": _file(folder, FILES["readme"]), "covers": [_file(folder, FILES["cover"])],
        "tags": ["segmentation", "unet", "2d", task, "tensorflow", "onnx", "u-net-studio"],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "inputs": [inputs], "outputs": [outputs], "weights": weights, "config": extra,
    }


def _write_package(content: dict[str, Any], folder: Path, target: Path) -> None:
    """rdf.yaml and the files it names, in one zip (rdf.yaml first)."""
    import io

    from ruyaml import YAML

    yaml = YAML(typ="rt")  # keeps the order written here (the safe dumper sorts keys)
    yaml.default_flow_style = False
    yaml.width = 120
    text = io.StringIO()
    yaml.dump(content, text)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(RDF, date_time=time.localtime()[:6])
        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
        archive.writestr(info, text.getvalue())
        for name in FILES.values():
            archive.write(folder / name, name)


def _config_section(config: Config, recorded: dict[str, Any], run: runs.Run, held_back: dict[str, Any]
                    ) -> dict[str, Any]:
    """The rdf's `config`: bioimage.io's own keys, and ours (what the app would need to read the package back)."""
    from unet.model import model_facts

    data, train = config.data, config.train
    rule = Intensity.from_record(recorded.get("intensity"), data.channels, recorded.get("source_bits"))
    status = run.read_status()
    seconds = runs.elapsed_seconds(status) if status.get("started") else None
    training = {"training_epochs": float(len(run.read_history()) or status.get("epoch") or 0),
                "training_batch_size": float(train.batch_size), "initial_learning_rate": float(train.learning_rate),
                "learning_rate_schedule": train.lr_schedule, "loss_function": train.loss,
                "optimizer": train.optimizer,
                "training_preprocessing": (
                    f"intensity rule: {rule.describe()}; "
                    f"normalisation {data.normalisation}; "
                    + ("whole images resized" if data.resize == preprocess.RESIZE else "crops") + f" to "
                    f"{data.input_size} px; augmentation {'on' if config.augment.enabled else 'off'}")}
    if seconds:
        training["training_duration"] = seconds / 3600.0
    bioimageio = {
        "architecture_type": "U-Net", "task": "segmentation",
        "architecture_description": f"2D U-Net, depth {config.model.depth}, {config.model.base_filters} base filters",
        "model_parameter_count": int(model_facts(config).params), "training": training,
        "out_of_scope_use": "Diagnosis or any clinical decision; images unlike the training data.",
    }
    ours = {"task": data.task, "input_size": data.input_size, "resize": data.resize,
            "resize_scale": recorded.get("resize_scale"), "normalisation": data.normalisation,
            "intensity": recorded.get("intensity"), "source_bits": recorded.get("source_bits"),
            "mean": recorded.get("mean"), "std": recorded.get("std"), "classes": class_names(config, recorded),
            "held_back_dice": held_back.get("dice"),
            "baseline_dice": (held_back.get("baseline") or {}).get("dice")}
    return {"bioimageio": bioimageio, "unet_studio": _plain(ours)}


def _plain(value: Any) -> Any:
    """JSON/YAML-safe copy (numbers as float/int, no NumPy)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _first_errors(summary: Any, limit: int = 3) -> list[str]:
    """The first errors of a bioimageio ValidationSummary, each as 'where: what' in one line."""
    found = []
    for detail in getattr(summary, "details", []):
        if detail.status != "failed":
            continue
        for entry in detail.errors or [None]:
            what = " ".join(str(getattr(entry, "msg", "") or "").split())[:400] or "failed"
            where = ".".join(str(part) for part in getattr(entry, "loc", ()) or ())
            found.append(f"{detail.name}" + (f" at {where}" if where else "") + f": {what}")
    return found[:limit]


def _notes(summary: Any, limit: int = 2) -> list[str]:
    """The spec's warnings (things to improve, not errors), in one line."""
    found = [" ".join(str(w.msg).split())[:200] for d in getattr(summary, "details", []) for w in d.warnings]
    if not found:
        return []
    return [f"bioimageio.spec notes {len(found)} thing{'s' if len(found) != 1 else ''} to improve (not errors): "
            + "; ".join(found[:limit]) + ("; ..." if len(found) > limit else "")]


def validate_package(path: Path) -> tuple[bool, list[str]]:
    """Load the zip with bioimageio.spec (with file checks: hashes, test tensors against the axes): valid?"""
    from bioimageio.spec import InvalidDescr, load_description

    try:
        descr = load_description(str(path), perform_io_checks=True)
    except Exception as exc:  # a zip the loader cannot even open: report, never raise
        return False, [f"bioimageio.spec could not read the package: {exc}"]
    summary = descr.validation_summary
    if not isinstance(descr, InvalidDescr) and summary.status != "failed":
        return True, [f"bioimageio.spec: the package is a valid model description (format {descr.format_version}, "
                      "files and hashes checked)"] + _notes(summary)
    return False, ["bioimageio.spec found the package NOT valid: " + "; ".join(_first_errors(summary) or
                                                                               [str(summary.status)])]


def test_package(path: Path, weight_format: str = "onnx") -> tuple[bool, list[str]]:
    """bioimageio.core's model test on the zip: the weights reproduce the test output from the test input and run
    at the sizes and batch sizes the description allows.

    Only for weights that need no working folder: bioimageio.core unpacks TensorFlow weights into
    `./bioimageio_unzipped_tf_weights` of the current directory, so the app tests the ONNX weights (the tests of
    this module run the TensorFlow ones in a temporary directory).
    """
    from bioimageio.core import test_model

    try:
        summary = test_model(str(path), weight_format=weight_format)
    except Exception as exc:  # the tester itself broke: report, never raise
        return False, [f"bioimageio.core's model test could not run: {exc}"]
    failed = [d for d in summary.details if d.status == "failed"]
    if summary.status == "passed" and not failed:
        return True, [f"bioimageio.core's model test passed ({weight_format} weights: the test output is reproduced "
                      "and the model runs at the sizes the description allows)"]
    detail = "; ".join(_first_errors(summary, 2)) or str(summary.status)
    return False, [f"bioimageio.core's model test did NOT pass ({weight_format} weights): {detail}"]


test_package.__test__ = False  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------------------
# The export
# ----------------------------------------------------------------------------------------------------------------


def _clean_authors(authors: list[str] | None, messages: list[str]) -> list[str]:
    cleaned = []
    for author in authors or []:
        name = " ".join(str(author).replace("/", "-").replace("\\", "-").split())
        if name and name not in cleaned:
            cleaned.append(name)
    if not cleaned:
        messages.append(f"No author was given: the package names \"{DEFAULT_AUTHOR}\"; give your name so users "
                        "know whom to credit and ask.")
        cleaned = [DEFAULT_AUTHOR]
    return cleaned


def export_package(run_dir: Path, out: Path, authors: list[str], license: str = DEFAULT_LICENSE,
                   description: str | None = None, check: bool = True, progress: Progress | None = None
                   ) -> PackageResult:
    """Write the run's best model as `out/<run name>.bioimageio.zip` and check it with bioimageio's own tools.

    A package that fails a check is still written; the result says it did NOT pass and why.

    Raises:
        UserError: not a run folder, a run without a model, an unknown licence, a description over 1024
            characters, or the bioimageio packages not installed.
    """
    started = time.perf_counter()
    say = progress or (lambda fraction, message: None)
    run = runs.Run(Path(run_dir))
    if not run.file(runs.CONFIG).exists():
        raise UserError(f"'{run.path.name}' is not a run folder (it has no {runs.CONFIG})")
    if not run.has_model:
        raise UserError(f"run '{run.name}' has no model yet ({runs.BEST_MODEL}); train it first")
    v0_5 = _bioimageio()  # installed? (before any work)
    license = check_license(license)
    if description is not None and len(description.strip()) > MAX_DESCRIPTION:
        raise UserError(f"the description has {len(description.strip())} characters; the BioImage Model Zoo "
                        f"allows at most {MAX_DESCRIPTION}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"'{out}' is a file; give a folder to write the package into")
    _check_compatible(v0_5)
    messages: list[str] = []
    authors = _clean_authors(authors, messages)
    config = run.config()
    recorded = run.training_data()
    held_back = runs.read_json(run.file(runs.HELD_BACK), {}) or {}
    gain, offset = scale_linear(config, recorded)
    name = model_name(run.name)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{workspace.safe_name(run.name, fallback='model')}{SUFFIX}"

    with tempfile.TemporaryDirectory(dir=out, prefix=".bioimageio-") as scratch:
        scratch = Path(scratch)
        folder = scratch / "package"
        folder.mkdir()
        say(0.05, "Exporting the ONNX weights")
        onnx_export = export.export_model(run.path, export.ONNX, scratch / "onnx")
        say(0.25, "Exporting the TensorFlow SavedModel weights")
        tf_export = export.export_model(run.path, export.SAVEDMODEL, scratch / "tf")
        for result in (onnx_export, tf_export):
            if not result.ok:
                messages.append(f"the {export.LABELS[result.fmt]} weights do NOT match the trained model: largest "
                                f"difference {result.max_abs_diff:.2e} (allowed {result.tolerance:.0e})")
        shutil.copyfile(onnx_export.path, folder / FILES["onnx"])
        _named_savedmodel(tf_export.path, scratch / "named_saved_model")
        _zip_folder(scratch / "named_saved_model", folder / FILES["savedmodel"])
        dynamic = onnx_is_dynamic(folder / FILES["onnx"])
        opset = onnx_opset(folder / FILES["onnx"])
        import tensorflow as tf

        tf_version = ".".join(tf.__version__.split(".")[:2])

        say(0.45, "Making the test image, its prediction and the cover")
        raw, test_what = test_input(run.path, config, recorded, dynamic)
        x = preprocessed(raw, gain, offset)
        probabilities = _run_onnx(folder / FILES["onnx"], x)
        tf_diff = float(np.max(np.abs(_run_savedmodel(scratch / "named_saved_model", x) - probabilities)))
        if tf_diff > export.TOLERANCES[export.ONNX]:
            messages.append(f"the TensorFlow and ONNX weights disagree on the test image by up to {tf_diff:.2e} "
                            f"(allowed {export.TOLERANCES[export.ONNX]:.0e})")
        np.save(folder / FILES["input"], raw)
        np.save(folder / FILES["output"], probabilities)
        import tifffile  # the same tensors as TIFF (bioimage.io's "sample tensors", which viewers open)

        tifffile.imwrite(folder / FILES["sample_input"], raw, compression="zlib")
        tifffile.imwrite(folder / FILES["sample_output"], probabilities, compression="zlib")
        image_io.write_png(folder / FILES["cover"], _cover(raw[0], probabilities[0], config, recorded))

        usage = usage_text(config, recorded, dynamic, gain, offset)
        description = (description or "").strip() or default_description(config, recorded, held_back)
        (folder / FILES["readme"]).write_text(
            readme(run, config, recorded, held_back, name, description,
                   usage_parts(config, recorded, dynamic, gain, offset), dynamic, opset, tf_version, test_what),
            encoding="utf-8")
        if not dynamic:
            messages.append(f"The weights take {config.data.input_size}x{config.data.input_size}-pixel inputs only "
                            "(the exporter traces a fixed size); programs predict larger images in tiles.")

        say(0.6, "Writing the package")
        content = rdf_content(name=name, description=description, authors=authors, license=license,
                              config=config, recorded=recorded, dynamic=dynamic, gain=gain, offset=offset,
                              opset=opset, tf_version=tf_version, folder=folder,
                              extra=_config_section(config, recorded, run, held_back))
        built = scratch / f"package{SUFFIX}"
        _write_package(content, folder, built)
        built.replace(target)

    validated, test_passed = False, None
    if check:
        say(0.75, "Validating with bioimageio.spec")
        validated, said = validate_package(target)
        messages += said
        say(0.85, "Testing with bioimageio.core")
        test_passed, said = test_package(target)
        messages += said
    else:
        messages.append("The bioimage.io validation and model test were skipped.")
    say(1.0, "Done")
    return PackageResult(path=target, size_bytes=target.stat().st_size, seconds=time.perf_counter() - started,
                         validated=validated, test_passed=test_passed, messages=messages, usage=usage,
                         weights_match=onnx_export.ok and tf_export.ok and tf_diff <= export.TOLERANCES[export.ONNX])
