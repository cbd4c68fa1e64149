"""Dataset page: bring images and masks in, read the check in plain words, tune and preview augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import streamlit as st

from unet import annotation, workspace
from unet.dataset import Dataset, NameTaken, ValueChoices, ingest, list_datasets, stage_uploads
from unet.demo import CLASS_NAMES, write_demo_dataset
from unet.ui.annotate_view import create_from_uploads
from unet.ui.augment_controls import augment_controls, preview_grid
from unet.ui.dataset_save import add_pairs, ask_about_taken_name, save_under
from unet.ui.dataset_view import channel_words, found_caption, mask_choices, stack_choice, values_form
from unet.ui.feedback import user_errors
from unet.ui.state import align_config_with_dataset, current_dataset, set_config, set_current_dataset

st.title("Dataset")
st.write(
    "Give U-Net Studio pairs of pictures: each **image** with its **mask**, a picture of the same size that "
    "paints what you want found. Files are paired by name (`cell01.png` with `cell01.png` or `cell01_mask.png`)."
)


def _store(source: Path, name: str, label: str | None = None, stacks: str | None = None,
           into: Dataset | None = None, reading: tuple[str, ValueChoices] | None = None) -> None:
    """Check and store `source` under `name`, or add it to `into` as that dataset's next version."""
    bar = st.progress(0.0, text="Checking files…")
    progress = lambda f, text: bar.progress(min(max(f, 0.0), 1.0), text=text)  # noqa: E731
    try:
        if into is None:
            masks, values = reading or ("auto", None)
            dataset, report = ingest(source, name, workspace.datasets_dir(), progress=progress, label=label,
                                     stacks=stacks, masks=masks, values=values)
            summary = report.summary()
        else:
            dataset, left_out = add_pairs(into, source, progress, label=label, stacks=stacks)
            added = len(dataset.stems) - len(into.stems)
            summary = (f"{added} pair(s) added to '{into.name}' as a new version, '{dataset.name}' "
                       f"({len(dataset.stems)} pairs); '{into.name}' is kept as it was"
                       + (f"; {len(left_out)} file(s) to look at below" if left_out else ""))
    finally:  # also when the data is refused: the message replaces the bar
        bar.empty()
    set_current_dataset(dataset.name)
    st.session_state["ingest_summary"] = summary


def _load_demo(kind: str) -> None:
    with workspace.staging() as staging:
        with st.spinner("Generating demo images…"):
            write_demo_dataset(staging / "demo", kind=kind)
        try:  # the same demo again is the stored one; never replace a dataset that only shares the name
            _store(staging / "demo", f"demo-{kind}")
        except NameTaken as taken:
            _store(staging / "demo", taken.free)
        dataset = current_dataset()
        if dataset is not None:
            names = list(CLASS_NAMES[kind])
            dataset.save_classes(names, [c.color for c in dataset.classes])
            st.session_state["ingest_summary"] = (
                f"{len(dataset.stems)} demo pairs ready, {len(names)} classes ({', '.join(names)})"
            )


def _store_zip(upload, name: str, stacks: str, into: Dataset | None = None,
               reading: tuple[str, ValueChoices] | None = None) -> None:
    with workspace.staging() as staging:
        target = staging / "upload.zip"
        upload.seek(0)
        with target.open("wb") as out:
            shutil.copyfileobj(upload, out, length=1 << 20)
        _store(target, name, label=upload.name, stacks=stacks, into=into, reading=reading)


def _store_files(images, masks, name: str, stacks: str, into: Dataset | None = None,
                 reading: tuple[str, ValueChoices] | None = None) -> None:
    for upload in [*images, *masks]:
        upload.seek(0)
    with workspace.staging() as staging:
        folder = stage_uploads([(f.name, f) for f in images], [(f.name, f) for f in masks], staging / "files")
        _store(folder, name, stacks=stacks, into=into, reading=reading)


# --- 1. Choose the data -------------------------------------------------------------------------------------------
st.header("1. Choose your data", divider="gray")
demo_tab, zip_tab, files_tab, saved_tab = st.tabs(["Demo data", "Upload a zip", "Upload files", "Saved datasets"])

