"""The task choice on the Model page: a class per pixel, or also separate touching objects (issue #15)."""

from __future__ import annotations

import dataclasses

import streamlit as st

from unet import task
from unet.config import Config
from unet.dataset import Dataset

_CHOSEN = "task_chosen_for"  # the dataset whose task the user picked in this tab (else its default applies)


def default_for(config: Config, dataset: Dataset | None) -> Config:
    """The config with the dataset's default task, unless the user chose one for this dataset in this tab."""
    if dataset is None or st.session_state.get(_CHOSEN) == dataset.name:
        return config
    wanted = task.default_task(dataset)
    return config if config.data.task == wanted else config.replace(data=dataclasses.replace(config.data, task=wanted))


def task_choice(config: Config, dataset: Dataset | None) -> Config:
    """A radio for datasets with objects (instance masks, or one foreground class); the config it describes."""
    if dataset is None or not task.available(dataset):
        return config
    where = "the instance label masks" if dataset.instances else "the mask's separate regions"
    picked = st.radio(
        "What to learn",
        [task.SEMANTIC, task.INSTANCES],
        index=[task.SEMANTIC, task.INSTANCES].index(config.data.task),
        format_func=task.LABELS.__getitem__,
        horizontal=True,
        key=f"task_{dataset.name}",
        help="'Separate touching objects' learns each object's interior and boundary, so that touching cells or "
             "nuclei get one id each (counted and measured one by one, scored as objects: AP, F1). The objects "
             f"come from {where}. 'Segment classes' paints classes only: touching objects merge into one patch.",
    )
    if picked != config.data.task:
        st.session_state[_CHOSEN] = dataset.name
        config = config.replace(data=dataclasses.replace(config.data, task=picked))
    if picked == task.INSTANCES:
        st.caption("The network learns 3 classes (background, object interior, object boundary); predictions "
                   "become one id per object by a watershed from the interiors.")
    return config
