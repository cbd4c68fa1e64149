"""The Annotate page's parts: what to draw on, the picture at the chosen contrast, the model's help, and saving.

The drawing itself is `unet.ui.mask_canvas` (a component in the browser); what a saved drawing becomes is
`unet.annotation` (versions, counts). This module keeps the page's session state in one place: the image being
drawn, a model's prediction waiting to be corrected, and the uncertainty order.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import streamlit as st

from unet import annotation, workspace
from unet.dataset import Dataset, stage_uploads
from unet.images import display_rgb
from unet.runs import Run, list_runs
from unet.ui.dataset_save import add_images
from unet.ui.inference_view import predictor_from_run, rank_runs
from unet.ui.state import set_current_dataset

STEM = "annotate_stem"
DATASET = "annotate_dataset"
NEXT_DATASET = "annotate_next_dataset"  # the version a save made, chosen in the picker on the next run
PENDING = "annotate_pending"  # {(lineage, stem): predicted drawing, not saved until the user keeps it}
VERSIONS = "annotate_mask_versions"  # {(lineage, stem): n}, raised when the page replaces the drawing
ORDER = "annotate_uncertain"  # (lineage, run id, [(stem, uncertainty)])
SAVED = "annotate_saved"  # the last save, in words
LEFT_OUT = "annotate_left_out"  # how an upload was split and what it left out, in words: shown once under the picker
BACKGROUND_ON_CANVAS = (70, 110, 220)  # a painted background shows in blue where its own colour is black
JUMP = "annotate_jump"  # an image to show on the next run (the picker cannot change once drawn)


def create_from_uploads(uploads: list, name: str, classes: list[str], instances: bool, bar,
                        into: Dataset | None = None) -> Dataset:
    """Store uploaded images (no masks) as a new dataset to draw on, or add them to `into` as its next version;
    problems with single files are listed, and the Annotate page opens on the dataset just saved. Images whose
    channel counts cannot share a dataset become one dataset per count, each named in the message."""
    split = ""
    with workspace.staging() as staging:
        folder = stage_uploads([(f.name, f) for f in uploads], [], staging / "files")
        files = [(path, path.name) for path in sorted((folder / "images").iterdir())]
        progress = lambda f, text: bar.progress(min(max(f, 0.0), 1.0), text=text)  # noqa: E731
        if into is None:
            made = annotation.new_image_datasets(files, name, workspace.datasets_dir(), classes, instances,
                                                 progress=progress)
            dataset, problems, split = made.datasets[0], made.problems, made.words()
        else:
            dataset, problems = add_images(into, files, progress)
    set_current_dataset(dataset.name)
    st.session_state[NEXT_DATASET] = dataset.name  # the picker follows what was just saved
    st.session_state.pop(STEM, None)
    words = [split] if split else []
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        words.append(f"{len(problems)} file(s) left out, the others were kept: "
                     + "; ".join(f"{file}: {why}" for file, why in problems[:5]) + more)
    if words:
        st.session_state[LEFT_OUT] = " ".join(words)
    return dataset


def contrast_picture(dataset: Dataset, image: np.ndarray, low: float, high: float) -> np.ndarray:
    """uint8 RGB of `image` stretched between its `low` and `high` percentiles (per channel), after the dataset's
    intensity rule: faint 16-bit signal becomes visible without changing what is stored or trained on."""
    unit = dataset.rule.to_unit(image)
    flat = unit.reshape(-1, unit.shape[-1])
    bottom, top = np.percentile(flat, low, axis=0), np.percentile(flat, high, axis=0)
    stretched = (unit - bottom) / np.maximum(top - bottom, 1e-6)
    return display_rgb(np.clip(stretched, 0.0, 1.0).astype(np.float32))


@st.cache_data(max_entries=8, show_spinner=False)
def cached_picture(path: str, modified: float, low: float, high: float, _dataset: Dataset) -> np.ndarray:
    """The picture to draw on, made once per image and contrast (a 2000x1500 image takes about 0.1 s)."""
    return contrast_picture(_dataset, _dataset.read_image(Path(path).stem), low, high)


def key_of(dataset: Dataset, stem: str) -> tuple[str, str]:
    """The same image keeps its key across versions, so a new version does not reset the drawing's history."""
    return annotation.lineage(dataset), stem


def mask_version(dataset: Dataset, stem: str) -> int:
    return st.session_state.setdefault(VERSIONS, {}).get(key_of(dataset, stem), 0)


