"""The Runs page's tools for one run: evaluation on a labelled dataset, export with a check, the HTML report.

Results are kept in this tab's session state, keyed by run and dataset, so moving a widget does not redo them.
"""

from __future__ import annotations

import streamlit as st

from unet import workspace
from unet.charts import confusion_figure, object_ap_figure, threshold_sweep_figure
from unet.dataset import DATASET_FILE, list_datasets
from unet.evaluation import Evaluation, evaluate_detailed
from unet.export import FORMATS, LABELS, export_model, unsupported_reason
from unet.html_report import build_report
from unet.model_zoo import export_package
from unet.run_summary import OBJECT_COLUMNS, OBJECT_SCORES_EXPLAINED
from unet.runs import Run
from unet.ui.feedback import user_errors
from unet.ui.inference_view import THRESHOLD_OFFER
from unet.ui.score_view import EMPTY, scores_panel
from unet.units import count_text

SPLIT_NAMES = {
    "test": "Test images (never trained on, never used to choose the model)",
    "val": "Held-back images (never trained on)",
    "train": "Training images (the model has seen them)",
    "all": "All images",
}


SPLIT_NOUNS = {"test": "test image", "val": "held-back image", "train": "training image", "all": "image"}


def per_image_table(evaluation: Evaluation) -> list[dict]:
    """The evaluation's per-image rows in words: image, Dice, IoU, pixel accuracy, then each class's Dice."""
    return [{"Image": row["image"], "Dice": row["dice"], "IoU": row["iou"], "Pixel accuracy": row["pixel_accuracy"],
             **{f"Dice: {c['name']}": c["dice"] for c in row.get("per_class", [])}}
            for row in evaluation.per_image]


def _show_evaluation(evaluation: Evaluation) -> None:
    what = f"{count_text(evaluation.images, SPLIT_NOUNS[evaluation.split])} of {evaluation.data}"
    scores_panel(evaluation.to_dict(), what)
    if evaluation.split == "val":
        st.caption("The held-back images also chose the best epoch; a test set set aside on the Dataset page before "
                   "training is the stricter check.")
    elif evaluation.split != "test":
        st.caption("The model was chosen on the held-back images; scores on images it trained on flatter it.")
    for problem in evaluation.problems:
        st.caption(f"{'Skipped' if problem.get('skipped', True) else 'Note on'} {problem['file']}: "
                   f"{problem['problem']}")
    if evaluation.binary and evaluation.sweep:
        st.plotly_chart(threshold_sweep_figure(evaluation.sweep, evaluation.best_threshold), width="stretch")
        if evaluation.best_threshold is not None and st.button(
            f"Use threshold {evaluation.best_threshold:g} on the Inference page", icon=":material/tune:"
        ):
            st.session_state[THRESHOLD_OFFER] = (evaluation.run, float(evaluation.best_threshold))
            st.toast(f"The Inference page will start at threshold {evaluation.best_threshold:g}.")
    elif not evaluation.binary:
        st.plotly_chart(confusion_figure(evaluation.confusion, evaluation.class_names), width="stretch")
    if evaluation.objects:
        _show_objects(evaluation.objects)
    with st.expander(f"Per image ({evaluation.images}), worst first"):
        st.dataframe(per_image_table(evaluation), hide_index=True, width="stretch", placeholder=EMPTY)
    if evaluation.worst:
        st.caption("Worst images: green right, red extra, blue missed.")
        cells = st.columns(4)
        for i, item in enumerate(evaluation.worst):
            cells[i % 4].image(item.picture, caption=f"{item.image} · Dice {item.dice:.3f}")


def _show_objects(objects: dict) -> None:
    """Object-level scores: how many objects were found one to one, over IoU thresholds (issue #15)."""
    st.plotly_chart(object_ap_figure(objects), width="stretch")  # the sentence is in the scores panel above
    st.caption(OBJECT_SCORES_EXPLAINED)
    with st.expander("Objects per image"):
        rows = [{OBJECT_COLUMNS.get(key, key): value for key, value in row.items()} for row in objects["per_image"]]
        st.dataframe(rows, hide_index=True, width="stretch", placeholder=EMPTY)


def _evaluation_section(run: Run) -> None:
    stored = list_datasets(workspace.datasets_dir())
    own = run.path / "data"  # a run trained from the command line on raw data keeps its stored copy here
    if (own / DATASET_FILE).exists():
        stored += [d for d in list_datasets(run.path) if d.root == own]
    if not stored:
        st.info("Evaluation needs a labelled dataset saved on the Dataset page.")
        return
    training_data = run.training_data()
    recorded = training_data.get("name")
    names = [d.name for d in stored]
    name = st.selectbox(
        "Labelled dataset", names, index=names.index(recorded) if recorded in names else 0, key=f"eval_data_{run.id}",
        help="Images with true masks. On the training dataset, score the held-back images; a separate test set "
        "tells more.",
    )
    dataset = next(d for d in stored if d.name == name)
    recorded_hash = training_data.get("hash")
    own_data = dataset.root == own or (bool(recorded_hash) and recorded_hash == dataset.hash)
    choices = [s for s in SPLIT_NAMES if s == "all" or training_data.get(s)] if own_data else ["all"]
    split = st.radio(
        "Images to score", choices, format_func=SPLIT_NAMES.get,
        horizontal=True, key=f"eval_split_{run.id}_{name}",
        help="Held-back images are the honest test: the model never learned from them. This dataset is the one "
             "the run trained on, so its images can be told apart." if own_data else
             "This is not the dataset the run trained on, so every image is new to the model.",
    )
    key = ("evaluation", run.id, name, split)
    if st.button("Evaluate", icon=":material/fact_check:", key=f"evaluate_{run.id}"):
        with user_errors("evaluating the model"):
            bar = st.progress(0.0, text="Evaluating…")
            st.session_state[key] = evaluate_detailed(
                run.path, dataset.root, split=split,
                progress=lambda f, text: bar.progress(min(max(f, 0.0), 1.0), text=text),
            )
            bar.empty()
    if key in st.session_state:
        _show_evaluation(st.session_state[key])


