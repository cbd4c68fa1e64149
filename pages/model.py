"""Model page: every slider changes the real network; its size, cost and time are shown before training."""

from __future__ import annotations

import streamlit as st

from unet.config import Config
from unet.errors import UserError
from unet.presets import PRESETS, apply_preset
from unet.ui.feedback import user_errors
from unet.ui.model_controls import load_into_widgets, model_controls
from unet.ui.model_facts_view import show_diagram, show_model_facts
from unet.ui.state import align_config_with_dataset, current_dataset, set_config
from unet.ui.suggest_view import suggestion_panel
from unet.ui.task_view import task_choice

st.title("Model")
st.write(
    "A U-Net looks at an image at several scales: the left half shrinks it to understand *what* is there, the right "
    "half grows it back to say *where*, pixel by pixel. Choose its shape here; the cost updates as you move a slider."
)

dataset = current_dataset()
config = align_config_with_dataset(dataset)
chosen_task = task_choice(config, dataset)
if chosen_task != config:
    set_config(chosen_task)
    config = align_config_with_dataset(dataset)
if dataset is None:
    st.info("No dataset chosen yet: estimates assume the demo data. Pick one on the **Dataset** page, and settings "
            "that fit it are suggested here.")
else:
    with user_errors("suggesting settings for this dataset"):
        suggested = suggestion_panel(dataset, config)
        if suggested is not None:
            config = suggested
            set_config(config)
            load_into_widgets(config)
            st.toast("Applied the suggested settings")

# --- Presets and config files --------------------------------------------------------------------------------------
preset_col, file_col = st.columns([3, 2], gap="large")
with preset_col:
    names = list(PRESETS)
    name = st.selectbox(
        "Preset",
        names,
        help="Starting points that make sense on a laptop CPU. Applying one fills every control below.",
    )
    preset = PRESETS[name]
    st.caption(preset.description)
    if preset.slow_on_cpu:
        st.caption(":orange[Slow on a CPU: best on a machine with a GPU.]")
    if st.button("Apply preset", icon=":material/tune:"):
        config = apply_preset(config, name)
        set_config(config)
        load_into_widgets(config)
        st.toast(f"Applied “{name}”")
with file_col:
    st.download_button(
        "Download config (JSON)",
        config.to_json(),
        file_name="unet-config.json",
        mime="application/json",
        icon=":material/download:",
        help="The whole configuration; `python -m unet train --config` reads the same file.",
    )
    uploaded = st.file_uploader(
        "Load a config (JSON)",
        type=["json"],
        max_upload_size=1,
        help="A config.json from a run or a download; missing keys take defaults.",
    )
    if uploaded is not None and st.session_state.get("config_upload_id") != uploaded.file_id:
        st.session_state["config_upload_id"] = uploaded.file_id
        with user_errors(f"reading '{uploaded.name}'"):
            if uploaded.size > 1_000_000:
                raise UserError(f"'{uploaded.name}' is {uploaded.size:,} bytes; a config file is a few KB")
            loaded = Config.from_json(uploaded.getvalue())
            set_config(loaded)
            config = align_config_with_dataset(dataset)
            load_into_widgets(config)
            st.success(f"Loaded '{uploaded.name}'.")

# --- Controls and live facts ---------------------------------------------------------------------------------------
controls, facts = st.columns([2, 3], gap="large")
with controls:
    try:
        chosen = model_controls(config)
    except UserError as exc:
        chosen = None
        st.error(str(exc).removeprefix("config: "), icon=":material/error:")
if chosen is not None and chosen != config:
    config = chosen
    set_config(config)
with facts, user_errors("computing the model's size"):
    show_model_facts(config, dataset)
with user_errors("drawing the network"):
    show_diagram(config)

st.page_link("pages/train.py", label="Next: train this model", icon=":material/arrow_forward:")
