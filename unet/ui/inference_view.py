"""The Inference page's state: the loaded model and its predictions, kept per tab so sliders never re-run it.

Models and predictions live in `st.session_state`, not `st.cache_resource`: an uploaded model or image is one
user's data and must never be shared with another session.
"""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path

import numpy as np
import streamlit as st

from unet import workspace
from unet.errors import UserError
from unet.images import IMAGE_EXTENSIONS, is_lossy, read_images, read_mask_raw
from unet.inference import Prediction, Predictor
from unet.instances import object_table, objects_of_mask
from unet.postprocess import baseline_scores, error_overlay, headline
from unet.runs import BEST_MODEL, COMPLETED, HELD_BACK, Run, read_json
from unet.zipsafe import extract_zip

_PREDICTOR = "inference_predictor"
_PREDICTIONS = "inference_predictions"
_PICTURES = "inference_pictures"
_LABELS = "inference_labels"
MAX_CACHED_PREDICTIONS = 64


def _cached_predictor(key: tuple, load) -> Predictor:
    held = st.session_state.get(_PREDICTOR)
    if held and held[0] == key:
        return held[1]
    with st.spinner("Loading the model…"):
        predictor = load()
    st.session_state[_PREDICTOR] = (key, predictor)
    st.session_state[_PREDICTIONS] = {}
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

    def __init__(self, name: str, data: bytes) -> None:
        super().__init__(data)
        self.name, self.file_id, self.size = name, f"kept-{hash((name, data))}", len(data)


def kept_uploads(kind: str, uploads: list | None) -> list:
    """The files in the uploader, remembered for this tab; the remembered ones when the uploader is empty after
    navigation, with a line that says so and a button to forget them."""
    key = f"inference_kept_{kind}"
    if uploads:
        st.session_state[key] = [KeptUpload(u.name, u.getvalue()) for u in uploads]
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


@st.cache_data(max_entries=256, show_spinner=False)
def object_rows(mask: np.ndarray, class_names: tuple[str, ...], image: np.ndarray, name: str) -> list[dict]:
    """`unet.instances.objects_of_mask`, computed once per mask: a slider move must not re-measure every object
    of every image (2.3 s for a 12-megapixel image of 5000 objects)."""
    return objects_of_mask(mask, list(class_names), image, name=name)


def read_uploads(uploads) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """Decode uploaded images (and images inside uploaded zips); broken files are reported, not fatal."""
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
                except UserError as exc:
                    problems.append((name, str(exc)))
    return images, problems


def predicted(predictor: Predictor, name: str, image: np.ndarray) -> Prediction:
    """The model's prediction for an image, computed once per tab and image."""
    cache: dict = st.session_state.setdefault(_PREDICTIONS, {})
    key = (name, image.shape, float(image[::17, ::17].sum()))
    if key not in cache:
        if len(cache) >= MAX_CACHED_PREDICTIONS:
            cache.pop(next(iter(cache)))
        with st.spinner(f"Predicting {name}…"):
            cache[key] = predictor.predict(image)
    return cache[key]


@st.cache_data(max_entries=256, show_spinner=False)
def instance_rows(labels: np.ndarray, image: np.ndarray, name: str) -> list[dict]:
    """`unet.instances.object_table` of one label image, computed once per labels."""
    return object_table(labels, image, name)


def object_labels(prediction: Prediction, name: str, threshold: float, min_size: int) -> np.ndarray | None:
    """One id per object for runs that separate touching objects (the watershed), once per image and setting."""
    if not prediction.separates_objects:
        return None
    cache: dict = st.session_state.setdefault(_LABELS, {})
    key = (name, prediction.shape, float(threshold), int(min_size), id(prediction))
    if key not in cache:
        if len(cache) >= MAX_CACHED_PREDICTIONS:
            cache.pop(next(iter(cache)))
        cache[key] = prediction.labels(threshold, int(min_size))
    return cache[key]


def display_picture(predictor: Predictor, name: str, image: np.ndarray) -> np.ndarray | None:
    """What pictures draw on for an image that is not plain 8-bit gray or RGB (16-bit, float, 2 or 4+ channels):
    the model's view of it (`Predictor.picture`), made once per tab and image; None for plain 8-bit images."""
    if image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2] in (1, 3)):
        return None
    cache: dict = st.session_state.setdefault(_PICTURES, {})
    key = (predictor.name, name, image.shape, float(image[::17, ::17].sum()))
    if key not in cache:
        if len(cache) >= MAX_CACHED_PREDICTIONS:
            cache.pop(next(iter(cache)))
        cache[key] = predictor.picture(image)
    return cache[key]


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
    left.image(error_overlay(image, mask, truth, opacity), caption="green: right · red: extra · blue: missed")
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
