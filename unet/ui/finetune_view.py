"""The Train page's "Start from" choice: a new network, an earlier run's model, or an uploaded .keras file.

Choosing a model applies the fine-tuning defaults once (`unet.finetune.fine_tune_config`: the run's network, a
tenth of its learning rate, at most 20 epochs); the settings below then show them and the user may change them.
Going back to a new network restores the learning rate and epochs the user had before.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import streamlit as st

from unet import finetune, runs, workspace
from unet.config import Config
from unet.dataset import Dataset
from unet.errors import UserError

SCRATCH, FILE = "scratch", "file"
CHOICE = "finetune_start_from"  # the widget's key: a changing index would make it a new widget that forgets
BEFORE = "finetune_before"  # (learning rate, epochs) before the fine-tuning defaults replaced them


def forget_start_from() -> None:
    """A new network was chosen elsewhere (a suggestion applied on the Model page): the Train page then starts from
    scratch with the config's own epochs and learning rate, not the ones kept from before a fine-tuning choice."""
    st.session_state.pop(CHOICE, None)
    st.session_state.pop(BEFORE, None)


def _restored(config: Config) -> Config:
    """The config as it was before a fine-tuning source was chosen."""
    if not config.train.init_from:
        return config
    rate, epochs = st.session_state.get(BEFORE, (config.train.learning_rate, config.train.epochs))
    return config.replace(train=dataclasses.replace(config.train, init_from=None, learning_rate=rate, epochs=epochs))


def _saved_upload(upload) -> Path:
    """The uploaded model kept in the workspace (the trainer, a separate process, reads it when it starts)."""
    name = workspace.safe_name(Path(upload.name).stem, fallback="model") + ".keras"
    target = workspace.models_dir() / name
    if not (target.exists() and target.stat().st_size == upload.size):
        with target.open("wb") as out:
            shutil.copyfileobj(upload, out, length=1 << 20)
    return target


def _run_problem(run: runs.Run, dataset: Dataset) -> str | None:
    recorded = run.training_data()
    channels = recorded.get("channels")
    if channels is not None and int(channels) != dataset.channels:
        return (f"{run.name} was trained on {channels}-channel images but “{dataset.name}” has {dataset.channels}; "
                "a network cannot take other channels. Choose another run, or a new network.")
    return None


def start_from(config: Config, dataset: Dataset) -> tuple[Config, str | None]:
    """The "Start from" widgets: the config to train with, and a problem that blocks starting (or None)."""
    models = [r for r in runs.list_runs(workspace.runs_dir()) if r.has_model]
    options = [SCRATCH] + [r.id for r in models] + [FILE]
    labels = {SCRATCH: "A new network (from scratch)", FILE: "A .keras model file",
              **{r.id: f"The model of run {r.name}" for r in models}}
    given = config.train.init_from
    current = next((r.id for r in models if given and Path(given) == r.path.resolve()), None) or (
        FILE if given and Path(given).is_file() else SCRATCH)
    if st.session_state.get(CHOICE) not in options:  # first visit, or its run deleted: what the config says
        st.session_state[CHOICE] = current
    choice = st.selectbox(
        "Start from", options, key=CHOICE, format_func=labels.get,
        help="Fine-tuning starts from a trained model instead of random weights: a few newly drawn or corrected "
             "images then teach it quickly. It uses the model's network, a tenth of its learning rate and at "
             "most 20 epochs (change them below). A new network learns everything from these images.")
    if choice == SCRATCH:
        return _restored(config), None
    if choice == FILE:
        upload = st.file_uploader("Model file (.keras)", type=["keras"], key="finetune_upload",
                                  help="A model trained here or elsewhere with the same input channels; when its "
                                       "classes differ, its output layer is replaced.")
        if upload is not None:
            path = _saved_upload(upload)
        elif given and Path(given).is_file():
            path = Path(given)
        else:
            return _restored(config), "Upload the .keras file to start from, or choose another starting point."
    else:
        run = next(r for r in models if r.id == choice)
        problem = _run_problem(run, dataset)
        if problem:
            return _restored(config), problem
        path = run.path
    try:
        source = finetune.resolve_source(path)
    except UserError as exc:
        return _restored(config), str(exc)
    if config.train.init_from != str(source.location):
        before = _restored(config)
        st.session_state[BEFORE] = (before.train.learning_rate, before.train.epochs)
        config = finetune.fine_tune_config(before, source)
    st.caption(f"Fine-tuning from {source.label}: learning rate {config.train.learning_rate:g}, "
               f"{config.train.epochs} epochs" + (", with that run's network and input size."
                                                 if source.run_dir is not None else "."))
    return config, None
