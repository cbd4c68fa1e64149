"""Runs page: every run kept with its config, history and model; compare, rename, delete, train again."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from unet import backend, runs, workspace
from unet.charts import compare_figure
from unet.run_summary import config_table, train_command
from unet.ui.feedback import user_errors
from unet.ui.model_controls import load_into_widgets
from unet.ui.run_table import run_table
from unet.ui.run_tools import run_tools
from unet.ui.state import set_config

st.title("Runs")
runs_root = workspace.runs_dir()
runs.mark_interrupted_runs(runs_root)
for problem in backend.check_runs(runs_root):  # runs on a Ray cluster: their jobs' states (nothing for local runs)
    st.warning(problem, icon=":material/cloud_off:")
all_runs = runs.list_runs(runs_root)
if not all_runs:
    st.info("No runs yet. Start one on the **Train** page.")
    st.page_link("pages/train.py", label="Go to the Train page", icon=":material/monitoring:")
    st.stop()

by_id = {r.id: r for r in all_runs}
run_table(all_runs)
st.caption("Click a column header to sort.")

# --- Compare ------------------------------------------------------------------------------------------------------
st.header("Compare", divider="gray")
names = {r.id: r.name for r in all_runs}
picked = st.multiselect(
    "Runs to compare",
    list(by_id),
    default=list(by_id)[:2],
    format_func=names.get,
    help="Their validation curves are drawn together and their settings listed side by side.",
)
if len(picked) >= 1:
    metric = st.radio(
        "Curve", ["val_dice", "val_iou", "val_loss", "dice", "loss"], horizontal=True,
        format_func={"val_dice": "Validation Dice", "val_iou": "Validation IoU", "val_loss": "Validation loss",
                     "dice": "Training Dice", "loss": "Training loss"}.get,
    )
    st.plotly_chart(
        compare_figure({names[i]: by_id[i].read_history() for i in picked}, key=metric), width="stretch"
    )
    with user_errors("reading the configs"):
        table, differing = config_table({names[i]: by_id[i].config() for i in picked})
        only_diff = st.toggle("Only settings that differ", value=len(picked) > 1 and bool(differing))
        shown = [row for row in table if not only_diff or row["setting"] in differing]
        frame = pd.DataFrame(shown).set_index("setting").astype(str)
        st.dataframe(
            frame.style.apply(lambda row: ["background-color: #fdf1d6" if row.name in differing else "" for _ in row],
                              axis=1),
            width="stretch",
        )

# --- One run ------------------------------------------------------------------------------------------------------
st.header("One run", divider="gray")
chosen_id = st.selectbox("Run", list(by_id), format_func=names.get, key="runs_selected")
run = by_id[chosen_id]
actions = st.columns(3)
with actions[0]:
    if st.button("Train again with this config", icon=":material/replay:",
                 help="Fills the Model and Train pages with this run's settings."):
        with user_errors("reading the run's config"):
            config = run.config()
            set_config(config)
            load_into_widgets(config)
            st.switch_page("pages/model.py")
with actions[1]:
    show_command = st.toggle("Show the command", help="The same training from a terminal, e.g. on a bigger machine.")
with actions[2]:
    if run.has_model:
        st.page_link("pages/inference.py", label="Use this model", icon=":material/auto_fix_high:",
                     query_params={"run": run.id})
    else:
        st.caption("No model saved yet.")
if show_command:
    st.code(train_command(run), language="bash")
    st.caption(f"Save the config next to your data first: it is `config.json` in this run's folder ({run.id}).")
    st.download_button("Download config.json", run.file(runs.CONFIG).read_bytes(), "config.json",
                       "application/json", icon=":material/download:")

with st.expander("Rename or delete", icon=":material/edit:"):
    new_name = st.text_input("New name", value=run.name, key=f"rename_{run.id}")
    if st.button("Rename", key=f"do_rename_{run.id}") and new_name.strip() and new_name != run.name:
        runs.rename_run(run, new_name)
        st.rerun()
    sure = st.checkbox(f"Yes, delete “{run.name}” with its models and history", key=f"sure_{run.id}")
    if st.button("Delete run", type="primary", disabled=not sure, icon=":material/delete:", key=f"delete_{run.id}"):
        with user_errors("deleting the run"):
            runs.delete_run(run)
            st.toast(f"Deleted “{run.name}”")
            st.rerun()

run_tools(run)