ZOO, ZOO_LABEL = "bioimageio", "BioImage Model Zoo package (bioimage.io)"


def _model_zoo_section(run: Run) -> None:
    """The BioImage Model Zoo package: who made it and under which licence, then the package with its checks."""
    st.caption("A package Fiji (deepImageJ), napari, ilastik, QuPath and BiaPy open: the network (ONNX and "
               "TensorFlow), its preprocessing, test images and a page describing the data and the scores.")
    authors = st.text_input("Authors", key=f"zoo_authors_{run.id}", placeholder="Ada Lovelace, Alan Turing",
                            help="Comma-separated; written into the package as its authors.")
    license_id = st.selectbox("Licence", ["CC-BY-4.0", "CC0-1.0", "MIT", "BSD-3-Clause", "Apache-2.0"],
                              key=f"zoo_license_{run.id}",
                              help="Under which terms others may use the model (an SPDX id).")
    description = st.text_area("Description (optional)", key=f"zoo_description_{run.id}", max_chars=1000,
                               help="What the model segments and on which images; written from the run if empty.")
    key = ("zoo", run.id)
    if st.button("Build the package and check it", icon=":material/inventory_2:", key=f"zoo_{run.id}"):
        bar = st.progress(0.0, text="Exporting the network…")
        with user_errors("building the BioImage Model Zoo package"):
            st.session_state[key] = export_package(
                run.path, run.path / "exports", [a.strip() for a in authors.split(",") if a.strip()], license_id,
                description.strip() or None, progress=lambda f, text: bar.progress(min(max(f, 0.0), 1.0), text=text))
        bar.empty()
    package = st.session_state.get(key)
    if package is not None:
        (st.success if package.ok else st.error)(
            f"{package.path.name}: {package.size_bytes / 1e6:.2f} MB in {package.seconds:.1f} s; {package.verdict}.")
        for message in package.messages:
            st.caption(message)
        if package.usage:
            st.caption(f"**What it expects:** {package.usage}")
        st.download_button(f"Download {package.path.name}", package.path.read_bytes(), package.path.name,
                           icon=":material/download:", key=f"zoo_download_{run.id}")


def _export_section(run: Run) -> None:
    fmt = st.selectbox(
        "Format",
        (*FORMATS, ZOO),
        format_func=lambda f: ZOO_LABEL if f == ZOO else
        LABELS[f] + ("" if unsupported_reason(f) is None else " (not available)"),
        key=f"export_format_{run.id}",
        help="Keras for Python and this app; SavedModel for TensorFlow Serving; TensorFlow Lite for phones and small "
        "devices; ONNX for other runtimes; a BioImage Model Zoo package for Fiji, napari, ilastik and QuPath. Every "
        "export is reloaded and compared with the trained model.",
    )
    if fmt == ZOO:
        _model_zoo_section(run)
        return
    reason = unsupported_reason(fmt)
    if reason:
        st.warning(reason, icon=":material/block:")
    key = ("export", run.id, fmt)
    if st.button("Export and check", disabled=reason is not None, icon=":material/output:", key=f"export_{run.id}"):
        with user_errors(f"exporting to {LABELS[fmt]}"), st.spinner(f"Exporting to {LABELS[fmt]} and checking…"):
            st.session_state[key] = export_model(run.path, fmt, run.path / "exports")
    result = st.session_state.get(key)
    if result is not None:
        verdict = "match" if result.ok else "do NOT match"
        (st.success if result.ok else st.error)(
            f"{LABELS[fmt]}: {result.size_bytes / 1e6:.2f} MB in {result.seconds:.1f} s. Reloaded, its predictions "
            f"{verdict} the trained model on {result.samples} {result.checked_on} (largest difference "
            f"{result.max_abs_diff:.1e}, allowed {result.tolerance:.0e})."
        )
        if result.usage:
            st.caption(f"**What the file expects:** {result.usage}")
        if result.ok:
            st.download_button(f"Download {result.download_name}", result.download_bytes(), result.download_name,
                               icon=":material/download:", key=f"export_download_{run.id}_{fmt}")


def _report_section(run: Run) -> None:
    st.write("One HTML file with the data, the model, the curves, the scores and sample predictions. "
             "It opens offline in any browser: send it to whoever needs to see the result.")
    key = ("report", run.id)
    if st.button("Build the report", icon=":material/description:", key=f"report_{run.id}"):
        with user_errors("building the report"), st.spinner("Building the report (a few seconds)…"):
            st.session_state[key] = build_report(run.path)
    if key in st.session_state:
        st.download_button("Download report.html", st.session_state[key], f"{run.id}-report.html", "text/html",
                           icon=":material/download:", key=f"report_download_{run.id}")


def run_tools(run: Run) -> None:
    if not run.has_model:
        st.info("This run has no saved model yet: evaluation, export and the report need one finished epoch.")
        return
    evaluation_tab, export_tab, report_tab = st.tabs(["Evaluate", "Export", "Report"])
    with evaluation_tab:
        _evaluation_section(run)
    with export_tab:
        _export_section(run)
    with report_tab:
        _report_section(run)