def canvas_classes(dataset: Dataset) -> list[tuple[str, tuple[int, int, int]]]:
    """The canvas's classes: index 0 is what the eraser leaves ("not labelled", or the background of objects),
    then every class with a button, background included (in a visible colour when its own is black)."""
    classes = [(c.name, tuple(int(v) for v in c.color)) for c in dataset.classes]
    if dataset.instances:
        return classes
    shown = [(name, colour if sum(colour) > 60 else BACKGROUND_ON_CANVAS) for name, colour in classes]
    return [("not labelled", (0, 0, 0)), *shown]


def drawing_of(dataset: Dataset, stem: str) -> np.ndarray:
    """What the canvas starts from: a prediction waiting to be corrected, else what is saved."""
    pending = st.session_state.get(PENDING, {}).get(key_of(dataset, stem))
    return pending if pending is not None else annotation.read_annotation(dataset, stem)


def reload_canvas(dataset: Dataset, stem: str) -> None:
    """Make the canvas load the saved drawing again (as one step the user can undo)."""
    versions = st.session_state.setdefault(VERSIONS, {})
    versions[key_of(dataset, stem)] = versions.get(key_of(dataset, stem), 0) + 1


def replace_drawing(dataset: Dataset, stem: str, drawing: np.ndarray) -> None:
    """Put a new drawing on the canvas (as one step the user can undo); saved with the next stroke."""
    key = key_of(dataset, stem)
    st.session_state.setdefault(PENDING, {})[key] = drawing
    versions = st.session_state.setdefault(VERSIONS, {})
    versions[key] = versions.get(key, 0) + 1


def save(dataset: Dataset, stem: str, drawing: np.ndarray) -> Dataset:
    """Save a drawing (into a new version when needed) and make the saved-into version the current dataset."""
    saved = annotation.save_annotation(dataset, stem, drawing, workspace.runs_dir())
    st.session_state.get(PENDING, {}).pop(key_of(dataset, stem), None)
    if saved.dataset.name != dataset.name:  # a new version: the page shows it from the next run on
        set_current_dataset(saved.dataset.name)
        st.session_state[NEXT_DATASET] = saved.dataset.name
    st.session_state[SAVED] = f"{time.strftime('%H:%M:%S')}: {saved.words(stem)}"
    return saved.dataset


def fitting_runs(dataset: Dataset) -> list[tuple[Run, str]]:
    """Runs with a model whose channels (and classes) fit this dataset, newest first: after a fine-tuning, the
    model that just learned from the corrections is the one to predict with (the loop of draw, train, correct)."""
    found = []
    ranked = rank_runs([r for r in list_runs(workspace.runs_dir()) if r.has_model])
    for run, label in sorted(ranked, key=lambda item: item[0].id, reverse=True):
        try:
            config = run.config()
        except Exception:  # noqa: BLE001 - a run whose config cannot be read is not offered
            continue
        classes = 2 if config.data.task == "instances" else config.model.num_classes
        if config.data.channels == dataset.channels and (dataset.instances or classes == dataset.num_classes):
            found.append((run, label))
    return found


def predict_into_canvas(run: Run, dataset: Dataset, stem: str, threshold: float) -> str:
    """Fill the canvas with the run's prediction for `stem`; returns what was done, in words."""
    predictor = predictor_from_run(run)
    problem = annotation.check_run_fits(predictor, dataset)
    if problem:
        return problem
    prediction = predictor.predict(dataset.read_image(stem))
    drawing = annotation.predicted_annotation(prediction, dataset, threshold)
    replace_drawing(dataset, stem, drawing)
    what = f"{len(np.unique(drawing[drawing > 0]))} objects" if dataset.instances else "the classes"
    return (f"Filled with {run.name}'s prediction ({what}); correct it, and each stroke saves it. "
            "Undo brings back what was there.")


def rank_unlabelled(run: Run, dataset: Dataset, bar) -> list[tuple[str, float]]:
    """The images without a mask, most uncertain first for this run (kept for the session)."""
    predictor = predictor_from_run(run)
    problem = annotation.check_run_fits(predictor, dataset)
    if problem:
        st.warning(problem)
        return []
    ranked = annotation.rank_by_uncertainty(
        predictor, dataset, dataset.unlabelled,
        progress=lambda f, text: bar.progress(min(max(f, 0.0), 1.0), text=text))
    st.session_state[ORDER] = (annotation.lineage(dataset), run.id, ranked)
    return ranked


def next_uncertain(dataset: Dataset, run: Run) -> str | None:
    """The most uncertain image still without a mask, from the ranking made for this run."""
    lineage, run_id, ranked = st.session_state.get(ORDER, ("", "", []))
    if lineage != annotation.lineage(dataset) or run_id != run.id:
        return None
    waiting = set(dataset.unlabelled)
    return next((stem for stem, _ in ranked if stem in waiting), None)
