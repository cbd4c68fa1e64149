"""Annotate page: draw the masks images lack, or correct a model's, saved stroke by stroke into a dataset version."""

from __future__ import annotations

import streamlit as st

from unet import annotation, workspace
from unet.dataset import list_datasets
from unet.images import IMAGE_EXTENSIONS
from unet.ui import annotate_view as view
from unet.ui.dataset_save import ask_about_taken_name, save_under
from unet.ui.feedback import user_errors
from unet.ui.mask_canvas import mask_canvas
from unet.ui.state import current_dataset, set_current_dataset

st.title("Annotate")
st.write(
    "No masks yet, or masks to correct? Draw them here: pick a class and paint, or let a trained model fill the "
    "mask and correct it. **Every stroke is saved** as you go, into a new version of the dataset, so your upload "
    "and the data earlier trainings used stay as they were."
)

# --- 1. Images ----------------------------------------------------------------------------------------------------
st.header("1. Images", divider="gray")
datasets = list_datasets(workspace.datasets_dir())
with st.expander("Start from images without masks", expanded=not datasets):
    uploads = st.file_uploader(
        "Images", type=[e.lstrip(".") for e in IMAGE_EXTENSIONS], accept_multiple_files=True,
        help="PNG, JPEG, TIFF (16-bit, several channels and stacks are kept), BMP. No masks needed.")
    name = st.text_input("Dataset name", value="my-images", help="The new dataset's name; letters, digits, - and _.")
    task = st.radio(
        "What will you draw?", ["regions", "objects"], horizontal=True,
        format_func={"regions": "Regions of classes", "objects": "Separate objects (each its own id)"}.get,
        help="Regions: paint each class (e.g. cell, membrane). Objects: each drawn object gets its own number, so "
             "touching cells can be counted apart (the 'Separate touching objects' task).")
    class_names = "background, object"
    if task == "regions":
        class_names = st.text_input(
            "Classes", value="background, cell",
            help="Comma-separated; the first is the background (what is left unpainted). Up to 16.")
    classes = [c.strip() for c in class_names.split(",")]

    def save(into=None, under: str = name) -> None:
        bar = st.progress(0.0, text="Reading the images…")
        try:
            view.create_from_uploads(uploads, under, classes, task == "objects", bar, into=into)
        finally:
            bar.empty()

    if uploads:  # a name that was taken: add to that dataset (a new version) or save under a free name
        ask_about_taken_name("annotate_upload", lambda free: save(under=free), lambda existing: save(into=existing),
                             "images")
    if st.button("Save the images to annotate", type="primary", disabled=not uploads):
        with user_errors("saving the images"):
            save_under("annotate_upload", name, lambda under: save(under=under))
            st.rerun()

datasets = list_datasets(workspace.datasets_dir())
if not datasets:
    st.info("Upload images above, or bring images and masks on the **Dataset** page.")
    st.stop()
current = current_dataset()
names = [d.name for d in datasets]
if version := st.session_state.pop(view.NEXT_DATASET, None):
    st.session_state[view.DATASET] = version
if st.session_state.get(view.DATASET) not in names:  # first visit, or a version made by the last save
    st.session_state[view.DATASET] = current.name if current and current.name in names else names[0]
chosen = st.selectbox(
    "Dataset", names, key=view.DATASET,
    help="Drawings go into a version of this dataset (NAME-v2, -v3…): a new one is made when the dataset is an "
         "upload or a training used it; until then the same version takes every stroke.")
dataset = next(d for d in datasets if d.name == chosen)
if current is None or current.name != dataset.name:
    set_current_dataset(dataset.name)
if left_out := st.session_state.pop(view.LEFT_OUT, None):
    st.warning(left_out, icon=":material/warning:")
progress_line = st.empty()  # filled at the end, so it counts the stroke saved during this run
st.caption(f"Version {dataset.version} of '{annotation.lineage(dataset)}'." if dataset.version > 1 else
           "Version 1: the images as uploaded; the first stroke makes version 2.")  # always drawn: a layout that
# changes above the canvas would remount it and lose its undo history

# --- 2. Draw ------------------------------------------------------------------------------------------------------
st.header("2. Draw", divider="gray")
stems = dataset.all_images
labelled = set(dataset.stems)
# The image on the canvas is plain session state (and in the URL, so a reload comes back to it), not the picker's
# key: the picker's labels change when an image gains a mask, which makes it a new widget that would forget.
shown = st.session_state.pop(view.JUMP, None) or st.session_state.get(view.STEM) or st.query_params.get("image")
if shown not in stems:
    shown = next((s for s in stems if s not in labelled), stems[0])


def _go_to(stem: str | None) -> None:
    if stem:
        st.session_state[view.STEM] = stem


