"""What the pages share within one browser tab: the config being edited and the chosen dataset.

`st.session_state` is per tab and is reset by a refresh, so the chosen dataset's name is also kept in the URL
(`?dataset=NAME`); the dataset itself lives on disk in the workspace.
"""

from __future__ import annotations

import streamlit as st

from unet import workspace
from unet.config import Config
from unet.dataset import Dataset
from unet.errors import UserError

_CONFIG = "config"
_DATASET = "dataset"


def get_config() -> Config:
    """The config this tab is editing (defaults on first use)."""
    if _CONFIG not in st.session_state:
        st.session_state[_CONFIG] = Config()
    return st.session_state[_CONFIG]


def set_config(config: Config) -> None:
    st.session_state[_CONFIG] = config


def current_dataset() -> Dataset | None:
    """The dataset chosen in this tab, or None; survives a refresh through the URL."""
    name = st.session_state.get(_DATASET) or st.query_params.get(_DATASET)
    if not name:
        return None
    folder = workspace.datasets_dir() / workspace.safe_name(name)
    try:
        dataset = Dataset.load(folder)
    except UserError:
        return None
    st.session_state[_DATASET] = dataset.name
    if st.query_params.get(_DATASET) != dataset.name:
        st.query_params[_DATASET] = dataset.name
    return dataset


def set_current_dataset(name: str | None) -> None:
    if name:
        st.session_state[_DATASET] = name
        st.query_params[_DATASET] = name
    else:
        st.session_state.pop(_DATASET, None)
        st.query_params.pop(_DATASET, None)


def align_config_with_dataset(dataset: Dataset | None) -> Config:
    """The config with its channels and class count taken from the chosen dataset (they are facts, not choices)."""
    import dataclasses

    config = get_config()
    if dataset is None:
        return config
    if (config.data.channels, config.model.num_classes) != (dataset.channels, dataset.num_classes):
        config = config.replace(
            data=dataclasses.replace(config.data, channels=dataset.channels),
            model=dataclasses.replace(config.model, num_classes=dataset.num_classes),
        )
        set_config(config)
    return config
