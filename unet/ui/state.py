"""What the pages share within one browser tab: the config being edited and the chosen dataset.

`st.session_state` is per tab and is reset by a refresh, so the chosen dataset's name is also kept in the URL
(`?dataset=NAME`), and both the config and the dataset are written to the workspace's `last_used.json`: a reload
or a new tab starts from what the user last set, not from the defaults. (One record per workspace: the app is a
local, single-user tool; tabs that edit different configs at once share the last one written.)
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from unet import task, workspace
from unet.config import Config
from unet.dataset import Dataset
from unet.errors import UserError

_CONFIG = "config"
_DATASET = "dataset"
_RESTORED = "dataset_restored"  # the last-used dataset is restored once, when a tab's session starts


def get_config() -> Config:
    """The config this tab is editing (defaults on first use)."""
    if _CONFIG not in st.session_state:
        st.session_state[_CONFIG] = _last_config()
    return st.session_state[_CONFIG]


def _last_config() -> Config:
    saved = workspace.read_last_used().get("config")
    if not saved:
        return Config()
    try:
        return Config.from_dict(saved)
    except UserError:  # written by an older version, or edited by hand: start from the defaults
        return Config()


def set_config(config: Config) -> None:
    st.session_state[_CONFIG] = config
    workspace.write_last_used(config=config.to_dict())


def current_dataset() -> Dataset | None:
    """The dataset chosen in this tab, or None; survives a refresh through the URL."""
    name = st.session_state.get(_DATASET) or st.query_params.get(_DATASET)
    if not name and not st.session_state.get(_RESTORED):  # a new tab or a reload: where the user last was
        name = workspace.read_last_used().get(_DATASET)
    st.session_state[_RESTORED] = True
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
    workspace.write_last_used(dataset=name)


def align_config_with_dataset(dataset: Dataset | None) -> Config:
    """The config with its channels and class count taken from the chosen dataset and task
    (`unet.task.fit_to_dataset`)."""
    config = get_config()
    if dataset is None:
        return config
    from unet.ui.task_view import default_for  # the task's default depends on what the user chose in this tab

    config = default_for(config, dataset)
    if config.data.task == task.INSTANCES and not task.available(dataset):  # a choice the data no longer allows
        config = config.replace(data=dataclasses.replace(config.data, task=task.SEMANTIC))
    fitted = task.fit_to_dataset(config, dataset)
    if fitted != get_config():
        set_config(fitted)
    return fitted