with demo_tab:
    kind = st.radio(
        "Demo dataset",
        ["cells", "shapes"],
        format_func=lambda k: {
            "cells": "Cells: grey microscopy-like images, one class",
            "shapes": "Shapes: colour images, three classes",
        }[k],
        help="Generated on this machine in a second or two, so you can try every page before using your own data.",
    )
    if st.button("Load demo data", type="primary", icon=":material/science:"):
        with user_errors("making the demo data"):
            _load_demo(kind)
            st.rerun()

with zip_tab:
    archive = st.file_uploader(
        "A zip with an `images/` and a `masks/` folder",
        type=["zip"],
        help="Mask folders may also be called labels, annotations or gt; the layouts of ZeroCostDL4Mic, BiaPy and "
        "Cellpose are found too. Masks may be black/white, numbered classes (0, 1, 2…), one colour per class, or "
        "instance labels (one id per object).",
    )
    zip_name = st.text_input(
        "Dataset name",
        placeholder=Path(archive.name).stem if archive else "named after the zip",
        key="zip_name",
        help="How this dataset is listed later. Letters, digits, '-' and '_' are kept.",
    )
    zip_stacks = stack_choice("zip")
    zip_reading = mask_choices("zip")
    if archive is not None:
        ask_about_taken_name("zip", lambda free: _store_zip(archive, free, zip_stacks, reading=zip_reading),
                             lambda existing: _store_zip(archive, "", zip_stacks, into=existing), "pairs of the zip")
    if st.button("Check and save", disabled=archive is None, key="save_zip", icon=":material/upload:"):
        with user_errors(f"reading '{archive.name}'"):
            save_under("zip", zip_name or Path(archive.name).stem,
                       lambda name: _store_zip(archive, name, zip_stacks, reading=zip_reading))
            st.rerun()

with files_tab:
    left, right = st.columns(2)
    image_files = left.file_uploader(
        "Images",
        accept_multiple_files=True,
        type=["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"],
        help="PNG, JPEG, TIFF (8 or 16 bit, float, stacks, any number of channels, OME-TIFF), BMP or GIF.",
    )
    mask_files = right.file_uploader(
        "Masks",
        accept_multiple_files=True,
        type=["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"],
        help="One mask per image, with the same name (a '_mask' or '_label' ending is fine).",
    )
    files_name = st.text_input("Dataset name", value="my-dataset", key="files_name", help="How this dataset is listed.")
    ready = bool(image_files and mask_files)
    if not ready and (image_files or mask_files):
        missing = "masks" if image_files else "images"
        st.caption(f"Add the {missing} too: every image needs its mask (a picture of the same size that paints "
                   "what should be found). No masks yet? Save the images as they are and draw the masks on the "
                   "**Annotate** page.")
    files_stacks = stack_choice("files")
    files_reading = mask_choices("files")

    def _to_annotate(name: str = files_name, into: Dataset | None = None) -> None:
        bar = st.progress(0.0, text="Reading the images…")
        try:
            for upload in image_files:
                upload.seek(0)
            create_from_uploads(image_files, name, ["background", "cell"], False, bar, into=into)
        finally:
            bar.empty()
        st.switch_page("pages/annotate.py")

    if image_files and not mask_files:
        ask_about_taken_name("unlabelled", _to_annotate, lambda existing: _to_annotate(into=existing), "images")
        if st.button("Save the images to annotate", key="save_unlabelled", icon=":material/brush:",
                     help="Keeps the images without masks (classes 'background' and 'cell', which the Annotate page "
                          "can rename); then draw their masks on the Annotate page."):
            with user_errors("saving the images"):
                save_under("unlabelled", files_name, _to_annotate)
    if ready:
        ask_about_taken_name("files", lambda free: _store_files(image_files, mask_files, free, files_stacks,
                                                                reading=files_reading),
                             lambda existing: _store_files(image_files, mask_files, "", files_stacks, into=existing),
                             "pairs")
    if st.button("Check and save", disabled=not ready, key="save_files", icon=":material/upload:",
                 help=None if ready else "Needs images and their masks."):
        with user_errors("reading the uploaded files"):
            save_under("files", files_name, lambda name: _store_files(image_files, mask_files, name, files_stacks,
                                                                      reading=files_reading))
            st.rerun()

