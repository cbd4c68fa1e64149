"""The Model page's "Suggested for your data" box: settings that fit the current dataset and a time budget,
each with its reason, applied in one click (the user can still change everything afterwards)."""

from __future__ import annotations

import streamlit as st

from unet.config import Config
from unet.dataset import Dataset
from unet.suggest import Suggestion, suggest
from unet.ui.finetune_view import forget_start_from
from unet.ui.model_facts_view import machine_gflops

BUDGETS = [1, 2, 5, 10, 15, 30, 60]  # minutes


def _cached(dataset: Dataset, minutes: int, config: Config) -> Suggestion:
    """One suggestion per dataset version and budget in this tab: reading the masks takes a moment."""
    key = ("suggestion", dataset.name, dataset.hash, minutes)
    if key not in st.session_state:
        with st.spinner("Looking at your images and masks…"):
            st.session_state[key] = suggest(dataset, minutes, base=config, gflops_per_second=machine_gflops())
    return st.session_state[key]


def describe(config: Config) -> str:
    data, model, train = config.data, config.model, config.train
    how = "crops at the images' own resolution" if data.resize == "crop" else "whole images resized"
    return (f"{data.input_size}×{data.input_size} {how} · depth {model.depth}, {model.base_filters} base filters · "
            f"{train.epochs} epochs, batch {train.batch_size}")


def suggestion_panel(dataset: Dataset, config: Config) -> Config | None:
    """Draw the box; return the suggested config when the user applies it, else None."""
    with st.container(border=True):
        st.markdown(f"**Suggested for “{dataset.name}”**")
        minutes = st.select_slider(
            "Time for training", BUDGETS, value=5, format_func=lambda m: f"about {m} min",
            help="The suggestion fits its epochs to this budget with this machine's measured speed.",
        )
        suggestion = _cached(dataset, minutes, config)
        st.markdown(describe(suggestion.config))
        for reason in suggestion.reasons:
            st.caption(f"· Because {reason}.")
        if st.button("Apply the suggestion", icon=":material/auto_fix_high:", type="primary",
                     help="Fills every control below and the Train page's epochs, for a new network (not "
                          "fine-tuned from an earlier model); you can still change them."):
            forget_start_from()
            return suggestion.config.replace(augment=config.augment)
    return None
