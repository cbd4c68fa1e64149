"""Inference page: a trained model's masks over the user's own images, at any size, ready to download."""

from __future__ import annotations

import numpy as np
import streamlit as st

from unet import runs, workspace
from unet.errors import UserError
from unet.images import encode_png
from unet.inference import mask_file_pixels
from unet.instances import label_colours, label_file, table_csv
from unet.overlay import to_rgb
from unet.postprocess import ImageResult, overlay_in_strips, results_zip, shrink, shrink_mask, side_by_side
from unet.postprocess import scores as truth_scores
from unet.ui.feedback import user_errors
from unet.ui.inference_view import (
    SHOWN_ROWS,
    SHOWN_SIDE,
    THRESHOLD_OFFER,
    class_rows,
    display_picture,
    error_view,
    image_key,
    instance_rows,
    kept_uploads,
    object_labels,
    object_rows,
    object_summary,
    predicted,
    predicted_mask,
    predictor_from_run,
    predictor_from_upload,
    rank_runs,
    read_uploads,
    truth_for,
)

st.title("Inference")
st.write("Use a trained model on new images: see what it finds, adjust the threshold, download the masks.")

# --- 1. The model ------------------------------------------------------------------------------------------------
st.header("1. Model", divider="gray")
finished = [r for r in runs.list_runs(workspace.runs_dir()) if r.has_model]
source = st.radio(
    "Use",
    ["run", "file"],
    horizontal=True,
    format_func={"run": "A model trained here", "file": "A .keras model file"}.get,
    help="Models trained on the Train page are listed here; a .keras file from elsewhere can be uploaded.",
)
predictor = None
if source == "run":
    if not finished:
        st.info("No trained model yet. Train one on the **Train** page, or upload a .keras file.")
    else:
        ranked = rank_runs(finished)
        ids = [r.id for r, _ in ranked]
        labels = dict((r.id, label) for r, label in ranked)
        wanted = st.query_params.get("run")
        chosen = st.selectbox(
            "Run",
            ids,
            index=ids.index(wanted) if wanted in ids else 0,
            format_func=labels.get,
            help="The best completed run comes first (by its Dice on the held-back images); runs that failed, were "
                 "stopped early or barely beat the baseline are marked. Each run's best model is used.",
        )
        if chosen != wanted:
            st.query_params["run"] = chosen
        with user_errors("loading the model"):
            predictor = predictor_from_run(next(r for r in finished if r.id == chosen))
else:
    model_file = st.file_uploader(
        "Model file (.keras)",
        type=["keras"],
        help="Only the Keras 3 format is accepted. Files that contain program code (e.g. Lambda layers) are "
        "refused, because loading them could run that code.",
    )
    if model_file is not None:
        with user_errors(f"loading '{model_file.name}'"):
            predictor = predictor_from_upload(model_file)
if predictor is None:
    st.stop()
binary = predictor.num_classes == 2
st.caption(
    f"Model **{predictor.name}**: {predictor.channels} channel(s) in, {predictor.num_classes} classes "
    f"({', '.join(predictor.class_names)})."
)

# --- 2. The images -----------------------------------------------------------------------------------------------
st.header("2. Images", divider="gray")
uploads = kept_uploads("images", st.file_uploader(
    "Images (or a zip of images)",
    type=["png", "jpg", "jpeg", "tif", "tiff", "bmp", "zip"],
    accept_multiple_files=True,
    help="Any size: large images are processed in overlapping tiles, at the scale the model was trained at. Grey, "
         "colour, 16-bit and multi-channel images (as many channels as the model was trained on); each plane of a "
         "TIFF stack is predicted.",
))
with st.expander("Compare with true masks (optional)", icon=":material/rule:"):
    truth_uploads = kept_uploads("masks", st.file_uploader(
        "Masks with the same names as the images",
        type=["png", "tif", "tiff", "bmp"],
        accept_multiple_files=True,
        help="When given, each image shows right (green), extra (red) and missed (blue) pixels, with Dice and IoU; "
        "the gallery puts the worst images first.",
    ))
if not uploads:
    st.info("Upload one or more images to see the model's masks.", icon=":material/arrow_upward:")
    st.stop()

images, problems = read_uploads(uploads)
for name, problem in problems:
    st.warning(problem if f"'{name}'" in problem else f"'{name}': {problem}", icon=":material/warning:")
if not images:
    st.stop()

# --- 3. Results --------------------------------------------------------------------------------------------------
st.header("3. Results", divider="gray")
separates = predictor.task == "instances"
objects = predictor.objects  # a separate-objects run's settings, chosen on its held-back images (else the defaults)
if st.session_state.get("inference_settings_of") != predictor.name:  # another model: start from its own settings
    st.session_state.update(inference_settings_of=predictor.name, inference_threshold=objects.threshold,
                            inference_min_size=objects.min_size, inference_seed=objects.seed_probability)