with saved_tab:
    stored = list_datasets(workspace.datasets_dir())
    if not stored:
        st.info("No saved datasets yet. Load the demo data or upload yours.")
    else:
        names = [d.name for d in stored]
        chosen_now = current_dataset()
        pick = st.selectbox(
            "Saved datasets",
            names,
            index=names.index(chosen_now.name) if chosen_now and chosen_now.name in names else 0,
            help="Datasets stored in this workspace; they stay after a refresh or a restart.",
        )
        use, remove = st.columns([1, 1])
        if use.button("Use this dataset", key="use_saved", icon=":material/check:"):
            set_current_dataset(pick)
            st.rerun()
        if remove.toggle("Delete it…", key=f"delete_open_{pick}",
                         help="Deleting is never done by a save: only here, after you confirm."):
            doomed = next(d for d in stored if d.name == pick)
            used = annotation.used_by_runs(doomed, workspace.runs_dir())
            st.warning(f"Delete **{pick}** ({len(doomed.stems)} pairs, {len(doomed.unlabelled)} images without "
                       "masks) from the workspace? "
                       + (f"Runs trained on it keep their models and scores, but cannot be evaluated on it again: "
                          f"{', '.join(used)}." if used else "No run has trained on it."),
                       icon=":material/delete:")
            if st.button(f"Delete “{pick}” for good", key=f"delete_{pick}", type="primary",
                         icon=":material/delete_forever:"):
                with user_errors(f"deleting '{pick}'"):
                    annotation.delete_dataset(doomed, workspace.runs_dir())
                    if chosen_now and chosen_now.name == pick:
                        set_current_dataset(None)
                    st.session_state["ingest_summary"] = f"'{pick}' was deleted."
                    st.rerun()

dataset: Dataset | None = current_dataset()
if dataset is None:
    st.info("Choose data above: the **Demo data** tab makes some in one click, or upload your own images and masks "
            "(a zip, or files), or open a **saved dataset**.", icon=":material/arrow_upward:")
    st.stop()

# --- 2. The check -------------------------------------------------------------------------------------------------
st.header(f"2. Check: {dataset.name}", divider="gray")
summary = st.session_state.pop("ingest_summary", None)
if summary:
    st.success(summary, icon=":material/task_alt:")

facts = st.columns(4)
facts[0].metric("Image/mask pairs", len(dataset.stems),
                help="2D images with their masks; each slice of a stack read as slices counts as one.")
facts[1].metric("Classes", dataset.num_classes)
facts[2].metric("Channels", channel_words(dataset.channels),
                help=f"Stored as {dataset.image_dtype}; the network takes every channel as it is.")
sizes = dataset.image_sizes
facts[3].metric(
    "Image size",
    f"{sizes['max'][1]}×{sizes['max'][0]}" if sizes.get("distinct", 1) == 1 else f"{sizes['distinct']} sizes",
    help="Width × height in pixels. Images are resized (or cropped) to the model's input size for training.",
)

found_caption(dataset)
if dataset.unlabelled:
    st.info(f"{len(dataset.unlabelled)} image(s) have no mask yet: draw them (or let a model fill them for you to "
            "correct) on the **Annotate** page. Training uses the images that have a mask.",
            icon=":material/brush:")
    st.page_link("pages/annotate.py", label="Annotate these images", icon=":material/brush:")

if dataset.problems:
    with st.expander(f"{len(dataset.problems)} file(s) need attention", expanded=True, icon=":material/warning:"):
        rows = [{"File": p["file"], "Problem": p["problem"]} for p in dataset.problems]
        if len(rows) <= 50:
            st.table(rows, border="horizontal")
        else:
            st.dataframe(rows, hide_index=True, width="stretch")
else:
    st.caption("Every file was read and paired without problems.")

