"""Train page: start a training in its own process and watch it learn; leaving the page loses nothing."""

from __future__ import annotations

import streamlit as st

from unet import backend, runs, workspace
from unet.model import model_facts
from unet.splits import training_count
from unet.ui.feedback import user_errors
from unet.ui.finetune_view import start_from
from unet.ui.model_facts_view import machine_gflops
from unet.ui.run_table import SHORT, run_table
from unet.ui.state import align_config_with_dataset, current_dataset, get_config, set_config
from unet.ui.train_view import resume, run_view, start, train_settings, where_trainings_run
from unet.units import duration_text

st.title("Train")
runs_root = workspace.runs_dir()
runs.mark_interrupted_runs(runs_root)
for problem in backend.check_runs(runs_root):  # runs on a Ray cluster: their jobs' states (nothing for local runs)
    st.warning(problem, icon=":material/cloud_off:")
all_runs = runs.list_runs(runs_root)

# The run on screen is kept in the URL, so a refresh or a second tab shows the same one.
# Without one (e.g. after navigating here), the active run is shown, else the newest.
shown_id = st.query_params.get("run")
shown = next((r for r in all_runs if r.id == shown_id), None)
if shown is None and all_runs:
    shown = next((r for r in all_runs if r.is_active), all_runs[0])
    st.query_params["run"] = shown.id
shown_id = shown.id if shown else None

dataset = current_dataset()
config = align_config_with_dataset(dataset)

with st.expander("New training", expanded=shown is None or not shown.is_active, icon=":material/add_circle:"):
    if dataset is None:
        st.info("Choose a dataset first on the **Dataset** page (the demo data is one click away).")
        st.page_link("pages/dataset.py", label="Go to the Dataset page", icon=":material/photo_library:")
    elif len(dataset.stems) < 2:
        st.info(f"“{dataset.name}” has {len(dataset.stems)} image(s) with a mask; training needs at least 2 (one to "
                "learn from, one to check on), and learns better from more. Draw them on the **Annotate** page.")
        st.page_link("pages/annotate.py", label="Go to the Annotate page", icon=":material/brush:")
    else:
        config, start_problem = start_from(config, dataset)
        train_images = training_count(len(dataset.training_stems), config.train.validation_split)
        facts = model_facts(config, num_images=train_images, gflops_per_second=machine_gflops())
        per_epoch = facts.seconds_per_epoch or 0
        st.markdown(
            f"**Dataset** {dataset.name}: {len(dataset.stems)} pairs, {dataset.num_classes} classes · "
            f"**Model** depth {config.model.depth}, {config.model.base_filters} filters, "
            f"{config.data.input_size}×{config.data.input_size} input, {facts.params:,} parameters · "
            f"**Estimate** about {duration_text(per_epoch)} per epoch, "
            f"{duration_text(per_epoch * config.train.epochs)} for {config.train.epochs} epochs "
            "(early stopping may end sooner)"
        )
        train, problems = train_settings(config.train)
        problems = ([start_problem] if start_problem else []) + problems
        if train != config.train or config.train.init_from != get_config().train.init_from:
            config = config.replace(train=train)
            set_config(config)
        for problem in problems:
            st.error(problem, icon=":material/block:")
        name = st.text_input("Run name", value=f"{dataset.name}-d{config.model.depth}f{config.model.base_filters}",
                             help="How this run is listed on the Runs page.")
        st.caption(where_trainings_run())
        busy = next((r for r in all_runs if r.is_active), None)
        if busy and backend.ray_address() is None:
            st.caption(f"“{busy.name}” is training now; a new run waits in the queue until it finishes.")
        if st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=bool(problems),
                     help="Fix the values marked above first." if problems else None):
            with user_errors("starting the training"):
                run = start(config, dataset, name)
                st.query_params["run"] = run.id
                st.rerun()

if shown is not None:
    recorded = shown.training_data()  # the run's own classes, not the current dataset's
    class_names = [c.get("name", "") for c in recorded.get("classes", [])] or (
        [c.name for c in dataset.classes] if dataset else [])
    run_view(shown, class_names)
    can_resume = not shown.is_active and shown.can_resume
    if can_resume and st.button("Resume", icon=":material/play_arrow:", help="Continue from the last finished epoch."):
        with user_errors("resuming the run"):
            resume(shown)
            st.rerun()

# --- Earlier runs ---------------------------------------------------------------------------------------------------
if all_runs:
    st.subheader("Runs", divider="gray")
    run_table(all_runs, SHORT)
    ids = [r.id for r in all_runs]
    pick = st.selectbox("Open a run", ids, index=ids.index(shown.id) if shown else 0,
                        format_func=lambda i: next(r.name for r in all_runs if r.id == i))
    if st.button("Open", icon=":material/visibility:") and pick != shown_id:
        st.query_params["run"] = pick
        st.rerun()