offer = st.session_state.get(THRESHOLD_OFFER)  # (run, threshold): the Runs page's evaluation found a better one
if offer and offer[0] == predictor.name:
    st.session_state["inference_threshold"] = st.session_state.pop(THRESHOLD_OFFER)[1]
if objects.tuned:
    st.caption(f"Starting from the object settings chosen for this model: {objects.describe()}.")
controls = st.columns(5 if separates else 4)
threshold = controls[0].slider(
    "Threshold", 0.05, 0.95, step=0.05, key="inference_threshold", disabled=not binary,
    help="How sure the model must be to mark a pixel. Lower finds more (and more false alarms), higher finds less."
    + ("" if binary else " (Multi-class models pick the most likely class per pixel.)"),
)
opacity = controls[1].slider("Opacity", 0.0, 1.0, 0.5, 0.05, help="How strongly the mask colours cover the image.")
min_size = controls[2].number_input(
    "Remove objects smaller than (pixels)", 0, 100_000, step=10, key="inference_min_size",
    help="Drops specks; 0 keeps everything.",
)
seed = objects.seed_probability
if separates:
    seed = controls[4].slider(
        "Object centres", 0.3, 0.95, step=0.05, key="inference_seed",
        help="How sure the model must be that a pixel is inside an object for it to start one. Lower finds objects "
             "the model is unsure of (and may split one in two), higher merges or misses them.",
    )
with controls[3]:
    contours = st.checkbox("Outlines", help="Draw each object's outline.")
    fill = st.checkbox("Fill holes", help="Fill background holes inside objects.")
# A dataset without background (street scenes: 0 is sky) shows its class 0 like any other.
first_shown = predictor.class_map.first_scored if predictor.class_map is not None and predictor.task != "instances" \
    else 1
visible = st.multiselect(
    "Classes shown",
    list(range(first_shown, predictor.num_classes)),
    default=list(range(first_shown, predictor.num_classes)),
    format_func=lambda k: predictor.class_names[k],
    help="Hide a class to see the image under it.",
)

results = []
keys: dict[str, tuple] = {}  # image name -> what its tables are kept under in this tab (image and settings)
bar = st.progress(0.0, text="Predicting…") if len(images) > 1 else None
for i, (name, image) in enumerate(images):
    key = image_key(name, image)
    try:  # one image the model cannot take (e.g. another channel count) is named; the others are still predicted
        prediction = predicted(predictor, name, image)
    except UserError as exc:
        said = str(exc)
        st.warning(said if said.startswith(f"'{name}'") else f"'{name}' was not predicted: {said}",
                   icon=":material/warning:")
        continue
    with user_errors(f"predicting '{name}'"):
        mask = predicted_mask(prediction, key, threshold, int(min_size), fill)
        truth = truth_for(name, truth_uploads, image.shape[:2], predictor)
        score = truth_scores(mask, truth, predictor.class_names) if truth is not None else None
        results.append(ImageResult(name, image, mask, truth, score, prediction.notes,
                                   picture=display_picture(predictor, name, image),
                                   labels=object_labels(prediction, key, threshold, int(min_size), seed)))
        keys[name] = (*key, float(threshold), int(min_size), bool(fill), float(seed))  # the image and the settings
    if bar:
        bar.progress((i + 1) / len(images), text=f"Predicted {i + 1} of {len(images)}")
if bar:
    bar.empty()
if not results:
    st.stop()

if any(r.scores for r in results):  # worst first when there is ground truth
    results.sort(key=lambda r: (r.dice if r.dice is not None else 1.0) if r.scores else 2.0)

names = [r.name for r in results]
picked = st.selectbox("Image", names, help="Pick an image to see it large.") if len(results) > 1 else names[0]
shown = next(r for r in results if r.name == picked)
name, image, mask, truth, score, notes = shown.name, shown.image, shown.mask, shown.truth, shown.scores, shown.notes
separated = shown.labels is not None
if separated:  # a run that separates touching objects: each object in its own colour
    count = int(shown.labels.max(initial=0))  # ids are 1..n
    st.metric("Objects found", f"{count:,}", help="Touching objects are separated (a watershed from each object's "
                                                  "interior); objects smaller than the minimum size are dropped.")
    small = to_rgb(shrink(shown.shown, SHOWN_SIDE))
    coloured = label_colours(shrink_mask(shown.labels, SHOWN_SIDE), small, opacity)
    st.image(np.concatenate([small, coloured], axis=1),
             caption=f"{name}: image · {count:,} objects, each in its own colour with its outline")
