"""The sidebar every page shares: which dataset and which model this tab is working with."""

from __future__ import annotations

import streamlit as st

from unet.ui.state import align_config_with_dataset, current_dataset


def show_sidebar() -> None:
    with st.container():
        dataset = current_dataset()
        st.caption("Current dataset")
        if dataset is None:
            st.markdown("*none yet*: load the demo data or upload yours on the **Dataset** page.")
        else:
            names = ", ".join(c.name for c in dataset.classes)
            st.markdown(f"**{dataset.name}**  \n{len(dataset.stems)} pairs · {dataset.num_classes} classes ({names})")
        config = align_config_with_dataset(dataset)
        st.caption("Model")
        st.markdown(
            f"depth {config.model.depth} · {config.model.base_filters} filters · "
            f"{config.data.input_size}×{config.data.input_size} input"
        )
