"""Train page: start a training in its own process and watch it learn; leaving the page loses nothing."""

from __future__ import annotations

import streamlit as st

from unet import backend, runs, workspace
from unet.run_summary import network_classes
from unet.ui.feedback import user_errors
from unet.ui.finetune_view import start_from
from unet.ui.model_facts_view import estimate_line, time_estimate
from unet.ui.run_table import SHORT, run_table
from unet.ui.state import align_config_with_dataset, current_dataset, get_config, set_config
from unet.ui.train_view import REFRESH_SECONDS, polled, resume, run_view, start, train_settings, where_trainings_run
from unet.units import count_text

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
        st.info(f"“{dataset.name}” has {count_text(len(dataset.stems), 'image')} with a mask; training needs at "
                "least 2 (one to learn from, one to check on), and learns better from more. Draw them on the "
                "**Annotate** page.")
        st.page_link("pages/annotate.py", label="Go to the Annotate page", icon=":material/brush:")
    else:
        config, start_problem = start_from(config, dataset)
        summary = st.empty()  # filled once the settings below are read, so it shows the epochs they set
        train, problems = train_settings(config.train)
        problems = ([start_problem] if start_problem else []) + problems
        if train != config.train or config.train.init_from != get_config().train.init_from:
            config = config.replace(train=train)
            set_config(config)
        facts, _ = time_estimate(config, dataset)  # the Model page's estimate, in the same words
        summary.markdown(
            f"**Dataset** {dataset.name}: {count_text(len(dataset.stems), 'pair')}, "
            f"{count_text(dataset.num_classes, 'class', 'classes')} · "
            f"**Model** depth {config.model.depth}, {config.model.base_filters} filters, "
            f"{config.data.input_size}×{config.data.input_size} input, {facts.params:,} parameters · "
            f"**Estimate** {estimate_line(facts, config.train.epochs)} (early stopping may end sooner)"
        )
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
    run_view(shown, *network_classes(shown))  # the run's own classes and colours, not the current dataset's
    can_resume = not shown.is_active and shown.can_resume
    if can_resume and st.button("Resume", icon=":material/play_arrow:", help="Continue from the last finished epoch."):
        with user_errors("resuming the run"):
            resume(shown)
            st.rerun()

# --- Earlier runs ---------------------------------------------------------------------------------------------------
if all_runs:
    st.subheader("Runs", divider="gray")
    run_table(all_runs, SHORT, refresh_seconds=REFRESH_SECONDS if any(polled(r) for r in all_runs) else None)
    ids = [r.id for r in all_runs]
    pick = st.selectbox("Open a run", ids, index=ids.index(shown.id) if shown else 0,
                        format_func=lambda i: next(r.name for r in all_runs if r.id == i))
    if st.button("Open", icon=":material/visibility:") and pick != shown_id:
        st.query_params["run"] = pick
        st.rerun()