else:
    st.image(
        side_by_side(shown.shown, mask, predictor.colors, opacity, contours, visible, max_side=900),
        caption=f"{name}: image · overlay · mask",
    )
for note in notes:
    st.caption(note)
if truth is not None:
    error_view(shown.shown, mask, truth, score, opacity)
rows = class_rows(keys[name], mask, predictor.class_names, name, shown.labels)
st.dataframe(
    [{"Class": r["name"], "Pixels": r["pixels"], "Share of the image": r["percent"], "Objects": r["objects"]}
     for r in rows],
    hide_index=True, width="stretch",
    column_config={"Share of the image": st.column_config.NumberColumn(format="%.1f %%"),
                   "Objects": st.column_config.NumberColumn(
                       help="Objects separated by the run (touching objects apart)." if separated else
                       "Separate patches of the class (touching objects count as one).")},
)

objects = instance_rows(keys[name], shown.labels, image, name) if separated else \
    object_rows(keys[name], mask, tuple(predictor.class_names), image, name)
total = len(objects["id"])
with st.expander(f"Objects: {total:,} (one row each)", icon=":material/table_rows:", expanded=separated):
    st.caption("One row per object, touching objects apart (the run separates them)." if separated else
               "Each separate patch of a class is one object; touching objects of one class count as one (train "
               "with 'Separate touching objects' on the Model page to split them).")
    if total > SHOWN_ROWS:
        st.caption(f"The first {SHOWN_ROWS:,} of {total:,} objects (by id) are listed; the CSV has all {total:,}. "
                   "Their sizes and shapes in short:")
        st.dataframe(object_summary(keys[name], objects), hide_index=True)
    st.dataframe({k: v[:SHOWN_ROWS] for k, v in objects.items()}, hide_index=True, width="stretch",
                 column_config={"centroid_y": st.column_config.NumberColumn(format="%.1f"),
                                "centroid_x": st.column_config.NumberColumn(format="%.1f"),
                                "perimeter": st.column_config.NumberColumn(format="%.1f"),
                                "eccentricity": st.column_config.NumberColumn(format="%.3f")})
    st.download_button("Objects (CSV)", lambda: table_csv(objects), f"{shown.stem}_objects.csv", "text/csv",
                       icon=":material/download:", disabled=not total, on_click="ignore",
                       help="Area, centroid, bounding box, perimeter, eccentricity and mean intensity per object.")

stem = shown.stem
download = st.columns(3)
download[0].download_button(
    "Mask (PNG)", lambda: encode_png(*mask_file_pixels(predictor, mask)), f"{stem}_mask.png", "image/png",
    icon=":material/download:", on_click="ignore",
    help="The mask in the values of the training masks (for example 0 and 255), so it can be used as a mask again; "
         "image viewers show it in the class colours." if predictor.class_map else
         "Class numbers per pixel (0 = background), shown in the class colours by image viewers.",
)
if separated:
    ids_file = "TIFF" if int(shown.labels.max(initial=0)) > 65535 else "PNG"
    download[1].download_button(
        f"Object ids ({ids_file})", lambda: label_file(shown.labels)[0],
        f"{stem}_labels.{ids_file.lower().replace('tiff', 'tif')}", f"image/{ids_file.lower()}",
        icon=":material/download:", on_click="ignore",
        help="One id per object (0 = background); 16-bit when there are more than 255 objects, a 32-bit TIFF past "
             "65,535. Fiji, napari, Cellpose and QuPath read it as a label image.")
else:
    download[1].download_button(
        "Overlay (PNG)", lambda: encode_png(overlay_in_strips(shown.shown, mask, predictor.colors, opacity, contours)),
        f"{stem}_overlay.png", "image/png", icon=":material/download:", on_click="ignore")
download[2].download_button(
    f"All {len(results)} as zip",
    lambda: results_zip(results, lambda m: mask_file_pixels(predictor, m), predictor.colors, predictor.class_names,
                        opacity, contours, measured={name: objects}.get),  # the others are measured on the click
    "predictions.zip",
    "application/zip",
    icon=":material/folder_zip:", on_click="ignore",
    help="For every image: the mask in your masks' own values (viewable, and usable as a mask again), the same as "
         "class numbers 0, 1, 2… (class_indices/), the overlay; a CSV of areas and object counts per class, and "
         "one of every object (area, centroid, box, intensity).",
)

if len(results) > 1:
    st.subheader("Gallery", divider="gray")
    cells = st.columns(4)
    for i, result in enumerate(results):
        caption = result.name if result.dice is None else f"{result.name} · Dice {result.dice:.3f}"
        cells[i % 4].image(side_by_side(result.shown, result.mask, predictor.colors, opacity, False, visible,
                                        max_side=200), caption=caption)