pick, model_column = st.columns([1, 1])
with pick:
    stem = st.selectbox(
        "Image", stems, index=stems.index(shown),
        format_func=lambda s: f"{s} · {'has a mask' if s in labelled else 'no mask yet'}",
        help="Every image of the dataset; those without a mask are what training cannot use yet.")
    st.session_state[view.STEM] = stem
    if st.query_params.get("image") != stem:
        st.query_params["image"] = stem
    st.button("Next image without a mask", on_click=_go_to,
              args=(next((s for s in stems if s not in labelled and s != stem), None),),
              disabled=not dataset.unlabelled, help="Jump to an image nobody has drawn yet.")
    low, high = st.slider(
        "Display contrast (percentiles)", 0.0, 100.0, (0.0, 100.0) if dataset.image_dtype == "uint8" else (1.0, 99.8),
        step=0.1, help="Stretches the picture between these percentiles of its pixels, for faint or 16-bit "
                       "images. Only the display changes; training uses the dataset's own rule.")

with model_column:
    fitting = view.fitting_runs(dataset)
    run = None
    if not fitting:
        st.caption("Train a model on a few drawn images (Train page), then it can fill masks here for you to "
                   "correct, and find the images it is least sure about.")
    else:
        labels = {r.id: label for r, label in fitting}
        run_id = st.selectbox("Model to help", list(labels), format_func=labels.get,
                              help="A trained run whose images have this dataset's channels and classes.")
        run = next(r for r, _ in fitting if r.id == run_id)
        threshold = st.slider("Threshold", 0.05, 0.95, 0.5, 0.05,
                              help="Probability above which a pixel is painted when the model fills the mask.")
        fill, uncertain = st.columns(2)
        if fill.button("Predict", help="Fill this image's mask with the model's prediction, to correct it."):
            with user_errors("predicting"), st.spinner("Predicting…"):
                st.session_state[view.SAVED] = view.predict_into_canvas(run, dataset, stem, threshold)
        if uncertain.button("Next uncertain image", disabled=not dataset.unlabelled,
                            help="The image without a mask the model is least sure about (mean pixel entropy): "
                                 "correcting it teaches the model most."):
            target = view.next_uncertain(dataset, run)
            if target is None:
                bar = st.progress(0.0, text="Ranking the images by the model's uncertainty…")
                with user_errors("ranking the images"):
                    view.rank_unlabelled(run, dataset, bar)
                    target = view.next_uncertain(dataset, run)
                bar.empty()
            if target:
                _, _, ranked = st.session_state[view.ORDER]
                score = dict(ranked)[target]
                st.session_state[view.SAVED] = (f"'{target}' is the least certain image without a mask "
                                                f"(uncertainty {score:.2f}, 0 sure to 1 a coin toss)")
                st.session_state[view.JUMP] = target
                st.rerun()

image_path = dataset.image_path(stem)
with user_errors("showing the image"):
    picture = view.cached_picture(str(image_path), image_path.stat().st_mtime, low, high, dataset)
    classes = view.canvas_classes(dataset)
    key = view.key_of(dataset, stem)
    edit = mask_canvas(picture, view.drawing_of(dataset, stem), classes, image_id="/".join(key),
                       mask_version=view.mask_version(dataset, stem), instances=dataset.instances,
                       key="annotate-canvas")
    if edit is not None:
        with user_errors("saving the drawing"):
            dataset = view.save(dataset, stem, edit.mask)
            if view.NEXT_DATASET in st.session_state:
                st.rerun()
    pending = st.session_state.get(view.PENDING, {}).get(key)
    if pending is not None and st.button("Keep the prediction as it is",
                                         help="Save the model's mask without changes."):
        with user_errors("saving the drawing"):
            dataset = view.save(dataset, stem, pending)
            st.rerun()
if st.session_state.get(view.SAVED):
    st.caption(st.session_state[view.SAVED])
tools = ("Brush, eraser and lasso fill are in the canvas's toolbar; the wheel zooms, the middle button or "
         "Space+drag pans, Ctrl+Z undoes.")
if dataset.instances:
    st.caption(f"Unpainted pixels are background. {tools} **New object** starts the next object (its own id).")
else:
    st.caption("Unpainted pixels are **not labelled**: training learns only from what you paint, so a few strokes "
               "of each class, **background included**, are enough to start; the eraser un-labels. " + tools)
    if dataset.background == 0 and st.button(
            f"Fill the rest as {dataset.classes[0].name}", icon=":material/format_color_fill:",
            help=f"Paints every pixel of this image you have not painted as '{dataset.classes[0].name}' (one step "
                 "you can undo). Only when you mean it: an unpainted pixel teaches nothing, a filled one teaches "
                 "'background'."):
        with user_errors("filling the rest"):
            filled = annotation.fill_rest_as_background(dataset, view.drawing_of(dataset, stem))
            dataset = view.save(dataset, stem, filled)
            view.reload_canvas(dataset, stem)
            st.rerun()
done = annotation.annotation_progress(dataset)
missing = [name for name, n in done.class_pixels.items() if n == 0] if any(done.class_pixels.values()) else []
with progress_line.container():
    st.progress(done.labelled / max(done.total, 1), text=done.words())
    if missing and not dataset.instances:
        st.caption(f":orange[No pixel of {', '.join(repr(m) for m in missing)} is labelled yet: paint a few strokes "
                   "of it too, or the model never learns it.]")
