"""The Inference page's state: the loaded model and its predictions, kept per tab so sliders never re-run it.

Models and predictions live in `st.session_state`, not `st.cache_resource`: an uploaded model or image is one
user's data and must never be shared with another session.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from unet import workspace
from unet.errors import UserError
from unet.images import IMAGE_EXTENSIONS, is_lossy, read_images, read_mask_raw
from unet.inference import Prediction, Predictor, check_memory
from unet.instances import mask_objects, object_columns
from unet.postprocess import baseline_scores, error_overlay, headline, measure, shrink, shrink_mask
from unet.runs import BEST_MODEL, COMPLETED, HELD_BACK, Run, read_json
from unet.zipsafe import extract_zip

THRESHOLD_OFFER = "inference_threshold_offer"  # (run name, threshold) from the Runs page: that run starts there
_PREDICTOR = "inference_predictor"
_PREDICTIONS = "inference_predictions"
_PICTURES = "inference_pictures"
_LABELS = "inference_labels"
_TABLES = "inference_tables"
_MASKS = "inference_masks"
_DECODED = "inference_decoded"
# What a tab keeps so that a slider move never re-runs the model or the watershed: recent results, up to these
# many bytes each (the latest one always, however large). A 6000x4000 instance prediction is 144 MB, its object
# ids 96 MB.
CACHE_BYTES = {_PREDICTIONS: 1536 * 1024**2, _PICTURES: 512 * 1024**2, _LABELS: 768 * 1024**2,
               _MASKS: 256 * 1024**2, _TABLES: 256 * 1024**2}
SHOWN_SIDE = 1400  # pixels: pictures are drawn at most this large (Streamlit shows them at most 1460 wide)
SHOWN_ROWS = 2000  # objects listed on the page; past that a summary, and the CSV has them all
SUMMARISED = ("area", "perimeter", "eccentricity")  # and the mean intensity of each channel


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, Prediction):
        return value.probabilities.nbytes + (value.interior.nbytes if value.interior is not None else 0)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    return 0


def _kept(kind: str, key: Hashable, make: Callable[[], Any]) -> Any:
    """`make()`'s result, remembered in this tab under `key`; the oldest results of `kind` are forgotten once the
    kind's `CACHE_BYTES` are full."""
    cache: OrderedDict = st.session_state.setdefault(kind, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = make()
    cache[key] = value
    while len(cache) > 1 and sum(_nbytes(v) for v in cache.values()) > CACHE_BYTES[kind]:
        cache.popitem(last=False)
    return value


def _cached_predictor(key: tuple, load) -> Predictor:
    held = st.session_state.get(_PREDICTOR)
    if held and held[0] == key:
        return held[1]
    with st.spinner("Loading the model…"):
        predictor = load()
    st.session_state[_PREDICTOR] = (key, predictor)
    for kind in (_PREDICTIONS, _LABELS, _MASKS, _TABLES):
        st.session_state.pop(kind, None)
    return predictor


def predictor_from_run(run: Run) -> Predictor:
    model = run.file(BEST_MODEL)
    return _cached_predictor(("run", run.id, model.stat().st_mtime), lambda: Predictor.from_run(run.path))


def predictor_from_upload(upload) -> Predictor:
    """Save the uploaded .keras file inside the workspace, load it with safe mode, delete the copy."""

    def load() -> Predictor:
        with workspace.staging() as folder:
            path = folder / (workspace.safe_name(Path(upload.name).stem, fallback="model") + ".keras")
            with path.open("wb") as out:
                shutil.copyfileobj(upload, out, length=1 << 20)
            return Predictor.from_file(path, name=upload.name)

    return _cached_predictor(("file", upload.file_id), load)


class KeptUpload(io.BytesIO):
    """An uploaded file's bytes kept in the tab's session, so the images survive a visit to another page (the
    uploader widget forgets them when its page is left)."""

    def __init__(self, name: str, data: bytes, source_id: str) -> None:
        super().__init__(data)
        self.name, self.size, self.source_id = name, len(data), source_id
        self.file_id = f"kept-{source_id}"


def upload_id(upload) -> str:
    """The same for an uploaded file and its kept copy."""
    return getattr(upload, "source_id", None) or upload.file_id


def kept_uploads(kind: str, uploads: list | None) -> list:
    """The files in the uploader, remembered for this tab; the remembered ones when the uploader is empty after
    navigation, with a line that says so and a button to forget them. Files already kept are not copied again
    (a 100 MB upload would be copied on every slider move)."""
    key = f"inference_kept_{kind}"
    if uploads:
        kept = st.session_state.get(key) or []
        if [k.source_id for k in kept] != [u.file_id for u in uploads]:
            st.session_state[key] = [KeptUpload(u.name, u.getvalue(), u.file_id) for u in uploads]
        return uploads
    kept = st.session_state.get(key) or []
    if kept:
        names = ", ".join(k.name for k in kept[:3]) + (" …" if len(kept) > 3 else "")
        left, right = st.columns([4, 1])
        left.caption(f"Using the {len(kept)} {kind} uploaded earlier in this tab: {names}")
        if right.button("Forget them", key=f"forget_{kind}", help=f"Remove the remembered {kind}."):
            st.session_state.pop(key, None)
            st.rerun()
        for k in kept:
            k.seek(0)
    return kept


def rank_runs(finished: list[Run]) -> list[tuple[Run, str]]:
    """Runs with a model, best first: completed runs that beat the baseline, by held-back (else validation) Dice;
    then stopped, near-baseline and failed ones, each marked in its label."""
    def entry(run: Run) -> tuple[tuple, Run, str]:  # status and held_back.json only: no history read per rerun
        status = run.read_status()
        held_back = read_json(run.file(HELD_BACK), {}) or {}
        score = held_back.get("dice") if held_back.get("dice") is not None else status.get("best_val_dice")
        marks = []
        if held_back.get("near_baseline"):
            marks.append("barely better than the baseline")
        if status.get("state", "?") != COMPLETED:
            marks.append(status.get("state", "?"))
        shown = f"Dice {score:.3f}" if isinstance(score, (int, float)) else "no score yet"
        label = f"{run.name} ({shown}" + (f"; {', '.join(marks)})" if marks else ")")
        order = (bool(marks), -(score if isinstance(score, (int, float)) else -1.0))
        return order, run, label

    return [(run, label) for _, run, label in sorted((entry(r) for r in finished), key=lambda e: e[0])]


def object_rows(key: tuple, mask: np.ndarray, class_names: tuple[str, ...], image: np.ndarray, name: str
                ) -> dict[str, np.ndarray]:
    """`unet.instances.mask_objects` (one row per patch of a class) as columns, measured once per image and
    setting (`key`: the image, threshold, minimum size and hole filling) in this tab: a slider move must not
    re-measure every object of every image."""
    return _kept(_TABLES, ("patches", *key), lambda: mask_objects(mask, list(class_names), image, name=name))


def read_uploads(uploads) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """Decode uploaded images (and images inside uploaded zips); broken files are reported, not fatal. Decoded once
    per set of uploads in this tab (a 6000x4000 PNG takes a second to write out and decode)."""
    key = tuple(upload_id(u) for u in uploads)
    held = st.session_state.get(_DECODED)
    if held and held[0] == key:
        return held[1]
    st.session_state.pop(_DECODED, None)  # the old set's arrays go before the new set is decoded
    decoded = _decode_uploads(uploads)
    st.session_state[_DECODED] = (key, decoded)
    return decoded


def _decode_uploads(uploads) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    images: list[tuple[str, np.ndarray]] = []
    problems: list[tuple[str, str]] = []
    with workspace.staging() as folder:
        for upload in uploads:
            target = folder / uuid.uuid4().hex / workspace.safe_name(upload.name, fallback="image")
            target.parent.mkdir()
            with target.open("wb") as out:
                shutil.copyfileobj(upload, out, length=1 << 20)
            if target.suffix.lower() == ".zip":
                try:
                    skipped = extract_zip(target, target.parent / "unzipped", label=upload.name)
                except UserError as exc:
                    problems.append((upload.name, str(exc)))
                    continue
                problems += [(p.file, p.problem) for p in skipped]
                members = sorted(p for p in (target.parent / "unzipped").rglob("*")
                                 if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
                files = [(str(p.relative_to(target.parent / "unzipped")), p) for p in members]
            else:
                files = [(upload.name, target)]
            for name, path in files:
                try:
                    images += [(name + suffix, image) for suffix, image in read_images(path)]
                except UserError as exc:  # it names the staged copy: say the user's own name
                    problems.append((name, str(exc).replace(f"'{path.name}'", f"'{name}'")))
    return images, problems


def image_key(name: str, image: np.ndarray) -> tuple:
    return name, image.shape, str(image.dtype), float(image[::17, ::17].sum())


def predicted(predictor: Predictor, name: str, image: np.ndarray) -> Prediction:
    """The model's prediction for an image, computed once per tab and image, with a progress bar over its tiles.

    Raises:
        UserError: the image cannot be predicted, or is larger than this server's free memory allows.
    """
    def predict() -> Prediction:
        check_memory(predictor, name, image.shape[:2])
        bar = st.progress(0.0, text=f"Predicting {name}…")
        try:
            return predictor.predict(image, progress=lambda done, total: bar.progress(
                done / total, text=f"Predicting {name}: {done} of {total} tiles" if total > 1 else
                f"Predicted {name}"))
        finally:
            bar.empty()

    return _kept(_PREDICTIONS, image_key(name, image), predict)


def predicted_mask(prediction: Prediction, key: tuple, threshold: float, min_size: int, fill: bool) -> np.ndarray:
    """`Prediction.mask`, once per image and setting in this tab."""
    return _kept(_MASKS, (*key, float(threshold), int(min_size), bool(fill)),
                 lambda: prediction.mask(threshold=threshold, min_size=int(min_size), fill_holes=fill))


def object_labels(prediction: Prediction, key: tuple, threshold: float, min_size: int,
                  seed: float | None = None) -> np.ndarray | None:
    """One id per object for runs that separate touching objects (the watershed), once per image and setting;
    `seed`: the interior probability that starts an object (None: the run's own)."""
    if not prediction.separates_objects:
        return None
    if seed is not None:
        prediction = dataclasses.replace(prediction, seed_probability=float(seed))

    def separate() -> np.ndarray:
        with st.spinner(f"Separating the objects of {key[0]}…"):
            return prediction.labels(threshold, int(min_size))

    return _kept(_LABELS, (*key, float(threshold), int(min_size), prediction.seed_probability), separate)


def instance_rows(key: tuple, labels: np.ndarray, image: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """`unet.instances.object_columns` of one label image (`key`: its image and settings), measured once in this
    tab."""
    def measure() -> dict[str, np.ndarray]:
        with st.spinner(f"Measuring the objects of {name}…"):
            return object_columns(labels, image, name)

    return _kept(_TABLES, ("objects", *key), measure)


def class_rows(key: tuple, mask: np.ndarray, class_names: tuple[str, ...], name: str, labels: np.ndarray | None
               ) -> list[dict[str, Any]]:
    """`unet.postprocess.measure` (pixels and objects per class), once per image and setting (`key`)."""
    return _kept(_TABLES, ("classes", *key), lambda: measure(mask, class_names, image=name, labels=labels))


def object_summary(key: tuple, objects: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Minimum, quartiles, mean and maximum of each measurement of a long object table, one row per measurement;
    once per image and setting (`key`)."""
    return _kept(_TABLES, ("summary", *key), lambda: _summary(objects))


def _summary(objects: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for name in (*SUMMARISED, *(k for k in objects if k.startswith("mean_intensity_"))):
        values = np.asarray(objects[name], np.float64)
        low, quarter, median, three, high = np.percentile(values, [0, 25, 50, 75, 100])
        figures = {"Smallest": low, "25 %": quarter, "Median": median, "75 %": three, "Largest": high,
                   "Mean": values.mean()}
        rows.append({"Measurement": name.replace("_", " "), **{k: round(float(v), 2) for k, v in figures.items()}})
    return rows


def display_picture(predictor: Predictor, name: str, image: np.ndarray) -> np.ndarray | None:
    """What pictures draw on for an image that is not plain 8-bit gray or RGB (16-bit, float, 2 or 4+ channels):
    the model's view of it (`Predictor.picture`), made once per tab and image; None for plain 8-bit images."""
    if image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2] in (1, 3)):
        return None
    return _kept(_PICTURES, (predictor.name, *image_key(name, image)), lambda: predictor.picture(image))


def truth_for(name: str, uploads, shape: tuple[int, int], predictor: Predictor) -> np.ndarray | None:
    """The uploaded true mask for image `name` as class indices, or None.

    A run's model reads it with the run's class map (the values or colours of its training masks; any other
    value is refused, naming the file). A bare model file has no map: the mask's values are taken in order
    (0/255 -> 0/1), which the page says.
    """
    stem = Path(name).stem
    match = next((u for u in uploads or [] if Path(u.name).stem.removesuffix("_mask").removesuffix("_label") == stem),
                 None)
    if match is None:
        return None
    with workspace.staging() as folder:
        path = folder / workspace.safe_name(match.name, fallback="mask")
        path.write_bytes(match.getvalue())
        raw = read_mask_raw(path)
        lossy = is_lossy(path)
    if raw.shape[:2] != shape:
        raise UserError(f"mask '{match.name}' is {raw.shape[1]}x{raw.shape[0]} but its image is {shape[1]}x{shape[0]}")
    class_map = predictor.class_map
    if class_map is not None and class_map.num_classes == predictor.num_classes:
        return class_map.decode(raw, match.name, lossy)
    num_classes = predictor.num_classes
    if raw.ndim == 3:
        keys = raw.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
        values, raw = np.unique(keys, return_inverse=True)
        raw = raw.reshape(shape)
    else:
        values = np.unique(raw)
    if len(values) > num_classes:
        raise UserError(f"mask '{match.name}' has {len(values)} different values but the model knows {num_classes} "
                        "classes")
    if raw.ndim == 2 and values.max(initial=0) < num_classes and len(values) == num_classes:
        return raw.astype(np.uint8)
    return np.searchsorted(values, raw).astype(np.uint8)


def error_view(image: np.ndarray, mask: np.ndarray, truth: np.ndarray, score: list[dict], opacity: float) -> None:
    """True positives green, false positives red, false negatives blue, with Dice and IoU for every class, and
    what painting the whole image its most common true class would score, so the numbers have a yardstick."""
    left, right = st.columns([3, 1])
    shown = error_overlay(shrink(image, SHOWN_SIDE), shrink_mask(mask, SHOWN_SIDE), shrink_mask(truth, SHOWN_SIDE),
                          opacity)
    left.image(shown, caption="green: right · red: extra · blue: missed")
    base = baseline_scores(truth, [row["name"] for row in score])
    model_text, base_text = (("not scored" if v is None else f"{v:.3f}") for v in (headline(score), base["dice"]))
    left.caption(f"Dice {model_text} (mean of the foreground classes scored); painting every pixel "
                 f"\"{base['predicts']}\" would score {base_text}.")
    for row in score:
        if row["dice"] is None:
            right.metric(f"Dice · {row['name']}", "not scored",
                         help="This class is neither in the true mask nor in the prediction, so there is nothing to "
                              "score; it is left out of the mean.")
            continue
        right.metric(f"Dice · {row['name']}", f"{row['dice']:.3f}",
                     help="Overlap of the prediction with the true mask for this class: 1.0 = identical, 0 = none.")
        right.metric(f"IoU · {row['name']}", f"{row['iou']:.3f}", help="Overlap divided by union; stricter than Dice.")