# Keyed by the dataset (and its classes as saved), so the boxes are filled from the dataset on screen, never left
# over from the one shown before.
owner = f"{dataset.name}:{dataset.hash[:12]}:" + "|".join(f"{c.name}{c.color}" for c in dataset.classes)
with st.expander("Classes: names and colours", icon=":material/palette:"), st.form(f"classes_{owner}"):
    names, colors = [], []
    for info in dataset.classes:
        name_col, color_col, pixels_col = st.columns([3, 1, 2])
        names.append(name_col.text_input(f"Class {info.index}", value=info.name,
                                         key=f"class_name_{owner}_{info.index}"))
        hex_color = "#{:02x}{:02x}{:02x}".format(*info.color)
        colors.append(color_col.color_picker("Colour", value=hex_color, key=f"class_color_{owner}_{info.index}"))
        pixels_col.metric("Pixels", f"{info.pixels:,}",
                          help="How many mask pixels have this class"
                               + (f"; it is painted as {info.value} in your masks." if info.value is not None else "."))
    if st.form_submit_button("Save names and colours"):
        with user_errors("saving the class names"):
            dataset.save_classes(names, [[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colors])
            st.rerun()
says_values = not dataset.instances and (dataset.num_classes > 2 or dataset.background != 0)
with st.expander("Classes: background and not labelled", icon=":material/rule:",
                 expanded=dataset.background is None) if says_values else st.empty(), user_errors("saving the values"):
    reread = values_form(dataset) if says_values else None
    if reread is not None:
        set_current_dataset(reread.name)
        st.session_state["ingest_summary"] = (f"Saved as '{reread.name}': {reread.num_classes} classes, "
                                              + ("no background" if reread.background is None else
                                                 f"'{reread.classes[0].name}' the background")
                                              + (f", {' and '.join(map(str, reread.ignore_values))} not labelled"
                                                 if reread.ignore_values else "") + f"; '{dataset.name}' is kept.")
        st.rerun()

test_share = round(100 * len(dataset.test_stems) / max(len(dataset.stems), 1))
with st.expander(f"Test set: {len(dataset.test_stems)} images set aside" if dataset.test_stems else
                 "Test set: none set aside", icon=":material/lock:"), st.form("test_set"):
    st.write("Images in a test set are never trained on and never used to choose the best model, so their scores "
             "are the honest figure to show others. Runs started from now on leave them out; the Runs page scores "
             "them first.")
    share = st.slider("Share of the images to set aside", 0, 50, test_share, 5, format="%d%%",
                      help="0% keeps every image for training and validation. Classes found in two or more images "
                           "are spread so that the test set has each of them.")
    if st.form_submit_button("Save the test set"):
        with user_errors("setting the test set aside"):
            dataset.set_test_split(share / 100)
            st.rerun()
    if dataset.test_stems:
        more = " …" if len(dataset.test_stems) > 20 else ""
        st.caption("Test images: " + ", ".join(dataset.test_stems[:20]) + more)

# --- 3. Augmentation ----------------------------------------------------------------------------------------------
st.header("3. Augmentation", divider="gray")
if not dataset.stems:
    st.caption("The preview shows images with their masks; this dataset has none yet.")
    st.stop()
config = align_config_with_dataset(dataset)  # the data's channels and classes: previews draw what training sees
controls, preview = st.columns([1, 2], gap="large")
with controls:
    augment = augment_controls(config.augment)
if augment != config.augment:
    config = config.replace(augment=augment)
    set_config(config)
with preview:
    top = st.columns([3, 1])
    top[0].caption(
        f"Eight training samples at the model's input size ({config.data.input_size}×{config.data.input_size}), "
        "mask overlaid. This is exactly what the network will see."
    )
    if top[1].button("Reshuffle", icon=":material/shuffle:", help="Draw other samples and other random changes."):
        st.session_state["preview_seed"] = st.session_state.get("preview_seed", 0) + 1
    with user_errors("drawing the preview"):
        preview_grid(dataset, config, seed=st.session_state.get("preview_seed", 0))

st.page_link("pages/model.py", label="Next: settings suggested for this data, and the model",
             icon=":material/arrow_forward:")
